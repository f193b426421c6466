"""How the GRPO step time grows with group size, response length, prompt length and model size.

`GRPOTrainer.train_step` (built as bench_grpo.py builds it), swept one factor at a time around
a base point (default: 8 prompts x G=8, response length L=16, prompts of 64 tokens, `small`).
The work of a step is made independent of sampling luck:

  * response length: every example's plan is `(Generate(L, stop_at_eos=False),)`, so each of
    the prompts x G rows generates exactly L tokens;
  * prompt length: every prompt has exactly P tokens, built from a real TextWorld training
    prompt: BOS, then its fact tokens cycled (repeated, or cut) to fill, then its real command
    tail (`> command diff:`). Real prompts run 23-160 tokens, so P = 256 needs the repetition;
  * model: a freshly initialised preset model per point (with the run's tokenizer), so the
    reward is always 0 and every group ties: `rlvr.drop_zero_variance` is forced off so the
    reference and update phases always run. The other rlvr settings come from the config
    (kl_coef > 0 keeps the reference pass).

Each point: `--warmup` untimed steps, then the median of `--steps` timed ones, for the whole
step and for each of the trainer's phases (rollout = sampling, reward = decode + score,
reference = the frozen model's log-probs, update = policy forward, backward, AdamW).
The base point is measured once and shared by every factor's sweep. `slope_*` figures are
least-squares slopes of log(step time) on log(factor) (`slope_parameters`: on log parameter
count across presets): 1 = linear growth, 0 = flat.

The default sweep (12 distinct points, 4 steps each) takes ~3-4 minutes on a 2-core CPU
machine, about a third of it the `base` model; --quick (7 points, 2 steps each) under a minute.

    python benchmarks/bench_scaling.py --run-dir runs/textworld
    python benchmarks/bench_scaling.py --run-dir runs/textworld --quick --plot /tmp/scaling.png
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
from pathlib import Path

import rlvr_world  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before anything imports torch)

from bench_grpo import PHASES, timed_step
from common import command_line, describe, machine, markdown_table, median, peak_rss_mb, run_config, set_threads, today, write_json
from rlvr_world import pipeline
from rlvr_world.sequence import Generate

FACTORS = {  # factor -> axis label of its panel
    "group_size": "group size G",
    "response_length": "response length L (tokens)",
    "prompt_length": "prompt length P (tokens)",
    "preset": "model parameters",
}
COLUMNS = [
    ("factor", "varied", ""),
    ("value", "value", ""),
    ("batch", "prompts x G", ""),
    ("response_length", "L", "d"),
    ("prompt_length", "P", "d"),
    ("preset", "model", ""),
    ("parameters", "params", ",d"),
    ("step_s", "step s", ".3f"),
    ("time_rollout_s", "rollout s", ".3f"),
    ("time_reward_s", "reward s", ".3f"),
    ("time_reference_s", "reference s", ".3f"),
    ("time_update_s", "update s", ".3f"),
    ("tokens_per_s", "gen tokens/s", ".0f"),
]
QUICK = {"group_size": "2,8", "response_length": "8,32", "prompt_length": "32,128", "preset": "tiny,small",
         "steps": 1, "warmup": 1}


# ---------------------------------------------------------------- controlled prompts

def fixed_length_prompt(prompt_ids: list[int], length: int, sep_id: int | None) -> list[int]:
    """BOS + the prompt's fact tokens cycled to fill + its command tail (from the last `sep_id`), `length` tokens."""
    bos, body = prompt_ids[:1], prompt_ids[1:]
    cut = len(body) - body[::-1].index(sep_id) - 1 if sep_id is not None and sep_id in body else len(body)
    facts, tail = body[:cut] or body, body[cut:]
    room = length - 1 - len(tail)
    if room < 0:  # shorter than the command itself: keep the end of the tail
        return bos + tail[len(tail) - (length - 1):]
    filled = (facts * (room // len(facts) + 1))[:room]
    return bos + filled + tail


def controlled_examples(train, tokenizer, prompt_length: int, response_length: int, n: int) -> list:
    """The first `n` training examples with prompts of exactly `prompt_length` tokens and a fixed-length plan."""
    sep = tokenizer.encode(">", add_special_tokens=False)
    sep_id = sep[0] if len(sep) == 1 else None
    plan = (Generate(response_length, stop_at_eos=False),)
    return [dataclasses.replace(ex, prompt_ids=fixed_length_prompt(ex.prompt_ids, prompt_length, sep_id), plan=plan)
            for ex in train[:n]]


# ---------------------------------------------------------------- the sweep

def sweep_points(values: dict[str, list], base: dict) -> list[tuple[str, dict]]:
    """(factor, point) pairs: each factor's values with the others at the base point."""
    return [(factor, {**base, factor: v}) for factor, vs in values.items() for v in vs]


def measure(point: dict, cfg, world, tokenizer, train, prompts: int, steps: int, warmup: int) -> dict:
    """Median step and phase times of `steps` GRPO steps at one point, after `warmup` steps."""
    from rlvr_world.models.lm import build_model, count_parameters
    from rlvr_world.rl.trainer import GRPOTrainer

    exs = controlled_examples(train, tokenizer, point["prompt_length"], point["response_length"], n=max(256, prompts))
    rl = dataclasses.replace(cfg.rlvr, prompts_per_step=prompts, group_size=point["group_size"], drop_zero_variance=False)
    need = point["prompt_length"] + point["response_length"]
    model = build_model(point["preset"], tokenizer, max(cfg.model.max_positions, need), seed=cfg.seed)
    timed = []
    with tempfile.TemporaryDirectory(prefix="bench_scaling_") as stage_dir:
        trainer = GRPOTrainer(model, tokenizer, world, exs, [], rl, Path(stage_dir), seed=cfg.seed, progress=False)
        for i in range(warmup + steps):
            s = timed_step(trainer)
            if i >= warmup:
                timed.append(s)
        trainer.log.close()
    rows = prompts * point["group_size"]
    step_s = median([s["step_s"] for s in timed])
    return {
        "batch": f"{prompts} x {point['group_size']}", **point, "parameters": count_parameters(model),
        "step_s": step_s, **{k: median([s[k] for s in timed]) for k in PHASES},
        "samples_per_s": rows / step_s, "tokens_per_s": rows * point["response_length"] / step_s,
        "skipped_steps": sum(s["skipped"] for s in timed), "steps_s_all": [s["step_s"] for s in timed],
    }


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y on log x (the growth exponent)."""
    if len(xs) < 2:
        return None
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    var = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / var if var else None


def x_of(row: dict) -> float:
    """The numeric x of a row on its factor's axis (parameters for the model factor)."""
    return float(row["parameters"] if row["factor"] == "preset" else row["value"])


def compute_figures(rows: list[dict], base_row: dict) -> dict:
    figures = {"step_s_base": base_row["step_s"], "parameters_base": base_row["parameters"]}
    for factor in FACTORS:
        sub = [r for r in rows if r["factor"] == factor]
        s = slope([x_of(r) for r in sub], [r["step_s"] for r in sub])
        if s is not None:
            figures["slope_parameters" if factor == "preset" else f"slope_{factor}"] = s
        for r in sub:
            figures[f"step_s_{factor}_{r['value']}"] = r["step_s"]
    return figures


# ---------------------------------------------------------------- plot

def plot(rows: list[dict], path: Path, title: str) -> None:
    """One panel per factor: step time and phase times against the factor, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(2, 2, figsize=(9, 7.5))
    for ax, (factor, label) in zip(axes.flat, FACTORS.items()):
        sub = sorted((r for r in rows if r["factor"] == factor), key=x_of)
        if not sub:
            ax.set_visible(False)
            continue
        xs = [x_of(r) for r in sub]
        ax.plot(xs, [r["step_s"] for r in sub], "o-", color="black", lw=2, label="step")
        for key, style in (("time_rollout_s", "s--"), ("time_update_s", "^--"), ("time_reference_s", "v:")):
            ax.plot(xs, [max(r[key], 1e-4) for r in sub], style, label=key[5:-2])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{r['value']}\n{r['parameters'] / 1e6:.1f}M" if factor == "preset" else str(r["value"])
                            for r in sub])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("seconds per GRPO step")
        ax.grid(True, which="major", alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def repo_relative(path: Path) -> str:
    """The protocol's "plot": a path relative to the repository root when the file is inside it."""
    root, path = Path(__file__).resolve().parent.parent, Path(path).resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


# ---------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, default=Path("runs/textworld"),
                   help="run with data/train.jsonl and tokenizer/ (default: runs/textworld)")
    p.add_argument("--config", default=None,
                   help="YAML file or preset for the rlvr settings (default: RUN/config.yaml if it exists, "
                        "else the textworld preset); run_dir is always --run-dir")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted config overrides, e.g. rlvr.kl_coef=0 rlvr.ppo_epochs=2 (prompts_per_step, "
                        "group_size and drop_zero_variance are set by this script)")
    p.add_argument("--prompts", type=int, default=8, help="prompts per step at every point (default: 8)")
    p.add_argument("--group-size", type=int, default=8, help="base point's G (default: 8)")
    p.add_argument("--response-length", type=int, default=16, help="base point's L, tokens generated per row (default: 16)")
    p.add_argument("--prompt-length", type=int, default=64, help="base point's prompt length P in tokens (default: 64)")
    p.add_argument("--preset", default="small", help="base point's model preset (default: small)")
    p.add_argument("--group-sizes", default="2,4,8,16", help="G values swept (default: 2,4,8,16)")
    p.add_argument("--response-lengths", default="8,16,32,64", help="L values swept (default: 8,16,32,64)")
    p.add_argument("--prompt-lengths", default="32,64,128,256", help="P values swept (default: 32,64,128,256)")
    p.add_argument("--presets", default="tiny,small,base", help="model presets swept (default: tiny,small,base)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per point (default: 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per point first (default: 1)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run (<1 min): two values per factor (G 2,8; L 8,32; P 32,128; tiny,small), "
                        "1 timed step after 1 warm-up; the sweep options above are ignored")
    p.add_argument("--plot", type=Path, default=Path(__file__).parent / "scaling.png",
                   help="PNG written with one panel per factor (default: benchmarks/scaling.png)")
    p.add_argument("--no-plot", action="store_true", help="write no PNG")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads (default: 0 = torch's default; the config's `threads` is ignored)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file (results protocol)")
    args = p.parse_args(argv)
    if args.quick:
        args.group_sizes, args.response_lengths = QUICK["group_size"], QUICK["response_length"]
        args.prompt_lengths, args.presets = QUICK["prompt_length"], QUICK["preset"]
        args.steps, args.warmup = QUICK["steps"], QUICK["warmup"]
    ints = lambda s: [int(v) for v in s.split(",") if v]  # noqa: E731
    values = {"group_size": ints(args.group_sizes), "response_length": ints(args.response_lengths),
              "prompt_length": ints(args.prompt_lengths), "preset": [v for v in args.presets.split(",") if v]}
    base = {"group_size": args.group_size, "response_length": args.response_length,
            "prompt_length": args.prompt_length, "preset": args.preset}
    return p, args, values, base


def main(argv=None) -> int:
    p, args, values, base = parse_args(argv)
    set_threads(args.threads)
    config, cfg = run_config(p, args.run_dir, args.config, args.overrides, need_tokenizer=True)
    world = pipeline.world_of(cfg)
    tokenizer = pipeline.tokenizer_for(cfg, world)
    train = pipeline.examples(cfg, world, tokenizer, "train")

    info = machine()
    points = sweep_points(values, base)
    settings = {
        "prompts_per_step": args.prompts, "base": base, "sweep": values, "steps": args.steps, "warmup": args.warmup,
        "quick": args.quick, "config": config, "overrides": list(args.overrides), "kl_coef": cfg.rlvr.kl_coef,
        "ppo_epochs": cfg.rlvr.ppo_epochs, "minibatches": cfg.rlvr.minibatches, "drop_zero_variance": False,
        "prompts": "real TextWorld training prompts, facts cycled or cut to exactly P tokens, command tail kept",
        "responses": "Generate(L, stop_at_eos=False): exactly L tokens per row",
        "model": "fresh preset Llama per point, run tokenizer",
    }
    print(f"# GRPO step scaling\n\n{today()}\n`{command_line()}`\n\nmachine: {describe(info)}")
    print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), flush=True)

    cache: dict[tuple, dict] = {}
    rows = []
    for i, (factor, point) in enumerate(points):
        key = tuple(sorted(point.items()))
        reused = key in cache
        if not reused:
            cache[key] = measure(point, cfg, world, tokenizer, train, args.prompts, args.steps, args.warmup)
        r = {**cache[key], "factor": factor, "value": point[factor], "is_base": point == base}
        rows.append(r)
        print(f"  [{i + 1}/{len(points)}] {factor}={point[factor]}: step {r['step_s']:.3f} s ("
              + ", ".join(f"{k[5:-2]} {r[k]:.3f}" for k in PHASES) + ")"
              + (" (already measured)" if reused else ""), flush=True)

    base_key = tuple(sorted(base.items()))
    base_row = cache.get(base_key) or measure(base, cfg, world, tokenizer, train, args.prompts, args.steps, args.warmup)
    figures = {**compute_figures(rows, base_row), "peak_rss_mb": peak_rss_mb()}
    print("\n" + markdown_table(rows, COLUMNS))
    print("\n" + ", ".join(f"{k} {v:.2f}" for k, v in figures.items() if k.startswith("slope_"))
          + " (slope of log step time on log factor; model: on log parameters)")

    plot_rel = None
    if not args.no_plot:
        plot(rows, args.plot, f"GRPO step time, {args.prompts} prompts; base G={base['group_size']}, "
                              f"L={base['response_length']}, P={base['prompt_length']}, {base['preset']}"
                              + (" (--quick)" if args.quick else "") + f"; {today()[:10]}, {info['cpu']}")
        print(f"wrote {args.plot}")
        plot_rel = repo_relative(args.plot)
    if args.json:
        result = {
            "benchmark": "scaling", "title": "GRPO step scaling",
            "description": (
                f"`GRPOTrainer.train_step` with {args.prompts} prompts per step, one factor varied at a time around "
                f"the base point (G={base['group_size']}, L={base['response_length']}, P={base['prompt_length']}, "
                f"`{base['preset']}`). Every row generates exactly L tokens (`Generate(L, stop_at_eos=False)`); every "
                "prompt has exactly P tokens (a real TextWorld training prompt's facts cycled or cut to fit, its "
                "command kept); each point uses a freshly initialised model, with drop_zero_variance off so every "
                "step runs the reference and update phases. step s and the phase columns (rollout = sampling, "
                "reward = decode + score, reference = frozen model log-probs, update = forward, backward, AdamW) "
                "are medians over the timed steps after warm-up; gen tokens/s = prompts x G x L / step s."),
            "command": command_line(), "date": today(), "machine": info, "settings": settings,
            "columns": COLUMNS, "rows": rows, "figures": figures,
            "notes": ["peak_rss_mb is the whole benchmark process's peak resident memory (ru_maxrss: imports, data and every configuration measured), an upper bound for any one of them.", 
                "slope_<factor> = least-squares slope of log(step s) on log(factor); slope_parameters: on log parameters "
                "across presets; "
                "1 means the step time grows in proportion, 0 that it does not grow.",
                "The base point is measured once and appears in every factor's sweep.",
                "CPU wall-clock on a possibly shared machine: the load average at the start is in the machine line."
                + (" --quick: one timed step per point, so every number is a single sample." if args.quick else ""),
            ],
        }
        if plot_rel:
            result["plot"] = plot_rel
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
