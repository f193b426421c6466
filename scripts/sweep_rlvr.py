"""RLVR hyper-parameter sweep: each grid variant is one GRPO run from the same start model for
the same wall-clock budget (or, with --steps, the same number of steps), then the held-out
evaluation (greedy and sampled), in one table.

    python scripts/sweep_rlvr.py --config textworld --grid scripts/sweeps/textworld.yaml --claim 10 \
        --out results/textworld_sweep.json --plot results/textworld_sweep.png
    python scripts/sweep_rlvr.py --config metaworld --grid scripts/sweeps/metaworld.yaml --seconds 360 \
        --metric lpips --lower-is-better --relative --claim -5     # video: a distance, in % of the start

The grid is a YAML mapping of variant name -> {config key: value}, applied over --config and
any KEY=VALUE overrides given here. Runs go to <run_dir>/sweep/<name> and their evaluations
to <run_dir>/eval/sweep_<name>.json. A finished variant is not trained again and a killed GRPO
run resumes from its last checkpoint, so the sweep can be stopped and restarted; evaluations
are reused when they are of the same model with the same eval.* settings, so rerunning the
sweep with other eval.* overrides (e.g. eval.max_examples=0) re-evaluates every finished
variant and reference without training.
Variants are ranked by --metric on validation (the GRPO run's final validation pass), so the
test split is not used to choose. The references are the start model's, the demo's equal-time
MLE and the demo's RLVR evaluations (<run_dir>/eval/mle.json, mle_longer.json, rlvr.json) when
they exist.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import rlvr_world  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before torch starts)
import yaml

from rlvr_world import pipeline
from rlvr_world.config import load_config
from rlvr_world.runlog import read_metrics
from rlvr_world.training import set_seed, set_threads

# What the table keeps of an evaluation, per decoding mode.
METRICS = ("accuracy", "accuracy_changed", "accuracy_unchanged", "f1", "mean_f1", "f1_changed", "parse_failure_rate",
           "lpips", "lpips_h1", "mae", "mae_h1", "mae_changed", "repetition_rate")  # the last six: video


def keep(metrics: dict) -> dict:
    return {m: metrics[m] for m in METRICS if m in metrics}


def summary(evaluation: dict) -> dict:
    return {mode: keep(evaluation[mode]) for mode in ("greedy", "sampled")}


def last_validation(stage_dir: Path) -> dict:
    """The GRPO run's step count and its last validation record."""
    rows = read_metrics(stage_dir)
    val = [r for r in rows if r["split"] == "val"]
    return {"steps": max(r["step"] for r in rows), "validation": keep(val[-1] if val else {})}


def evaluation_path(run: Path, name: str) -> Path:
    return run / "eval" / f"sweep_{name}.json"


def run_variant(args, name: str, overrides: dict) -> dict:
    budget = ["rlvr.max_seconds=0", f"rlvr.steps={args.steps}"] if args.steps else \
        [f"rlvr.max_seconds={args.seconds}", "rlvr.steps=1000000"]
    pinned = budget + ["rlvr.eval_every=0", "rlvr.save_every=20"]
    # The budget first, so that KEY=VALUE given here and the variant's own keys win.
    cfg = load_config(args.config, pinned + args.overrides + [f"{k}={v}" for k, v in overrides.items()])
    run = Path(cfg.run_dir)
    out = evaluation_path(run, name)
    stage = f"sweep/{name}"
    final = run / stage / "final"
    if not final.exists():  # a finished variant is kept as it is, whatever budget is given now
        set_threads(cfg.threads)
        set_seed(cfg.seed)
        t0 = time.time()
        final = Path(pipeline.rlvr(cfg, stage, init=args.init))
        print(f"[{name}] GRPO done in {time.time() - t0:.0f} s; evaluating", flush=True)
    evaluation = pipeline.evaluation(cfg, final, out)  # reused when of this model with these eval.* settings
    return {"overrides": overrides, **last_validation(run / stage),
            "train_seconds": round(pipeline.stage_seconds(run / stage), 1), "test": summary(evaluation)}


def change(value: float, base: float, relative: bool) -> float:
    """Points (x100) of an absolute metric, or percent of the start's value."""
    return 100 * (value - base) / (base if relative else 1.0)


def plot(result: dict, path: Path, metric: str, claim: float, relative: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = result["references"]["mle"]["greedy"][metric]
    names = list(result["variants"])
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(names) + 1.2))
    for offset, mode, colour in ((-0.2, "greedy", "tab:blue"), (0.2, "sampled", "tab:orange")):
        base = result["references"]["mle"][mode][metric]
        gains = [change(result["variants"][n]["test"][mode][metric], base, relative) for n in names]
        ax.barh([i + offset for i in range(len(names))], gains, height=0.4, color=colour,
                label=f"{mode} (MLE start {base:.4g})" if relative else f"{mode} (MLE start {100 * base:.1f}%)")
    if "mle_longer" in result["references"]:
        gain = change(result["references"]["mle_longer"]["greedy"][metric], start, relative)
        ax.axvline(gain, color="tab:green", linestyle="--", label="greedy, MLE for the same time")
    if "rlvr" in result["references"]:
        gain = change(result["references"]["rlvr"]["greedy"][metric], start, relative)
        ax.axvline(gain, color="tab:purple", linestyle="-.", label="greedy, the demo's RLVR")
    if claim:
        ax.axvline(claim, color="tab:red", linestyle=":",
                   label=f"the method's claim: {claim:+g}{'%' if relative else ''} greedy")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel(f"test {metric}: % change from the MLE start" if relative
                  else f"test {metric} minus the MLE start's (points)")
    ax.set_title(f"RLVR sweep, {result['budget_per_variant']} each")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside: never over a bar
    fig.savefig(path, dpi=120, bbox_inches="tight")  # takes in the legend and the long names
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="textworld", help="YAML file or preset name (default: textworld)")
    parser.add_argument("--grid", required=True, help="YAML: variant name -> {config key: value}")
    parser.add_argument("--init", default=None, help="start model (default: <run_dir>/mle/final)")
    parser.add_argument("--seconds", type=float, default=180.0, help="GRPO wall-clock per variant (default: 180)")
    parser.add_argument("--steps", type=int, default=0,
                        help="GRPO steps per variant instead of a wall-clock budget (--seconds is then unused)")
    parser.add_argument("--metric", default="accuracy",
                        help="metric that ranks (on validation) and is plotted (on test); e.g. f1 for the web world")
    parser.add_argument("--lower-is-better", action="store_true", help="--metric is a distance (lpips, mae)")
    parser.add_argument("--relative", action="store_true", help="plot %% change from the start instead of points")
    parser.add_argument("--claim", type=float, default=0.0,
                        help="draw the change the method claims (points of --metric, or %% with --relative); 0 = none")
    parser.add_argument("--only", default=None, metavar="NAME[,NAME...]",
                        type=lambda names: [n for n in names.split(",") if n],
                        help="train only these variants, comma-separated (finished ones still enter the table)")
    parser.add_argument("--out", default=None, help="JSON file for the table (default: <run_dir>/sweep/results.json)")
    parser.add_argument("--plot", default=None, help="PNG of the gains over the MLE start (default: beside --out)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every variant")
    args = parser.parse_args()
    grid = yaml.safe_load(Path(args.grid).read_text())
    if not isinstance(grid, dict) or not all(isinstance(v, dict) for v in grid.values()):
        parser.error(f"{args.grid}: expected a mapping of variant name -> {{config key: value}}")
    if args.metric not in METRICS:
        parser.error(f"--metric {args.metric!r}: the table keeps {', '.join(METRICS)}")
    unknown = set(args.only or []) - set(grid)
    if unknown:
        parser.error(f"--only: no such variant(s) {sorted(unknown)}; the grid has {sorted(grid)}")
    base = load_config(args.config, args.overrides)
    run = Path(base.run_dir)
    variants = {}
    for name, overrides in grid.items():
        # --only picks what to train; variants finished before stay in the table.
        if args.only is None or name in args.only or (run / "sweep" / name / "final").exists():
            variants[name] = run_variant(args, name, overrides)
            print(f"[{name}] {args.metric}: validation {variants[name]['validation'].get(args.metric, float('nan')):.3f}, "
                  f"test greedy {variants[name]['test']['greedy'][args.metric]:.3f}", flush=True)
    references = {}
    for name in ("mle", "mle_longer", "rlvr"):
        path = run / "eval" / f"{name}.json"
        if path.exists():  # evaluated again when the eval.* settings given here differ
            references[name] = summary(pipeline.evaluation(base, json.loads(path.read_text())["model"], path))
    better = 1.0 if args.lower_is_better else -1.0
    ranked = sorted(variants, key=lambda n: better * variants[n]["validation"].get(args.metric, -better * float("inf")))
    result = {
        "command": " ".join(["python"] + sys.argv),
        "hardware": pipeline.hardware(base.model.device),
        "init": str(pipeline.rlvr_start(base, args.init)),
        "budget_per_variant": f"{args.steps} GRPO steps" if args.steps else f"{args.seconds:g} s of GRPO",
        "metric": args.metric,
        "lower_is_better": args.lower_is_better,
        "references": references,
        "best_on_validation": ranked[0] if ranked else None,
        "variants": variants,
    }
    out = Path(args.out) if args.out else run / "sweep" / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    if "mle" in references and variants:
        png = Path(args.plot) if args.plot else out.with_suffix(".png")
        plot(result, png, args.metric, args.claim, args.relative)
        print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
