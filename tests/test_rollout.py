"""The sampler: exactness against the plain (uncached) path and model.generate, response plans."""

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

import rlvr_world.rl.rollout as rollout_module
from rlvr_world.rl.rollout import length_buckets, response_logprobs, sample, sample_tokens
from rlvr_world.sequence import Force, Generate

EOS, PAD = 2, 0


def tiny_model(seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=48, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, bos_token_id=1, eos_token_id=EOS, pad_token_id=PAD,
                      max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()


PROMPTS = [[1, 5, 6, 7], [1, 8, 9], [1, 10, 11, 12, 13, 14, 15]]  # different lengths: left padding matters


def test_greedy_with_and_without_kv_cache_gives_identical_tokens():
    m = tiny_model()
    a = sample(m, PROMPTS, (Generate(12),), eos_id=EOS, pad_id=PAD, temperature=0)
    b = sample(m, PROMPTS, (Generate(12),), eos_id=EOS, pad_id=PAD, temperature=0, use_cache=False)
    assert torch.equal(a.response_ids, b.response_ids)
    assert torch.allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_greedy_matches_model_generate_per_prompt():
    m = tiny_model(1)
    out = sample(m, PROMPTS, (Generate(10, stop_at_eos=False),), eos_id=EOS, pad_id=PAD, temperature=0)
    for row, p in enumerate(PROMPTS):
        ref = m.generate(torch.tensor([p]), max_new_tokens=10, min_new_tokens=10, do_sample=False,
                         eos_token_id=None, pad_token_id=PAD)
        assert out.response_ids[row].tolist() == ref[0, len(p):].tolist()


def test_sampling_is_reproducible_and_group_rows_share_their_prompt():
    m = tiny_model()
    kw = dict(eos_id=EOS, pad_id=PAD, group_size=3, temperature=1.0)
    a = sample(m, PROMPTS, (Generate(8),), generator=torch.Generator().manual_seed(5), **kw)
    b = sample(m, PROMPTS, (Generate(8),), generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(a.response_ids, b.response_ids)
    assert a.response_ids.shape[0] == 9
    for i in range(9):  # rows i*G..i*G+G-1 belong to prompt i
        assert a.prompt_ids[i][a.prompt_mask[i].bool()].tolist() == PROMPTS[i // 3]


def test_forced_segments_appear_verbatim_and_are_masked_out_of_the_loss():
    m = tiny_model()
    plans = [(Generate(3, stop_at_eos=False), Force((40 + i, 41)), Generate(2, stop_at_eos=False), Force((47,)))
             for i in range(len(PROMPTS))]
    out = sample(m, PROMPTS, plans, eos_id=EOS, pad_id=PAD, group_size=2, temperature=1.0,
                 generator=torch.Generator().manual_seed(0))
    assert out.response_ids.shape == (6, 8)
    for row in range(6):
        assert out.response_ids[row, 3:5].tolist() == [40 + row // 2, 41]
        assert out.response_ids[row, 7].item() == 47
    expected_loss_mask = [1, 1, 1, 0, 0, 1, 1, 0]
    assert (out.loss_mask == torch.tensor(expected_loss_mask)).all()
    assert out.response_mask.all()
    assert (out.logprobs[:, 3:5] == 0).all() and (out.logprobs[:, :3] < 0).all()
    # The forced tokens condition what follows: the uncached path agrees token for token.
    greedy = [sample(m, PROMPTS, plans, eos_id=EOS, pad_id=PAD, temperature=0, use_cache=c) for c in (True, False)]
    assert torch.equal(greedy[0].response_ids, greedy[1].response_ids)


class EosAfterToken(torch.nn.Module):
    """A real model whose EOS logit is forced up after `trigger` and down elsewhere (test rig)."""

    def __init__(self, model, trigger):
        super().__init__()
        self.model, self.trigger = model, trigger

    def forward(self, input_ids, **kw):
        out = self.model(input_ids=input_ids, **kw)
        boost = torch.where(input_ids[:, -1:] == self.trigger, 100.0, -100.0)
        out.logits[..., EOS] = boost.expand_as(out.logits[..., EOS])
        return out


def test_eos_ends_a_row_and_rows_without_eos_are_truncated():
    m = EosAfterToken(tiny_model(), trigger=7)  # prompt 0 ends with 7: EOS at once; others never
    for use_cache in (True, False):
        out = sample(m, PROMPTS, (Generate(5),), eos_id=EOS, pad_id=PAD, temperature=0, use_cache=use_cache)
        assert out.response_ids.shape == (3, 5)
        assert out.response_ids[0].tolist() == [EOS, PAD, PAD, PAD, PAD]
        assert out.response_mask[0].tolist() == [1, 0, 0, 0, 0] and out.loss_mask[0].tolist() == [1, 0, 0, 0, 0]
        assert out.truncated.tolist() == [False, True, True]
        assert out.response_mask[1:].all()
        assert out.responses()[0] == [EOS] and len(out.responses()[1]) == 5


def test_all_rows_ending_stops_generation_early():
    m = EosAfterToken(tiny_model(), trigger=EOS)
    out = sample(m, [[1, 5, EOS], [1, EOS]], (Generate(9),), eos_id=EOS, pad_id=PAD, temperature=0)
    assert out.response_ids.tolist() == [[EOS], [EOS]] and not out.truncated.any()


def test_sampler_logprobs_equal_the_training_forward():
    m = tiny_model()
    out = sample(m, PROMPTS, (Generate(8),), eos_id=EOS, pad_id=PAD, group_size=2, temperature=0.7,
                 generator=torch.Generator().manual_seed(3))
    logp, ent = response_logprobs(m, out, temperature=0.7, with_entropy=True)
    mask = out.loss_mask.bool()
    assert torch.allclose(logp[mask], out.logprobs[mask], atol=1e-5)
    assert (ent[mask] > 0).all()


def test_vocab_range_restricts_sampling_and_the_training_forward_uses_the_same_policy():
    m = tiny_model()
    plan = (Generate(5, stop_at_eos=False, vocab=(20, 30)), Force((40, 41)), Generate(4, stop_at_eos=False, vocab=(30, 34)))
    out = sample(m, PROMPTS, plan, eos_id=EOS, pad_id=PAD, group_size=3, temperature=1.0,
                 generator=torch.Generator().manual_seed(1))
    ids = out.response_ids
    assert ((ids[:, :5] >= 20) & (ids[:, :5] < 30)).all() and (ids[:, 5:7] == torch.tensor([40, 41])).all()
    assert ((ids[:, 7:] >= 30) & (ids[:, 7:] < 34)).all()
    assert out.vocab_range.tolist() == [[20, 30]] * 5 + [[0, 48]] * 2 + [[30, 34]] * 4
    for group_size in (1, 3):  # the plain and the shared-prompt forward
        with torch.enable_grad():
            logp, ent = response_logprobs(m, out, temperature=1.0, with_entropy=True, group_size=group_size)
        mask = out.loss_mask.bool()
        assert torch.allclose(logp[mask], out.logprobs[mask], atol=1e-5)
        # Renormalised over 10 and 4 ids: entropy is finite and at most log(range size).
        assert torch.isfinite(ent).all() and (ent[:, :5] <= torch.log(torch.tensor(10.0)) + 1e-5).all()
        assert (ent[:, 7:] <= torch.log(torch.tensor(4.0)) + 1e-5).all()
        m.zero_grad()
        ((logp * mask).sum() + (ent * mask).sum()).backward()  # -inf outside the range must not make NaN gradients
        assert all(torch.isfinite(q.grad).all() for q in m.parameters() if q.grad is not None)
    # Without the range, the same tokens are less likely: the model's mass outside the range is gone.
    unrestricted = out.select(torch.arange(len(ids)))
    unrestricted.vocab_range = None
    assert (response_logprobs(m, unrestricted)[0][out.loss_mask.bool()] < out.logprobs[out.loss_mask.bool()]).all()
    # Greedy under a range is the argmax within it.
    greedy = sample(m, PROMPTS, (Generate(3, stop_at_eos=False, vocab=(20, 30)),), eos_id=EOS, pad_id=PAD, temperature=0.0)
    assert ((greedy.response_ids >= 20) & (greedy.response_ids < 30)).all()


def test_top_k_one_is_greedy_and_top_p_keeps_the_crossing_token():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    tok, _ = sample_tokens(logits, 1.0, top_k=1, generator=torch.Generator().manual_seed(0))
    assert tok.item() == 1
    # probs ~ [0.03, 0.64, 0.09, 0.24]: top_p=0.5 keeps only token 1, top_p=0.8 keeps {1, 3}
    seen = {sample_tokens(logits, 1.0, top_p=0.5, generator=torch.Generator().manual_seed(s))[0].item() for s in range(50)}
    assert seen == {1}
    seen = {sample_tokens(logits, 1.0, top_p=0.8, generator=torch.Generator().manual_seed(s))[0].item() for s in range(200)}
    assert seen == {1, 3}


def test_shared_prompt_logprobs_and_gradients_equal_the_plain_forward():
    m = tiny_model(2).train()
    out = sample(m, PROMPTS, (Generate(6), Force((40, 41)), Generate(3)), eos_id=EOS, pad_id=PAD, group_size=3,
                 temperature=1.0, generator=torch.Generator().manual_seed(4))
    plain, plain_ent = response_logprobs(m, out, temperature=0.9, with_entropy=True)
    (plain * out.response_mask).sum().backward()
    plain_grads = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    shared, shared_ent = response_logprobs(m, out, temperature=0.9, with_entropy=True, group_size=3)
    (shared * out.response_mask).sum().backward()
    real = out.response_mask.bool()
    assert torch.allclose(plain[real], shared[real], atol=1e-5)
    assert torch.allclose(plain_ent[real], shared_ent[real], atol=1e-5)
    for a, p in zip(plain_grads, m.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-5)


def test_entropy_as_a_statistic_only_has_the_same_values_and_no_graph():
    m = tiny_model(3).train()
    out = sample(m, PROMPTS, (Generate(5),), eos_id=EOS, pad_id=PAD, group_size=2, temperature=1.0,
                 generator=torch.Generator().manual_seed(1))
    logp, ent = response_logprobs(m, out, with_entropy=True, group_size=2)
    logp_stat, ent_stat = response_logprobs(m, out, with_entropy=True, group_size=2, entropy_grad=False)
    assert ent.requires_grad and not ent_stat.requires_grad and logp_stat.requires_grad
    assert torch.equal(ent, ent_stat) and torch.equal(logp, logp_stat)


def test_sampling_inverts_the_cdf_at_the_given_uniform_number():
    logits = torch.tensor([[0.1, 0.2, 0.3, 0.4]]).log().expand(4, 4)  # CDF 0.1, 0.3, 0.6, 1.0
    tokens, logp = sample_tokens(logits, 1.0, uniform=torch.tensor([0.05, 0.25, 0.35, 0.99]))
    assert tokens.tolist() == [0, 1, 2, 3]
    assert torch.allclose(logp, torch.tensor([0.1, 0.2, 0.3, 0.4]).log())
    # top-k 2 keeps {2, 3} renormalised to 3/7, 4/7: u=0.4 falls in token 2's share, u=0.5 in 3's
    tokens, _ = sample_tokens(logits[:2], 1.0, top_k=2, uniform=torch.tensor([0.4, 0.5]))
    assert tokens.tolist() == [2, 3]


def test_length_buckets_split_where_padding_costs_more_than_a_forward_call():
    # One bucket costs 4 x 100 + 5 = 405 tokens; {10, 12} + {98, 100} costs 2 x 12 + 5 + 2 x 100 + 5 = 234.
    assert length_buckets([10, 100, 12, 98], overhead_tokens=5) == [[0, 2], [3, 1]]
    assert length_buckets([10, 100, 12, 98], overhead_tokens=1000) == [[0, 2, 3, 1]]


def test_finished_rows_leaving_the_batch_changes_no_token(monkeypatch):
    m = tiny_model(3)  # vocab 48 near-uniform: EOS ends rows at scattered steps
    kw = dict(eos_id=EOS, pad_id=PAD, group_size=4, temperature=1.0)
    runs = []
    for threshold, use_cache in ((2.0, True), (0.0, True), (0.25, True), (0.0, False)):  # never / always / default
        monkeypatch.setattr(rollout_module, "COMPACT_WHEN_FINISHED", threshold)
        runs.append(sample(m, PROMPTS, (Generate(40),), generator=torch.Generator().manual_seed(1), use_cache=use_cache, **kw))
    lengths = runs[0].response_mask.sum(1)
    assert lengths.min() < 40 and len(set(lengths.tolist())) > 3  # rows really finished at different steps
    for other in runs[1:]:
        assert torch.equal(runs[0].response_ids, other.response_ids)
        assert torch.allclose(runs[0].logprobs, other.logprobs, atol=1e-5)


def test_trimming_padding_columns_keeps_logprobs():
    m = tiny_model(4)
    # Prompt 1 ends with 9, so under this rig its group stops at once while the others run 12 tokens.
    out = sample(EosAfterToken(m, trigger=9), PROMPTS, (Generate(12),), eos_id=EOS, pad_id=PAD, group_size=2,
                 temperature=1.0, generator=torch.Generator().manual_seed(2))
    part = out.select(torch.tensor([2, 3]), group_size=2)  # the shortest prompt's group
    trimmed = part.trimmed()
    assert part.response_ids.shape[1] == 12 and trimmed.response_ids.shape[1] == 1  # only its EOS is left
    assert trimmed.prompt_ids.shape[1] == len(PROMPTS[1])  # and no left padding
    full, _ = response_logprobs(m, part, group_size=2)  # scored by the plain model
    short, _ = response_logprobs(m, trimmed, group_size=2)
    assert torch.allclose(full[:, :1], short, atol=1e-5)


def test_joined_rollouts_pad_prompts_left_and_responses_right_and_keep_logprobs():
    from rlvr_world.rl.rollout import concat_rollouts

    m = tiny_model(5)
    a = sample(m, PROMPTS[:1], (Generate(3),), eos_id=EOS, pad_id=PAD, group_size=2, temperature=1.0,
               generator=torch.Generator().manual_seed(1))
    b = sample(m, PROMPTS[2:], (Generate(6),), eos_id=EOS, pad_id=PAD, group_size=2, temperature=1.0,
               generator=torch.Generator().manual_seed(2))
    both = concat_rollouts([a, b], PAD)
    assert both.prompt_ids.shape == (4, 7) and both.response_ids.shape == (4, max(a.response_ids.size(1), 6))
    assert both.prompt_ids[0].tolist() == [PAD] * 3 + PROMPTS[0] and both.prompt_mask[0].tolist() == [0] * 3 + [1] * 4
    assert both.response_ids[:2, a.response_ids.size(1):].eq(PAD).all()
    assert both.loss_mask[:2, a.response_ids.size(1):].eq(0).all()
    assert both.responses() == a.responses() + b.responses()
    joined, _ = response_logprobs(m, both, group_size=2)  # each row's log-probs as in its own batch
    own = torch.cat([F.pad(response_logprobs(m, r, group_size=2)[0], (0, both.response_ids.size(1) - w))
                     for r, w in ((a, a.response_ids.size(1)), (b, b.response_ids.size(1)))])
    assert torch.allclose(joined * both.loss_mask, own * both.loss_mask, atol=1e-5)


def test_targets_take_the_last_place_of_their_groups_with_forced_tokens_out_of_the_loss():
    from rlvr_world.rl.rollout import replace_last_in_groups, target_rows

    m = tiny_model(3)
    plans = [(Generate(2, stop_at_eos=False), Force((40 + i,)), Generate(1, stop_at_eos=False)) for i in range(3)]
    out = sample(m, PROMPTS, plans, eos_id=EOS, pad_id=PAD, group_size=3, temperature=1.0,
                 generator=torch.Generator().manual_seed(0))
    targets = [[20, 21, 40, 22], [23, 24, 41, 25], [26, 27, 42, 28]]
    rows = target_rows(PROMPTS, targets, plans, PAD)
    assert rows.loss_mask.tolist() == [[1, 1, 0, 1]] * 3 and rows.response_mask.all() and rows.group_size == 1
    assert rows.prompt_ids[1].tolist() == [PAD] * 4 + PROMPTS[1]
    rows.logprobs = torch.full((3, 4), -0.5) * rows.loss_mask
    mixed = replace_last_in_groups(out, rows, torch.tensor([True, False, True]), PAD)
    # Groups 0 and 2 end with their target; group 1 keeps its three samples; every row keeps its prompt.
    samples = out.responses()
    assert mixed.responses() == samples[:2] + [targets[0]] + samples[3:6] + samples[6:8] + [targets[2]]
    assert torch.equal(mixed.prompt_ids, out.prompt_ids) and mixed.group_size == 3
    assert mixed.logprobs[2].tolist() == [-0.5, -0.5, 0.0, -0.5] and torch.equal(mixed.logprobs[5], out.logprobs[5])
    assert mixed.loss_mask[8].tolist() == [1, 1, 0, 1] and not mixed.truncated.any()
    with pytest.raises(ValueError, match="replacement rows"):
        replace_last_in_groups(out, rows, torch.tensor([True, False]), PAD)


def test_llama_decode_step_equals_the_model_forward_and_the_sampler_uses_it(monkeypatch):
    from rlvr_world.models import llama_decode
    from rlvr_world.rl.rollout import _Context

    m = tiny_model(5)
    assert llama_decode.for_model(EosAfterToken(m, trigger=7)) is None  # anything but a plain Llama: model forward
    ids, pmask = rollout_module.left_pad(PROMPTS, PAD)
    ctx = _Context(m, PROMPTS, ids, pmask, PAD, group_size=2, use_cache=True, room=4)
    assert ctx.decoder is not None
    tokens = torch.tensor([9, 10, 11, 12, 13, 14])
    mask = torch.cat([ctx.mask, torch.ones(6, 1, dtype=torch.long)], dim=1)
    fast = ctx.decoder.step(tokens, ctx.next_pos, mask, ctx.cache)
    full = m(input_ids=torch.cat([ids.repeat_interleave(2, dim=0), tokens[:, None]], 1), attention_mask=mask,
             position_ids=rollout_module.positions(mask)).logits[:, -1]
    assert torch.allclose(fast, full, atol=1e-5)

    calls = []
    step = llama_decode.LlamaDecoder.step
    monkeypatch.setattr(llama_decode.LlamaDecoder, "step", lambda self, *a: calls.append(1) or step(self, *a))
    sample(m, PROMPTS, (Generate(5, stop_at_eos=False),), eos_id=EOS, pad_id=PAD, temperature=0)
    assert len(calls) == 4  # every generated token after the first comes from a one-token step


def test_packed_prefill_equals_the_model_forward_in_the_left_padded_layout():
    from transformers.cache_utils import DynamicCache

    from rlvr_world.models import llama_decode

    # plain attention, and grouped-query attention with prompts longer than max_position_embeddings
    for kv_heads, max_positions in ((4, 128), (2, 5)):
        torch.manual_seed(3)
        cfg = LlamaConfig(vocab_size=48, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                          num_key_value_heads=kv_heads, intermediate_size=64, max_position_embeddings=max_positions)
        m = LlamaForCausalLM(cfg).eval()
        ids, mask = rollout_module.left_pad(PROMPTS, PAD)
        width, room = ids.shape[1], 5
        decoder = llama_decode.for_model(m)
        keys, values, logits = decoder.prefill(PROMPTS, width, room)
        ref = m(input_ids=ids, attention_mask=mask, position_ids=rollout_module.positions(mask), use_cache=True,
                past_key_values=DynamicCache())
        assert torch.allclose(logits, ref.logits[:, -1], atol=1e-5)  # the last layer runs on last positions only
        decoder.last_layer_at_last_positions = False  # the ablation: the same outputs, every position computed
        all_keys, all_values, all_logits = decoder.prefill(PROMPTS, width, room)
        assert torch.allclose(all_logits, logits, atol=1e-5)
        assert all(torch.equal(a, b) for a, b in zip(all_keys + all_values, keys + values))
        for k, v, layer in zip(keys, values, ref.past_key_values.layers):
            assert k.shape == (len(PROMPTS), kv_heads, width + room, 8)
            real = mask.bool()[:, None, :, None]  # padding and the spare room are zero, real positions match
            assert torch.allclose(k[:, :, :width], layer.keys * real, atol=1e-5)
            assert torch.allclose(v[:, :, :width], layer.values * real, atol=1e-5)
            assert not k[:, :, width:].any() and not v[:, :, width:].any()
        # and the sampler decodes the same tokens from it as from the model's forward
        a = sample(m, PROMPTS, (Generate(6, stop_at_eos=False),), eos_id=EOS, pad_id=PAD, group_size=2, temperature=0)
        b = sample(m, PROMPTS, (Generate(6, stop_at_eos=False),), eos_id=EOS, pad_id=PAD, group_size=2, temperature=0,
                   use_cache=False)
        assert torch.equal(a.response_ids, b.response_ids)


def test_shared_prefix_is_the_common_beginning_short_of_the_last_token_when_it_saves_half():
    from rlvr_world.models.llama_decode import shared_prefix

    assert shared_prefix([[1, 2, 3, 4, 5], [1, 2, 3, 4, 6], [1, 2, 3, 4, 7]]) == 4  # saves 2 x 4 of 15 tokens
    assert shared_prefix([[1, 2, 3, 4], [1, 2, 3, 5]]) == 0  # would save 3 of 8: not worth it
    assert shared_prefix([[1, 2, 3]] * 4) == 2  # identical prompts: each still encodes its last token
    assert shared_prefix([[1, 2, 3]] * 2) == 0  # saves 2 of 6
    assert shared_prefix([[1, 2, 3, 4, 5, 6, 7, 8]] * 3, min_saving=0.9) == 0  # saves 14 of 24
    assert shared_prefix([[5, 1, 2], [6, 1, 2], [7, 1, 2]]) == 0 and shared_prefix([[1, 2, 3, 4]]) == 0


def test_prompts_with_a_shared_beginning_prefill_it_once_with_the_same_cache_and_tokens():
    from transformers.cache_utils import DynamicCache

    from rlvr_world.models import llama_decode

    page = [1, *range(3, 30)]  # one page, four candidate actions of different lengths
    prompts = [page + [40, 41], page + [42], page + [43, 44, 45, 46], page + [47]]
    assert llama_decode.shared_prefix(prompts) == len(page)
    for kv_heads in (4, 2):
        torch.manual_seed(4)
        cfg = LlamaConfig(vocab_size=48, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                          num_key_value_heads=kv_heads, intermediate_size=64, max_position_embeddings=128)
        m = LlamaForCausalLM(cfg).eval()
        ids, mask = rollout_module.left_pad(prompts, PAD)
        width = ids.shape[1]
        ref = m(input_ids=ids, attention_mask=mask, position_ids=rollout_module.positions(mask), use_cache=True,
                past_key_values=DynamicCache())
        decoder = llama_decode.for_model(m)
        for last_only in (True, False):
            decoder.last_layer_at_last_positions = last_only
            keys, values, logits = decoder.prefill(prompts, width, 3)
            assert torch.allclose(logits, ref.logits[:, -1], atol=1e-5)
            real = mask.bool()[:, None, :, None]
            for k, v, layer in zip(keys, values, ref.past_key_values.layers):  # every prompt holds the shared keys
                assert torch.allclose(k[:, :, :width], layer.keys * real, atol=1e-5)
                assert torch.allclose(v[:, :, :width], layer.values * real, atol=1e-5)
                assert not k[:, :, width:].any()
        a = sample(m, prompts, (Generate(6, stop_at_eos=False),), eos_id=EOS, pad_id=PAD, group_size=2, temperature=0)
        b = sample(m, prompts, (Generate(6, stop_at_eos=False),), eos_id=EOS, pad_id=PAD, group_size=2, temperature=0,
                   use_cache=False)
        assert torch.equal(a.response_ids, b.response_ids)
        assert torch.allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_lora_model_decodes_through_the_fused_step_with_its_adapters_folded_in():
    from peft import LoraConfig, get_peft_model

    from rlvr_world.models import llama_decode

    m = get_peft_model(tiny_model(6), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    for name, p in m.named_parameters():
        if "lora_B" in name:  # peft starts B at zero (a no-op adapter): make the adapters matter
            torch.nn.init.normal_(p, std=0.5)
    m.eval()
    assert llama_decode.for_model(m) is not None
    a = sample(m, PROMPTS, (Generate(12),), eos_id=EOS, pad_id=PAD, temperature=0)
    b = sample(m, PROMPTS, (Generate(12),), eos_id=EOS, pad_id=PAD, temperature=0, use_cache=False)
    with m.disable_adapter():
        base = sample(m, PROMPTS, (Generate(12),), eos_id=EOS, pad_id=PAD, temperature=0, use_cache=False)
    assert torch.equal(a.response_ids, b.response_ids)
    assert torch.allclose(a.logprobs, b.logprobs, atol=1e-5)
    assert not torch.equal(a.response_ids, base.response_ids)  # the adapters changed what is sampled


def test_teacher_forced_loss_batches_by_logits_and_gives_the_same_mean():
    from rlvr_world.eval.evaluate import logit_batches, teacher_forced_loss
    from rlvr_world.sequence import Example

    exs = [Example(p, [20 + i, 21, EOS], (Generate(3),), None) for i, p in enumerate(PROMPTS * 2)]
    # lengths 7, 6, 10, 7, 6, 10 tokens; vocab 48: a budget of 2 rows of 10 tokens
    groups = logit_batches(exs, 48, 2 * 10 * 48)
    assert [[len(e.prompt_ids) + 3 for e in g] for g in groups] == [[7, 6], [10, 7], [6, 10]]
    assert [len(g) for g in logit_batches(exs, 48, 1)] == [1] * 6  # each longer than the budget: alone
    m = tiny_model(2)
    one_batch = teacher_forced_loss(m, exs, PAD, max_logits=10**9)
    assert abs(teacher_forced_loss(m, exs, PAD, max_logits=1) - one_batch) < 1e-5
    assert abs(teacher_forced_loss(m, exs, PAD, max_logits=2 * 10 * 48) - one_batch) < 1e-5
