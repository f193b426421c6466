"""Causal LMs: built from a size preset (Hugging Face `LlamaForCausalLM`) or loaded from a folder.

Models are saved with `save_pretrained` (safetensors), so a world model trained here loads
in vLLM, TRL or verl unchanged. A pretrained LM can be fine-tuned whole or through LoRA
adapters (`peft`): checkpoints then hold only the adapter (resumable), while a stage's
`final/` holds the merged model, loadable without peft.
"""

from __future__ import annotations

import contextlib
import json
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


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_tokenizer(path: str | Path):
    """The tokenizer saved beside a model; a clear error when there is none."""
    path = Path(path)
    if not any((path / f).exists() for f in TOKENIZER_FILES):
        raise FileNotFoundError(f"{path}: no tokenizer beside the model (none of {', '.join(TOKENIZER_FILES)}); "
                                "save it there with tokenizer.save_pretrained(PATH)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as e:
        raise FileNotFoundError(f"{path}: the tokenizer beside the model does not load ({e})") from None
    if tokenizer.pad_token_id is None:  # batches need a pad id; EOS is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: str | Path) -> tuple[PreTrainedModel, object]:
    """Load a causal LM and its tokenizer from a local folder (fp32, on CPU; move it with `.to`).

    A LoRA checkpoint folder (`adapter_config.json`) loads its base model from the path the
    adapter records, with the adapter trainable, so an interrupted LoRA run resumes.
    """
    path = Path(path)
    adapter = path / "adapter_config.json"
    if not (path / "config.json").exists() and not adapter.exists():
        raise FileNotFoundError(f"{path}: no config.json; expected a folder written by save_pretrained")
    tokenizer = load_tokenizer(path)
    if adapter.exists():
        from peft import PeftModel

        base_path = json.loads(adapter.read_text())["base_model_name_or_path"]
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
        return PeftModel.from_pretrained(base, path, is_trainable=True), tokenizer
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.name_or_path = model.config.name_or_path = str(path.resolve())  # a LoRA adapter records this as its base
    return model, tokenizer


def add_lora(model, rank: int, alpha: float, dropout: float, targets: list[str]):
    """Wrap `model` with trainable LoRA adapters on the named linear layers (base frozen)."""
    from peft import LoraConfig, get_peft_model

    if is_lora(model):
        return model
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets),
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def is_lora(model) -> bool:
    return hasattr(model, "peft_config")


def merged(model):
    """A copy of a LoRA model with the adapters folded into the weights (the model itself otherwise)."""
    import copy

    return copy.deepcopy(model).merge_and_unload() if is_lora(model) else model


def resolve_device(name: str = "auto") -> torch.device:
    """"auto": this process's CUDA device when torch sees one (under torchrun, cuda:LOCAL_RANK,
    which `distributed.init` made current), else the CPU; otherwise any torch device name."""
    if name == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"model.device must be auto, cpu, cuda or cuda:N, not {name!r} ({e})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"model.device={name} but this torch ({torch.__version__}) sees no CUDA device; "
                         "use model.device=auto or cpu")
    return device


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> torch.dtype:
    """"fp32", "bf16", or "auto": bf16 when `device` is a CUDA device that supports it, else fp32."""
    if precision == "auto":
        cuda = torch.device(device).type == "cuda"
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    return lookup({"fp32": torch.float32, "bf16": torch.bfloat16}, precision, "model precision")


def autocast(precision: str, device: str | torch.device = "cpu"):
    """Mixed precision for everything run inside on `device`: fp32 weights and optimizer, bf16 matmuls."""
    device = torch.device(device)
    dtype = resolve_precision(precision, device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
