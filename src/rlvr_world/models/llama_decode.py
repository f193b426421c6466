"""One-token decoding steps of a Hugging Face Llama, without the framework's per-call overhead.

A decoding step of a small model on CPU is mostly fixed cost: `LlamaForCausalLM.forward`
builds a 4-D mask, dispatches through the Cache abstraction and runs ~30 small operations
per layer. This module runs the same arithmetic on the model's own weights with fewer,
larger operations: the q/k/v projections are one matmul, the gate and up projections are
one matmul, and the mask is a boolean view of the 2-D attention mask. Prefill and forced
segments still go through the model's own forward; the sampler-equivalence tests check that
both paths give the same tokens.

Only the plain Llama layout is accepted (no biases, no sliding window, default RoPE), with
or without LoRA adapters on its linear layers (their B @ A is added to the weights once per
sampler call); `for_model` returns None for anything else, and the sampler then uses the
model's forward.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


class LlamaDecoder:
    """Decode one token per row for a `LlamaForCausalLM`, reading and extending its KV cache."""

    def __init__(self, model):
        cfg = model.config
        inner = model.model
        self.eps = cfg.rms_norm_eps
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads or cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.embed = inner.embed_tokens.weight
        self.rotary = inner.rotary_emb
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

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache) -> torch.Tensor:
        """tokens, positions [B]; mask [B, n + 1] (1 = attend, the new token included); cache:
        the layers' KV caches holding n positions. Returns the next-token logits [B, V]."""
        b = tokens.size(0)
        h, kv, d = self.heads, self.kv_heads, self.head_dim
        x = F.embedding(tokens, self.embed)[:, None]  # [B, 1, hidden]
        cos, sin = self.rotary(x, positions[:, None])
        cos, sin = cos[:, None], sin[:, None]  # [B, 1, 1, d]: broadcast over heads
        attend = mask.bool()[:, None, None, :]
        for (in_norm, w_qkv, w_o, post_norm, w_gate_up, w_down), layer in zip(self.layers, cache.layers):
            qkv = F.linear(self._norm(x, in_norm), w_qkv)
            q, k, v = qkv.split([h * d, kv * d, kv * d], dim=-1)
            q = q.view(b, 1, h, d).transpose(1, 2)
            k = k.view(b, 1, kv, d).transpose(1, 2)
            v = v.view(b, 1, kv, d).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            keys, values = layer.update(k, v)
            att = F.scaled_dot_product_attention(q, keys, values, attn_mask=attend, enable_gqa=kv != h)
            x = x + F.linear(att.transpose(1, 2).reshape(b, 1, h * d), w_o)
            gate, up = F.linear(self._norm(x, post_norm), w_gate_up).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, w_down)
        return F.linear(self._norm(x[:, 0], self.final_norm), self.lm_head).float()


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
