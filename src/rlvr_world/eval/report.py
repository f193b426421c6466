"""A run's summary: report.md with result tables, and PNG plots of the training curves."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rlvr_world.runlog import read_metrics  # noqa: E402

STAGES = ("mle", "mle_longer", "rlvr", "rlvr_task_specific")
SPLITS = (("accuracy", "overall"), ("accuracy_changed", "changed"), ("accuracy_unchanged", "unchanged"))


def _series(rows: list[dict], key: str, split: str = "train") -> tuple[list, list]:
    pts = [(r["step"], r[key]) for r in rows if r.get("split") == split and r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_rl_curves(run: Path) -> Path | None:
    stages = [s for s in STAGES if s.startswith("rlvr") and (run / s / "metrics.jsonl").exists()]
    if not stages:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for stage in stages:
        rows = read_metrics(run / stage)
        axes[0].plot(*_series(rows, "reward_mean"), label=stage)
        axes[1].plot(*_series(rows, "kl"), label=stage)
        axes[2].plot(*_series(rows, "accuracy", "val"), marker="o", label=stage)
    for ax, title in zip(axes, ("train reward (group mean)", "KL to start model (k3)", "val greedy accuracy")):
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    out = run / "rl_curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_mle_curves(run: Path) -> Path | None:
    if not (run / "mle" / "metrics.jsonl").exists():
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    offset = 0
    for stage in ("mle", "mle_longer"):
        rows = read_metrics(run / stage)
        if not rows:
            continue
        x, y = _series(rows, "loss")
        axes[0].plot([s + offset for s in x], y, label=f"{stage} train")
        x, y = _series(rows, "loss", "val")
        axes[0].plot([s + offset for s in x], y, marker="o", label=f"{stage} val")
        x, y = _series(rows, "accuracy", "val")
        axes[1].plot([s + offset for s in x], y, marker="o", label=stage)
        offset += max((r["step"] for r in rows), default=0)
    axes[0].set_yscale("log")
    axes[0].set_title("cross-entropy per response token")
    axes[1].set_title("val greedy accuracy")
    for ax in axes:
        ax.set_xlabel("MLE step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    out = run / "mle_curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_accuracy(run: Path, evals: dict[str, dict]) -> Path | None:
    if not evals:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
    width = 0.8 / len(evals)
    for ax, mode in zip(axes, ("greedy", "sampled")):
        for i, (stage, ev) in enumerate(evals.items()):
            vals = [ev[mode].get(k, 0) or 0 for k, _ in SPLITS]
            xs = [j + i * width for j in range(len(SPLITS))]
            bars = ax.bar(xs, vals, width, label=stage)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks([j + width * (len(evals) - 1) / 2 for j in range(len(SPLITS))], [s for _, s in SPLITS])
        ax.set_title(f"held-out exact-match accuracy, {mode} decoding")
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out = run / "accuracy.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _table(evals: dict[str, dict], mode: str) -> list[str]:
    keys = [k for k in ("accuracy", "accuracy_changed", "accuracy_unchanged", "precision", "recall", "f1",
                        "reward_binary", "reward_task_specific", "parse_failure_rate", "truncated_rate")
            if any(k in ev[mode] for ev in evals.values())]
    lines = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for stage, ev in evals.items():
        cells = [f"{ev[mode][k]:.3f}" if isinstance(ev[mode].get(k), (int, float)) else "" for k in keys]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return lines


def write_report(run: Path) -> Path:
    """Write <run>/report.md (and the PNG plots it shows) from what the run directory holds."""
    run = Path(run)
    evals = {s: json.loads((run / "eval" / f"{s}.json").read_text()) for s in STAGES if (run / "eval" / f"{s}.json").exists()}
    results = json.loads((run / "results.json").read_text()) if (run / "results.json").exists() else {}
    plots = [p for p in (plot_accuracy(run, evals), plot_mle_curves(run), plot_rl_curves(run)) if p]
    md = [f"# rlvr-world report: {run.name}", ""]
    if results:
        md += [f"- command: `{results.get('command')}`", f"- hardware: {results.get('hardware')}",
               f"- seed: {results.get('seed')}, RLVR reward: `{results.get('reward')}`",
               f"- training seconds per stage: {results.get('train_seconds')}", ""]
    if evals:
        n = next(iter(evals.values()))["n"]
        md += [f"## Held-out results ({n} transitions from unseen games)", "", "Greedy decoding:", ""]
        md += _table(evals, "greedy") + ["", "Sampled decoding (temperature 1):", ""] + _table(evals, "sampled") + [""]
    for p in plots:
        md += [f"![{p.stem}]({p.name})", ""]
    if "rlvr" in evals and evals["rlvr"].get("samples"):
        md += ["## Sample predictions of the RLVR model (greedy)", ""]
        for s in evals["rlvr"]["samples"][:5]:
            md += ["```", s["prompt"], "--- target:", s["target"], "--- predicted:", s["prediction"], "```", ""]
    out = run / "report.md"
    out.write_text("\n".join(md))
    return out
