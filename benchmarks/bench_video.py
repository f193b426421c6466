"""Video world model speed on a Meta-World run: frame tokenizer, rollout, reward, GRPO step.

Reads a run made by `rlvr-world demo --world metaworld` (or `pretrain`): its frame
tokenizer, its MLE model (RUN/mle/final) and its test episodes. Timed, after one untimed
warm-up call each, as medians over `--repeats`:

    tokenizer encode / decode frames/s   uint8 frames -> codes -> frames, batches of 256
    rollout frames/s                     predicted frames per second of `rollout.sample`
                                         (prompts x G rows, horizon frames each, actions forced)
    reward frames/s                      frames scored per second by the run's reward (-(MAE + ST-LPIPS))
    GRPO step s                          `GRPOTrainer.train_step` with the run's rlvr settings

    python benchmarks/bench_video.py --run-dir runs/metaworld --json benchmarks/results/video.json
    python benchmarks/bench_video.py --run-dir runs/metaworld model.device=cuda    # on a GPU
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import rlvr_world  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before anything imports torch)

from common import command_line, describe, machine, markdown_table, median, peak_rss_mb, set_threads, timed, today, write_json

COLUMNS = [
    ("what", "what", ""),
    ("batch", "batch", ""),
    ("seconds", "seconds (median)", ".3f"),
    ("frames_per_s", "frames/s", ".1f"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/metaworld"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--grpo-steps", type=int, default=2, help="timed GRPO steps (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    set_threads(args.threads)

    import numpy as np
    import torch

    from rlvr_world import pipeline
    from rlvr_world.config import load_config
    from rlvr_world.models.lm import load_model, resolve_device
    from rlvr_world.rewards import WeightedReward
    from rlvr_world.rl.rollout import sample
    from rlvr_world.rl.trainer import GRPOTrainer

    config = args.run_dir / "config.yaml"
    if not config.exists():
        parser.error(f"{config}: no run there; run `rlvr-world demo --world metaworld` (or pretrain) first")
    cfg = load_config(str(config), list(args.overrides) + [f"run_dir={args.run_dir}"])
    world = pipeline.world_of(cfg)
    if not (args.run_dir / "mle" / "final" / "config.json").exists():
        parser.error(f"{args.run_dir}/mle/final: no MLE model; run `rlvr-world pretrain --world metaworld` first")
    model, tokenizer = load_model(args.run_dir / "mle" / "final")
    model = model.to(resolve_device(cfg.model.device)).eval()  # model.device=auto: the GPU when there is one
    test = pipeline.examples(cfg, world, tokenizer, "test")
    frames = np.concatenate([np.asarray(ex.target) for ex in test])[:256]
    # what each frame is drawn against, when the tokenizer uses a reference: its window's last observed frame
    references = np.concatenate([np.repeat(ex.meta["last_frame"][None], world.horizon, 0) for ex in test])[:256]
    ft = world.frame_tokenizer
    rows = []

    def bench(what: str, batch: str, n_frames: int, fn) -> float:
        fn()  # warm-up
        seconds = median([timed(fn)[0] for _ in range(args.repeats)])
        rows.append({"what": what, "batch": batch, "seconds": seconds, "frames_per_s": n_frames / seconds})
        return seconds

    codes = ft.encode(frames)
    bench("frame tokenizer encode", f"{len(frames)} frames", len(frames), lambda: ft.encode(frames))
    bench("frame tokenizer decode", f"{len(frames)} frames", len(frames), lambda: ft.decode(codes, reference=references))

    P, G, T = cfg.rlvr.prompts_per_step, cfg.rlvr.group_size, world.horizon
    prompts = test[:P]
    gen = torch.Generator().manual_seed(0)
    for temperature, name in ((1.0, "rollout, sampled T=1"), (0.0, "rollout, greedy")):
        group = G if temperature else 1
        bench(name, f"{P} prompts x {group}", P * group * T, lambda: sample(
            model, [ex.prompt_ids for ex in prompts], [ex.plan for ex in prompts], eos_id=tokenizer.eos_token_id,
            pad_id=tokenizer.pad_token_id, group_size=group, temperature=temperature, generator=gen))

    reward = WeightedReward.parse(cfg.rlvr.reward or world.default_reward)
    rollout = sample(model, [ex.prompt_ids for ex in prompts], [ex.plan for ex in prompts], eos_id=tokenizer.eos_token_id,
                     pad_id=tokenizer.pad_token_id, group_size=G, temperature=1.0, generator=gen)
    answered = [ex for ex in prompts for _ in range(G)]
    preds = world.decode_batch(rollout.responses(), tokenizer, answered)
    targets = [ex.target for ex in answered]
    bench("decode responses to frames", f"{P * G} responses", P * G * T,
          lambda: world.decode_batch(rollout.responses(), tokenizer, answered))
    bench(f"reward {reward.terms}", f"{P * G} responses", P * G * T, lambda: reward.score(preds, targets))

    train = pipeline.examples(cfg, world, tokenizer, "train")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = GRPOTrainer(model, tokenizer, world, train, [], cfg.rlvr, Path(tmp) / "rlvr", seed=cfg.seed, progress=False)
        trainer.train_step()
        steps = [trainer.train_step() for _ in range(args.grpo_steps)]
    step_s = median([sum(v for k, v in s.items() if k.startswith("time_")) for s in steps])
    phases = {k: median([s[k] for s in steps]) for k in steps[0] if k.startswith("time_")}
    rows.append({"what": "GRPO step", "batch": f"{P} prompts x {G}", "seconds": step_s, "frames_per_s": P * G * T / step_s})

    result = {
        "benchmark": "video",
        "title": "Video world model (Meta-World)",
        "description": ("Frame tokenizer, rollout, reward and GRPO step of the video world on the run's MLE model and "
                        "test episodes; medians after a warm-up call. frames/s counts predicted (or tokenized) 64x64 frames."),
        "command": command_line(),
        "date": today(),
        "machine": machine(),
        "settings": {"run_dir": str(args.run_dir), "horizon": T, "context_frames": world.context_frames,
                     "tokens_per_frame": world.layout.tokens_per_frame, "prompts_per_step": P, "group_size": G,
                     "parameters": sum(p.numel() for p in model.parameters())},
        "columns": [list(c) for c in COLUMNS],
        "rows": rows,
        "figures": {
            "tokenizer_encode_frames_per_s": rows[0]["frames_per_s"],
            "tokenizer_decode_frames_per_s": rows[1]["frames_per_s"],
            "rollout_frames_per_s": rows[2]["frames_per_s"],
            "grpo_step_s": step_s,
            **{f"grpo_{k}": v for k, v in phases.items()},
            "peak_rss_mb": peak_rss_mb(),
        },
        "notes": [f"GRPO phases (s): {', '.join(f'{k[5:-2]} {v:.2f}' for k, v in phases.items())}",
                  "The demo's own peak memory is in results/metaworld.json (peak_rss_mb)."],
    }
    print(describe(result["machine"]))
    print(markdown_table(rows, COLUMNS))
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
