"""The stages of a run, each reading and writing one run directory.

    <run_dir>/
      config.yaml            the resolved config of the run (written by the first stage or by demo)
      <stage>/config.yaml    the resolved config that stage itself ran with
      data/                  transition cache (JSONL per split + manifest.json)
      tokenizer/             the tokenizer fitted on the training split
      mle/                   MLE pre-training: checkpoints/, final/, metrics.jsonl, tb/
      rlvr/                  GRPO from mle/final with the configured reward
      mle_longer/            MLE continued from mle/final for RLVR's wall-clock time
      rlvr_task_specific/    GRPO from mle/final with the task-specific reward (demo)
      eval/<stage>.json      held-out metrics, greedy and sampled
      report.md, *.png       the summary
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from rlvr_world import distributed
from rlvr_world.config import Config, dump_config
from rlvr_world.models.lm import autocast, resolve_device
from rlvr_world.worlds import get_world


def world_of(cfg: Config):
    return get_world(cfg.world, **cfg.world_options).attach(Path(cfg.run_dir))


def hardware(device: str = "auto") -> str:
    """The CPU, its cores, torch and threads, and the GPU when the model runs on one."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    host = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    where = resolve_device(device)
    return f"{host}, {torch.cuda.get_device_name(where)}" if where.type == "cuda" else f"{host}, CPU only"


def peak_rss_mb() -> dict:
    """Peak resident memory (MiB) of this process and of its finished child processes (collection workers)."""
    import resource

    return {"main": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # Linux: KiB
            "children": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def save_resolved_config(cfg: Config, stage: str = "") -> None:
    """The config a stage ran with into <run_dir>/<stage>/config.yaml, and the run's own
    <run_dir>/config.yaml when it has none yet (or for the whole pipeline, stage ""). A later
    stage with other overrides (a sweep variant, an agent with more samples) thus keeps the
    world options the data and the tokenizer were made with, which scripts read from there."""
    if not distributed.is_main():  # under torchrun rank 0 writes it
        return
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    if stage:
        (run / stage).mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run / stage / "config.yaml")
    if not stage or not (run / "config.yaml").exists():
        dump_config(cfg, run / "config.yaml")


def collect(cfg: Config) -> dict:
    from rlvr_world.config import from_dict

    world = world_of(cfg)
    collect_cfg = from_dict(world.collect_config, cfg.collect, prefix="collect.")
    return world.collect(collect_cfg, cfg.data_path, cfg.seed)


def chat_policy(cfg: Config, tokenizer, source: str | Path):
    """Apply `model.chat_template` to a loaded tokenizer: "none" removes the template (prompts are
    then BOS + text, and the saved tokenizer carries that choice to later stages), "required"
    insists on one."""
    from rlvr_world.worlds.language import has_chat_template

    if cfg.model.chat_template not in ("auto", "required", "none"):
        raise ValueError(f"model.chat_template must be auto, required or none, not {cfg.model.chat_template!r}")
    if cfg.model.chat_template == "none":
        tokenizer.chat_template = None
    elif cfg.model.chat_template == "required" and not has_chat_template(tokenizer):
        raise ValueError(f"{source}: the tokenizer has no chat template (tokenizer_config.json has no "
                         "'chat_template', and there is no chat_template.jinja), but model.chat_template=required; "
                         "add a template to the tokenizer or set model.chat_template=auto")
    return tokenizer


def tokenizer_for(cfg: Config, world):
    """The run's tokenizer: the pretrained model's own, or loaded from <run_dir>/tokenizer, or
    fitted on the training split."""
    from transformers import AutoTokenizer

    from rlvr_world.models.lm import load_tokenizer

    path = Path(cfg.run_dir) / "tokenizer"
    if cfg.model.path:
        return chat_policy(cfg, load_tokenizer(cfg.model.path), cfg.model.path)
    fitted = None
    if not (path / "tokenizer.json").exists() and distributed.is_main():  # under torchrun rank 0 fits it
        path.mkdir(parents=True, exist_ok=True)
        fitted = world.train_tokenizer(world.load_transitions(cfg.data_path, "train"), path)
        fitted.save_pretrained(path)
    distributed.barrier()  # the other ranks load what rank 0 saved
    return fitted if fitted is not None else AutoTokenizer.from_pretrained(path)


def examples(cfg: Config, world, tokenizer, split: str, limit: int = 0, data_path: str | Path = "",
             training: bool = False):
    """A split's examples, from the run's cache or `data_path`; with `training`, the transitions
    as a training stage learns them (`World.training_transitions`)."""
    transitions = world.load_transitions(Path(data_path) if data_path else cfg.data_path, split)
    if limit:
        transitions = transitions[:limit]
    if training:
        transitions = world.training_transitions(transitions, cfg.seed)
    return warn_unreachable(world.make_examples(transitions, tokenizer), split)


def train_examples(cfg: Config, world, tokenizer, data_path: str | Path = ""):
    """The training split as a stage learns from it."""
    return examples(cfg, world, tokenizer, "train", data_path=data_path, training=True)


def warn_unreachable(exs: list, split: str) -> list:
    """`exs`, after saying on stderr how many targets are longer than the response plan allows:
    no sample can reach them, so they cap every model's score (a limit to raise, e.g.
    `world_options.max_new_tokens`)."""
    from rlvr_world.sequence import plan_length

    long = sum(len(ex.target_ids) > plan_length(ex.plan) for ex in exs)
    if long and distributed.is_main():
        print(f"rlvr-world: {long} of {len(exs)} {split} examples ({long / len(exs):.1%}) have a target longer "
              f"than the response plan allows ({plan_length(exs[0].plan)} tokens); no model can predict them "
              f"in full", file=sys.stderr)
    return exs


def eval_examples(cfg: Config, world, tokenizer, split: str):
    """What evaluation scores: the whole split, or `eval.max_examples` of it picked by `eval.subset`."""
    from rlvr_world.eval.evaluate import evenly_spaced

    if cfg.eval.subset == "first":
        return examples(cfg, world, tokenizer, split, cfg.eval.max_examples)
    if cfg.eval.subset != "spread":
        raise ValueError(f"eval.subset must be 'spread' or 'first', not {cfg.eval.subset!r}")
    transitions = evenly_spaced(world.load_transitions(cfg.data_path, split), cfg.eval.max_examples)
    return warn_unreachable(world.make_examples(transitions, tokenizer), split)


def with_lora(cfg: Config, model):
    """The model with LoRA adapters when `model.lora_rank` > 0 (the model itself otherwise)."""
    from rlvr_world.models.lm import add_lora

    m = cfg.model
    return add_lora(model, m.lora_rank, m.lora_alpha, m.lora_dropout, m.lora_targets) if m.lora_rank > 0 else model


def load_or_build_model(cfg: Config, tokenizer, init: str | Path | None = None):
    """The model a training stage starts from, on `model.device`."""
    from rlvr_world.models.lm import build_model, load_model

    device = resolve_device(cfg.model.device)
    source = init or cfg.model.path
    if source:
        return with_lora(cfg, load_model(source)[0].to(device))
    return build_model(cfg.model.preset, tokenizer, cfg.model.max_positions, seed=cfg.seed).to(device)


def rlvr_start(cfg: Config, init: str | Path | None) -> Path:
    """Where RLVR starts: `init`, else the run's MLE model, else the pretrained `model.path`."""
    if init:
        return Path(init)
    mle = Path(cfg.run_dir) / "mle" / "final"
    if cfg.model.path and not (mle / "config.json").exists():
        return Path(cfg.model.path)
    return mle


def pretrain(cfg: Config, stage: str = "mle", init: str | Path | None = None, mle_cfg=None):
    """MLE from scratch (or from `init`) into <run_dir>/<stage>."""
    from rlvr_world.mle import train_mle

    mle_cfg = mle_cfg or cfg.mle
    save_resolved_config(dataclasses.replace(cfg, mle=mle_cfg), stage)
    world = world_of(cfg)
    tokenizer = tokenizer_for(cfg, world)
    train = train_examples(cfg, world, tokenizer, mle_cfg.train_data)
    val = examples(cfg, world, tokenizer, "val")
    model = load_or_build_model(cfg, tokenizer, init)
    with autocast(cfg.model.precision, resolve_device(cfg.model.device)):
        train_mle(model, tokenizer, world, train, val, mle_cfg, Path(cfg.run_dir) / stage, seed=cfg.seed)
    return Path(cfg.run_dir) / stage / "final"


def rlvr(cfg: Config, stage: str = "rlvr", init: str | Path | None = None, rl_cfg=None):
    """GRPO from `init` (default: <run_dir>/mle/final, or `model.path` before any MLE) into <run_dir>/<stage>."""
    from rlvr_world.models.lm import load_model
    from rlvr_world.rl.trainer import GRPOTrainer

    rl_cfg = rl_cfg or cfg.rlvr
    save_resolved_config(dataclasses.replace(cfg, rlvr=rl_cfg), stage)
    world = world_of(cfg)
    init = rlvr_start(cfg, init)
    if not (init / "config.json").exists():
        raise FileNotFoundError(f"{init}: no model to start RLVR from; run `rlvr-world pretrain` first or pass --init")
    device = resolve_device(cfg.model.device)
    model, tokenizer = load_model(init)
    tokenizer = chat_policy(cfg, tokenizer, init)
    model = with_lora(cfg, model.to(device))
    train = train_examples(cfg, world, tokenizer, rl_cfg.train_data)
    val = examples(cfg, world, tokenizer, "val")
    with autocast(cfg.model.precision, device):
        GRPOTrainer(model, tokenizer, world, train, val, rl_cfg, Path(cfg.run_dir) / stage,
                    seed=cfg.seed).train()
    return Path(cfg.run_dir) / stage / "final"


def sampled_decoding(cfg: Config) -> str:
    """How the "sampled" evaluation mode decodes, in words."""
    top_k = f", top-k {cfg.eval.sampled_top_k}" if cfg.eval.sampled_top_k > 0 else ""
    return f"temperature {cfg.eval.sampled_temperature:g}{top_k}"


def _evaluate_split(cfg: Config, world, model, tokenizer, split: str, samples_path: Path | None) -> dict:
    from rlvr_world.eval.evaluate import predict
    from rlvr_world.rewards import WeightedReward, get_reward

    reward = WeightedReward.parse(world.default_reward)
    exs = eval_examples(cfg, world, tokenizer, split)
    result: dict = {"split": split, "n": len(exs), "sampled_decoding": sampled_decoding(cfg)}
    # Each example's reward, in split order: two models' files pair up (`paired_mean_difference`).
    per_example: dict = {"reward": world.default_reward}
    for mode, temperature, top_k in (("greedy", 0.0, 0), ("sampled", cfg.eval.sampled_temperature, cfg.eval.sampled_top_k)):
        preds, _, stats = predict(model, tokenizer, world, exs, batch_size=cfg.eval.batch_size,
                                  temperature=temperature, top_k=top_k, seed=cfg.seed, progress=True)
        metrics = {**world.metrics(preds, exs), **stats, **world.stats()}
        for name in world.eval_rewards:
            fn = get_reward(name)
            metrics[f"reward_{name}"] = sum(fn(p, ex.target) for p, ex in zip(preds, exs)) / max(1, len(exs))
        result[mode] = metrics
        per_example[mode] = reward.score(preds, [ex.target for ex in exs])[0]
        if mode == "greedy":
            result["samples"] = [
                {"prompt": tokenizer.decode(ex.prompt_ids, skip_special_tokens=True),
                 "target": world.render(ex.target), "prediction": world.render(p),
                 "reward": reward(p, ex.target)}
                for ex, p in list(zip(exs, preds))[:20]
            ]
            if samples_path is not None:
                world.save_samples(samples_path, exs, preds)
    result["per_example"] = per_example
    return result


def evaluate_model(cfg: Config, model_path: str | Path, out: Path | None = None) -> dict:
    """Held-out metrics of one model, greedy and sampled, on `eval.split` and each of
    `eval.extra_splits` (under "other_splits"), plus the mean of each eval reward."""
    from rlvr_world.models.lm import load_model

    world = world_of(cfg)
    device = resolve_device(cfg.model.device)
    model, tokenizer = load_model(model_path)
    model = model.to(device)
    samples = None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        samples = out.with_name(out.stem + "_samples.npz")
    with autocast(cfg.model.precision, device):
        result = {"model": str(model_path), "eval": dataclasses.asdict(cfg.eval),
                  **_evaluate_split(cfg, world, model, tokenizer, cfg.eval.split, samples)}
        result["other_splits"] = {split: _evaluate_split(cfg, world, model, tokenizer, split, None)
                                  for split in cfg.eval.extra_splits}
    if out is not None:
        out.write_text(json.dumps(result, indent=1))
    return result


def evaluation(cfg: Config, model_path: str | Path, out: Path) -> dict:
    """`evaluate_model` into `out`, or what `out` already holds when it is this model's evaluation
    (written after the model was saved, with the same `eval` settings): a resumed demo does not
    evaluate its finished models again."""
    weights = Path(model_path) / "model.safetensors"
    if out.exists() and weights.exists() and out.stat().st_mtime >= weights.stat().st_mtime:
        done = json.loads(out.read_text())
        if done.get("model") == str(model_path) and done.get("eval") == dataclasses.asdict(cfg.eval):
            return done
    return evaluate_model(cfg, model_path, out)


def evaluate_baselines(cfg: Config, out: Path | None = None) -> dict:
    """The world's model-free baselines (e.g. copy the last frame) on every evaluated split."""
    world = world_of(cfg)
    tokenizer = tokenizer_for(cfg, world)
    result: dict = {}
    for split in [cfg.eval.split, *cfg.eval.extra_splits]:
        exs = eval_examples(cfg, world, tokenizer, split)
        result[split] = {name: world.metrics(preds, exs) for name, preds in world.baselines(exs).items()}
    if out is not None and result:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
    return result


def agent(cfg: Config, command: str = "") -> dict:
    """The world's downstream apps with the run's trained models; <run_dir>/agent/results.json,
    with what a reader needs to rerun it (command, seed, hardware, the models planned with)."""
    run = Path(cfg.run_dir)
    stages = {p.parent.name: p for p in sorted(run.glob("*/final")) if (p / "config.json").exists()}
    if not stages:
        raise FileNotFoundError(f"{run}: no trained model (*/final); run `rlvr-world pretrain` / `rlvr` first")
    t0 = time.time()
    downstream = world_of(cfg).downstream(cfg, stages)
    if not downstream:
        raise ValueError(f"world {cfg.world!r} ran no downstream app: it has none, or this config turns it off "
                         f"(e.g. agent.episodes_per_task: 0, as the miniwob_smollm2 preset does)")
    result = {"world": cfg.world, "command": command, "hardware": hardware(cfg.model.device), "seed": cfg.seed,
              "models": {name: str(path) for name, path in stages.items()},
              "total_seconds": round(time.time() - t0, 1), **downstream}
    (run / "agent").mkdir(parents=True, exist_ok=True)
    (run / "agent" / "results.json").write_text(json.dumps(result, indent=1))
    return result


def stage_seconds(stage_dir: Path) -> float:
    """Training wall-clock of a finished stage (validation excluded), from its last checkpoint."""
    from rlvr_world.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(stage_dir)
    return json.loads((ckpt / "trainer_state.json").read_text())["elapsed"] if ckpt else 0.0


def mle_longer_config(cfg: Config, seconds: float):
    """The fair baseline's MLE settings: continue for `seconds` (RLVR's training time) at the LR
    where MLE ended, on the data RLVR trained on."""
    from rlvr_world.mle import UNBOUNDED_STEPS

    return dataclasses.replace(cfg.mle, steps=UNBOUNDED_STEPS, max_seconds=seconds, warmup_steps=0,
                               lr=cfg.mle.lr * cfg.mle.min_lr_ratio, min_lr_ratio=1.0,
                               train_data=cfg.rlvr.train_data or cfg.mle.train_data)


def demo(cfg: Config, command: str) -> dict:
    """collect -> MLE -> RLVR -> MLE for the same time -> RLVR (task-specific, if the world has one)
    -> eval (models and model-free baselines) -> report."""
    from rlvr_world.eval.evaluate import paired_evaluations
    from rlvr_world.eval.report import write_report

    run = Path(cfg.run_dir)
    save_resolved_config(cfg)
    t0 = time.time()
    world = world_of(cfg)
    if not (cfg.data_path / "manifest.json").exists():
        collect(cfg)
    mle_path = pretrain(cfg, "mle")
    rlvr_path = rlvr(cfg, "rlvr", init=mle_path)
    longer = mle_longer_config(cfg, stage_seconds(run / "rlvr"))
    longer_path = pretrain(cfg, "mle_longer", init=mle_path, mle_cfg=longer)
    stages = {"mle": mle_path, "mle_longer": longer_path, "rlvr": rlvr_path}
    task_reward = world.task_specific_reward
    if task_reward:
        ts_cfg = dataclasses.replace(cfg.rlvr, reward=task_reward)
        stages["rlvr_task_specific"] = rlvr(cfg, "rlvr_task_specific", init=mle_path, rl_cfg=ts_cfg)
    evals = {name: evaluation(cfg, path, run / "eval" / f"{name}.json") for name, path in stages.items()}
    baselines = evaluate_baselines(cfg, run / "eval" / "baselines.json")
    downstream = world.downstream(cfg, stages)
    results = {
        "world": cfg.world,
        "command": command,
        "hardware": hardware(cfg.model.device),
        "seed": cfg.seed,
        "reward": cfg.rlvr.reward or world.default_reward,
        "train_seconds": {name: round(stage_seconds(run / name), 1) for name in stages},
        "total_seconds": round(time.time() - t0, 1),
        "peak_rss_mb": peak_rss_mb(),
        **world.summarize(evals, baselines),
        # Per-example paired differences on the test split: is each RLVR model's lead real?
        "state_prediction_paired": paired_evaluations(evals, [(s, base) for s in stages if s.startswith("rlvr")
                                             for base in ("mle", "mle_longer")]),
        **downstream,
    }
    (run / "results.json").write_text(json.dumps(results, indent=1))
    write_report(run)
    return results


def command_line() -> str:
    return " ".join(["rlvr-world"] + sys.argv[1:])
