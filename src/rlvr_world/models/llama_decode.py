"""Prefill and one-token decoding steps of a Hugging Face Llama, without the framework's overhead.

A decoding step of a small model on CPU is mostly fixed cost: `LlamaForCausalLM.forward`
builds a 4-D mask, dispatches through the Cache abstraction and runs ~30 small operations
per layer. This module runs the same arithmetic on the model's own weights with fewer,
larger operations: the q/k/v projections are one matmul, the gate and up projections are
one matmul, and the mask is a boolean view of the 2-D attention mask. The prefill packs the
prompts end to end instead of padding them to a common length: every projection is one
large matmul over the real tokens only, and only attention runs prompt by prompt. Prompts
that begin alike (the MPC agent's candidate actions on one page) share that beginning: it is
encoded once and each prompt encodes only its own ending (`shared_prefix`). Forced
segments still go through the model's own forward; the sampler-equivalence tests check that
both paths give the same tokens.

Only the plain Llama layout is accepted (no biases, no sliding window, default RoPE), with
or without LoRA adapters on its linear layers (their B @ A is added to the weights once per
sampler call); `for_model` returns None for anything else, and the sampler then uses the
model's forward.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F


class LlamaDecoder:
    """Prefill prompts and decode one token per row for a `LlamaForCausalLM`, with its KV cache."""

    # The prefill's last layer runs its query, attention and MLP only where a logit is read.
    # False runs it at every position, as the model's forward does (same outputs): the
    # ablation `benchmarks/bench_sampler.py --prefill-every-position` measures what it saves.
    last_layer_at_last_positions = True
    # Prompts that begin alike encode that beginning once (`shared_prefix`). False encodes every
    # prompt whole: the ablation `benchmarks/bench_web.py` measures what sharing saves the agent.
    share_prefix = True

    def __init__(self, model):
        cfg = model.config
        inner = model.model
        self.eps = cfg.rms_norm_eps
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads or cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.embed = inner.embed_tokens.weight
        # The model's own rotary embedding, tabled once per position: a step then indexes it.
        self.rotary = inner.rotary_emb
        self._table(cfg.max_position_embeddings)
        self.final_norm = inner.norm.weight
        self.lm_head = weight_of(model.lm_head)
        self.layers = []
        for layer in inner.layers:
            att, mlp = layer.self_attn, layer.mlp
            self.layers.append((
                layer.input_layernorm.weight,
                torch.cat([weight_of(att.q_proj), weight_of(att.k_proj), weight_of(att.v_proj)]).detach(),  # one matmul
                weight_of(att.o_proj),
                layer.post_attention_layernorm.weight,
                torch.cat([weight_of(mlp.gate_proj), weight_of(mlp.up_proj)]).detach(),  # one matmul for gate and up
                weight_of(mlp.down_proj),
            ))

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def _table(self, positions: int) -> None:
        cos, sin = self.rotary(self.embed[:1, None], torch.arange(positions, device=self.embed.device)[None])
        self.cos, self.sin = cos[0, :, None], sin[0, :, None]  # [positions, 1, d]: broadcast over heads

    def _cover(self, pos: torch.Tensor) -> None:
        """Extend the table to `pos`: RoPE has no length limit, and the model's forward has none either."""
        last = int(pos.max())
        if last >= len(self.cos):
            self._table(2 * last + 1)

    def _rope(self, t: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """t [N, heads, d] rotated at positions pos [N] (covered by the table)."""
        cos, sin = self.cos[pos], self.sin[pos]
        return t * cos + _rotate_half(t) * sin

    def _attention_inputs(self, x: torch.Tensor, weight: torch.Tensor, pos: torch.Tensor):
        """Rows x [N, hidden] -> q [N, heads, d], k and v [N, kv_heads, d], q and k rotated at `pos`."""
        h, kv, d = self.heads, self.kv_heads, self.head_dim
        qkv = F.linear(x, weight)
        qk = self._rope(qkv[:, : (h + kv) * d].unflatten(-1, (h + kv, d)), pos)  # q and k rotated together
        return qk[:, :h], qk[:, h:], qkv[:, (h + kv) * d :].unflatten(-1, (kv, d))

    def _mlp(self, x: torch.Tensor, post_norm, w_gate_up, w_down) -> torch.Tensor:
        gate, up = F.linear(self._norm(x, post_norm), w_gate_up).chunk(2, dim=-1)
        return x + F.linear(F.silu(gate) * up, w_down)

    @torch.no_grad()
    def prefill(self, prompts: Sequence[Sequence[int]], width: int, room: int) -> tuple[list, list, torch.Tensor]:
        """Encode the prompts; returns (keys, values, logits).

        keys and values: per layer, [prompts, kv_heads, width + room, head_dim], each prompt's
        entries right-aligned at `width` (the left-padded layout `step` reads), zero elsewhere.
        logits: [prompts, V], the next-token logits after each prompt's last token.

        The packed sequence holds the prompts' shared beginning once (`shared_prefix`), then
        each prompt's rest; a rest attends to the beginning and to itself. The last layer
        computes only what is used: keys and values at every position, the rest (query,
        attention, MLP) at each prompt's last position, which alone feeds the logits.
        """
        h, kv, d = self.heads, self.kv_heads, self.head_dim
        c = shared_prefix(prompts) if self.share_prefix else 0
        lengths = torch.tensor([len(p) for p in prompts])
        count, cap = len(prompts), width + room
        rests = lengths - c
        # Packed rows: the shared beginning (c rows), then each prompt's rest.
        ids = torch.tensor(list(prompts[0][:c]) + [t for p in prompts for t in p[c:]], dtype=torch.long)
        n = c + int(rests.sum())
        rest_of = torch.arange(count).repeat_interleave(rests)
        rest_ends = c + rests.cumsum(0)
        rest_starts = rest_ends - rests
        # A rest's positions continue after the shared beginning.
        pos = torch.cat([torch.arange(c), c + torch.arange(c, n) - rest_starts[rest_of]])
        # Each prompt token's packed row (a shared one is read by every prompt), in prompt order,
        # and its flat destination in a [prompts * kv, cap, d] buffer.
        prompt_of = torch.arange(count).repeat_interleave(lengths)
        offset = torch.arange(int(lengths.sum())) - (lengths.cumsum(0) - lengths)[prompt_of]  # position in its prompt
        source = torch.where(offset < c, offset, rest_starts[prompt_of] + offset - c)
        slot = width - lengths[prompt_of] + offset
        dest = ((prompt_of[:, None] * kv + torch.arange(kv)[None]) * cap + slot[:, None]).flatten()
        spans = list(zip(rest_starts.tolist(), rest_ends.tolist()))
        # The index arithmetic above ran on the CPU; the weights may be on a GPU.
        device = self.embed.device
        ids, pos, source, dest, last, lengths = (t.to(device) for t in (ids, pos, source, dest, rest_ends - 1, lengths))
        self._cover(pos)
        keys, values = [], []

        def cache(k: torch.Tensor, v: torch.Tensor) -> None:
            for packed, store in ((k, keys), (v, values)):
                buf = packed.new_zeros(count * kv * cap, d)
                buf.index_copy_(0, dest, (packed[source] if c else packed).reshape(len(source) * kv, d))
                store.append(buf.view(count, kv, cap, d))

        def heads_first(t: torch.Tensor) -> torch.Tensor:  # 4-D [1, heads, length, d]: 3-D takes SDPA's slower path
            return t[None].transpose(1, 2)

        # What a rest's tokens see: the shared beginning, then their rest causally (built once, used by every layer)
        sees = [torch.ones(e - s, c + e - s, dtype=torch.bool, device=device).tril(c) for s, e in spans] if c else []

        x = F.embedding(ids, self.embed)  # [N, hidden]
        every = self.layers if not self.last_layer_at_last_positions else self.layers[:-1]
        for in_norm, w_qkv, w_o, post_norm, w_gate_up, w_down in every:
            q, k, v = self._attention_inputs(self._norm(x, in_norm), w_qkv, pos)
            cache(k, v)
            att = x.new_empty((n, h, d))
            if c:  # the shared beginning, causal
                att[:c] = F.scaled_dot_product_attention(heads_first(q[:c]), heads_first(k[:c]), heads_first(v[:c]),
                                                         is_causal=True, enable_gqa=kv != h)[0].transpose(0, 1)
            for r, (s, e) in enumerate(spans):  # each prompt's rest: causal within it, after the shared beginning
                if c:
                    out = F.scaled_dot_product_attention(
                        heads_first(q[s:e]), heads_first(torch.cat([k[:c], k[s:e]])),
                        heads_first(torch.cat([v[:c], v[s:e]])), attn_mask=sees[r], enable_gqa=kv != h)
                else:
                    out = F.scaled_dot_product_attention(heads_first(q[s:e]), heads_first(k[s:e]), heads_first(v[s:e]),
                                                         is_causal=True, enable_gqa=kv != h)
                att[s:e] = out[0].transpose(0, 1)
            x = self._mlp(x + F.linear(att.view(n, h * d), w_o), post_norm, w_gate_up, w_down)
        if len(every) == len(self.layers):
            return keys, values, F.linear(self._norm(x[last], self.final_norm), self.lm_head).float()
        in_norm, w_qkv, w_o, post_norm, w_gate_up, w_down = self.layers[-1]
        normed = self._norm(x, in_norm)
        k, v = F.linear(normed, w_qkv[h * d :]).unflatten(-1, (2 * kv, d)).split(kv, dim=1)
        cache(self._rope(k, pos), v)
        q = self._rope(F.linear(normed[last], w_qkv[: h * d]).unflatten(-1, (h, d)), pos[last])
        attend = (torch.arange(width, device=device) >= width - lengths[:, None])[:, None, None, :]
        att = F.scaled_dot_product_attention(q[:, :, None], keys[-1][:, :, :width], values[-1][:, :, :width],
                                             attn_mask=attend, enable_gqa=kv != h)
        x = self._mlp(x[last] + F.linear(att.reshape(count, h * d), w_o), post_norm, w_gate_up, w_down)
        return keys, values, F.linear(self._norm(x, self.final_norm), self.lm_head).float()

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache) -> torch.Tensor:
        """tokens, positions [B]; mask [B, n + 1] (1 = attend, the new token included); cache:
        the layers' KV caches holding n positions. Returns the next-token logits [B, V]."""
        b, h, d = tokens.size(0), self.heads, self.head_dim
        x = F.embedding(tokens, self.embed)  # [B, hidden]
        attend = mask.bool()[:, None, None, :]
        self._cover(positions)
        for (in_norm, w_qkv, w_o, post_norm, w_gate_up, w_down), layer in zip(self.layers, cache.layers):
            q, k, v = self._attention_inputs(self._norm(x, in_norm), w_qkv, positions)
            keys, values = layer.update(k[:, :, None], v[:, :, None])
            att = F.scaled_dot_product_attention(q[:, :, None], keys, values, attn_mask=attend,
                                                 enable_gqa=self.kv_heads != h)
            x = self._mlp(x + F.linear(att.reshape(b, h * d), w_o), post_norm, w_gate_up, w_down)
        return F.linear(self._norm(x, self.final_norm), self.lm_head).float()


def shared_prefix(prompts: Sequence[Sequence[int]], min_saving: float = 0.5) -> int:
    """How many leading tokens the prefill encodes once for all `prompts`: their common
    beginning, short of every prompt's last token (which must be encoded per prompt for its
    logits), when sharing it saves at least `min_saving` of the prefill's tokens, else 0.

    The MPC agent's candidates on one page differ only in their last lines, which saves ~90%.
    A batch of unrelated prompts shares at most a chat template's header; it stays unshared,
    so its attention runs as one causal call per prompt, as it always has."""
    if len(prompts) < 2:
        return 0
    first, c = prompts[0], min(len(p) for p in prompts) - 1
    for p in prompts[1:]:
        c = next((i for i in range(c) if p[i] != first[i]), c)
    total = sum(len(p) for p in prompts)
    return c if c > 0 and (len(prompts) - 1) * c >= min_saving * total else 0


@torch.no_grad()
def weight_of(linear: torch.nn.Module) -> torch.Tensor:
    """The weight a linear layer applies; for a peft LoRA layer, its base weight plus the active
    adapters' scaled B @ A (not yet merged), so sampling a LoRA model takes one matmul per layer."""
    base = getattr(linear, "base_layer", None)
    if base is None:
        return linear.weight
    weight = base.weight
    if not getattr(linear, "merged", False):
        for name in linear.active_adapters:
            if name in linear.lora_A:
                weight = weight + linear.get_delta_weight(name)
    return weight


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def for_model(model) -> Optional[LlamaDecoder]:
    """A decoder for a plain fp32 Llama (LoRA adapters on its linear layers allowed) outside
    autocast, or None when the model is anything else."""
    from transformers import LlamaForCausalLM

    if hasattr(model, "get_base_model"):  # peft: decode with the adapters folded into the weights
        if type(model.get_base_model().model.embed_tokens) is not torch.nn.Embedding:
            return None  # an adapter on the embedding table
        model = model.get_base_model()
    if type(model) is not LlamaForCausalLM:
        return None
    cfg = model.config
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    plain = (
        not getattr(cfg, "attention_bias", False) and not getattr(cfg, "mlp_bias", False)
        and cfg.hidden_act == "silu" and rope.get("rope_type", "default") == "default"
        and next(model.parameters()).dtype == torch.float32
        and not torch.is_autocast_enabled(next(model.parameters()).device.type)  # mixed precision: model's forward
    )
    return LlamaDecoder(model) if plain else None
