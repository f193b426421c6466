"""How much a GRPO signal there is: pass@k against greedy accuracy, per command verb (--by).

GRPO with a binary reward can only learn from a group that holds both right and wrong
answers. pass@k (some of k samples at T=1 is right) well above greedy accuracy means the
sampled groups hold right answers that greedy decoding misses, which RLVR can sharpen into
greedy wins; pass@k close to greedy means it can mostly sharpen the sampled distribution.
With many samples, pass@k (and best_of_k for a graded reward such as the web world's F1)
bounds what sharpening alone can do for greedy decoding on that split.
A cost such as the video world's pixel error is passed negated (--reward mae:-1), so that
best_of_k is minus the lowest error among the k samples.

    python scripts/pass_at_k.py --run-dir runs/textworld --model runs/textworld/mle/final --split train
    python scripts/pass_at_k.py --run-dir runs/textworld --split test --changed-only --limit 1000 --k 64 --at 1,8
    python scripts/pass_at_k.py --run-dir runs/miniwob --split test --reward f1 --k 32 --at 8 --by action
    python scripts/pass_at_k.py --run-dir runs/metaworld --split test --reward mae:-1 --k 8 --temperature 0.5

Transitions are a seeded random subset of the split (--limit); the table goes to stdout and,
with --json, to a file.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from math import comb
from pathlib import Path

import rlvr_world  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before torch starts)
import torch

from rlvr_world import pipeline
from rlvr_world.config import load_config
from rlvr_world.models.lm import load_model, resolve_device
from rlvr_world.rewards import WeightedReward
from rlvr_world.rl.rollout import sample


def scores(model, tokenizer, world, examples, reward, k: int, seed: int, temperature: float = 1.0, batch: int = 32):
    """Per example: (k sampled rewards at `temperature`, greedy reward). As in the trainer, a
    truncated response is scored as an undecodable one (None: each reward's worst value)."""
    out = []
    for start in range(0, len(examples), batch):
        part = examples[start : start + batch]
        prompts, plans = [e.prompt_ids for e in part], [e.plan for e in part]
        kw = dict(eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id)
        sampled = sample(model, prompts, plans, group_size=k, temperature=temperature,
                         generator=torch.Generator().manual_seed(seed + start), **kw)
        greedy = sample(model, prompts, plans, temperature=0.0, **kw)

        def rewards(rollout, group):
            cut, responses = rollout.truncated.tolist(), rollout.responses()
            answered = [part[row // group] for row in range(len(responses))]
            decoded = iter(world.decode_batch([r for r, c in zip(responses, cut) if not c], tokenizer,
                                              [ex for ex, c in zip(answered, cut) if not c]))
            predictions = [None if c else next(decoded) for c in cut]
            return reward.score(predictions, [ex.target for ex in answered])[0]

        s, g = rewards(sampled, k), rewards(greedy, 1)
        out += [(s[i * k : (i + 1) * k], g[i]) for i in range(len(part))]
    return out


def pass_at(n: int, right: int, k: int) -> float:
    """Unbiased pass@k from n samples of which `right` are right: 1 - C(n-right, k) / C(n, k)."""
    return 1.0 - comb(n - right, k) / comb(n, k)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, default=Path("runs/textworld"), help="run with data/ (default: runs/textworld)")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: RUN/mle/final)")
    p.add_argument("--split", default="train", choices=["train", "val", "test"], help="which split (default: train)")
    p.add_argument("--changed-only", action="store_true", help="only transitions where the state changed")
    p.add_argument("--limit", type=int, default=256, help="transitions drawn at random from the split (default: 256)")
    p.add_argument("--k", type=int, default=8, help="samples per transition (default: 8, the demo's group size)")
    p.add_argument("--at", default="", help="also estimate pass@j for these j <= k, e.g. 1,8 (unbiased, from the k samples)")
    p.add_argument("--reward", default="binary",
                   help="reward spec, higher is better; pass@k counts a reward of 1 as right (default: binary; "
                        "e.g. f1, or mae:-1 for the video world's pixel error)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of the k samples (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset and of sampling (default: 0)")
    p.add_argument("--by", default="verb", help="one row per value of this transition fact (default: verb, the "
                                                 "text games' command verb; the web world has action and task)")
    p.add_argument("--json", type=Path, default=None, help="also write the table to this JSON file")
    args = p.parse_args(argv)

    cfg = load_config(str(args.run_dir / "config.yaml") if (args.run_dir / "config.yaml").exists() else "textworld",
                      [f"run_dir={args.run_dir}"])
    world = pipeline.world_of(cfg)
    model, tokenizer = load_model(args.model or args.run_dir / "mle" / "final")
    model = model.to(resolve_device(cfg.model.device))
    examples = pipeline.examples(cfg, world, tokenizer, args.split)
    if args.changed_only:
        examples = [e for e in examples if e.meta.get("changed")]
    examples = random.Random(args.seed).sample(examples, min(args.limit, len(examples)))
    results = scores(model, tokenizer, world, examples, WeightedReward.parse(args.reward), args.k, args.seed,
                     args.temperature)

    groups = defaultdict(list)
    for e, r in zip(examples, results):
        if args.by in e.meta:
            groups[str(e.meta[args.by])].append(r)
        groups["(all)"].append(r)
    ats = sorted({int(j) for j in args.at.split(",") if j} - {args.k})
    if any(not 1 <= j < args.k for j in ats):
        p.error(f"--at: each j must be between 1 and --k ({args.k})")
    rows = []
    for name, rs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        rows.append({
            args.by: name, "n": len(rs),
            **{f"pass@{j}": sum(pass_at(args.k, sum(s == 1 for s in samples), j) for samples, _ in rs) / len(rs)
               for j in ats},
            f"pass@{args.k}": sum(any(s == 1 for s in samples) for samples, _ in rs) / len(rs),
            "sampled_mean": sum(sum(samples) / len(samples) for samples, _ in rs) / len(rs),
            # For a graded reward (F1): the mean of the best of the k samples, the most that
            # choosing among the model's own samples could reach.
            f"best_of_{args.k}": sum(max(samples) for samples, _ in rs) / len(rs),
            "greedy": sum(g for _, g in rs) / len(rs),
            "mixed_groups": sum(0 < sum(s == 1 for s in samples) < len(samples) for samples, _ in rs) / len(rs),
        })
    print(f"{args.model or args.run_dir / 'mle/final'} on {args.split}{' (changed only)' if args.changed_only else ''}, "
          f"{len(examples)} transitions, k={args.k} at T={args.temperature}, reward {args.reward}, seed {args.seed}")
    passes = [f"pass@{j}" for j in [*ats, args.k]] + [f"best_of_{args.k}"]
    print(f"| {args.by} | n | {' | '.join(passes)} | sampled mean | greedy | groups with mixed rewards |\n"
          f"|---|---:|{'---:|' * len(passes)}---:|---:|---:|")
    for r in rows:
        print(f"| {r[args.by]} | {r['n']} | {' | '.join(f'{r[c]:.3f}' for c in passes)} | {r['sampled_mean']:.3f} | "
              f"{r['greedy']:.3f} | {r['mixed_groups']:.3f} |")
    if args.json:
        meta = {"command": " ".join(["python"] + sys.argv), "hardware": pipeline.hardware(str(model.device)), "seed": args.seed,
                "model": str(args.model or args.run_dir / "mle" / "final"), "split": args.split,
                "changed_only": args.changed_only, "k": args.k, "temperature": args.temperature, "reward": args.reward}
        args.json.write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
