"""Frame tokenizers side by side: each variant trained for the same wall-clock budget on a run's
training episodes, then scored on the test episodes as the world model meets them, every
frame 1..horizon steps after the last observed one (the reference a reference tokenizer
decodes against).

    python scripts/compare_frame_tokenizers.py --config metaworld --seconds 300 \
        --json results/frame_tokenizers.json run_dir=runs/metaworld

Variants (--variants, default `plain,reference`): `plain` (world_options.frame_tokenizer.reference
=false) and `reference` (=true), each also trained with L1 plus ST-LPIPS of the decoder's own
reconstruction, weighted by --perceptual-weight (`plain_perceptual`, `reference_perceptual`);
everything else is the config's. Each trains into <run_dir>/frame_tokenizers/<variant>/
through the world's own `train_tokenizer` (a killed run resumes; a finished one is not
retrained). Reported per variant and for copying the reference frame itself: MAE, PSNR, SSIM,
ST-LPIPS, and the MAE on the pixels that change (a channel moves by more than the world's
change_threshold between the reference and the frame).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import rlvr_world  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before torch starts)
import numpy as np
import torch

from rlvr_world import pipeline
from rlvr_world.config import load_config
from rlvr_world.models.frame_tokenizer import frames_to_tensor, reference_pairs
from rlvr_world.rewards.frames import per_frame
from rlvr_world.training import set_seed, set_threads
from rlvr_world.worlds.metaworld.collect import load_episodes

# variant -> world_options.frame_tokenizer.reference (the *_perceptual ones add the ST-LPIPS loss term)
VARIANTS = {"plain": False, "reference": True, "plain_perceptual": False, "reference_perceptual": True}


def scores(pred: torch.Tensor, true: torch.Tensor, ref: torch.Tensor, threshold: float) -> dict:
    """Means over frames of float [N, 3, H, W] predictions against their targets."""
    changed = ((true - ref).abs().amax(1, keepdim=True) > threshold).float()
    return {"mae": float((pred - true).abs().mean()),
            "psnr": float(per_frame("psnr", pred[:, None], true[:, None]).mean()),
            "ssim": float(per_frame("ssim", pred[:, None], true[:, None]).mean()),
            "lpips": float(per_frame("lpips", pred[:, None], true[:, None]).mean()),
            "mae_changed": float(((pred - true).abs() * changed).sum() / (3 * changed.sum()))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="metaworld", help="preset or YAML file of the video world (default: metaworld)")
    p.add_argument("--seconds", type=float, default=300, help="training budget of each variant (default: 300)")
    p.add_argument("--variants", default="plain,reference", help="comma-separated, of: " + ", ".join(VARIANTS))
    p.add_argument("--pairs", type=int, default=1024, help="test (frame, reference) pairs scored, evenly spaced")
    p.add_argument("--perceptual-weight", type=float, default=1.0,
                   help="weight of the ST-LPIPS term of the *_perceptual variants (default: 1)")
    p.add_argument("--json", type=Path, default=None, help="also write the table to this JSON file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. run_dir=runs/metaworld")
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    if unknown := set(variants) - set(VARIANTS):
        p.error(f"unknown variants {sorted(unknown)} (known: {', '.join(VARIANTS)})")

    base = load_config(args.config, args.overrides)
    set_threads(base.threads)
    test = load_episodes(base.data_path, "test")
    frames = np.concatenate([ep["frames"] for ep in test])
    horizon = pipeline.world_of(base).horizon
    pairs = reference_pairs([len(ep["frames"]) for ep in test], horizon)
    pairs = pairs[:: max(1, len(pairs) // args.pairs)][: args.pairs]
    true, ref = frames_to_tensor(frames[pairs[:, 0]]), frames_to_tensor(frames[pairs[:, 1]])
    threshold = pipeline.world_of(base).change_threshold
    rows = {"copy_reference": scores(ref, true, ref, threshold)}
    for name in variants:
        perceptual = args.perceptual_weight if name.endswith("_perceptual") else 0.0
        cfg = load_config(args.config, [*args.overrides, f"world_options.frame_tokenizer.reference={VARIANTS[name]}",
                                        f"world_options.frame_tokenizer_train.max_seconds={args.seconds}",
                                        f"world_options.frame_tokenizer_train.perceptual_weight={perceptual}"])
        out = Path(cfg.run_dir) / "frame_tokenizers" / name
        world = pipeline.world_of(cfg).attach(out)  # its tokenizer lives in <out>/tokenizer/
        set_seed(cfg.seed)
        start = time.perf_counter()
        world.train_tokenizer(world.load_transitions(cfg.data_path, "train"), out / "tokenizer")
        ft = world.frame_tokenizer
        pred = ft.decode(ft.encode(frames[pairs[:, 0]]), reference=frames[pairs[:, 1]])
        log = [json.loads(line) for line in (out / "tokenizer" / "frame_tokenizer" / "metrics.jsonl").open()]
        train_rows = [r for r in log if r["split"] == "train"]
        rows[name] = {**scores(pred, true, ref, threshold), "training_steps": train_rows[-1]["step"] if train_rows else 0,
                      "training_seconds": train_rows[-1]["elapsed_s"] if train_rows else 0.0,
                      "wall_seconds": time.perf_counter() - start}

    print(f"{len(pairs)} test pairs (frames 1-{horizon} steps after their reference), {args.seconds:g} s of training each")
    print("| variant | MAE | PSNR | SSIM | ST-LPIPS | MAE changed px | steps |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['mae']:.4f} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['lpips']:.4f} | {r['mae_changed']:.4f} | "
              f"{r.get('training_steps', '-')} |")
    if args.json:
        result = {"command": " ".join(["python"] + sys.argv), "hardware": pipeline.hardware(), "seed": base.seed,
                  "data": str(base.data_path), "seconds_per_variant": args.seconds,
                  "perceptual_weight": args.perceptual_weight, "test_pairs": len(pairs),
                  "max_offset": horizon, "rows": rows}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
