"""Web world speed: MiniWoB++ transitions collected per second per browser, agent decisions/s.

Collection: one browser (one worker process's share) plays `--episodes` episodes of each of
`--tasks` with the collector's own policies (`collect.run_job`), after an untimed warm-up
job; transitions/s counts recorded transitions over the wall-clock of the jobs, browser
launches included (one per task, as in a real collection).

Agent: one MPC decision = the world model's greedy predictions (`--samples N`: N sampled
pages each) for every candidate action of the page (one batch) + the value function on each
predicted page. Timed on the run's `--stage` model (RUN/<stage>/final, default mle) and its value function, over
`--agent-episodes` held-out episodes per task, with the real browser stepping between
decisions excluded; the oracle (replay in a second browser) is timed the same way. The same
episodes are then played again with every candidate's prompt encoded whole (the ablation of
`LlamaDecoder.share_prefix`: the candidates of one page share the page's tokens; with
`--samples N`, each candidate's N sampled pages too).

    python benchmarks/bench_web.py --run-dir runs/miniwob --json benchmarks/results/web.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import rlvr_world  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before anything imports torch)

from common import command_line, describe, machine, markdown_table, peak_rss_mb, set_threads, today, write_json

COLUMNS = [
    ("what", "what", ""),
    ("count", "count", ""),
    ("seconds", "seconds (browser steps excluded for decisions)", ".2f"),
    ("per_s", "per second", ".1f"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/miniwob"))
    parser.add_argument("--tasks", nargs="+", default=["click-button", "login-user", "click-checkboxes", "click-tab"])
    parser.add_argument("--episodes", type=int, default=10, help="collection episodes per task")
    parser.add_argument("--agent-tasks", nargs="+", default=["click-button", "login-user"])
    parser.add_argument("--agent-episodes", type=int, default=3)
    parser.add_argument("--stage", default="mle", help="world model to plan with: RUN/<stage>/final")
    parser.add_argument("--samples", type=int, default=0,
                        help="pages sampled per candidate (agent.samples); 0 = greedy")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    set_threads(args.threads)

    from dataclasses import asdict

    from rlvr_world import pipeline
    from rlvr_world.apps.value import PageValue
    from rlvr_world.apps.web_agent import AgentConfig, OraclePredictor, WorldModelPredictor, evaluate_agent
    from rlvr_world.config import load_config
    from rlvr_world.models.llama_decode import LlamaDecoder
    from rlvr_world.worlds.miniwob.collect import MiniWoBCollectConfig, run_job

    collect_cfg = MiniWoBCollectConfig(tasks=args.tasks, heldout_tasks=[], max_steps=6)
    jobs = [{"task": t, "split": "train", "seeds": list(range(args.episodes)), "seed": 0, "cfg": asdict(collect_cfg)}
            for t in args.tasks]
    run_job({**jobs[0], "seeds": [999]})  # warm-up: imports, first Chromium launch
    t0 = time.perf_counter()
    n = sum(len(run_job(job)["rows"]) for job in jobs)
    collect_s = time.perf_counter() - t0
    rows = [{"what": "collect, 1 browser", "count": f"{n} transitions", "seconds": collect_s, "per_s": n / collect_s}]

    config = args.run_dir / "config.yaml"
    figures = {"transitions_per_s_per_browser": n / collect_s}
    settings = {"collect_tasks": args.tasks, "episodes_per_task": args.episodes, "max_steps": collect_cfg.max_steps}
    model_dir = args.run_dir / args.stage / "final"
    if (model_dir / "config.json").exists() and (args.run_dir / "agent" / "value").exists():
        cfg = load_config(str(config), [f"run_dir={args.run_dir}"])
        world = pipeline.world_of(cfg)
        value = PageValue.load(args.run_dir / "agent" / "value")
        agent_cfg = AgentConfig(tasks=args.agent_tasks, episodes_per_task=args.agent_episodes)
        seeds = [2_000_000 + i for i in range(args.agent_episodes)]
        predictor = WorldModelPredictor(model_dir, world, samples=args.samples, device=cfg.model.device)
        variants = [("world_model", f"mpc, world model ({args.stage})", lambda task: predictor, True),
                    ("oracle", "mpc, oracle replay", OraclePredictor, True),
                    ("world_model_prefix_not_shared", f"mpc, world model ({args.stage}), prompts encoded whole",
                     lambda task: predictor, False)]
        for key, name, factory, share in variants:
            LlamaDecoder.share_prefix = share
            result = evaluate_agent(name, args.agent_tasks, seeds, factory, value, agent_cfg, progress=False)
            rate = result["decisions_per_s"]
            rows.append({"what": f"agent decisions, {name}",
                         "count": f"{result['decisions']} decisions ({result['episodes']} episodes)",
                         "seconds": result["decisions"] / rate, "per_s": rate})
            figures[f"agent_decisions_per_s_{key}"] = rate
        LlamaDecoder.share_prefix = True
        settings.update({"agent_tasks": args.agent_tasks, "agent_episodes_per_task": args.agent_episodes,
                         "stage": args.stage, "samples": args.samples,
                         "parameters": sum(p.numel() for p in predictor.model.parameters())})
    else:
        print(f"{args.run_dir}: no {args.stage}/final or agent/value; agent decisions not timed (run the miniwob demo first)")

    figures["peak_rss_mb"] = peak_rss_mb()
    result = {
        "benchmark": "web",
        "title": "Web world (MiniWoB++)",
        "description": ("Transitions recorded per second by one Chromium browser with the collector's policies "
                        "(launches included), and MPC agent decisions per second (all candidates' next pages "
                        "predicted in one batch, then scored by the value function; browser steps excluded)."),
        "command": command_line(),
        "date": today(),
        "machine": machine(),
        "settings": settings,
        "columns": [list(c) for c in COLUMNS],
        "rows": rows,
        "figures": figures,
        "notes": ["Collection in a demo runs one browser per worker process (2 by default); the default "
                  "preset's manifest has its wall-clock (results in runs/<run>/data/manifest.json).",
                  "An oracle decision replays the episode from its seed for every candidate, so it costs "
                  "(steps so far + 2) browser actions per candidate."],
    }
    print(describe(result["machine"]))
    print(markdown_table(rows, COLUMNS))
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
