"""GRPO as pure tensor functions: advantages, clipped policy loss, KL, entropy, aggregation.

Notation (shapes in every docstring):
  N prompts, G = group_size responses per prompt, B = N*G rows, T response tokens per row,
  V vocabulary size. Rows of one group are contiguous: group g is rows g*G .. g*G+G-1.

The loss of one update is (Shao et al. 2024, GRPO; Yu et al. 2025, DAPO; Liu et al. 2025,
Dr. GRPO):

    A_i     = (r_i - mean(r_group)) / (std(r_group) + eps)             advantage, per response
                                                   (GDPO: per reward term, summed, batch-standardised;
                                                    a dense term has one per token, `token_advantages`)
    rho_it  = exp(logp_it - logp_old_it)                                 importance ratio
    L_pg    = -min(rho * A, clip(rho, 1 - clip_low, 1 + clip_high) * A)  per token
    L       = agg(L_pg) + kl_coef * agg(KL(pi || pi_ref)) - entropy_coef * agg(H)

Each variant (advantage estimator, KL estimator, aggregation) is a function registered by
name, so a new variant is a new function, not a branch in the trainer.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from rlvr_world.registry import lookup


# --------------------------------------------------------------------------- advantages


def _grouped(rewards: Tensor, group_size: int) -> Tensor:
    """[N*G] -> [N, G], checking that the rewards split into whole groups."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N*G], got shape {tuple(rewards.shape)}")
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2 (a group of one has no baseline), got {group_size}")
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    return rewards.view(-1, group_size)


def group_advantages(
    rewards: Tensor, group_size: int, scale_by_std: bool = True, eps: float = 1e-6
) -> tuple[Tensor, Tensor]:
    """Group-relative advantages, one per response.

    rewards: [N*G], group g in rows g*G .. g*G+G-1.
    Returns (advantages [N*G], group std broadcast to each sample [N*G]).

    GRPO:     A = (r - mean_group) / (std_group + eps)
    Dr. GRPO: A = r - mean_group                       (scale_by_std=False)

    std is the unbiased sample std (divides by G-1), torch.std's default and what TRL and
    verl use. A group whose rewards all tie has std 0 and advantage 0: it carries no signal.
    """
    r = _grouped(rewards, group_size)
    mean = r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, keepdim=True)  # unbiased, G - 1 in the denominator
    adv = r - mean
    if scale_by_std:
        adv = adv / (std + eps)
    return adv.reshape(-1), std.expand_as(r).reshape(-1)


# Every estimator takes the total rewards [N*G] and may also use the reward's terms: `terms`
# [N*G, K] (each term's unweighted score) and `weights` [K], with rewards = terms @ weights.


def grpo_advantages(rewards: Tensor, group_size: int, eps: float = 1e-6, **_terms) -> Tensor:
    """[N*G] -> [N*G]: (r - mean) / (std + eps) within each group."""
    return group_advantages(rewards, group_size, scale_by_std=True, eps=eps)[0]


def drgrpo_advantages(rewards: Tensor, group_size: int, eps: float = 1e-6, **_terms) -> Tensor:
    """[N*G] -> [N*G]: r - mean within each group (Dr. GRPO drops the std; eps unused)."""
    return group_advantages(rewards, group_size, scale_by_std=False, eps=eps)[0]


def gdpo_advantages(
    rewards: Tensor, group_size: int, eps: float = 1e-6, terms: Optional[Tensor] = None,
    weights: Optional[Tensor] = None,
) -> Tensor:
    """[N*G] -> [N*G], GDPO (Liu et al. 2026): each reward term normalised within its group on
    its own, their weighted sum, then standardised over the whole batch:

        A_k = (t_k - mean_group(t_k)) / (std_group(t_k) + eps)     per term k
        A   = sum_k w_k A_k
        A   = (A - mean_batch(A)) / (std_batch(A) + eps)

    Why: GRPO normalises the weighted sum, so the term with the larger spread decides the sign
    of nearly every advantage (ST-LPIPS varies about five times as much as MAE between samples
    of one video prompt). Without `terms` the total reward is the single term.
    """
    if terms is None:
        terms, weights = rewards[:, None], torch.ones(1, dtype=rewards.dtype)
    if terms.dim() != 2 or terms.size(0) != rewards.numel():
        raise ValueError(f"terms must be [N*G={rewards.numel()}, K], got shape {tuple(terms.shape)}")
    if weights is None or weights.shape != (terms.size(1),):
        raise ValueError(f"weights must be [K={terms.size(1)}], got {None if weights is None else tuple(weights.shape)}")
    every_token = torch.ones(rewards.numel(), 1, dtype=torch.bool)  # one "token" per response
    return dense_gdpo_advantages(terms, weights, group_size, {}, every_token, eps)[:, 0]


def best_of_group_advantages(rewards: Tensor, group_size: int, eps: float = 1e-6, **_terms) -> Tensor:
    """[N*G] -> [N*G]: G for the best response of each group, 0 for the others (and for every
    response of a group whose rewards all tie: `zero_variance_groups`).

    Rejection-sampling fine-tuning (RAFT, Dong et al. 2023; ReST, Gulcehre et al. 2023) as an
    advantage: with token-mean aggregation over responses of one length (frame codes), the
    policy loss is then the mean negative log-likelihood of the best responses, i.e. MLE on the
    model's own best-of-G samples at the learning rate `rlvr.lr`. Nothing is pushed down. Among
    rewards that tie at the top, the first response is the best.
    """
    r = _grouped(rewards, group_size)
    best = torch.zeros_like(r).scatter_(1, r.argmax(dim=1, keepdim=True), float(group_size)).reshape(-1)
    return best.masked_fill(zero_variance_groups(rewards, group_size, eps), 0.0)


ADVANTAGE_ESTIMATORS: dict[str, Callable[..., Tensor]] = {
    "grpo": grpo_advantages,
    "drgrpo": drgrpo_advantages,
    "gdpo": gdpo_advantages,
    "best_of_group": best_of_group_advantages,
}


def compute_advantages(
    name: str, rewards: Tensor, group_size: int, eps: float = 1e-6, terms: Optional[Tensor] = None,
    weights: Optional[Tensor] = None,
) -> Tensor:
    """Advantages [N*G] from rewards [N*G] (and, for estimators that use them, the reward's
    `terms` [N*G, K] and `weights` [K]) with the estimator registered as `name`."""
    return lookup(ADVANTAGE_ESTIMATORS, name, "advantage estimator")(
        rewards, group_size, eps=eps, terms=terms, weights=weights)


def token_advantages(scores: Tensor, group_size: int, mask: Tensor, eps: float = 1e-6,
                     response_scores: Optional[Tensor] = None) -> Tensor:
    """Dense group-relative advantages from per-token scores: [N*G, R] -> [N*G, R].

    scores[i, t] is the part of response i's reward that token t decides (e.g. the error of
    the image patch that a frame code draws); responses of one group share the layout, so
    position t means the same thing in each. The baseline is the group's mean at t, and the
    scale one number for the batch, the root mean square of the centred scores over `mask`:

        A_it = (s_it - mean_group(s_.t)) / (rms_masked(s - mean_group) + eps)

    A batch-wide scale (not one per position) keeps positions where the group nearly agrees
    near 0 instead of blowing their noise up to unit size; the masked advantages then have
    the same root mean square, 1, as a standardised per-response advantage.

    Responses of free length (text) do not share a layout: token t of one answer and token t
    of another decide different things. Pass their per-response scores [N*G] as
    `response_scores`, and the baseline is the group's mean response score instead:

        A_it = (s_it - mean_group(r)) / rms_masked(...)

    e.g. a listed item scores 1 if it is right and 0 if not, against the group's mean F1.
    """
    if scores.dim() != 2 or scores.shape != mask.shape:
        raise ValueError(f"scores and mask must be one [N*G, R] shape, got {tuple(scores.shape)} and {tuple(mask.shape)}")
    _grouped(scores[:, 0], group_size)  # checks the rows split into whole groups
    if response_scores is None:
        s = scores.view(-1, group_size, scores.size(1))
        centred = (s - s.mean(dim=1, keepdim=True)).view_as(scores)
    else:
        if response_scores.shape != scores.shape[:1]:
            raise ValueError(f"response_scores must be [N*G={scores.size(0)}], got {tuple(response_scores.shape)}")
        baseline = _grouped(response_scores.to(scores.dtype), group_size).mean(dim=1)
        centred = scores - baseline.repeat_interleave(group_size)[:, None]
    m = mask.bool()
    rms = centred[m].pow(2).mean().sqrt() if m.any() else centred.new_zeros(())
    return torch.where(m, centred / (rms + eps), torch.zeros_like(centred))


def dense_gdpo_advantages(
    terms: Tensor, weights: Tensor, group_size: int, dense: dict[int, Tensor], mask: Tensor, eps: float = 1e-6,
    aligned: bool = True,
) -> Tensor:
    """GDPO with some reward terms credited token by token: [N*G, R] advantages.

    terms [N*G, K] each term's per-response score, weights [K]; dense maps a term's index k
    to its per-token scores [N*G, R] (`token_advantages`), mask [N*G, R] the trained tokens.
    Term k's advantage is per response, `group_advantages` broadcast over the tokens, or, if
    k is in `dense`, per token; then as in `gdpo_advantages`:

        A = sum_k w_k A_k,   A = (A - mean_masked(A)) / (std_masked(A) + eps)

    aligned: whether position t means the same in every response of a group (frame codes);
    if not (text), a dense term's baseline is the group's mean of that term per response.
    """
    if terms.dim() != 2 or weights.shape != (terms.size(1),):
        raise ValueError(f"terms [N*G, K] and weights [K] expected, got {tuple(terms.shape)} and {tuple(weights.shape)}")
    m = mask.bool()
    adv = torch.zeros(mask.shape, dtype=terms.dtype)
    for k in range(terms.size(1)):
        if k in dense:
            a_k = token_advantages(dense[k].to(terms.dtype), group_size, mask, eps,
                                   response_scores=None if aligned else terms[:, k])
        else:
            a_k = group_advantages(terms[:, k].contiguous(), group_size, eps=eps)[0][:, None]
        adv = adv + weights[k].to(terms.dtype) * a_k
    if not m.any():
        return adv * 0
    valid = adv[m]
    return torch.where(m, (adv - valid.mean()) / (valid.std() + eps), torch.zeros_like(adv))


def zero_variance_groups(rewards: Tensor, group_size: int, eps: float = 1e-6) -> Tensor:
    """Bool [N*G]: True for samples whose group's (unbiased) reward std is below `eps`.

    Such groups have (near-)zero advantage and only dilute the batch (DAPO's dynamic
    sampling drops them). A threshold, not `== 0`, because continuous rewards
    (e.g. -(MAE + LPIPS)) rarely tie exactly.
    """
    return group_advantages(rewards, group_size, eps=eps)[1] < eps


# --------------------------------------------------------------------------- policy loss


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
) -> tuple[Tensor, Tensor]:
    """PPO clipped surrogate with separate lower and upper clip (DAPO "clip-higher").

    logprobs, old_logprobs: [B, T] log-probabilities of the sampled tokens under the current
    and the sampling policy (old is treated as a constant). advantages: [B], one per response,
    shared by all its tokens, or [B, T], one per token (dense credit).
    Returns (per-token loss [B, T], clipped [B, T] bool).

        ratio = exp(logp - logp_old)
        loss  = -min(ratio * A, clamp(ratio, 1 - clip_low, 1 + clip_high) * A)

    `clipped` marks tokens where the clipped term is strictly smaller, i.e. active: there the
    gradient wrt logp is zero. (A > 0 and ratio < 1 - clip_low is *not* clipped: min keeps
    the unclipped, more pessimistic term.)
    """
    ratio = torch.exp(logprobs - old_logprobs.detach())
    adv = advantages.detach()
    if adv.dim() == 1:
        adv = adv.unsqueeze(-1)  # [B, 1], broadcast over tokens
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv
    return -torch.minimum(unclipped, clipped), clipped < unclipped


# --------------------------------------------------------------------------- KL to reference
# Per-token estimators of KL(pi || pi_ref) from a token sampled from pi (Schulman, "Approximating
# KL divergence", 2020). All take (logprobs [B, T], ref_logprobs [B, T]) and return [B, T].


def kl_k1(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """k1 = logp - logp_ref: unbiased, high variance, can be negative."""
    return logprobs - ref_logprobs.detach()


def kl_k2(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """k2 = (logp - logp_ref)^2 / 2: biased, low variance, non-negative."""
    return 0.5 * (logprobs - ref_logprobs.detach()) ** 2


def kl_k3(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """k3 = exp(logp_ref - logp) - (logp_ref - logp) - 1: unbiased, low variance, >= 0.

    The estimator GRPO uses (e^x - x - 1 >= 0 for every x).
    """
    log_ratio = ref_logprobs.detach() - logprobs
    return torch.exp(log_ratio) - log_ratio - 1.0


KL_ESTIMATORS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "k1": kl_k1,
    "k2": kl_k2,
    "k3": kl_k3,
}


# --------------------------------------------------------------------------- entropy


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy of softmax(logits) per position: [B, T, V] -> [B, T].

    H = -sum_v p_v log p_v with log p from log_softmax (stable for large logits). Tokens
    with p = 0 (logit -inf) contribute 0, and no NaN reaches the gradient.
    """
    logp = torch.log_softmax(logits, dim=-1)
    p = logp.exp()
    logp = torch.where(p > 0, logp, torch.zeros_like(logp))  # 0 * -inf would be NaN
    return -(p * logp).sum(dim=-1)


# --------------------------------------------------------------------------- aggregation
# Each reduces per-token values [B, T] under a mask [B, T] (1 = response token trained on) to a
# scalar. Masked-out positions are ignored even if they hold NaN/inf (padding). An empty mask
# gives 0, not NaN.


def token_mean(values: Tensor, mask: Tensor, max_len: Optional[int] = None) -> Tensor:
    """Sum over all masked tokens / number of masked tokens in the batch (GRPO, DAPO)."""
    mask = mask.bool()
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp(min=1)


def seq_mean_token_mean(values: Tensor, mask: Tensor, max_len: Optional[int] = None) -> Tensor:
    """Mean over each sequence's masked tokens, then mean over sequences that have any."""
    mask = mask.bool()
    per_seq_total = torch.where(mask, values, torch.zeros_like(values)).sum(dim=-1)
    per_seq_count = mask.sum(dim=-1)
    per_seq_mean = per_seq_total / per_seq_count.clamp(min=1)
    has_tokens = per_seq_count > 0
    return (per_seq_mean * has_tokens).sum() / has_tokens.sum().clamp(min=1)


def seq_mean_token_sum_norm(values: Tensor, mask: Tensor, max_len: Optional[int] = None) -> Tensor:
    """Sum of masked values / (B * max_len), max_len defaulting to T (Dr. GRPO).

    A constant denominator, so a token's weight does not depend on its response's length.
    """
    mask = mask.bool()
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    length = values.shape[-1] if max_len is None else max_len
    return total / max(values.shape[0] * length, 1)


LOSS_AGGREGATIONS: dict[str, Callable[..., Tensor]] = {
    "token-mean": token_mean,
    "seq-mean-token-mean": seq_mean_token_mean,
    "seq-mean-token-sum-norm": seq_mean_token_sum_norm,
}


def aggregate(values: Tensor, mask: Tensor, mode: str = "token-mean", max_len: Optional[int] = None) -> Tensor:
    """Reduce per-token values [B, T] under mask [B, T] to a scalar with the `mode` aggregation."""
    return lookup(LOSS_AGGREGATIONS, mode, "loss aggregation")(values, mask, max_len=max_len)


# How many items each aggregation averages over, for mask [B, T]: masked tokens, sequences with
# any, or rows (Dr. GRPO's per-row length is the fixed max_len). Data-parallel ranks weight
# their losses by it, so that the weighted sum is the aggregation of the global batch.
AGGREGATION_UNITS: dict[str, Callable[[Tensor], int]] = {
    "token-mean": lambda mask: int(mask.bool().sum()),
    "seq-mean-token-mean": lambda mask: int(mask.bool().any(dim=-1).sum()),
    "seq-mean-token-sum-norm": lambda mask: mask.shape[0],
}


def aggregation_units(mask: Tensor, mode: str = "token-mean") -> int:
    """Number of items (tokens, sequences or rows) the `mode` aggregation of mask [B, T] averages over."""
    return lookup(AGGREGATION_UNITS, mode, "loss aggregation")(mask)


# --------------------------------------------------------------------------- full loss


def grpo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    ref_logprobs: Optional[Tensor],
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float,
    clip_high: float,
    kl_coef: float,
    kl_estimator: str = "k3",
    entropy: Optional[Tensor] = None,
    entropy_coef: float = 0.0,
    agg: str = "token-mean",
    max_len: Optional[int] = None,
) -> tuple[Tensor, dict[str, float]]:
    """The GRPO objective for one batch of responses.

    logprobs [B, T] (differentiable), old_logprobs [B, T], ref_logprobs [B, T] or None,
    advantages [B] or [B, T], mask [B, T] (1 = generated token; prompt, forced and padding tokens 0),
    entropy [B, T] or None (e.g. `entropy_from_logits`, differentiable to reward exploration).

        loss = agg(L_pg) + kl_coef * agg(KL) - entropy_coef * agg(H)

    The KL to the frozen reference is a loss term (as in GRPO), not a reward penalty.
    Returns (scalar loss, stats): pg_loss, kl (if ref given), entropy (if given) are the
    aggregated terms; clip_fraction and ratio_mean are means over the masked tokens.
    """
    if ref_logprobs is None and kl_coef != 0.0:
        raise ValueError(f"kl_coef={kl_coef} needs ref_logprobs")
    token_loss, clipped = policy_loss(logprobs, old_logprobs, advantages, clip_low, clip_high)
    pg_loss = aggregate(token_loss, mask, agg, max_len)
    loss = pg_loss
    stats: dict[str, float] = {"pg_loss": pg_loss.item()}

    if ref_logprobs is not None:
        kl = aggregate(lookup(KL_ESTIMATORS, kl_estimator, "KL estimator")(logprobs, ref_logprobs), mask, agg, max_len)
        loss = loss + kl_coef * kl
        stats["kl"] = kl.item()
    if entropy is not None:
        ent = aggregate(entropy, mask, agg, max_len)
        loss = loss - entropy_coef * ent
        stats["entropy"] = ent.item()

    with torch.no_grad():  # diagnostics over trained tokens, whatever the aggregation
        stats["clip_fraction"] = token_mean(clipped.float(), mask).item()
        stats["ratio_mean"] = token_mean(torch.exp(logprobs - old_logprobs), mask).item()
    stats["loss"] = loss.item()
    return loss, stats
