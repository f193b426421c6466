"""MLE training throughput and model FLOPs utilisation (MFU), against this machine's matmul peak.

In one process: (1) the fp32 matmul peak: square `torch.mm` at each `--peak-sizes` n, median
over `--peak-repeats` calls after warm-up, FLOP = 2 n^3, measured before and after the training
steps (the machine may be shared); the best size and time is the peak. (2) Real MLE
steps done exactly as `rlvr_world.mle.train_mle` does them: the same length-bucketed batch of
step s and the same update (`mle.mle_batch`, `mle.mle_step`), at the schedule's learning
rate, on the run's real TextWorld training examples with a freshly initialised `--preset` model.

    FLOPs of a sequence of length T = T x (6 N + 12 x layers x hidden x T)
    N = weights of every nn.Linear (attention q/k/v/o, MLP gate/up/down, and the LM head,
        which is tied to the embedding and counted once); the embedding lookup and norms are
        not counted
    tokens/s       = real (non-padding) tokens of the timed steps / their total wall time
    achieved FLOP/s = FLOPs of the timed batches' real sequences / the same wall time
                   (= mean FLOPs per real token x tokens/s)
    MFU            = achieved FLOP/s / peak FLOP/s
    padding        = padded positions / all positions of the timed batches

The step time is the whole of train_mle's step (batch drawing and collate included), without
its logging, validation and checkpoints.

About a minute at the defaults on a 2-core CPU machine (--quick: ~15 s).

    python benchmarks/bench_mle.py --run-dir runs/textworld
    python benchmarks/bench_mle.py --run-dir runs/textworld --quick
    python benchmarks/bench_mle.py --run-dir runs/textworld --profile 3    # top ops by self CPU time
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import rlvr_world  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before anything imports torch)
import torch

from common import command_line, describe, machine, markdown_table, median, peak_rss_mb, run_config, set_threads, today, write_json
from rlvr_world import pipeline
from rlvr_world.mle import mle_batch, mle_step
from rlvr_world.training import NonFiniteGuard, lr_factor, make_optimizer, set_lr, set_seed

COLUMNS = [
    ("measurement", "measurement", ""),
    ("ms", "ms (median)", ".1f"),
    ("gflops", "GFLOP/s", ".1f"),
    ("of_peak", "of peak", ".3f"),
    ("tokens_per_s", "real tokens/s", ".0f"),
    ("padding", "padding", ".3f"),
]
PHASES = ("data", "forward", "backward", "optimizer")
FORMULA = "FLOPs(seq of length T) = T x (6 N + 12 x layers x hidden x T)"


# ---------------------------------------------------------------- matmul peak

def matmul_peak(sizes: list[int], repeats: int, warmup: int, when: str) -> list[dict]:
    """One row per size: median seconds of an n x n fp32 matmul and its FLOP/s (2 n^3 FLOP)."""
    rows = []
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)
        times = []
        for r in range(warmup + repeats):
            t = time.perf_counter()
            torch.mm(a, b, out=out)
            if r >= warmup:
                times.append(time.perf_counter() - t)
        s = median(times)
        rows.append({"measurement": f"fp32 matmul n={n} ({when})", "n": n, "when": when, "ms": 1e3 * s,
                     "flops": 2 * n ** 3 / s, "times_s": times})
        print(f"  matmul {n} ({when}): {1e3 * s:.1f} ms, {2 * n ** 3 / s / 1e9:.1f} GFLOP/s", flush=True)
    return rows


# ---------------------------------------------------------------- FLOP count

def linear_weights(model: torch.nn.Module) -> int:
    """N: weights taking part in matmuls, i.e. every nn.Linear (the tied LM head counted once)."""
    seen, n = set(), 0
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            n += m.weight.numel()
    return n


def batch_flops(lengths: list[int], n_linear: int, layers: int, hidden: int) -> float:
    """Training FLOPs (forward + backward) of the real tokens of a batch."""
    return float(sum(t * (6 * n_linear + 12 * layers * hidden * t) for t in lengths))


# ---------------------------------------------------------------- the MLE step, as train_mle does it

class MLESteps:
    """train_mle's steps: the same batches (`mle_batch`) and the same update (`mle_step`)."""

    def __init__(self, model, train, mle_cfg, pad_id: int, seed: int):
        self.model, self.train, self.cfg, self.pad_id, self.seed = model, train, mle_cfg, pad_id, seed
        self.by_length = sorted(range(len(train)), key=lambda i: len(train[i].prompt_ids) + len(train[i].target_ids))
        self.optimizer = make_optimizer(model, mle_cfg.lr, mle_cfg.weight_decay)
        self.guard = NonFiniteGuard(mle_cfg.max_consecutive_nan)
        self.step, self.elapsed = 0, 0.0
        model.train()

    def run(self) -> dict:
        """One step; returns its phase times, real token count, lengths and padded size."""
        cfg = self.cfg
        t0 = time.perf_counter()
        batch = mle_batch(self.train, self.by_length, cfg.batch_size, self.seed, self.step, self.pad_id)
        lr = cfg.lr * lr_factor(self.step, self.elapsed, steps=cfg.steps, max_seconds=cfg.max_seconds,
                                warmup_steps=cfg.warmup_steps, min_ratio=cfg.min_lr_ratio)
        set_lr(self.optimizer, lr)
        t1 = time.perf_counter()
        phases: dict = {}
        loss, _, _ = mle_step(self.model, self.optimizer, self.guard, batch, cfg.grad_clip, timings=phases)
        t2 = time.perf_counter()
        self.step += 1
        self.elapsed += t2 - t0
        mask = batch["attention_mask"]
        return {
            "step_s": t2 - t0, "data_s": t1 - t0, **phases,
            "loss": float(loss.detach()), "lengths": mask.sum(1).tolist(), "positions": mask.numel(),
        }


def profile_steps(stepper: MLESteps, steps: int, n_linear: int, top: int = 15) -> tuple[dict, list[dict]]:
    """Top ops by self CPU time over `steps` more steps (torch.profiler), printed and returned.

    Also splits the step into matmul time and the rest: MFU = matmul share of the step x the
    FLOP/s the linear layers' matmuls reach (6 N per position, padding included, as computed).
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        done = [stepper.run() for _ in range(steps)]
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=top))
    wall = sum(s["step_s"] for s in done)
    mm_s = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm", "aten::bmm")) / 1e6
    positions = sum(s["positions"] for s in done)
    figures = {"profile_matmul_share_of_step": mm_s / wall, "profile_matmul_flops": 6 * n_linear * positions / mm_s}
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    ops = [{"op": e.key, "self_cpu_ms_per_step": e.self_cpu_time_total / 1e3 / steps,
            "share_of_step": e.self_cpu_time_total / 1e6 / wall, "calls_per_step": e.count / steps} for e in ranked]
    print(f"matmul (aten::mm/addmm/bmm) self time: {mm_s / wall:.1%} of the profiled steps' wall time, at "
          f"{figures['profile_matmul_flops'] / 1e9:.1f} GFLOP/s for the linear layers' 6 N FLOPs per position", flush=True)
    return figures, ops


# ---------------------------------------------------------------- summary

def summarize(steps: list[dict], n_linear: int, layers: int, hidden: int, peak: float) -> tuple[dict, list[dict]]:
    """(figures, table rows) of the timed steps."""
    wall = sum(s["step_s"] for s in steps)
    lengths = [t for s in steps for t in s["lengths"]]
    tokens = sum(lengths)
    positions = sum(s["positions"] for s in steps)
    flops = sum(batch_flops(s["lengths"], n_linear, layers, hidden) for s in steps)
    # the same formula over every position, padding included: what the hardware actually computed
    width = [s["positions"] // len(s["lengths"]) for s in steps]
    padded_flops = sum(batch_flops([w] * len(s["lengths"]), n_linear, layers, hidden) for s, w in zip(steps, width))
    achieved = flops / wall
    figures = {
        "mfu": achieved / peak, "achieved_flops": achieved, "peak_flops": peak,
        "tokens_per_s": tokens / wall, "flops_per_token": flops / tokens,
        "padding_fraction": 1 - tokens / positions,
        "mfu_including_padding": padded_flops / wall / peak,
        "step_s_median": median([s["step_s"] for s in steps]),
        "real_tokens_per_step": tokens / len(steps), "linear_weights": n_linear,
        **{f"time_{p}_s_median": median([s[f"{p}_s"] for s in steps]) for p in PHASES},
    }
    rows = [{"measurement": "MLE step (whole)", "ms": 1e3 * figures["step_s_median"], "gflops": achieved / 1e9,
             "of_peak": figures["mfu"], "tokens_per_s": figures["tokens_per_s"], "padding": figures["padding_fraction"]}]
    # forward is ~1/3 of the FLOPs and backward ~2/3: the split shows where efficiency is lost
    shares = {"forward": 1 / 3, "backward": 2 / 3}
    for p in PHASES:
        t = sum(s[f"{p}_s"] for s in steps)
        gf = shares[p] * flops / t / 1e9 if p in shares else None
        rows.append({"measurement": f"  {p}" + (f" ({shares[p]:.2g} of FLOPs)" if p in shares else ""),
                     "ms": 1e3 * median([s[f"{p}_s"] for s in steps]), "gflops": gf,
                     "of_peak": gf * 1e9 / peak if gf else None})
    return figures, rows



# ---------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, default=Path("runs/textworld"),
                   help="run with data/train.jsonl and tokenizer/ (default: runs/textworld)")
    p.add_argument("--config", default=None,
                   help="YAML file or preset for the mle and model settings (default: RUN/config.yaml if it "
                        "exists, else the textworld preset); run_dir is always --run-dir")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted config overrides, e.g. mle.batch_size=64 model.preset=base")
    p.add_argument("--preset", default=None, help="model size preset (default: the config's model.preset, `small`)")
    p.add_argument("--steps", type=int, default=20, help="timed MLE steps (default: 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed MLE steps first (default: 3)")
    p.add_argument("--peak-sizes", default="1024,2048",
                   help="comma-separated n of the n x n matmuls for the peak, each timed before and after the MLE steps; "
                        "the best is the peak "
                        "(default: 1024,2048; add 4096 for a ~10 s longer run)")
    p.add_argument("--peak-repeats", type=int, default=5, help="timed matmuls per size (default: 5)")
    p.add_argument("--peak-warmup", type=int, default=2, help="untimed matmuls per size first (default: 2)")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS",
                   help="after timing, profile this many more steps with torch.profiler and print the top ops "
                        "by self CPU time (default: 0 = no profile)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 3 timed steps after 1 warm-up, peak from 512,1024 with 2 repeats")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads for both the peak and training (default: 0 = torch's default; "
                        "the config's `threads` is ignored)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file (results protocol)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.peak_sizes, args.peak_repeats, args.peak_warmup = 3, 1, "512,1024", 2, 1
    return p, args


def main(argv=None) -> int:
    p, args = parse_args(argv)
    set_threads(args.threads)
    config, cfg = run_config(p, args.run_dir, args.config, args.overrides, need_tokenizer=True)

    from rlvr_world.models.lm import build_model, count_parameters

    info = machine()
    print(f"# MLE throughput and MFU\n\n{today()}\n`{command_line()}`\n\nmachine: {describe(info)}", flush=True)
    sizes = [int(n) for n in args.peak_sizes.split(",") if n]
    print("matmul peak (fp32):", flush=True)
    peak_rows = matmul_peak(sizes, args.peak_repeats, args.peak_warmup, "before")

    world = pipeline.world_of(cfg)
    tokenizer = pipeline.tokenizer_for(cfg, world)
    train = pipeline.examples(cfg, world, tokenizer, "train")
    preset = args.preset or cfg.model.preset
    set_seed(cfg.seed)
    model = build_model(preset, tokenizer, cfg.model.max_positions, seed=cfg.seed)
    mc = model.config
    n_linear = linear_weights(model)
    settings = {
        "model": f"fresh `{preset}` Llama", "parameters": count_parameters(model), "linear_weights_N": n_linear,
        "layers": mc.num_hidden_layers, "hidden": mc.hidden_size, "vocab": mc.vocab_size,
        "config": config, "overrides": list(args.overrides), "train_examples": len(train),
        "batch_size": cfg.mle.batch_size, "lr": cfg.mle.lr, "steps": args.steps, "warmup": args.warmup,
        "peak_sizes": args.peak_sizes, "peak_repeats": args.peak_repeats, "flops_formula": FORMULA,
    }
    print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), flush=True)

    stepper = MLESteps(model, train, cfg.mle, tokenizer.pad_token_id, cfg.seed)
    steps = []
    for i in range(args.warmup + args.steps):
        s = stepper.run()
        tag = "warm-up" if i < args.warmup else "timed"
        print(f"  step {i} ({tag}): {s['step_s']:.3f} s, {sum(s['lengths'])} real tokens of {s['positions']}, "
              + ", ".join(f"{ph} {s[ph + '_s']:.3f}" for ph in PHASES) + f", loss {s['loss']:.3f}", flush=True)
        if i >= args.warmup:
            steps.append(s)
    # measured again after training: on a shared machine the best of both is the fairer peak
    peak_rows += matmul_peak(sizes, args.peak_repeats, args.peak_warmup, "after")
    peak = max(r["flops"] for r in peak_rows)
    figures, mle_rows = summarize(steps, n_linear, mc.num_hidden_layers, mc.hidden_size, peak)
    profile = None
    if args.profile:
        profile_figures, profile = profile_steps(stepper, args.profile, n_linear)
        figures.update(profile_figures)
    figures["peak_rss_mib"] = peak_rss_mb()
    figures.update({f"matmul_flops_{r['n']}_{r['when']}": r["flops"] for r in peak_rows})

    for r in peak_rows:
        r.update(gflops=r["flops"] / 1e9, of_peak=r["flops"] / peak)
    rows = peak_rows + mle_rows
    notes = [
        f"FLOPs: {FORMULA}; N = {n_linear:,} weights of every nn.Linear (attention, MLP, and the LM head, which is "
        "tied to the embedding and counted once); the embedding lookup and the norms are not counted. The attention "
        "term counts the full T x T score and value products (no causal halving), with T each sequence's real length.",
        "MFU counts real tokens only. `mfu_including_padding` applies the same formula to every position of the "
        "padded batches: what the machine actually computed.",
        "Forward and backward rows attribute 1/3 and 2/3 of the FLOPs to each phase; data = batch drawing + collate, "
        "optimizer = grad-norm clipping + AdamW step + zero_grad.",
        f"peak RSS {figures['peak_rss_mib']:.0f} MiB (whole process, example loading included).",
        "CPU wall-clock on a possibly shared machine: the load average at the start is in the machine line.",
    ]
    if profile is not None:
        rest = [o for o in profile if o["op"] not in ("aten::mm", "aten::addmm", "aten::bmm")]
        top = ", ".join(f"{o['op']} {o['share_of_step']:.1%}" for o in rest[:5])
        notes.append(
            f"Where the time goes (`--profile {args.profile}`, torch.profiler): matmuls (aten::mm/addmm/bmm) take "
            f"{figures['profile_matmul_share_of_step']:.0%} of the step at "
            f"{figures['profile_matmul_flops'] / 1e9:.0f} GFLOP/s for the linear layers' FLOPs "
            f"({figures['profile_matmul_flops'] / peak:.0%} of the peak); the "
            f"next largest ops are {top}. What limits the next step is the rest: element-wise work (RMSNorm, RoPE, "
            "SwiGLU, the loss's log-softmax) and CPU attention, run unfused between the matmuls.")
    table = markdown_table(rows, COLUMNS)
    print("\n" + table)
    print(f"\npeak {peak / 1e9:.1f} GFLOP/s, achieved {figures['achieved_flops'] / 1e9:.1f} GFLOP/s, "
          f"MFU {figures['mfu']:.3f} (with padding {figures['mfu_including_padding']:.3f}), "
          f"{figures['tokens_per_s']:.0f} real tokens/s, padding {figures['padding_fraction']:.3f}, "
          f"{figures['flops_per_token'] / 1e6:.1f} MFLOP per real token, peak RSS {figures['peak_rss_mib']:.0f} MiB")
    print(f"{FORMULA}; N = {n_linear:,} (all nn.Linear weights incl. the tied LM head; embeddings not counted)")
    if args.json:
        result = {
            "benchmark": "mle", "title": "MLE throughput and MFU",
            "description": (
                "fp32 matmul peak of the machine (square torch.mm, median of repeats after warm-up, FLOP = 2n^3, "
                "measured before and after the MLE steps, the best taken as the peak), then MLE training steps done exactly as `mle.train_mle` does them "
                "(same length-bucketed batches and collate, forward with labels, backward, grad clipping, AdamW) "
                "on real TextWorld training examples with a fresh model, in the same process. ms = median wall "
                "time; GFLOP/s = matmul FLOP or model FLOPs per second; of peak = GFLOP/s / peak (for the whole "
                "step: the MFU); real tokens/s counts non-padding tokens; padding = padded share of the batches' "
                f"positions. {FORMULA}, N = weights of all linear layers including the tied LM head."),
            "command": command_line(), "date": today(), "machine": info, "settings": settings,
            "columns": COLUMNS, "rows": rows, "figures": figures, "notes": notes,
            "steps": [{k: v for k, v in s.items() if k != "lengths"} | {"real_tokens": sum(s["lengths"])}
                      for s in steps],
        }
        if profile:
            result["profile"] = profile
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
