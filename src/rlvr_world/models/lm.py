"""Causal LMs: built from a size preset (Hugging Face `LlamaForCausalLM`) or loaded from a folder.

Models are saved with `save_pretrained` (safetensors), so a world model trained here loads
in vLLM, TRL or verl unchanged.
"""

from __future__ import annotations

from pathlib import Path

import torch
from rlvr_world.registry import lookup
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedModel

# hidden size, layers, attention heads, MLP width. Parameter counts are for a ~1k-token vocabulary.
PRESETS: dict[str, dict] = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=192),  # ~0.2M
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=768),  # ~3.4M
    "base": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=1536),  # ~25M
}


def build_model(preset: str, tokenizer, max_positions: int = 512, seed: int = 0) -> LlamaForCausalLM:
    """A freshly initialised Llama of the named size, with the tokenizer's special ids."""
    sizes = lookup(PRESETS, preset, "model preset")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,  # small models: the embedding table is a large share of parameters
        attention_dropout=0.0,
        **sizes,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def load_model(path: str | Path) -> tuple[PreTrainedModel, object]:
    """Load a causal LM and its tokenizer from a local folder (fp32, on CPU)."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: no config.json; expected a folder written by save_pretrained")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as e:
        raise FileNotFoundError(f"{path}: no usable tokenizer beside the model ({e})") from None
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model, tokenizer


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
