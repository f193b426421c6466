"""Pool the paired agent comparisons of several runs: is one world model's agent better than
another's over every pair of models measured, not only the pair that happened to win?

Each file is a `rlvr-world agent` or demo results file (or its "agent" block) with per-episode
outcomes. The script prints each file's paired difference of `--a` minus `--b` and the pooled
difference over all of them, whose interval takes the episode as its unit, so that runs played
on the same task seeds are not counted as independent (`pooled_paired_difference`).

    python scripts/pool_agent_runs.py results/miniwob_rerun_agent_sampled_500.json \\
        results/miniwob_agent_paired_500.json --a mpc_rlvr --b mpc_mle --json pooled.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rlvr_world.apps.web_agent import paired_difference, pooled_paired_difference
from rlvr_world.worlds.miniwob.collect import split_seeds


def episode_outcomes(path: Path, a: str, b: str) -> dict:
    """{(task, seed): (a solved, b solved)} of one results file."""
    results = json.loads(path.read_text())
    agent = results.get("agent", results)
    for name in (a, b):
        if "outcomes" not in agent.get(name, {}):
            raise ValueError(f"{path}: no per-episode outcomes of {name!r} (have: "
                             f"{sorted(k for k, v in agent.items() if isinstance(v, dict) and 'outcomes' in v)})")
    seeds = agent.get("seeds")
    if seeds is None:  # files written before the seeds were recorded: the agent's own rule
        if "seed" not in results:
            raise ValueError(f"{path}: neither the episodes' seeds nor the run's seed is recorded")
        n = max(len(o) for o in agent[a]["outcomes"].values())
        seeds = split_seeds(results["seed"], "test", n)
    pairs = {}
    for task, outcomes in agent[a]["outcomes"].items():
        other = agent[b]["outcomes"].get(task, "")
        if len(other) != len(outcomes):
            raise ValueError(f"{path}: {a} and {b} did not play the same episodes of {task}")
        pairs.update({(task, seed): (x == "1", y == "1") for seed, x, y in zip(seeds, outcomes, other)})
    return pairs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", type=Path, nargs="+", help="agent results files with per-episode outcomes")
    ap.add_argument("--a", default="mpc_rlvr", help="variant whose success is counted positive (default mpc_rlvr)")
    ap.add_argument("--b", default="mpc_mle", help="variant it is compared with (default mpc_mle)")
    ap.add_argument("--json", type=Path, help="also write the comparisons to this file")
    args = ap.parse_args(argv)
    try:
        comparisons = {str(path): episode_outcomes(path, args.a, args.b) for path in args.files}
    except (OSError, ValueError) as e:
        sys.exit(f"pool_agent_runs: {e}")
    command = " ".join(["python scripts/pool_agent_runs.py", *(sys.argv[1:] if argv is None else argv)])
    out = {"command": command, "a": args.a, "b": args.b, "files": {}}
    for name, pairs in comparisons.items():
        c = paired_difference([x for x, _ in pairs.values()], [y for _, y in pairs.values()])
        out["files"][name] = c
        print(f"{name}: {c['difference']:+.3f} [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}] over {c['episodes']} "
              f"episodes ({c['a_only']} vs {c['b_only']}, McNemar p {c['p_value']:.3g})")
    pooled = out["pooled"] = pooled_paired_difference(list(comparisons.values()))
    print(f"pooled {args.a} - {args.b}: {pooled['difference']:+.3f} [{pooled['ci95'][0]:+.3f}, {pooled['ci95'][1]:+.3f}]"
          f" over {pooled['comparisons']} comparisons, {pooled['rows']} episode pairs, {pooled['episodes']} distinct episodes")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
