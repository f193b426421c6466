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


def _save(fig, out: Path) -> Path:
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _series(rows: list[dict], key: str, split: str = "train") -> tuple[list, list]:
    pts = [(r["step"], r[key]) for r in rows if r.get("split") == split and r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def _val_metric(rows: list[dict]) -> str:
    """The validation metric to plot: exact-match accuracy for text, ST-LPIPS for video."""
    return next((k for k in ("accuracy", "lpips", "mae") if _series(rows, k, "val")[0]), "accuracy")


def plot_rl_curves(run: Path) -> Path | None:
    stages = [s for s in STAGES if s.startswith("rlvr") and (run / s / "metrics.jsonl").exists()]
    if not stages:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for stage in stages:
        rows = read_metrics(run / stage)
        axes[0].plot(*_series(rows, "reward_mean"), label=stage)
        axes[1].plot(*_series(rows, "kl"), label=stage)
        val_key = _val_metric(rows)
        axes[2].plot(*_series(rows, val_key, "val"), marker="o", label=stage)
    for ax, title in zip(axes, ("train reward (group mean)", "KL to start model (k3)", f"val greedy {val_key}")):
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    return _save(fig, run / "rl_curves.png")


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
        val_key = _val_metric(rows)
        x, y = _series(rows, val_key, "val")
        axes[1].plot([s + offset for s in x], y, marker="o", label=stage)
        offset += max((r["step"] for r in rows), default=0)
    axes[0].set_yscale("log")
    axes[0].set_title("cross-entropy per response token")
    axes[1].set_title(f"val greedy {val_key}")
    for ax in axes:
        ax.set_xlabel("MLE step")
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, run / "mle_curves.png")


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
    return _save(fig, run / "accuracy.png")


def _table(evals: dict[str, dict], mode: str, keys: tuple[str, ...]) -> list[str]:
    keys = [k for k in keys if any(k in ev[mode] for ev in evals.values())]
    lines = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for stage, ev in evals.items():
        cells = [f"{ev[mode][k]:.3f}" if isinstance(ev[mode].get(k), (int, float)) else "" for k in keys]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return lines


def plot_horizon(run: Path, evals: dict[str, dict], baselines: dict[str, dict], names=("lpips", "mae", "psnr", "ssim")) -> Path | None:
    """Video worlds: each metric against the prediction step, models and baselines together."""
    curves = {stage: ev["greedy"] for stage, ev in evals.items()}
    curves.update(baselines)
    if not any(f"{names[0]}_h1" in m for m in curves.values()):
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.6))
    for ax, name in zip(axes, names):
        for label, m in curves.items():
            steps = sorted(int(k.rsplit("_h", 1)[1]) for k in m if k.startswith(f"{name}_h") and k.rsplit("_h", 1)[1].isdigit())
            style = "--" if label in baselines else "-"
            ax.plot(steps, [m[f"{name}_h{t}"] for t in steps], style, marker="o", label=label)
        ax.set_title(f"{name} (greedy, held-out)")
        ax.set_xlabel("predicted frame")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, run / "horizon_metrics.png")


def frame_samples(run: Path, stages) -> list[Path]:
    """Frame strip (ground truth, then each model) and a side-by-side GIF from eval/<stage>_samples.npz."""
    import numpy as np

    from rlvr_world.eval.frames import frame_strip, side_by_side_gif

    samples = {s: np.load(run / "eval" / f"{s}_samples.npz") for s in stages if (run / "eval" / f"{s}_samples.npz").exists()}
    if not samples:
        return []
    first = next(iter(samples.values()))
    out = []
    for i in range(min(3, len(first["target"]))):
        C = first["context"].shape[1]
        blank = np.full_like(first["context"][i], 255)
        rows = {"ground truth": np.concatenate([first["context"][i], first["target"][i]])}
        rows.update({stage: np.concatenate([blank, arr["predicted"][i]]) for stage, arr in samples.items()})
        out.append(frame_strip(rows, run / f"frames_{i}.png"))
    columns = {"truth": first["target"][0], **{stage: arr["predicted"][0] for stage, arr in samples.items()}}
    out.append(side_by_side_gif(columns, run / "rollout.gif"))
    return out


def agent_section(run: Path, agent: dict) -> list[str]:
    """Success rates of the downstream agent variants: a table with 95% intervals and a bar plot."""
    variants = {k: v for k, v in agent.items() if isinstance(v, dict) and "success_rate" in v}
    if not variants:
        return []
    md = ["## Downstream agent (held-out episodes)", "", "| agent | success rate | 95% interval | episodes | decisions/s |",
          "|---|---|---|---|---|"]
    for name, v in variants.items():
        rate = f"{v['decisions_per_s']:.2f}" if v.get("decisions_per_s") else ""
        md.append(f"| {name} | {v['success_rate']:.3f} | [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}] | {v['episodes']} | {rate} |")
    if agent.get("paired"):
        md += ["", "Paired over the same episodes (solved by the first only / by the second only; McNemar's exact p):", "",
               "| comparison | difference | 95% interval | first only | second only | p |", "|---|---|---|---|---|---|"]
        for name, c in agent["paired"].items():
            md.append(f"| {name} | {c['difference']:+.3f} | [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}] | {c['a_only']} | "
                      f"{c['b_only']} | {c['p_value']:.3g} |")
    fig, ax = plt.subplots(figsize=(1.4 * len(variants) + 2, 3.4))
    rates = [v["success_rate"] for v in variants.values()]
    errors = [[r - v["ci95"][0] for r, v in zip(rates, variants.values())],
              [v["ci95"][1] - r for r, v in zip(rates, variants.values())]]
    ax.bar(list(variants), rates, yerr=errors, capsize=4, color="tab:blue", alpha=0.8)
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1)
    ax.set_title("agent success, 95% Wilson intervals")
    ax.grid(axis="y", alpha=0.3)
    path = _save(fig, run / "agent.png")
    return md + ["", f"![{path.stem}]({path.name})", ""]


def paired_section(paired: dict) -> list[str]:
    """Per-example paired differences of the eval reward between models (RLVR minus a baseline)."""
    if not paired:
        return []
    md = ["## Paired differences on the same examples", "",
          "Mean per-example difference of the eval reward, with a 95% interval; the counts are the examples "
          "where the first / the second model scores higher.", "",
          "| comparison | reward | decoding | difference | 95% interval | first higher | second higher |",
          "|---|---|---|---|---|---|---|"]
    for name, c in paired.items():
        for mode in ("greedy", "sampled"):
            d = c[mode]
            md.append(f"| {name} | `{c['reward']}` | {mode} | {d['difference']:+.4f} | "
                      f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] | {d['a_better']} | {d['b_better']} |")
    return md + [""]


def write_report(run: Path) -> Path:
    """Write <run>/report.md (and the PNG plots it shows) from what the run directory holds."""
    from rlvr_world.worlds import get_world

    run = Path(run)
    evals = {s: json.loads((run / "eval" / f"{s}.json").read_text()) for s in STAGES if (run / "eval" / f"{s}.json").exists()}
    results = json.loads((run / "results.json").read_text()) if (run / "results.json").exists() else {}
    baselines_file = run / "eval" / "baselines.json"
    baselines = json.loads(baselines_file.read_text()) if baselines_file.exists() else {}
    world_name = results.get("world") or (next(iter(evals.values())).get("world") if evals else None)
    keys = get_world(world_name).headline_metrics if world_name else ()
    split = next(iter(evals.values()))["split"] if evals else "test"
    plots = [p for p in (plot_accuracy(run, evals) if any("accuracy" in ev["greedy"] for ev in evals.values()) else None,
                         plot_horizon(run, evals, baselines.get(split, {})), plot_mle_curves(run), plot_rl_curves(run)) if p]
    md = [f"# rlvr-world report: {run.name}", ""]
    if results:
        md += [f"- command: `{results.get('command')}`", f"- hardware: {results.get('hardware')}",
               f"- seed: {results.get('seed')}, RLVR reward: `{results.get('reward')}`",
               f"- training seconds per stage: {results.get('train_seconds')}", ""]
    if evals:
        first = next(iter(evals.values()))
        keys = keys or tuple(k for k, v in first["greedy"].items() if isinstance(v, float))[:8]
        sampled = first.get("sampled_decoding", "temperature 1")  # evaluations written before the key existed
        md += [f"## Held-out results ({first['n']} examples, split `{split}`)", "", "Greedy decoding:", ""]
        md += _table(evals, "greedy", keys) + ["", f"Sampled decoding ({sampled}):", ""] + _table(evals, "sampled", keys) + [""]
        if baselines.get(split):
            md += ["Model-free baselines:", ""]
            md += _table({k: {"greedy": v} for k, v in baselines[split].items()}, "greedy", keys) + [""]
        for other in next(iter(evals.values())).get("other_splits", {}):
            md += [f"## Split `{other}` (greedy)", ""]
            md += _table({s: ev["other_splits"][other] for s, ev in evals.items()}, "greedy", keys) + [""]
            if baselines.get(other):
                md += _table({k: {"greedy": v} for k, v in baselines[other].items()}, "greedy", keys) + [""]
    md += paired_section(results.get("state_prediction_paired", {}))
    md += agent_section(run, results.get("agent", {}))
    for p in plots + frame_samples(run, evals):
        md += [f"![{p.stem}]({p.name})", ""]
    if "rlvr" in evals and evals["rlvr"].get("samples") and not (run / "eval" / "rlvr_samples.npz").exists():
        md += ["## Sample predictions of the RLVR model (greedy)", ""]
        for s in evals["rlvr"]["samples"][:5]:
            md += ["```", s["prompt"], "--- target:", s["target"], "--- predicted:", s["prediction"], "```", ""]
    out = run / "report.md"
    out.write_text("\n".join(md))
    return out
