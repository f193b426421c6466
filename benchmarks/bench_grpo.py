"""GRPO throughput on real TextWorld prompts: `GRPOTrainer.train_step`, timed step by step.

The trainer is built as `pipeline.rlvr` builds it (policy, frozen reference when kl_coef > 0,
AdamW), from RUN/mle/final when it exists and otherwise from a freshly initialised `--preset`
model, with a temporary stage directory so nothing in the run is written. After `--warmup`
untimed steps, `--steps` steps are timed; the table gives medians.

    samples/s      = prompts_per_step x group_size / step time
    gen tokens/s   = tokens generated in the step (EOS included, padding not) / step time
    rollout tok/s  = the same tokens / time of the sampling phase alone

A fresh model never learnt to stop, so its responses run to max_new_tokens and every reward
is 0: its step is slower and its reward phase different from a trained model's. Benchmark
with mle/final present for numbers that match real training.

    python benchmarks/bench_grpo.py --run-dir runs/textworld
    python benchmarks/bench_grpo.py --run-dir runs/textworld rlvr.group_size=16 rlvr.kl_coef=0
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import rlvr_world  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before anything imports torch)

from common import command_line, describe, machine, markdown_table, median, peak_rss_mb, run_config, set_threads, today, write_json
from rlvr_world import pipeline

PHASES = ("time_rollout_s", "time_reward_s", "time_reference_s", "time_update_s")

COLUMNS = [
    ("batch", "prompts x G", ""),
    ("model", "model", ""),
    ("step_s", "step s", ".2f"),
    ("samples_per_s", "samples/s", ".1f"),
    ("tokens_per_s", "gen tokens/s", ".0f"),
    ("rollout_tokens_per_s", "rollout tok/s", ".0f"),
    ("response_len", "mean response len", ".1f"),
    ("time_rollout_s", "rollout s", ".2f"),
    ("time_reward_s", "reward s", ".3f"),
    ("time_reference_s", "reference s", ".2f"),
    ("time_update_s", "update s", ".2f"),
]


DESCRIPTION = (
    "`GRPOTrainer.train_step` on real TextWorld training prompts, medians over the timed steps. "
    "samples/s = prompts_per_step x group_size / step time; gen tokens/s = generated tokens / step time; "
    "rollout tok/s = the same tokens / sampling-phase time. Phase columns are the trainer's own timings."
)


def figures(summary: dict, prompts_per_step: int) -> dict:
    """Flat figures for the results protocol (prompts/s is the unit the TRL comparison uses)."""
    keys = ("step_s", "samples_per_s", "tokens_per_s", "rollout_tokens_per_s", "response_len") + PHASES
    return {"prompts_per_s": prompts_per_step / summary["step_s"], **{k: summary[k] for k in keys}}


def load_policy(run_dir: Path, cfg, init: Path | None, preset: str | None):
    """(model, tokenizer, description): a saved model if there is one, else a fresh preset model."""
    from transformers import AutoTokenizer

    from rlvr_world.models.lm import build_model, load_model

    init = init or run_dir / "mle" / "final"
    if (init / "config.json").exists():
        model, tokenizer = load_model(init)
        return model, tokenizer, f"{init} (trained)"
    tok_dir = run_dir / "tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        raise FileNotFoundError(f"{tok_dir}: no tokenizer (and no model at {init}); run `rlvr-world pretrain` first")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    preset = preset or cfg.model.preset
    model = build_model(preset, tokenizer, cfg.model.max_positions, seed=cfg.seed)
    return model, tokenizer, f"fresh `{preset}` Llama (untrained: responses run to max length)"


def timed_step(trainer) -> dict:
    """One train_step with its wall time; advances the step counter as `GRPOTrainer.train` does."""
    t = time.perf_counter()
    metrics = trainer.train_step()
    step_s = time.perf_counter() - t
    trainer.step += 1
    rows = trainer.cfg.prompts_per_step * trainer.cfg.group_size
    tokens = metrics["response_len"] * rows  # mean generated tokens per row x rows
    return {
        "step_s": step_s, "generated_tokens": round(tokens), "response_len": metrics["response_len"],
        "reward_mean": metrics["reward_mean"], "truncated_frac": metrics["truncated_frac"],
        "skipped": bool(metrics.get("skipped", 0)),
        **{k: metrics.get(k, 0.0) for k in PHASES},  # a skipped step has no reference / update phase
    }


def summarize(steps: list[dict], rows: int) -> dict:
    med = lambda key: median([s[key] for s in steps])  # noqa: E731
    return {
        "step_s": med("step_s"),
        "samples_per_s": rows / med("step_s"),
        "tokens_per_s": median([s["generated_tokens"] / s["step_s"] for s in steps]),
        "rollout_tokens_per_s": median([s["generated_tokens"] / max(s["time_rollout_s"], 1e-9) for s in steps]),
        "response_len": med("response_len"),
        **{k: med(k) for k in PHASES},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, default=Path("runs/textworld"),
                   help="run with data/ and tokenizer/ (and ideally mle/final) (default: runs/textworld)")
    p.add_argument("--config", default=None,
                   help="YAML file or preset for the rlvr settings (default: RUN/config.yaml if it exists, "
                        "else the textworld preset); run_dir is always --run-dir")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted config overrides, e.g. rlvr.prompts_per_step=4 rlvr.group_size=2")
    p.add_argument("--init", type=Path, default=None, help="model folder to start from (default: RUN/mle/final)")
    p.add_argument("--preset", default=None,
                   help="size preset of the fresh model used when there is no saved one (default: config's model.preset)")
    p.add_argument("--steps", type=int, default=5, help="timed train_step calls (default: 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed train_step calls first (default: 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads (default: 0 = torch's default; the config's `threads` is ignored)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)

    set_threads(args.threads)
    config, cfg = run_config(p, args.run_dir, args.config, args.overrides)

    from rlvr_world.models.lm import count_parameters
    from rlvr_world.rl.trainer import GRPOTrainer
    from rlvr_world.training import set_seed

    set_seed(cfg.seed)
    model, tokenizer, model_desc = load_policy(args.run_dir, cfg, args.init, args.preset)
    world = pipeline.world_of(cfg)
    train = pipeline.examples(cfg, world, tokenizer, "train")
    rl = cfg.rlvr
    rows = rl.prompts_per_step * rl.group_size
    info = machine()
    settings = {
        "model": model_desc, "parameters": count_parameters(model), "config": config,
        "overrides": list(args.overrides), "train_examples": len(train),
        "prompts_per_step": rl.prompts_per_step, "group_size": rl.group_size,
        "max_new_tokens": world.max_new_tokens if hasattr(world, "max_new_tokens") else None,
        "kl_coef": rl.kl_coef, "ppo_epochs": rl.ppo_epochs, "minibatches": rl.minibatches,
        "steps": args.steps, "warmup": args.warmup,
    }
    print(f"# GRPO step\n\n{today()}\n`{command_line()}`\n\nmachine: {describe(info)}")
    print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), flush=True)

    with tempfile.TemporaryDirectory(prefix="bench_grpo_") as stage_dir:
        trainer = GRPOTrainer(model, tokenizer, world, train, [], rl, Path(stage_dir), seed=cfg.seed, progress=False)
        steps = []
        for i in range(args.warmup + args.steps):
            s = timed_step(trainer)
            tag = "warm-up" if i < args.warmup else "timed"
            print(f"  step {i} ({tag}): {s['step_s']:.2f} s, {s['generated_tokens']} tokens, "
                  + ", ".join(f"{k[5:-2]} {s[k]:.2f} s" for k in PHASES)
                  + f", mean reward {s['reward_mean']:.3f}" + (" (skipped: all groups tied)" if s["skipped"] else ""),
                  flush=True)
            if i >= args.warmup:
                steps.append(s)
        trainer.log.close()

    summary = {"batch": f"{rl.prompts_per_step} x {rl.group_size}", "model": model_desc.split(" (")[0], **summarize(steps, rows)}
    print("\n" + markdown_table([summary], COLUMNS))
    print(f"\nmedians over {len(steps)} steps after {args.warmup} warm-up; step s is the wall time of train_step "
          "(rollout + reward + reference + update).")
    if args.json:
        write_json(args.json, {
            "benchmark": "grpo", "title": "GRPO step", "description": DESCRIPTION,
            "command": command_line(), "date": today(), "machine": info, "settings": settings,
            "columns": COLUMNS, "rows": [summary], "figures": {**figures(summary, rl.prompts_per_step), "peak_rss_mb": peak_rss_mb()},
            "notes": ["peak_rss_mb is the whole benchmark process's peak resident memory (ru_maxrss: imports, data and every configuration measured), an upper bound for any one of them.", f"medians over {len(steps)} steps after {args.warmup} warm-up.",
                      "A fresh (untrained) model generates to max_new_tokens and gets reward 0: its step is slower "
                      "than a trained model's. See the model setting.",
                      "CPU wall-clock on a possibly shared machine: the load average at the start is in the machine line."],
            "steps": steps,
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
