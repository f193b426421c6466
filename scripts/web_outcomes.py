"""What a web world model believes each click would do: the outcome it predicts per candidate.

For the first page of a task's test episodes, every listed element is a candidate click. The
world model samples `--samples` next pages per candidate at T=1, and the script counts which
episode outcome each sample predicts: the `last_reward=` of the new `[cover]` item (the episode
ended, with that reward), ``none`` (the episode goes on) or ``unparsed``. The MPC agent scores
exactly these predictions, so a model that predicts the same outcome for the right and the
wrong button cannot plan. The last column is the true outcome when the recorded episode took
that click.

    python scripts/web_outcomes.py --run-dir runs/miniwob --task click-test-2 --episodes 2
    python scripts/web_outcomes.py --run-dir runs/old --task click-button world_options.repeat_element=false

KEY=VALUE overrides apply to the run's config (e.g. the prompt layout a model was trained with).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

import rlvr_world  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before torch starts)
import torch

from rlvr_world import pipeline
from rlvr_world.config import load_config
from rlvr_world.models.lm import load_model, resolve_device
from rlvr_world.rl.rollout import sample
from rlvr_world.sequence import Generate

_REWARD = re.compile(r"last_reward=(-?\d+(?:\.\d+)?)")


def outcome(diff) -> str:
    """The episode outcome a predicted page difference states."""
    if diff is None:
        return "unparsed"
    for line in diff["new"]:
        m = _REWARD.search(line)
        if m:
            return f"reward {float(m.group(1)):+.2f}"
    return "none"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, default=Path("runs/miniwob"), help="web run with data/ (default: runs/miniwob)")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: RUN/mle/final)")
    p.add_argument("--task", default="click-test-2", help="MiniWoB++ task (default: click-test-2)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="which split (default: test)")
    p.add_argument("--episodes", type=int, default=2, help="first pages of this many episodes (default: 2)")
    p.add_argument("--samples", type=int, default=64, help="next pages sampled per candidate (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--json", type=Path, default=None, help="also write the counts to this JSON file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = p.parse_args(argv)

    config = args.run_dir / "config.yaml"
    if not config.exists():
        sys.exit(f"web_outcomes: {config} not found (run `rlvr-world demo --config miniwob` first)")
    cfg = load_config(str(config), [f"run_dir={args.run_dir}", *args.overrides])
    world = pipeline.world_of(cfg)
    if world.name != "miniwob":
        sys.exit(f"web_outcomes: {args.run_dir} is a {world.name} run, not a miniwob one")
    model, tokenizer = load_model(args.model or args.run_dir / "mle" / "final")
    model = model.to(resolve_device(cfg.model.device)).eval()
    firsts = [t for t in world.load_transitions(cfg.data_path, args.split) if t["task"] == args.task and t["step"] == 0]
    if not firsts:
        sys.exit(f"web_outcomes: no {args.split} episode of task {args.task!r}")
    generator = torch.Generator().manual_seed(args.seed)
    report = []
    for t in firsts[: args.episodes]:
        lines = [line for _, line in t["page"]]
        candidates = [(f"click [{ref}]", line) for ref, line in t["page"] if ref.isdigit()]
        prompts = [world.encode_prompt(world.action_prompt(t["utterance"], lines, a), tokenizer)[-world.max_prompt_tokens:]
                   for a, _ in candidates]
        rollout = sample(model, prompts, [(Generate(world.max_new_tokens),)] * len(prompts), group_size=args.samples,
                         temperature=1.0, generator=generator, eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id)
        responses, cut = rollout.responses(), rollout.truncated.tolist()
        print(f"\n{t['utterance']}  (episode {t['episode']}; it took {t['action']}: reward {t['raw_reward']})")
        rows = []
        for i, (action, item) in enumerate(candidates):
            group = range(i * args.samples, (i + 1) * args.samples)
            counts = Counter("unparsed" if cut[r] else outcome(world.decode(responses[r], tokenizer)) for r in group)
            truth = f"reward {t['raw_reward']:+.2f}" if action == t["action"] and t["done"] else ""
            print(f"  {action:11s} {item[:40]:42s} " + "  ".join(f"{k}: {v}" for k, v in counts.most_common())
                  + (f"   [true: {truth}]" if truth else ""))
            rows.append({"action": action, "item": item, "counts": dict(counts), "true": truth or None})
        report.append({"utterance": t["utterance"], "episode": t["episode"], "candidates": rows})
    if args.json:
        command = " ".join(["python scripts/web_outcomes.py", *(sys.argv[1:] if argv is None else argv)])
        header = {"command": command, "run_dir": str(args.run_dir), "model": str(args.model or args.run_dir / "mle" / "final"),
                  "task": args.task, "split": args.split, "samples": args.samples, "seed": args.seed,
                  "overrides": args.overrides}
        args.json.write_text(json.dumps({**header, "episodes": report}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
