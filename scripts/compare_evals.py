"""Paired comparison of evaluation files written by `rlvr-world eval --out` (or a demo's eval/).

Each file holds every test example's reward in split order, so two models evaluated on the
same split pair up example by example: the script prints the mean difference of the first
file's model minus each other file's, with a 95% interval, greedy and sampled.

    python scripts/compare_evals.py runs/x/eval/rlvr.json runs/x/eval/mle.json runs/x/eval/mle_longer.json
    python scripts/compare_evals.py A.json B.json --json paired.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rlvr_world.eval.evaluate import paired_evaluations


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("first", type=Path, help="evaluation of the model to compare (e.g. RLVR)")
    ap.add_argument("others", type=Path, nargs="+", help="evaluations to compare it with (e.g. MLE, MLE-longer)")
    ap.add_argument("--json", type=Path, help="also write the comparisons to this file")
    args = ap.parse_args(argv)
    evals = {}
    for path in [args.first, *args.others]:
        ev = json.loads(path.read_text())
        if "per_example" not in ev:
            sys.exit(f"{path}: no per-example scores (evaluated before they were recorded); evaluate it again")
        evals[str(path)] = ev
    pairs = [(str(args.first), str(o)) for o in args.others]
    out = paired_evaluations(evals, pairs)
    for a, b in pairs:
        name = f"{a} - {b}"
        if name not in out:
            sys.exit(f"{a} and {b} are not evaluations of the same examples (split, reward or count differ)")
        c = out[name]
        print(f"{args.first.stem} - {Path(b).stem} ({c['reward']}, n={c['greedy']['n']}):")
        for mode in ("greedy", "sampled"):
            d = c[mode]
            print(f"  {mode:8s} {d['difference']:+.4f}  95% [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]  "
                  f"first higher {d['a_better']}, second higher {d['b_better']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
