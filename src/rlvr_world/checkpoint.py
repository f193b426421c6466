"""Checkpoints written atomically and loaded without pickle.

A checkpoint is a folder `checkpoints/step_0000200/` holding the model and tokenizer
(`save_pretrained`, safetensors), the optimizer's tensors (`optimizer.safetensors`) and
everything else as JSON (`trainer_state.json`). It is written under a temporary name and
renamed into place, so a run killed at any moment leaves either the whole checkpoint or none.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

_PREFIX = "step_"


def _optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            name = f"state.{idx}.{key}"
            if torch.is_tensor(value):
                tensors[name] = value.detach().contiguous().clone()
            else:
                scalars[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict = {}
    for name, value in list(tensors.items()) + list(meta["scalars"].items()):
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(stage_dir: Path, step: int, model, tokenizer, optimizer, state: dict, keep: int = 2) -> Path:
    """Write checkpoint `step` atomically under `stage_dir/checkpoints/`; keep the newest `keep`."""
    root = Path(stage_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{_PREFIX}{step:07d}"
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    tensors, meta = _optimizer_to_flat(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(meta))
    (tmp / "trainer_state.json").write_text(json.dumps({**state, "step": step}, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(stage_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(stage_dir: Path) -> list[Path]:
    root = Path(stage_dir) / "checkpoints"
    if not root.exists():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX))


def latest_checkpoint(stage_dir: Path) -> Optional[Path]:
    found = list_checkpoints(stage_dir)
    return found[-1] if found else None


def load_trainer_state(ckpt: Path, optimizer: Optional[torch.optim.Optimizer] = None) -> dict:
    """Read the JSON state of a checkpoint and restore the optimizer's state into `optimizer`."""
    try:
        state = json.loads((ckpt / "trainer_state.json").read_text())
        if optimizer is not None:
            tensors = load_file(str(ckpt / "optimizer.safetensors"))
            meta = json.loads((ckpt / "optimizer.json").read_text())
            optimizer.load_state_dict(_optimizer_from_flat(tensors, meta))
    except (OSError, ValueError, KeyError) as e:
        raise RuntimeError(f"checkpoint {ckpt} is unreadable ({e}); delete it to resume from the one before") from e
    return state


def save_final(stage_dir: Path, model, tokenizer, name: str = "final") -> Path:
    """Save the finished model atomically as `stage_dir/<name>/` (loadable by from_pretrained;
    LoRA adapters are merged into the weights)."""
    from rlvr_world.models.lm import merged

    final = Path(stage_dir) / name
    tmp = Path(stage_dir) / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    merged(model).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final
