"""Typed run configuration: dataclasses filled from YAML files and dotted overrides.

    cfg = load_config("configs/textworld.yaml", ["rlvr.lr=1e-5", "rlvr.group_size=8"])

Every key is checked: an unknown key raises `ConfigError` naming the key and the closest
valid ones. World-specific collection options live under `collect:` and are checked against
the world's own dataclass.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

PRESET_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


@dataclass
class ModelConfig:
    preset: str = "small"  # size preset in models/lm.py, used when `path` is empty
    path: str = ""  # a local Hugging Face causal LM folder (with its tokenizer) to start from instead
    max_positions: int = 512  # context length of a model built from a preset
    chat_template: str = "auto"  # prompts as a user turn: "auto" (when the tokenizer has one), "required", "none"
    precision: str = "auto"  # "fp32", "bf16" (autocast; weights and optimizer stay fp32), "auto" (bf16 on CUDA that has it)
    device: str = "auto"  # where the model trains and samples: "auto" (CUDA when torch sees it, else CPU), "cpu", "cuda:N"
    lora_rank: int = 0  # > 0: train LoRA adapters of this rank (peft) instead of every weight
    lora_alpha: float = 16.0  # LoRA scaling numerator (scale = alpha / rank)
    lora_dropout: float = 0.0
    lora_targets: list = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


@dataclass
class MLEConfig:
    steps: int = 2000  # optimizer steps (upper bound when max_seconds is set)
    max_seconds: float = 0.0  # wall-clock budget; 0 = none. The LR schedule follows whichever ends first
    batch_size: int = 32  # sequences per step
    lr: float = 1e-3  # peak learning rate (AdamW)
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100  # linear warm-up steps
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max global grad norm
    eval_every: int = 500  # steps between validation passes (0 = only at the end)
    eval_examples: int = 256  # validation examples per pass (loss and greedy accuracy), spread over the split
    save_every: int = 500  # steps between checkpoints
    log_every: int = 20  # steps between metric lines
    max_consecutive_nan: int = 5  # non-finite losses in a row before the run stops
    # a transition cache (a data_dir) whose train split this stage trains on instead of the run's
    train_data: str = ""


@dataclass
class RLConfig:
    steps: int = 200  # GRPO steps (one rollout batch each)
    max_seconds: float = 0.0  # wall-clock budget; 0 = none
    prompts_per_step: int = 16  # distinct prompts per rollout batch
    group_size: int = 8  # responses sampled per prompt (G)
    reward: str = ""  # reward spec, e.g. "binary" or "f1:1,exact:0.2"; empty = the world's default
    lr: float = 1e-5  # AdamW learning rate (constant after warm-up)
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    advantage: str = "grpo"  # "grpo" (divide by group std), "drgrpo" (do not), "gdpo" (per reward term), "best_of_group" (MLE on each group's best)
    # reward terms credited token by token, split by the world over the tokens that decide them
    # (e.g. [mae]: each frame code gets its patch's error; [f1] on the web: each listed item
    # scores whether it is right); needs advantage "gdpo"
    dense_rewards: list = field(default_factory=list)
    clip_low: float = 0.2  # PPO ratio clip below 1
    clip_high: float = 0.2  # PPO ratio clip above 1 (DAPO clip-higher: raise it)
    kl_coef: float = 1e-3  # weight of KL(policy || frozen start model) in the loss; 0 skips the reference pass
    kl_estimator: str = "k3"  # "k1", "k2" or "k3" (low-variance, non-negative)
    entropy_coef: float = 0.0  # entropy bonus weight
    loss_agg: str = "token-mean"  # "token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"
    drop_zero_variance: bool = False  # skip groups whose reward std < zero_variance_eps
    zero_variance_eps: float = 1e-6
    # dynamic sampling (DAPO): draw up to this many batches of prompts_per_step prompts a step,
    # until prompts_per_step groups have reward variance; the update uses every such group drawn
    # (with drop_zero_variance, as DAPO; without it the tied groups drawn stay in the batch)
    sampling_rounds: int = 1
    # off-policy guidance (LUFFY, Yan et al. 2025): the last response of each group is the
    # ground-truth next state instead of a sample (where it fits the response plan), so a group
    # whose samples all miss still carries signal; a world model always has that target at hand
    target_in_group: bool = False
    ppo_epochs: int = 1  # passes over each rollout batch
    minibatches: int = 1  # optimizer steps per pass
    temperature: float = 1.0  # sampling temperature (the paper uses 1)
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    oversample_key: str = "changed"  # example meta flag to balance prompts on ("" = uniform sampling)
    oversample_fraction: float = 0.0  # share of prompts drawn with meta[oversample_key] true (0 = uniform)
    eval_every: int = 50  # steps between validation passes (0 = only at the end)
    eval_examples: int = 256
    save_every: int = 50
    log_every: int = 1
    max_consecutive_nan: int = 5
    # a transition cache (a data_dir) whose train split GRPO draws prompts from instead of the
    # run's: e.g. transitions the MLE start never saw, where its samples still disagree
    train_data: str = ""


@dataclass
class EvalConfig:
    split: str = "test"  # which cached split to evaluate on
    extra_splits: list = field(default_factory=list)  # further splits to evaluate too (e.g. [heldout_task])
    max_examples: int = 0  # 0 = the whole split
    subset: str = "spread"  # which max_examples: "spread" evenly over the split, or "first" (results before 2026-12-05)
    batch_size: int = 64  # prompts per sampler call
    sampled_temperature: float = 1.0  # temperature of the "sampled" decoding mode
    sampled_top_k: int = 0  # > 0: sample from the k most likely tokens only (iVideoGPT evaluates at 100)


@dataclass
class Config:
    world: str = "textworld"  # registered world name
    run_dir: str = "runs/textworld"  # everything a run writes goes here
    data_dir: str = ""  # transition cache; empty = <run_dir>/data
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 = all cores
    world_options: dict = field(default_factory=dict)  # keyword arguments of the world's constructor
    collect: dict = field(default_factory=dict)  # the world's collection options (see its collect config)
    model: ModelConfig = field(default_factory=ModelConfig)
    mle: MLEConfig = field(default_factory=MLEConfig)
    rlvr: RLConfig = field(default_factory=RLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    agent: dict = field(default_factory=dict)  # downstream app options (e.g. the MiniWoB++ MPC agent)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else Path(self.run_dir) / "data"


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unknown_key(key: str, valid, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(valid), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key '{where}{key}'.{hint} Valid keys here: {', '.join(sorted(valid))}")


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError(f"'{where}' must be a mapping, got {value!r}")
        return from_dict(typ, value, prefix=f"{where}.")
    if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):  # YAML 1.1 reads "2e-5" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if typ is int and isinstance(value, float) and value.is_integer():
        return int(value)
    base = origin or typ
    if base is tuple and isinstance(value, list):
        value = tuple(value)
    if base in (int, float, str, bool, dict, list, tuple) and not isinstance(value, base):
        raise ConfigError(f"'{where}' must be {base.__name__}, got {value!r}")
    if base is int and isinstance(value, bool):
        raise ConfigError(f"'{where}' must be int, got {value!r}")
    return value


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass `cls` from a (nested) dict, rejecting unknown keys."""
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in (data or {}).items():
        if key not in types_:
            raise _unknown_key(key, types_, prefix)
        kwargs[key] = _coerce(value, types_[key], prefix + key)
    return cls(**kwargs)


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{k}' is not a section")
    node[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> dict:
    """["mle.lr=1e-3", "collect.world_size=[3, 5]"] -> nested dict, values parsed as YAML."""
    tree: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        _set_dotted(tree, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_config_path(name_or_path: str) -> Path:
    """A YAML path, or the name of a preset shipped in the package (e.g. "textworld_tiny")."""
    path = Path(name_or_path)
    if path.exists():
        return path
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if preset.exists():
        return preset
    known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    raise ConfigError(f"config {name_or_path!r} is neither a file nor a preset (presets: {', '.join(known)})")


def load_config(path: Optional[str] = None, overrides: Optional[list[str]] = None) -> Config:
    tree: dict = {}
    if path:
        p = resolve_config_path(path)
        try:
            tree = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{p}: the top level must be a mapping")
    tree = _merge(tree, parse_overrides(overrides or []))
    return from_dict(Config, tree)


def dump_config(cfg: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def describe_options() -> str:
    """Every config key with its default and the comment beside it in this file, for --help."""
    import inspect
    import re

    lines = []
    sections = {"": Config, "model.": ModelConfig, "mle.": MLEConfig, "rlvr.": RLConfig, "eval.": EvalConfig}
    for prefix, cls in sections.items():
        comments = dict(re.findall(r"^\s+(\w+):[^#\n]*#\s*(.*)$", inspect.getsource(cls), flags=re.M))
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.type) or f.name in ("model", "mle", "rlvr", "eval"):
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"  {prefix + f.name:28s} {default!r:>12}  {comments.get(f.name, '')}")
    return "\n".join(lines)
