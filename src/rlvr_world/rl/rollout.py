"""Batched sampling of G responses per prompt, following a response plan.

The prompt is encoded once (one prefill over left-padded prompts) and its KV cache is
repeated G times for the group, instead of recomputing the same prompt G times. Then each
segment of the plan runs: `Generate(n)` samples token by token from the cached model, and
`Force(tokens)` feeds the given tokens in a single forward pass (they are real context for
what follows, but excluded from the loss).

Rows are laid out prompt-major: rows i*G .. i*G+G-1 are the G samples of prompt i.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from rlvr_world.models import llama_decode
from rlvr_world.sequence import Force, Generate, ResponsePlan, forced_positions, plan_length


@dataclass
class Rollout:
    """Sampled responses with everything the GRPO loss needs.

    prompt_ids, prompt_mask: [B, P] left-padded prompts (B = prompts * group_size).
    response_ids: [B, R] sampled and forced tokens, `pad_id` after a row ends.
    response_mask: [B, R] 1 for every real response token (generated or forced).
    loss_mask: [B, R] 1 for generated tokens only (forced tokens and padding are 0).
    logprobs: [B, R] log-prob of each generated token under the temperature-scaled policy
        that sampled it (0 elsewhere); these are the "old" log-probs of the PPO ratio.
    truncated: [B] True where a stop-at-EOS segment hit its length limit without EOS.
    vocab_range: [R, 2] the id range each response column was sampled from (plans whose
        Generate segments restrict `vocab`), or None when every column used the whole vocabulary.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    loss_mask: torch.Tensor
    logprobs: torch.Tensor
    truncated: torch.Tensor
    group_size: int
    vocab_range: Optional[torch.Tensor] = None  # [R, 2] (lo, hi) of each response column's allowed ids; None = all

    def responses(self) -> list[list[int]]:
        """Each row's real response tokens as a list of ids."""
        ids, mask = self.response_ids.tolist(), self.response_mask.tolist()
        return [[t for t, m in zip(r, mr) if m] for r, mr in zip(ids, mask)]

    def select(self, rows: torch.Tensor, group_size: int = 1) -> "Rollout":
        """The rollout restricted to some rows (e.g. a minibatch).

        Pass `group_size` when `rows` keeps whole groups in order, so the result still has
        group structure (and its prompts can be encoded once per group).
        """
        pick = lambda t: t[rows]  # noqa: E731
        return Rollout(pick(self.prompt_ids), pick(self.prompt_mask), pick(self.response_ids),
                       pick(self.response_mask), pick(self.loss_mask), pick(self.logprobs),
                       pick(self.truncated), group_size=group_size, vocab_range=self.vocab_range)

    def trimmed(self) -> "Rollout":
        """The same rollout without columns that are padding in every row.

        After a selection (e.g. dropping tied groups) the longest prompt and response left
        are often shorter than the batch's; the training forward then skips those columns.
        Positions come from the masks, so log-probs are unchanged.
        """
        prompt_cols = self.prompt_mask.any(0).nonzero()
        response_cols = self.response_mask.any(0).nonzero()
        first = int(prompt_cols[0]) if len(prompt_cols) else self.prompt_mask.size(1)
        last = int(response_cols[-1]) + 1 if len(response_cols) else 0
        return Rollout(self.prompt_ids[:, first:], self.prompt_mask[:, first:], self.response_ids[:, :last],
                       self.response_mask[:, :last], self.loss_mask[:, :last], self.logprobs[:, :last],
                       self.truncated, group_size=self.group_size,
                       vocab_range=None if self.vocab_range is None else self.vocab_range[:last])

    @property
    def num_generated_tokens(self) -> int:
        return int(self.loss_mask.sum())


def concat_rollouts(parts: Sequence[Rollout], pad_id: int) -> Rollout:
    """Rollouts of the same group size as one: prompts left-padded, responses right-padded to the widest."""
    P = max(r.prompt_ids.size(1) for r in parts)
    R = max(r.response_ids.size(1) for r in parts)
    ranges = [r.vocab_range for r in parts]
    if any(v is not None for v in ranges) and not all(v is not None and torch.equal(v, ranges[0]) for v in ranges):
        raise ValueError("rollouts with different vocab_range cannot be joined")
    left = lambda t, fill: torch.nn.functional.pad(t, (P - t.size(1), 0), value=fill)  # noqa: E731
    right = lambda t, fill: torch.nn.functional.pad(t, (0, R - t.size(1)), value=fill)  # noqa: E731
    return Rollout(
        torch.cat([left(r.prompt_ids, pad_id) for r in parts]), torch.cat([left(r.prompt_mask, 0) for r in parts]),
        torch.cat([right(r.response_ids, pad_id) for r in parts]),
        torch.cat([right(r.response_mask, 0) for r in parts]), torch.cat([right(r.loss_mask, 0) for r in parts]),
        torch.cat([right(r.logprobs, 0.0) for r in parts]), torch.cat([r.truncated for r in parts]),
        group_size=parts[0].group_size, vocab_range=ranges[0],
    )


def target_rows(prompts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], plans: Sequence[ResponsePlan],
                pad_id: int, vocab_range: Optional[torch.Tensor] = None, device=None) -> Rollout:
    """Ground-truth responses laid out as a rollout of group size 1, to be scored and trained on like samples.

    A plan's forced tokens are left out of the loss, as the sampler leaves them out. `logprobs`
    are 0: the caller fills in the policy's own. `vocab_range` is the sampled rollout's, for
    plans that restrict each column's ids (their targets then have the plan's fixed width).
    """
    ids, mask = left_pad(prompts, pad_id)
    width = max(len(t) for t in targets)
    if vocab_range is not None and width != len(vocab_range):
        raise ValueError(f"targets of width {width} do not match the {len(vocab_range)} columns of vocab_range")
    response = torch.full((len(targets), width), pad_id, dtype=torch.long)
    real = torch.zeros_like(response)
    for i, target in enumerate(targets):
        response[i, : len(target)] = torch.as_tensor(target, dtype=torch.long)
        real[i, : len(target)] = 1
    loss = real.clone()
    for i, plan in enumerate(plans):
        loss[i, [p for p in forced_positions(plan) if p < width]] = 0
    to = lambda t: t.to(device)  # noqa: E731
    return Rollout(to(ids), to(mask), to(response), to(real), to(loss), to(torch.zeros(response.shape)),
                   to(torch.zeros(len(targets), dtype=torch.bool)), group_size=1, vocab_range=vocab_range)


def replace_last_in_groups(rollout: Rollout, rows: Rollout, which: torch.Tensor, pad_id: int) -> Rollout:
    """`rollout` with the last response of group i replaced by row i of `rows` wherever `which[i]`.

    rows: one row per group, on the same prompts (e.g. `target_rows`); which: [groups] bool.
    """
    G, n = rollout.group_size, len(which)
    if rows.response_ids.size(0) != n or rollout.response_ids.size(0) != n * G:
        raise ValueError(f"{rows.response_ids.size(0)} replacement rows for {rollout.response_ids.size(0) // G} groups")
    joined = concat_rollouts([rollout, replace(rows, group_size=G)], pad_id)
    order = torch.arange(n * G)
    groups = which.cpu().nonzero().squeeze(-1)
    order[groups * G + G - 1] = n * G + groups
    return joined.select(order.to(rollout.response_ids.device), group_size=G)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of different lengths -> ids [B, P] and mask [B, P], padded on the left."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, width - len(p):] = torch.as_tensor(p, dtype=torch.long)
            mask[i, width - len(p):] = 1
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip padding: [B, L] mask -> [B, L] positions (0 on left padding)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def sample_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: Optional[torch.Generator] = None,
    uniform: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row from logits [B, V]; returns (tokens [B], logprobs [B]).

    temperature 0 is greedy. The log-prob is taken from the temperature-scaled distribution
    before top-k / top-p filtering, which is what the training forward pass recomputes.
    Sampling inverts each row's CDF at one uniform number; `uniform` [B] supplies them (the
    sampler draws one per row of the whole batch, so a row's token does not depend on which
    other rows are still generating).
    """
    scaled = logits / temperature if temperature > 0 else logits
    logp = torch.log_softmax(scaled, dim=-1)
    if temperature <= 0:
        tokens = logits.argmax(dim=-1)
    else:
        filtered = scaled
        if top_k > 0 and top_k < filtered.size(-1):
            kth = torch.topk(filtered, top_k, dim=-1).values[:, -1:]
            filtered = filtered.masked_fill(filtered < kth, float("-inf"))
        if top_p < 1.0:
            sorted_logits, order = torch.sort(filtered, descending=True, dim=-1)
            cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
            drop = cum - torch.softmax(sorted_logits, dim=-1) >= top_p  # keep the token that crosses p
            filtered = filtered.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
        if uniform is None:
            uniform = draw_uniform(filtered.size(0), generator, filtered.device)
        probs = torch.softmax(filtered, dim=-1)
        cdf = probs.cumsum(-1)
        # right=True never lands on a zero-probability (filtered) token; the clamp and the
        # fallback only matter when rounding leaves the CDF's end below u.
        tokens = torch.searchsorted(cdf, (uniform * cdf[:, -1])[:, None], right=True).squeeze(-1).clamp(max=cdf.size(-1) - 1)
        tokens = torch.where(probs.gather(-1, tokens[:, None]).squeeze(-1) > 0, tokens, probs.argmax(-1))
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)


def draw_uniform(n: int, generator: Optional[torch.Generator], device: torch.device) -> torch.Tensor:
    """n uniform numbers from `generator` (on its own device), moved to `device`: a CPU
    generator gives the same draws whether the model samples on the CPU or a GPU."""
    where = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=where).to(device)


def _check_plans(plans: Sequence[ResponsePlan]) -> None:
    def shape(plan):
        return [(type(s), s.n, s.vocab) if isinstance(s, Generate) else (Force, len(s.tokens)) for s in plan]

    first = shape(plans[0])
    for plan in plans[1:]:
        if shape(plan) != first:
            raise ValueError("all response plans in one batch must have the same segment kinds, lengths and vocab ranges")


def length_buckets(lengths: Sequence[int], overhead_tokens: int = 32) -> list[list[int]]:
    """Split prompt indices into length buckets that minimise the tokens a prefill computes.

    A bucket is prefilled as one left-padded batch, costing (size x its longest prompt)
    tokens plus a fixed `overhead_tokens` for the extra forward call. Sorted by length, the
    best split is found exactly by dynamic programming over the cut points.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sorted_len = [lengths[i] for i in order]
    n = len(order)
    best, cut = [0] + [float("inf")] * n, [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            cost = best[i] + (j - i) * sorted_len[j - 1] + overhead_tokens
            if cost < best[j]:
                best[j], cut[j] = cost, i
    buckets, j = [], n
    while j > 0:
        buckets.append(order[cut[j]:j])
        j = cut[j]
    return buckets[::-1]


INITIAL_ROOM = 64  # KV-cache positions reserved for the response before it has to grow
KEEP_ROOM = 16  # spare positions kept when a cache is compacted; it grows again when full


class _PreallocatedLayer(DynamicLayer):
    """A KV-cache layer whose keys/values are views into a buffer with room to grow.

    Hugging Face's DynamicLayer appends with torch.cat, copying the whole cache at every
    generated token; that copy was 54% of the sampler's time on CPU. Here an append writes
    the new token in place, and the buffer is reallocated only when it is full.
    """

    def __init__(self, k_buffer: torch.Tensor, v_buffer: torch.Tensor, length: int):
        super().__init__()
        self.lazy_initialization(k_buffer[:, :, :length], v_buffer[:, :, :length])
        self._k, self._v = k_buffer, v_buffer
        self.keys, self.values = k_buffer[:, :, :length], v_buffer[:, :, :length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n, new = self.keys.shape[-2], key_states.shape[-2]
        if n + new > self._k.shape[-2]:  # full: grow by at least as much again
            grow = lambda buf: torch.cat([buf, buf.new_empty(buf.shape[:2] + (max(new, n),) + buf.shape[3:])], dim=2)  # noqa: E731
            self._k, self._v = grow(self._k), grow(self._v)
        self._k[:, :, n : n + new] = key_states
        self._v[:, :, n : n + new] = value_states
        self.keys, self.values = self._k[:, :, : n + new], self._v[:, :, : n + new]
        return self.keys, self.values

    def keep(self, rows: torch.Tensor) -> None:
        """Drop every row of the cache except `rows` (finished samples cost nothing after this)."""
        n = self.keys.shape[-2]
        cap = min(self._k.shape[-2], n + KEEP_ROOM)  # copy what is filled, not all the spare room
        self._k, self._v = self._k[rows, :, :cap], self._v[rows, :, :cap]
        self.keys, self.values = self._k[:, :, :n], self._v[:, :, :n]


def _prefill(model, decoder, prompts: Sequence[Sequence[int]], pad_id: int, width: int, room: int, group_size: int):
    """Encode the prompts and lay their KV cache out as one left-padded batch, each prompt's
    rows repeated `group_size` times (prompt-major), with space for `room` more tokens.

    Returns (cache, last-position logits [len(prompts) * group_size, V]). A plain Llama
    (`decoder`) is prefilled packed, without padding; any other model bucket by bucket, since
    left-padding every prompt to the longest would spend most of the prefill on padding when
    lengths vary (TextWorld prompts: mean 60, max 115 tokens). Positions come from each
    prompt's own mask, so a prompt's keys and values do not depend on its bucket.
    """
    if decoder is not None:
        keys, values, logits = decoder.prefill(prompts, width, room)
        cache = DynamicCache()
    else:
        keys, values, logits = None, None, None
        device = next(model.parameters()).device
        for bucket in length_buckets([len(p) for p in prompts]):
            ids, mask = (t.to(device) for t in left_pad([prompts[i] for i in bucket], pad_id))
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask), use_cache=True, logits_to_keep=1)
            layers = out.past_key_values.layers
            if keys is None:  # [prompts, heads, width + room, head_dim] per layer, zero where unused
                keys = [l.keys.new_zeros((len(prompts), l.keys.shape[1], width + room, l.keys.shape[3])) for l in layers]
                values = [l.values.new_zeros((len(prompts), l.values.shape[1], width + room, l.values.shape[3])) for l in layers]
                logits = out.logits.new_empty((len(prompts), out.logits.shape[-1]))
            index, w = torch.tensor(bucket, device=ids.device), ids.shape[1]
            for l, layer in enumerate(layers):
                keys[l][index, :, width - w : width] = layer.keys
                values[l][index, :, width - w : width] = layer.values
            logits[index] = out.logits[:, -1]
        cache = out.past_key_values
    group = (lambda t: t.repeat_interleave(group_size, dim=0)) if group_size > 1 else (lambda t: t)  # noqa: E731
    cache.layers = [_PreallocatedLayer(group(k), group(v), width) for k, v in zip(keys, values)]
    return cache, group(logits).float()


class _Context:
    """The context of the batch rows still generating: KV cache (or raw ids), mask, positions."""

    def __init__(self, model, prompts, ids: torch.Tensor, mask: torch.Tensor, pad_id: int, group_size: int,
                 use_cache: bool, room: int):
        """prompts: token id lists; ids, mask: the same prompts left-padded (`left_pad`)."""
        self.model, self.use_cache = model, use_cache
        # One-token steps of a plain Llama skip the framework's per-call overhead (same arithmetic).
        self.decoder = llama_decode.for_model(model) if use_cache else None
        if use_cache:
            self.cache, self.last_logits = _prefill(model, self.decoder, prompts, pad_id, ids.shape[1], room, group_size)
            self.ids = None
        else:
            self.ids, self.last_logits = ids.repeat_interleave(group_size, dim=0), None
        self.mask = mask.repeat_interleave(group_size, dim=0)
        self.next_pos = positions(self.mask)[:, -1] + 1

    def logits(self) -> torch.Tensor:
        if self.last_logits is None:  # no cache: recompute the whole context
            out = self.model(input_ids=self.ids, attention_mask=self.mask, position_ids=positions(self.mask), logits_to_keep=1)
            self.last_logits = out.logits[:, -1].float()
        return self.last_logits

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only these rows of the context."""
        self.mask, self.next_pos = self.mask[rows], self.next_pos[rows]
        if self.use_cache:
            for layer in self.cache.layers:
                layer.keep(rows)
            self.last_logits = self.last_logits[rows]
        else:
            self.ids = self.ids[rows]

    def append(self, tokens: torch.Tensor, real: torch.Tensor) -> None:
        """Add tokens [B, k] whose mask is `real` [B, k] to the context."""
        k = tokens.size(1)
        self.mask = torch.cat([self.mask, real.long()], dim=1)
        if self.decoder is not None and k == 1:
            self.last_logits = self.decoder.step(tokens[:, 0], self.next_pos, self.mask, self.cache)
        elif self.use_cache:
            pos = self.next_pos[:, None] + torch.arange(k, device=tokens.device)[None]
            out = self.model(
                input_ids=tokens, attention_mask=self.mask, position_ids=pos,
                past_key_values=self.cache, use_cache=True, logits_to_keep=1,
            )
            self.cache = out.past_key_values
            self.last_logits = out.logits[:, -1].float()
        else:
            self.ids = torch.cat([self.ids, tokens], dim=1)
            self.last_logits = None
        self.next_pos = self.next_pos + k


# Finished rows are dropped from the batch once they are this fraction of it: dropping copies
# the KV cache, so doing it at every finished row would cost more than it saves.
COMPACT_WHEN_FINISHED = 0.25


@torch.no_grad()
def sample(
    model,
    prompts: Sequence[Sequence[int]],
    plans: ResponsePlan | Sequence[ResponsePlan],
    *,
    eos_id: int,
    pad_id: int,
    group_size: int = 1,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: Optional[torch.Generator] = None,
    use_cache: bool = True,
) -> Rollout:
    """Sample `group_size` responses for each prompt following its response plan.

    prompts: token id lists (BOS included). plans: one plan for all prompts, or one per
    prompt with identical segment kinds and lengths (forced tokens may differ).
    Rows that have stopped (EOS) leave the batch, so a step costs only the rows still
    generating; every row draws its random numbers as if the batch were whole, so the
    tokens are the same with or without the cache and whichever rows finish first.
    """
    if plans and isinstance(plans[0], (Generate, Force)):
        plans = [plans] * len(prompts)
    _check_plans(plans)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    # Room for the whole plan up front, up to a limit: most responses stop at EOS long before
    # a generous length limit, and a full cache grows by doubling.
    ids, mask = (t.to(device) for t in left_pad(prompts, pad_id))
    ctx = _Context(model, prompts, ids, mask, pad_id, group_size, use_cache, room=min(plan_length(plans[0]), INITIAL_ROOM))
    rows = len(prompts) * group_size
    row_plans = [plans[i // group_size] for i in range(rows)]

    active = torch.arange(rows, device=device)  # the batch row of each context row
    alive = torch.ones(rows, dtype=torch.bool, device=device)
    truncated = torch.zeros(rows, dtype=torch.bool, device=device)
    cols_ids, cols_real, cols_loss, cols_logp = [], [], [], []
    cols_vocab: list = []  # per response column: its Generate segment's (lo, hi), or None for all ids
    segments = list(zip(*row_plans))  # per segment: the rows' versions of it
    for seg_index, seg in enumerate(segments):
        last_segment = seg_index == len(segments) - 1
        if isinstance(seg[0], Force):
            forced = torch.tensor([s.tokens for s in seg], dtype=torch.long, device=device)
            real = alive[:, None].expand_as(forced)
            forced = forced.masked_fill(~real, pad_id)
            cols_ids.append(forced)
            cols_real.append(real)
            cols_loss.append(torch.zeros_like(real))
            cols_logp.append(torch.zeros(forced.shape, device=device))
            cols_vocab += [None] * forced.size(1)
            if not last_segment:
                ctx.append(forced[active], real[active])
            continue
        n, stop_at_eos = seg[0].n, seg[0].stop_at_eos
        for t in range(n):
            # One number per row of the whole batch: see the docstring.
            uniform = draw_uniform(rows, generator, device)[active] if temperature > 0 else None
            logits = restrict_vocab(ctx.logits(), seg[0].vocab)
            picked, picked_logp = sample_tokens(logits, temperature, top_k, top_p, uniform=uniform)
            cols_vocab.append(seg[0].vocab)
            vocab_size = logits.size(-1)
            real = alive.clone()
            tokens = torch.full((rows,), pad_id, dtype=torch.long, device=device).index_put_((active,), picked)
            logp = torch.zeros(rows, device=device).index_put_((active,), picked_logp)
            tokens = tokens.masked_fill(~real, pad_id)
            cols_ids.append(tokens[:, None])
            cols_real.append(real[:, None])
            cols_loss.append(real[:, None])
            cols_logp.append(logp.masked_fill(~real, 0.0)[:, None])
            if stop_at_eos:
                alive = alive & (tokens != eos_id)
            if not alive.any() or (last_segment and t == n - 1):
                break
            finished = ~alive[active]
            if finished.sum() >= COMPACT_WHEN_FINISHED * len(active):
                keep = (~finished).nonzero().squeeze(-1)
                ctx.keep(keep)
                active = active[keep]
            ctx.append(tokens[active][:, None], real[active][:, None])
        if stop_at_eos:
            truncated |= alive  # still running when the segment's limit was reached
        if not alive.any():
            break

    model.train(was_training)
    real = torch.cat(cols_real, dim=1)
    return Rollout(
        prompt_ids=ids.repeat_interleave(group_size, dim=0),
        prompt_mask=mask.repeat_interleave(group_size, dim=0),
        response_ids=torch.cat(cols_ids, dim=1),
        response_mask=real.long(),
        loss_mask=torch.cat(cols_loss, dim=1).long(),
        logprobs=torch.cat(cols_logp, dim=1),
        truncated=truncated,
        group_size=group_size,
        vocab_range=None if all(v is None for v in cols_vocab) else torch.tensor(
            [v or (0, vocab_size) for v in cols_vocab], dtype=torch.long, device=device),
    )


def restrict_vocab(logits: torch.Tensor, vocab: Optional[tuple[int, int]]) -> torch.Tensor:
    """logits [..., V] with every id outside [lo, hi) at -inf (unchanged when `vocab` is None)."""
    if vocab is None:
        return logits
    lo, hi = vocab
    out = torch.full_like(logits, float("-inf"))
    out[..., lo:hi] = logits[..., lo:hi]
    return out


def vocab_mask(lo: torch.Tensor | int, hi: torch.Tensor | int, vocab_size: int) -> torch.Tensor:
    """Bool mask [..., V] of ids in [lo, hi) (lo, hi: ints or tensors of ranges)."""
    lo, hi = torch.as_tensor(lo), torch.as_tensor(hi)
    ids = torch.arange(vocab_size, device=lo.device)
    return (ids >= lo[..., None]) & (ids < hi[..., None])


def response_logprobs(
    model, rollout: Rollout, temperature: float = 1.0, with_entropy: bool = False, group_size: int = 1,
    entropy_grad: bool = True,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Recompute log-probs [B, R] of the rollout's response tokens (with grad if enabled).

    With `group_size` G > 1, rows i*G .. i*G+G-1 must share one prompt: the prompt is then
    encoded once per group and its KV cache repeated G times (gradients flow back through
    the repeat), instead of re-encoding the same prompt for every sample. Prompts are most
    of the tokens in a text world's sequence, so this cuts the update's work several-fold.
    Also returns the per-token entropy [B, R] of the temperature-scaled policy when asked;
    with `entropy_grad` False it is a statistic only, outside the graph (a loss without an
    entropy bonus then keeps no vocabulary-wide tensors of it for the backward pass).
    """
    R = rollout.response_ids.size(1)
    mask = torch.cat([rollout.prompt_mask, rollout.response_mask], dim=1)
    pos = positions(mask)
    if group_size > 1:
        P = rollout.prompt_ids.size(1)
        first = slice(None, None, group_size)
        prefix = model(input_ids=rollout.prompt_ids[first], attention_mask=rollout.prompt_mask[first],
                       position_ids=pos[first, :P], use_cache=True, logits_to_keep=1)
        cache = prefix.past_key_values
        cache.batch_repeat_interleave(group_size)
        out = model(input_ids=rollout.response_ids, attention_mask=mask, position_ids=pos[:, P:],
                    past_key_values=cache, use_cache=True)
        # The prompt's last position predicts the first response token.
        first_logits = prefix.logits[:, -1:].repeat_interleave(group_size, dim=0)
        logits = torch.cat([first_logits, out.logits[:, :-1]], dim=1).float()
    else:
        ids = torch.cat([rollout.prompt_ids, rollout.response_ids], dim=1)
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=R + 1)
        logits = out.logits[:, :-1].float()
    if temperature > 0:
        logits = logits / temperature
    allowed = None
    if rollout.vocab_range is not None:  # the policy the sampler used: renormalised over each column's range
        allowed = vocab_mask(rollout.vocab_range[:, 0], rollout.vocab_range[:, 1], logits.size(-1))
        logits = logits.masked_fill(~allowed, float("-inf"))
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, rollout.response_ids[..., None]).squeeze(-1)
    entropy = None
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            # Outside the range log p is -inf: 0 * -inf would be NaN in the forward and the backward.
            safe = logp_all if allowed is None else logp_all.masked_fill(~allowed, 0.0)
            entropy = -(logp_all.exp() * safe).sum(-1)
    return logp, entropy
