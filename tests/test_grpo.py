"""rl/grpo.py against values computed by hand (in the comments), not by the same formulas."""

import math

import pytest
import torch

from rlvr_world.rl.grpo import (
    ADVANTAGE_ESTIMATORS,
    KL_ESTIMATORS,
    LOSS_AGGREGATIONS,
    aggregate,
    compute_advantages,
    dense_gdpo_advantages,
    entropy_from_logits,
    group_advantages,
    grpo_loss,
    kl_k1,
    kl_k2,
    kl_k3,
    policy_loss,
    token_advantages,
    zero_variance_groups,
)

LN2 = math.log(2.0)


def close(a, b, tol=1e-5):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), atol=tol, rtol=tol)


# --------------------------------------------------------------------------- advantages


def test_group_advantages_one_group_unbiased_std():
    # [1,0,0,1]: mean 0.5, deviations +-0.5, unbiased var = 4*0.25/3 = 1/3, std = 0.57735
    # A = 0.5 / 0.57735 = sqrt(3)/2 = 0.8660254
    adv, std = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), group_size=4, eps=0.0)
    assert close(adv, [0.8660254, -0.8660254, -0.8660254, 0.8660254])
    assert close(std, [0.5773503] * 4)
    # default eps=1e-6: 0.5 / (0.5773503 + 1e-6) = 0.8660239
    adv, _ = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), group_size=4)
    assert close(adv, [0.8660239, -0.8660239, -0.8660239, 0.8660239], tol=1e-6)


def test_group_advantages_pair_is_unbiased_not_population():
    # [0,1]: mean 0.5, unbiased std = sqrt(0.5/1) = 0.7071 -> A = +-0.7071 (population std
    # 0.5 would give +-1)
    adv, _ = group_advantages(torch.tensor([0.0, 1.0]), group_size=2, eps=0.0)
    assert close(adv, [-0.7071068, 0.7071068])


def test_group_advantages_two_groups_contiguous():
    # group 0 [1,0,0,1] as above; group 1 [3,1,2,2]: mean 2, deviations [1,-1,0,0],
    # unbiased var = 2/3, std = 0.8164966, A = [1.2247449, -1.2247449, 0, 0]
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 3.0, 1.0, 2.0, 2.0])
    adv, std = group_advantages(rewards, group_size=4, eps=0.0)
    assert close(adv, [0.8660254, -0.8660254, -0.8660254, 0.8660254, 1.2247449, -1.2247449, 0.0, 0.0])
    assert close(std, [0.5773503] * 4 + [0.8164966] * 4)
    assert torch.equal(compute_advantages("grpo", rewards, 4, eps=0.0), adv)


def test_dr_grpo_advantages_drop_the_std():
    # r - mean: group 0 -> +-0.5; group 1 -> [1, -1, 0, 0]
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 3.0, 1.0, 2.0, 2.0])
    adv, _ = group_advantages(rewards, group_size=4, scale_by_std=False)
    assert torch.equal(adv, torch.tensor([0.5, -0.5, -0.5, 0.5, 1.0, -1.0, 0.0, 0.0]))
    assert torch.equal(compute_advantages("drgrpo", rewards, 4), adv)


def test_zero_variance_group_gives_exact_zero_and_is_flagged():
    rewards = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    adv, std = group_advantages(rewards, group_size=4)
    assert not torch.isnan(adv).any()
    assert torch.equal(adv[:4], torch.zeros(4)) and torch.equal(adv[8:], torch.zeros(4))
    assert torch.equal(std[:4], torch.zeros(4))
    flags = zero_variance_groups(rewards, group_size=4)
    assert flags.dtype == torch.bool
    assert flags.tolist() == [True] * 4 + [False] * 4 + [True] * 4


def test_zero_variance_threshold_for_continuous_rewards():
    # One of four samples offset by d: mean offset d/4, deviations 3d/4 and -d/4 (x3),
    # sum of squares 3d^2/4, unbiased var d^2/4, std = d/2.
    base = [0.3, 0.3, 0.3, 0.3]
    rewards = torch.tensor(
        [0.3 + 1e-7, 0.3, 0.3, 0.3]  # std 5e-8: a near-tie, flagged
        + [0.3 + 1.8e-6, 0.3, 0.3, 0.3]  # std 9e-7: just under eps, flagged
        + [0.3 + 2.2e-6, 0.3, 0.3, 0.3]  # std 1.1e-6: just above eps, kept
        + base,  # exact tie
        dtype=torch.float64,
    )
    _, std = group_advantages(rewards, group_size=4)
    assert close(std[[0, 4, 8]], [5e-8, 9e-7, 1.1e-6], tol=1e-12)
    flags = zero_variance_groups(rewards, group_size=4, eps=1e-6)
    assert flags.tolist() == [True] * 4 + [True] * 4 + [False] * 4 + [True] * 4


def test_advantages_reject_bad_groups():
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(6), group_size=4)  # 6 rewards are not whole groups of 4
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(4), group_size=1)  # no baseline, std undefined
    with pytest.raises(KeyError, match="grpo"):
        compute_advantages("grp", torch.zeros(4), 2)
    assert set(ADVANTAGE_ESTIMATORS) == {"grpo", "drgrpo", "gdpo", "best_of_group"}
    with pytest.raises(ValueError, match="terms"):
        compute_advantages("gdpo", torch.zeros(4), 2, terms=torch.zeros(4), weights=torch.ones(1))
    with pytest.raises(ValueError, match="weights"):
        compute_advantages("gdpo", torch.zeros(4), 2, terms=torch.zeros(4, 2), weights=torch.ones(3))


def test_best_of_group_credits_only_each_groups_best_with_g():
    # G=3, three groups: (0.1, 0.5, 0.2) -> the middle one; (-1, -3, -1) -> a tie at the top,
    # the first wins; (2, 2, 2) -> every response ties: no credit. The best gets G = 3.
    rewards = torch.tensor([0.1, 0.5, 0.2, -1.0, -3.0, -1.0, 2.0, 2.0, 2.0])
    adv = compute_advantages("best_of_group", rewards, 3)
    assert adv.tolist() == [0.0, 3.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_best_of_group_under_token_mean_is_the_nll_of_the_best_responses():
    # Two groups of G=2 with 3 tokens each; rows 1 and 2 are their groups' best (A = 2). At
    # ratio 1 (one update per rollout) the token-mean over all 12 tokens has the gradient
    # -A / 12 = -1/6 on each token of rows 1 and 2 and 0 elsewhere: the gradient of the mean
    # NLL of those two rows' 6 tokens.
    logp = torch.tensor([[-0.1, -0.2, -0.3], [-1.0, -2.0, -3.0], [-0.5, -0.5, -0.5], [-4.0, -4.0, -4.0]],
                        requires_grad=True)
    adv = compute_advantages("best_of_group", torch.tensor([0.0, 1.0, 5.0, 4.0]), 2)
    loss, _ = grpo_loss(logp, logp.detach(), None, adv, torch.ones(4, 3), clip_low=0.2, clip_high=0.2, kl_coef=0.0)
    loss.backward()
    sixth = -1 / 6
    assert close(logp.grad, [[0, 0, 0], [sixth] * 3, [sixth] * 3, [0, 0, 0]])


# Two terms, both errors (weight -1), two groups of G=2. With G=2 a group-normalised advantage
# is +-1/sqrt(2): (a - (a+b)/2) / (|a - b| / sqrt(2)) = sign(a - b) / sqrt(2).
#   group 0: (0.10, 0.01) vs (0.20, 0.03): row 0 better on both terms
#   group 1: (0.10, 0.03) vs (0.20, 0.01): row 2 better on the first (large) term, row 3 on the second
GDPO_TERMS = torch.tensor([[0.10, 0.01], [0.20, 0.03], [0.10, 0.03], [0.20, 0.01]], dtype=torch.float64)


def test_gdpo_normalises_each_term_in_its_group_then_the_batch():
    weights = torch.tensor([-1.0, -1.0], dtype=torch.float64)
    rewards = GDPO_TERMS @ weights  # [-0.11, -0.23, -0.13, -0.21]
    # GRPO on the totals: the first term's spread decides group 1 -> row 2 favoured.
    s = 1 / math.sqrt(2)
    assert close(compute_advantages("grpo", rewards, 2, eps=0.0), [s, -s, s, -s])
    # GDPO: group 0 sums to (+2s, -2s) = (sqrt2, -sqrt2); group 1's terms cancel -> (0, 0).
    # Batch: mean 0, unbiased std sqrt((2 + 2 + 0 + 0) / 3) = 2/sqrt3; sqrt2 / (2/sqrt3) = sqrt6/2.
    adv = compute_advantages("gdpo", rewards, 2, eps=0.0, terms=GDPO_TERMS, weights=weights)
    h = math.sqrt(6) / 2
    assert close(adv, [h, -h, 0.0, 0.0])


def test_gdpo_keeps_the_weights_magnitudes():
    # Weights (-1, -3): group 0 -> (1 + 3)s = 2sqrt2 and -2sqrt2; group 1 -> (1 - 3)s = -sqrt2 and
    # +sqrt2. Batch std = sqrt((8 + 8 + 2 + 2) / 3) = sqrt(20/3): 2sqrt2 -> sqrt(6/5), sqrt2 -> sqrt(3/10).
    weights = torch.tensor([-1.0, -3.0], dtype=torch.float64)
    adv = compute_advantages("gdpo", GDPO_TERMS @ weights, 2, eps=0.0, terms=GDPO_TERMS, weights=weights)
    a, b = math.sqrt(6 / 5), math.sqrt(3 / 10)
    assert close(adv, [a, -a, -b, b])


def test_gdpo_with_one_term_is_grpo_standardised_over_the_batch():
    # The two-group example above: GRPO gives A = [0.8660254, -0.8660254, -0.8660254, 0.8660254, 1.2247449, -1.2247449, 0, 0], mean 0,
    # sum of squares 4 * 0.75 + 2 * 1.5 = 6, unbiased std sqrt(6/7) = 0.9258201.
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 3.0, 1.0, 2.0, 2.0])
    adv = compute_advantages("gdpo", rewards, 4, eps=0.0)
    assert close(adv, [0.9354143, -0.9354143, -0.9354143, 0.9354143, 1.3228757, -1.3228757, 0.0, 0.0])


# Dense credit: per-token scores of two groups of G=2, three positions, the last one masked out
# (a forced token). Centred per (group, position):
#   group 0: pos 0 (1, 3) -> (-1, +1); pos 1 (2, 2) -> (0, 0)
#   group 1: pos 0 (5, 5) -> (0, 0);   pos 1 (5, 7) -> (-1, +1)
# The 8 masked centred values are four +-1 and four 0: rms sqrt(4/8) = 1/sqrt2, so +-1 -> +-sqrt2.
DENSE_SCORES = torch.tensor([[1.0, 2, 9], [3, 2, -9], [5, 5, 4], [5, 7, 0]], dtype=torch.float64)
DENSE_MASK = torch.tensor([[1, 1, 0]] * 4)


def test_token_advantages_centre_each_position_in_its_group_and_share_one_scale():
    r = math.sqrt(2)
    assert close(token_advantages(DENSE_SCORES, 2, DENSE_MASK, eps=0.0),
                 [[-r, 0, 0], [r, 0, 0], [0, -r, 0], [0, r, 0]])
    with pytest.raises(ValueError, match="groups of 3"):
        token_advantages(DENSE_SCORES, 3, DENSE_MASK)
    with pytest.raises(ValueError, match="one \\[N\\*G, R\\] shape"):
        token_advantages(DENSE_SCORES, 2, DENSE_MASK[:, :2])


def test_token_advantages_of_free_text_use_the_groups_mean_response_score():
    # Text: no shared layout, so the baseline is the group's mean response score, not the mean
    # at each position. Response scores (0.5, 1.0 | 0.0, 0.5) -> baselines 0.75 | 0.25.
    #   centred: row 0 (1, 0) -> (.25, -.75); row 1 (1, 1) -> (.25, .25)
    #            row 2 (0, 0) -> (-.25, -.25); row 3 (1, 0) -> (.75, -.25)
    # Squares over the 8 masked values sum to 1.5: rms sqrt(3/16), so .25 -> 1/sqrt3, .75 -> sqrt3.
    scores = torch.tensor([[1.0, 0, 9], [1, 1, 9], [0, 0, 9], [1, 0, 9]], dtype=torch.float64)
    response_scores = torch.tensor([0.5, 1.0, 0.0, 0.5], dtype=torch.float64)
    a, b = 1 / math.sqrt(3), math.sqrt(3)
    expected = [[a, -b, 0], [a, a, 0], [-a, -a, 0], [b, -a, 0]]
    assert close(token_advantages(scores, 2, DENSE_MASK, eps=0.0, response_scores=response_scores), expected)
    # dense_gdpo with aligned=False takes the baseline from the term's per-response scores.
    adv = dense_gdpo_advantages(response_scores[:, None], torch.tensor([1.0], dtype=torch.float64), 2, {0: scores},
                                DENSE_MASK, eps=0.0, aligned=False)
    valid = torch.tensor(expected)[:, :2]
    assert close(adv, torch.cat([(valid - valid.mean()) / valid.std(), torch.zeros(4, 1)], dim=1))
    with pytest.raises(ValueError, match="response_scores must be"):
        token_advantages(scores, 2, DENSE_MASK, response_scores=response_scores[:3])


def test_dense_gdpo_mixes_per_token_and_per_response_terms():
    # Term 0 (an error, weight -1) is dense: -(+-sqrt2) at the positions above. Term 1 (weight
    # -1) is per response: scores (0.1, 0.3 | 0.2, 0.2) -> group advantages (-s, +s | 0, 0) with
    # s = 1/sqrt2 (G=2), times -1: row 0 gets +s on every token, row 1 -s, rows 2-3 nothing.
    terms = torch.tensor([[0.0, 0.1], [0.0, 0.3], [0.0, 0.2], [0.0, 0.2]], dtype=torch.float64)
    weights = torch.tensor([-1.0, -1.0], dtype=torch.float64)
    adv = dense_gdpo_advantages(terms, weights, 2, {0: DENSE_SCORES}, DENSE_MASK, eps=1e-12)  # a tie: 0 / eps
    r, s = math.sqrt(2), 1 / math.sqrt(2)
    raw = torch.tensor([[r + s, s], [-r - s, -s], [0, r], [0, -r]], dtype=torch.float64)
    # Standardised over the 8 masked values: mean 0; unbiased std sqrt(sum of squares / 7).
    std = math.sqrt(float((raw**2).sum()) / 7)  # (4.5 + .5 + 4.5 + .5 + 2 + 2) / 7 = 2
    assert std == pytest.approx(math.sqrt(2))
    expected = torch.cat([raw / std, torch.zeros(4, 1, dtype=torch.float64)], dim=1)  # masked column: 0
    assert close(adv, expected)


def test_policy_loss_takes_one_advantage_per_token():
    # At ratio 1 the loss is -A per token: a [B, T] advantage is used as given, a [B] one is shared.
    old = torch.zeros(2, 2)
    per_token = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    loss, _ = policy_loss(old.clone(), old, per_token)
    assert close(loss, -per_token)
    loss, _ = policy_loss(old.clone(), old, torch.tensor([1.0, -1.0]))
    assert close(loss, [[-1.0, -1.0], [1.0, 1.0]])


# --------------------------------------------------------------------------- clipped policy loss


def _ratios(*ratios):
    """logprobs [len, 1] with log ratio log(r) to old_logprobs = -1 (leaf for autograd)."""
    old = torch.full((len(ratios), 1), -1.0)
    logp = (old + torch.log(torch.tensor(ratios)).unsqueeze(-1)).requires_grad_()
    return logp, old


def test_policy_loss_both_sides_of_the_ratio_asymmetric_clip():
    # clip_low 0.2 -> lower bound 0.8; clip_high 0.28 -> upper bound 1.28
    #  row  A    ratio  ratio*A  clamp*A   min     loss   clipped  d loss / d logp
    #  0   +1    1.5    1.5      1.28      1.28   -1.28   yes      0
    #  1   +1    0.5    0.5      0.8       0.5    -0.5    no      -ratio*A = -0.5
    #  2   -1    0.5   -0.5     -0.8      -0.8     0.8    yes      0
    #  3   -1    1.5   -1.5     -1.28     -1.5     1.5    no      -ratio*A = 1.5
    #  4   +2    1.1    2.2      2.2       2.2    -2.2    no      -2.2
    #  5   +1    1.25   1.25     1.25      1.25   -1.25   no (inside 1.28; 0.2 would clip)
    #  6   -1    0.75  -0.75    -0.8      -0.8     0.8    yes      0
    logp, old = _ratios(1.5, 0.5, 0.5, 1.5, 1.1, 1.25, 0.75)
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0, 2.0, 1.0, -1.0])
    loss, clipped = policy_loss(logp, old, adv, clip_low=0.2, clip_high=0.28)
    assert loss.shape == clipped.shape == (7, 1)
    assert close(loss.squeeze(-1), [-1.28, -0.5, 0.8, 1.5, -2.2, -1.25, 0.8])
    assert clipped.squeeze(-1).tolist() == [True, False, True, False, False, False, True]
    (grad,) = torch.autograd.grad(loss.sum(), logp)
    assert close(grad.squeeze(-1), [0.0, -0.5, 0.0, 1.5, -2.2, -1.25, 0.0])


def test_policy_loss_symmetric_clip_clips_what_clip_higher_keeps():
    # ratio 1.25, A = +1, clip_high 0.2: min(1.25, 1.2) = 1.2 -> loss -1.2, clipped
    logp, old = _ratios(1.25)
    loss, clipped = policy_loss(logp, old, torch.tensor([1.0]), clip_low=0.2, clip_high=0.2)
    assert close(loss, [[-1.2]]) and clipped.item()


def test_policy_loss_broadcasts_advantage_over_tokens_and_detaches_old():
    # one row, tokens with ratios 1 and 2, A = 3, clip 0.2: token 0 -> -3; token 1 -> -1.2*3 = -3.6
    old = torch.zeros(1, 2, requires_grad=True)
    logp = torch.tensor([[0.0, LN2]], requires_grad=True)
    loss, clipped = policy_loss(logp, old, torch.tensor([3.0]))
    assert close(loss, [[-3.0, -3.6]]) and clipped.tolist() == [[False, True]]
    loss.sum().backward()
    assert old.grad is None  # the sampling policy is a constant
    assert close(logp.grad, [[-3.0, 0.0]])


# --------------------------------------------------------------------------- KL estimators


def test_kl_estimators_at_known_values():
    # d = logp - ref.  k1 = d, k2 = d^2/2, k3 = e^-d + d - 1
    # d = ln 2:  k1 = 0.6931472, k2 = 0.2402265, k3 = 0.5 + 0.6931472 - 1 = 0.1931472
    # d = -ln 2: k1 = -0.6931472, k2 = 0.2402265, k3 = 2 - 0.6931472 - 1 = 0.3068528
    # d = 0:     all 0
    logp = torch.tensor([[LN2, -LN2, 0.0]])
    ref = torch.zeros(1, 3)
    assert close(kl_k1(logp, ref), [[0.6931472, -0.6931472, 0.0]])
    assert close(kl_k2(logp, ref), [[0.2402265, 0.2402265, 0.0]])
    assert close(kl_k3(logp, ref), [[0.1931472, 0.3068528, 0.0]])
    assert KL_ESTIMATORS == {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def test_kl_k3_gradient_and_non_negativity():
    # d k3 / d logp = 1 - exp(ref - logp): at d = ln 2 -> 0.5; at d = -ln 2 -> -1
    logp = torch.tensor([LN2, -LN2], requires_grad=True)
    (grad,) = torch.autograd.grad(kl_k3(logp, torch.zeros(2)).sum(), logp)
    assert close(grad, [0.5, -1.0])
    d = torch.linspace(-20.0, 20.0, 4001)
    assert (kl_k3(d, torch.zeros_like(d)) >= 0).all()


def test_k1_and_k3_are_unbiased_estimates_of_kl():
    # p = [1/2, 1/4, 1/4], ref = [1/4, 1/4, 1/2]:
    # KL(p||ref) = 1/2 ln 2 + 1/4 ln 1 + 1/4 ln(1/2) = ln2 / 4 = 0.1732868
    p = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    ref = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64)
    for k in (kl_k1, kl_k3):
        assert close((p * k(p.log(), ref.log())).sum(), LN2 / 4, tol=1e-12)


# --------------------------------------------------------------------------- entropy


def test_entropy_uniform_is_log_v():
    assert close(entropy_from_logits(torch.zeros(2, 3, 8)), torch.full((2, 3), math.log(8)))


def test_entropy_known_distributions_and_stability():
    # logits [0, ln 3] -> p = [1/4, 3/4]; H = 1/4 ln 4 + 3/4 ln(4/3) = 0.3465736 + 0.2157616 = 0.5623351
    logits = torch.tensor([[[0.0, math.log(3.0)]]])
    assert close(entropy_from_logits(logits), [[0.5623351]])
    assert close(entropy_from_logits(logits + 1e4), [[0.5623351]])  # shift-invariant, no overflow
    # one-hot-ish: p_other = e^-100 ~ 4e-44, H ~ 3 * 100 * 4e-44 ~ 0
    one_hot = entropy_from_logits(torch.tensor([[[100.0, 0.0, 0.0, 0.0]]]))
    assert not torch.isnan(one_hot).any() and abs(one_hot.item()) < 1e-6


def test_entropy_with_masked_vocab_has_no_nan_value_or_gradient():
    # logits [0, 0, -inf, -inf] -> p = [1/2, 1/2, 0, 0], H = ln 2
    logits = torch.tensor([[[0.0, 0.0, -math.inf, -math.inf]]], requires_grad=True)
    h = entropy_from_logits(logits)
    assert close(h, [[LN2]])
    h.sum().backward()
    assert torch.isfinite(logits.grad).all()


# --------------------------------------------------------------------------- aggregation

VALUES = torch.tensor([[1.0, 2.0, math.nan], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])  # NaN sits under the mask
MASK = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])  # row 2 has no tokens


def test_aggregate_token_mean():
    # (1 + 2 + 4) / 3 masked tokens = 7/3
    assert close(aggregate(VALUES, MASK, "token-mean"), 7 / 3)


def test_aggregate_seq_mean_token_mean():
    # row 0: (1+2)/2 = 1.5; row 1: 4; row 2 has no tokens and is skipped -> (1.5 + 4) / 2 = 2.75
    assert close(aggregate(VALUES, MASK, "seq-mean-token-mean"), 2.75)


def test_aggregate_seq_mean_token_sum_norm():
    # sum 7 / (B=3 * T=3) = 7/9; with max_len 4: 7 / 12
    assert close(aggregate(VALUES, MASK, "seq-mean-token-sum-norm"), 7 / 9)
    assert close(aggregate(VALUES, MASK, "seq-mean-token-sum-norm", max_len=4), 7 / 12)


def test_aggregate_empty_mask_is_zero_with_finite_gradient():
    values = torch.ones(2, 3, requires_grad=True)
    for mode in LOSS_AGGREGATIONS:
        out = aggregate(values, torch.zeros(2, 3, dtype=torch.bool), mode)
        assert out.item() == 0.0
        (grad,) = torch.autograd.grad(out, values)
        assert torch.equal(grad, torch.zeros(2, 3))
    with pytest.raises(KeyError, match="token-mean"):
        aggregate(values, torch.ones(2, 3), "token_mean")


# --------------------------------------------------------------------------- full loss


def _tiny_batch():
    """Two rows of two tokens, old_logprobs = -1, clip 0.2.

    row 0: A = +1, ratios [1.5, 1.1]          -> token losses [-1.2 (clipped), -1.1]
    row 1: A = -1, ratios [0.5, 1.0], mask [1, 0] -> token loss 0.8 (clipped), second masked
    logp - ref = [[ln 2, 0], [-ln 2, 5 (masked)]] -> k3 = [[ln2 - 1/2, 0], [1 - ln2, .]]
    entropy = [[1, 2], [3, 100 (masked)]]
    """
    old = torch.full((2, 2), -1.0)
    logp = (old + torch.log(torch.tensor([[1.5, 1.1], [0.5, 1.0]]))).requires_grad_()
    ref = logp.detach() - torch.tensor([[LN2, 0.0], [-LN2, 5.0]])
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1, 1], [1, 0]])
    entropy = torch.tensor([[1.0, 2.0], [3.0, 100.0]])
    return logp, old, ref, adv, mask, entropy


def test_grpo_loss_token_mean_by_hand():
    logp, old, ref, adv, mask, entropy = _tiny_batch()
    loss, stats = grpo_loss(
        logp, old, ref, adv, mask, clip_low=0.2, clip_high=0.2, kl_coef=0.1, entropy=entropy, entropy_coef=0.01
    )
    # pg = (-1.2 - 1.1 + 0.8) / 3 = -0.5
    # kl = (ln2 - 1/2 + 0 + 1 - ln2) / 3 = 1/6
    # entropy = (1 + 2 + 3) / 3 = 2
    # loss = -0.5 + 0.1 * 1/6 - 0.01 * 2 = -0.5033333
    assert close(loss, -0.5033333)
    assert close(stats["pg_loss"], -0.5) and close(stats["kl"], 1 / 6) and close(stats["entropy"], 2.0)
    assert close(stats["clip_fraction"], 2 / 3)  # tokens (0,0) and (1,0)
    assert close(stats["ratio_mean"], (1.5 + 1.1 + 0.5) / 3)
    assert close(stats["loss"], -0.5033333)
    assert all(isinstance(v, float) for v in stats.values())
    # d loss / d logp = [pg: 0 if clipped else -ratio*A/3] + 0.1 * (1 - exp(ref - logp)) / 3
    # (0,0): 0 + 0.1 * (1 - 1/2) / 3 = 0.0166667     (0,1): -1.1/3 + 0 = -0.3666667
    # (1,0): 0 + 0.1 * (1 - 2) / 3 = -0.0333333      (1,1): masked, 0
    (grad,) = torch.autograd.grad(loss, logp)
    assert close(grad, [[0.0166667, -0.3666667], [-0.0333333, 0.0]])


def test_grpo_loss_seq_mean_token_mean_by_hand():
    logp, old, ref, adv, mask, entropy = _tiny_batch()
    loss, stats = grpo_loss(
        logp, old, ref, adv, mask, clip_low=0.2, clip_high=0.2, kl_coef=0.1,
        entropy=entropy, entropy_coef=0.01, agg="seq-mean-token-mean",
    )
    # pg = ((-1.2 - 1.1)/2 + 0.8) / 2 = (-1.15 + 0.8) / 2 = -0.175
    # kl = ((ln2 - 1/2)/2 + (1 - ln2)) / 2 = (1.5 - ln2) / 4 = 0.2017132
    # entropy = (1.5 + 3) / 2 = 2.25
    # loss = -0.175 + 0.02017132 - 0.0225 = -0.1773287
    assert close(stats["pg_loss"], -0.175) and close(stats["kl"], 0.2017132) and close(stats["entropy"], 2.25)
    assert close(loss, -0.1773287)


def test_grpo_loss_without_reference():
    logp, old, _, adv, mask, _ = _tiny_batch()
    loss, stats = grpo_loss(logp, old, None, adv, mask, clip_low=0.2, clip_high=0.2, kl_coef=0.0)
    assert close(loss, -0.5) and "kl" not in stats and "entropy" not in stats
    with pytest.raises(ValueError, match="ref_logprobs"):
        grpo_loss(logp, old, None, adv, mask, clip_low=0.2, clip_high=0.2, kl_coef=1e-3)


def test_grpo_loss_empty_mask_is_zero_not_nan():
    logp, old, ref, adv, _, entropy = _tiny_batch()
    empty = torch.zeros(2, 2, dtype=torch.bool)
    loss, stats = grpo_loss(
        logp, old, ref, adv, empty, clip_low=0.2, clip_high=0.2, kl_coef=0.1, entropy=entropy, entropy_coef=0.01
    )
    assert loss.item() == 0.0
    assert all(v == 0.0 for v in stats.values())
    (grad,) = torch.autograd.grad(loss, logp)
    assert torch.equal(grad, torch.zeros(2, 2))


# --------------------------------------------------------------------------- dynamic sampling


def _round(prompts: int, first_reward: float, local_prompts: int, width: int):
    """A sampling round with G = 2: rewards first_reward, first_reward + 1, ... per row; this rank holds
    `local_prompts` prompts whose response tokens all equal first_reward."""
    from rlvr_world.rl.rollout import Rollout
    from rlvr_world.rl.trainer import _Round

    rows = 2 * local_prompts
    ones = torch.ones(rows, width, dtype=torch.long)
    rollout = Rollout(ones, ones, ones * int(first_reward), ones, ones, torch.zeros(rows, width),
                      torch.zeros(rows, dtype=torch.bool), group_size=2)
    rewards = first_reward + torch.arange(2.0 * prompts)
    return _Round(prompts, rollout, rewards, rewards[:, None], rewards, 0, 0.0, 0.0, rewards.remainder(3) == 0)


def test_rounds_join_rank_major_so_each_ranks_groups_stay_contiguous(monkeypatch):
    import rlvr_world.distributed as dist
    from rlvr_world.rl.trainer import _joined

    monkeypatch.setattr(dist, "world_size", lambda: 2)
    monkeypatch.setattr(dist, "rank", lambda: 1)
    # Round a: 3 prompts (rank 0 holds prompts 0-1, rank 1 prompt 2); round b: 2 prompts (one each).
    a, b = _round(3, 0.0, 1, 3), _round(2, 100.0, 1, 5)
    rollout, rewards, terms, advantages, guided, first = _joined([a, b], pad_id=7, G=2)
    # Rank 0's share of a, then of b, then rank 1's: groups a0 a1 b0 | a2 b1.
    assert rewards.tolist() == [0, 1, 2, 3, 100, 101, 4, 5, 102, 103]
    assert torch.equal(terms[:, 0], rewards) and torch.equal(advantages, rewards)
    assert torch.equal(guided, rewards.remainder(3) == 0)  # each row's flag travels with it
    assert first == 3  # rank 1's first group is global group 3 (a2)
    assert rollout.response_ids.shape == (4, 5)  # a2's rows padded to b's width
    assert rollout.response_ids[:2, :3].eq(0).all() and rollout.response_ids[2:].eq(100).all()
    assert rollout.response_ids[:2, 3:].eq(7).all() and rollout.response_mask[:2, 3:].eq(0).all()
    # Rank 0 holds a0 a1 b0: the same global rows, and its groups are the three before rank 1's.
    monkeypatch.setattr(dist, "rank", lambda: 0)
    rollout0, rewards0, _, _, _, first0 = _joined([_round(3, 0.0, 2, 3), _round(2, 100.0, 1, 5)], pad_id=7, G=2)
    assert torch.equal(rewards0, rewards) and first0 == 0 and rollout0.response_ids.size(0) // 2 == first
    assert rollout0.response_ids[:, 0].tolist() == [0, 0, 0, 0, 100, 100]


def test_one_round_joins_to_itself():
    from rlvr_world.rl.trainer import _joined

    a = _round(3, 0.0, 3, 4)
    rollout, rewards, _, _, _, first = _joined([a], pad_id=0, G=2)
    assert rollout is a.rollout and rewards is a.rewards and first == 0
