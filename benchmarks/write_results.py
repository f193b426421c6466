"""Rewrite benchmarks/RESULTS.md from the JSON files the benchmark scripts wrote.

    python benchmarks/write_results.py --sampler OUT/sampler.json --grpo OUT/grpo.json

A missing JSON file leaves its section out (with a note) rather than failing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import describe, markdown_table

SECTIONS = {
    "sampler": (
        "Sampler vs model.generate",
        "Our sampler (`rl.rollout.sample`, group_size 1, one `Generate(n, stop_at_eos=False)` segment) against "
        "Hugging Face `model.generate` (min_new_tokens = max_new_tokens = n, no EOS, KV cache) on the same model "
        "and the same prompts, calls alternated. tok/s = batch x new tokens / median wall time of one call, "
        "prefill included; ours / generate > 1 means ours is faster. Greedy outputs are asserted token-identical; "
        "sampled outputs use the same seed on both sides and are only reported.",
    ),
    "grpo": (
        "GRPO step",
        "`GRPOTrainer.train_step` on real TextWorld training prompts, medians over the timed steps. "
        "samples/s = prompts_per_step x group_size / step time; gen tokens/s = generated tokens / step time; "
        "rollout tok/s = the same tokens / sampling-phase time. Phase columns are the trainer's own timings.",
    ),
}


def section(result: dict | None, key: str) -> str:
    title, explanation = SECTIONS[key]
    if result is None:
        return f"## {title}\n\nNot run.\n"
    settings = "\n".join(f"- {k}: {v}" for k, v in result["settings"].items())
    return (f"## {title}\n\n{explanation}\n\n```bash\n{result['command']}\n```\n\n"
            f"- date: {result['date']}\n- machine: {describe(result['machine'])}\n{settings}\n\n"
            f"{markdown_table(result['rows'], [tuple(c) for c in result['columns']])}\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sampler", type=Path, help="JSON written by bench_sampler.py --json")
    p.add_argument("--grpo", type=Path, help="JSON written by bench_grpo.py --json")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "RESULTS.md", help="default: benchmarks/RESULTS.md")
    args = p.parse_args(argv)

    load = lambda path: json.loads(path.read_text()) if path and path.exists() else None  # noqa: E731
    text = ("# Benchmarks\n\nWritten by `benchmarks/run_all.sh` (via `benchmarks/write_results.py`); "
            "rerun it to refresh. Numbers are CPU wall-clock and depend on machine load: "
            "the load average at the start of each run is part of the machine line.\n\n"
            + section(load(args.sampler), "sampler") + "\n" + section(load(args.grpo), "grpo"))
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
