"""A web agent that plans with a world model (model-predictive control) on MiniWoB++.

At each step the agent lists the candidate actions of the current page (clicks on clickable
elements, the task's field values typed into text inputs), asks the world model what page
each candidate would produce, scores every predicted page with the learned value function
(`apps.value`), and executes the best one. It stops when the episode ends or after
`max_steps`. Variants compared on the same held-out episodes:

- ``random``: a uniformly random candidate (no model);
- ``mpc_<stage>``: the world model of that training stage predicts the next page (greedy, or
  with ``samples: N`` N pages sampled per candidate and scored by their mean value, the
  expected value under the model rather than the value of its most likely page);
- ``mpc_oracle``: the true next page, found by replaying the episode in a second browser
  (same task seed, same actions so far) and trying the candidate there -- an upper bound on
  what a perfect world model could give this value function.

A prediction that does not parse leaves the page as it is. Ties are broken at random. A browser
that dies during the evaluation is relaunched and its episode replayed from the task seed.
Every variant runs the same episodes, so two of them are also compared episode by episode
(`paired_difference`), which separates them with fewer episodes than two independent intervals.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from tqdm import tqdm

from rlvr_world.apps.value import PageValue, train_value, value_dataset
from rlvr_world.worlds.miniwob.collect import split_seeds
from rlvr_world.worlds.miniwob.page import ITEM_ID

DEFAULT_AGENT_TASKS = ("click-button", "click-link", "click-dialog-2", "click-test-2", "click-widget",
                       "click-tab", "focus-text", "enter-text", "login-user", "click-option")


@dataclass
class AgentConfig:
    """The MPC agent's evaluation (YAML `agent:` section)."""

    tasks: list = field(default_factory=lambda: list(DEFAULT_AGENT_TASKS))
    episodes_per_task: int = 20  # held-out task seeds (the test range; never trained on); 0 = no agent in the demo
    oracle_episodes_per_task: int = 0  # 0 = same as episodes_per_task; the oracle replays, so it is slow
    max_steps: int = 4
    max_type_values: int = 4  # task-field values offered for each text input
    retries: int = 3  # browser relaunches per episode before the evaluation fails
    value_steps: int = 300  # full-batch steps fitting the value function
    value_lr: float = 0.05
    samples: int = 0  # 0: one greedy next page per candidate; N: N sampled pages, mean value
    temperature: float = 1.0  # of the sampled pages
    stages: list = field(default_factory=lambda: ["mle", "rlvr"])  # world models to plan with


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_difference(a: list[bool], b: list[bool], z: float = 1.96) -> dict:
    """Success rate of `a` minus that of `b` over the same episodes, with its 95% interval.

    Two agents run on the same task seeds are paired: only the episodes that one solves and the
    other does not (the discordant ones) tell them apart. Interval: Wald for paired proportions,
    d +- z * sqrt(n10 + n01 - (n10 - n01)^2 / n) / n; `p_value`: McNemar's exact two-sided test,
    the binomial(n10 + n01, 1/2) probability of a split at least as uneven.
    """
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need the same episodes, got {len(a)} and {len(b)}")
    n = len(a)
    a_only = sum(x and not y for x, y in zip(a, b))
    b_only = sum(y and not x for x, y in zip(a, b))
    if n == 0:
        return {"difference": math.nan, "ci95": [math.nan, math.nan], "a_only": 0, "b_only": 0, "p_value": math.nan,
                "episodes": 0}
    d = (a_only - b_only) / n
    half = z * math.sqrt(max(0.0, a_only + b_only - (a_only - b_only) ** 2 / n)) / n
    discordant, low = a_only + b_only, min(a_only, b_only)
    tail = sum(math.comb(discordant, k) for k in range(low + 1)) / 2 ** discordant
    return {"difference": d, "ci95": [d - half, d + half], "a_only": a_only, "b_only": b_only,
            "p_value": min(1.0, 2 * tail), "episodes": n}


def pooled_paired_difference(comparisons: list[dict], z: float = 1.96) -> dict:
    """Mean success difference of `a` minus `b` over several paired comparisons (e.g. the RLVR
    and MLE world models of several runs), with a 95% interval that takes the episode as its unit.

    Each comparison maps an episode key (task, seed) to (a solved, b solved). Comparisons run on
    the same episodes are not independent (an episode one pair finds easy, the next pair will
    too), so the variance is the cluster-robust one with episodes as clusters: over all N rows,
    d = sum(d_i) / N and var = C / (C - 1) * sum over the C episodes of (sum of its d_i - d)^2 / N^2.
    With one comparison this is the usual paired interval, s_d / sqrt(N).
    """
    clusters: dict = {}
    for comparison in comparisons:
        for key, (a, b) in comparison.items():
            clusters.setdefault(key, []).append(int(bool(a)) - int(bool(b)))
    n, c = sum(map(len, clusters.values())), len(clusters)
    if c < 2:
        raise ValueError(f"a pooled interval needs at least 2 episodes, got {c}")
    d = sum(map(sum, clusters.values())) / n
    var = c / (c - 1) * sum(sum(x - d for x in rows) ** 2 for rows in clusters.values()) / n ** 2
    half = z * math.sqrt(var)
    return {"difference": d, "ci95": [d - half, d + half], "comparisons": len(comparisons), "rows": n, "episodes": c}


def apply_diff(page: dict[str, str], diff: Optional[dict]) -> dict[str, str]:
    """The page after a predicted difference: deleted ids removed, updated and new ids set."""
    out = dict(page)
    if diff is None:
        return out
    for line in diff.get("deleted", ()):
        m = ITEM_ID.match(line)
        if m:
            out.pop(m.group(1), None)
    for section in ("updated", "new"):
        for line in diff.get(section, ()):
            m = ITEM_ID.match(line)
            if m:
                out[m.group(1)] = line
    return out


class WorldModelPredictor:
    """Next pages of a batch of candidate actions from a trained world model: one greedy page
    per candidate, or `samples` pages drawn at `temperature` (a new seed at every call), on
    `device` (`model.device`: auto = the GPU when torch sees one).

    Training leaves out transitions whose prompt is over `world.max_prompt_tokens`; a candidate
    cannot be left out, so its prompt keeps its last tokens and is counted in `prompts_cut`."""

    def __init__(self, model_path: Path, world, samples: int = 0, temperature: float = 1.0, seed: int = 0,
                 device: str = "auto"):
        from rlvr_world.models.lm import load_model, resolve_device

        self.model, self.tokenizer = load_model(model_path)
        self.model = self.model.to(resolve_device(device)).eval()
        self.world = world
        self.samples, self.temperature = samples, temperature
        self.seed, self.calls = seed, 0
        self.prompts, self.prompts_cut = 0, 0

    def __call__(self, web, history: list[str], candidates: list[str]) -> list[list[dict[str, str]]]:
        from rlvr_world.eval.evaluate import predict
        from rlvr_world.sequence import Example, Generate

        lines = list(web.page.values())
        plan = (Generate(self.world.max_new_tokens),)
        n = max(1, self.samples)
        prompts = [self.world.encode_prompt(self.world.action_prompt(web.utterance, lines, a), self.tokenizer)
                   for a in candidates]
        limit = self.world.max_prompt_tokens or max(map(len, prompts))  # 0: no limit
        self.prompts += len(prompts)
        self.prompts_cut += sum(len(p) > limit for p in prompts)
        examples = [Example(prompt_ids=p[-limit:], target_ids=[], plan=plan, target=None) for p in prompts for _ in range(n)]
        self.calls += 1
        diffs, _, _ = predict(self.model, self.tokenizer, self.world, examples, batch_size=len(examples),
                              temperature=self.temperature if self.samples else 0.0, seed=self.seed * 100_003 + self.calls)
        pages = [apply_diff(web.page, d) for d in diffs]
        return [pages[i * n:(i + 1) * n] for i in range(len(candidates))]


class OraclePredictor:
    """The true next page: replay the episode in a second browser and try the candidate."""

    def __init__(self, task: str):
        from rlvr_world.worlds.miniwob.browser import WebEpisodes

        self.replay = WebEpisodes(task)

    def __call__(self, web, history: list[str], candidates: list[str]) -> list[list[dict[str, str]]]:
        self.replay.ensure_open()  # first call, or after the replay browser died
        pages = []
        for action in candidates:
            self.replay.reset(web.seed)
            for past in history:
                self.replay.step(past)
            pages.append([self.replay.step(action).page])
        return pages

    def close(self) -> None:
        self.replay.close()

    def discard(self) -> None:
        self.replay.discard()


def run_episode(web, seed: int, choose: Callable, max_steps: int) -> dict:
    """One episode: `choose(web, history, candidates)` picks each action."""
    web.reset(seed)
    history: list[str] = []
    for _ in range(max_steps):
        candidates = web.candidate_actions()
        if not candidates:
            break
        action = choose(web, history, candidates)
        result = web.step(action)
        history.append(action)
        if result.done:
            return {"seed": seed, "success": (result.raw_reward or 0) > 0, "steps": len(history), "actions": history}
    return {"seed": seed, "success": False, "steps": len(history), "actions": history}


def mpc_chooser(predict_pages: Callable, value: PageValue, rng: random.Random, stats: dict) -> Callable:
    """Pick the candidate whose predicted next pages have the highest mean value (ties at random);
    `predict_pages` gives one or more pages per candidate."""
    def choose(web, history, candidates):
        t0 = time.perf_counter()
        pages = predict_pages(web, history, candidates)
        flat = value.value(web.utterance, web.fields, [list(p.values()) for group in pages for p in group])
        scores, i = [], 0
        for group in pages:
            scores.append(sum(flat[i:i + len(group)]) / len(group))
            i += len(group)
        best = max(scores)
        choice = rng.choice([a for a, s in zip(candidates, scores) if s >= best - 1e-9])
        stats["decisions"] += 1
        stats["decision_seconds"] += time.perf_counter() - t0
        return choice
    return choose


def evaluate_agent(variant: str, tasks: list[str], seeds: list[int], predictor_factory, value: PageValue,
                   cfg: AgentConfig, rng_seed: int = 0, progress: bool = True) -> dict:
    """Success rate of one agent variant over `tasks` x `seeds`, with its 95% interval."""
    from rlvr_world.worlds.miniwob.browser import BrowserCrash, WebEpisodes

    episodes, stats = [], {"decisions": 0, "decision_seconds": 0.0, "browser_restarts": 0}
    bar = tqdm(total=len(tasks) * len(seeds), desc=f"agent {variant}", unit="ep", disable=not progress)
    for task in tasks:
        rng = random.Random(f"{rng_seed}/{variant}/{task}")
        predictor = predictor_factory(task) if predictor_factory else None
        if predictor is None:
            choose = lambda web, history, candidates: rng.choice(candidates)  # noqa: E731
        else:
            choose = mpc_chooser(predictor, value, rng, stats)
        web = WebEpisodes(task, max_type_values=cfg.max_type_values)
        try:
            for seed in seeds:
                for attempt in range(cfg.retries + 1):
                    try:
                        web.ensure_open()
                        episodes.append({"task": task, **run_episode(web, seed, choose, cfg.max_steps)})
                        break
                    except BrowserCrash:  # relaunch the browser(s) and replay the episode from its seed
                        stats["browser_restarts"] += 1
                        web.discard()
                        if hasattr(predictor, "discard"):
                            predictor.discard()
                        if attempt == cfg.retries:
                            raise
                bar.update()
        finally:
            web.close()
            if hasattr(predictor, "close"):
                predictor.close()
    bar.close()
    wins = sum(e["success"] for e in episodes)
    lo, hi = wilson_interval(wins, len(episodes))
    # Each task's outcomes in seed order ("1" solved), so that variants can be compared episode by episode.
    outcomes = {t: "".join("1" if e["success"] else "0" for e in episodes if e["task"] == t) for t in tasks}
    per_task = {t: o.count("1") / max(1, len(o)) for t, o in outcomes.items()}
    return {"success_rate": wins / max(1, len(episodes)), "ci95": [lo, hi], "episodes": len(episodes),
            "per_task": per_task, "outcomes": outcomes, "decisions": stats["decisions"],
            "browser_restarts": stats["browser_restarts"],
            "decisions_per_s": stats["decisions"] / stats["decision_seconds"] if stats["decision_seconds"] else None}


def paired_comparisons(results: dict) -> dict:
    """`paired_difference` for each model-based variant against random and for each pair of world
    models (later stage minus earlier, e.g. mpc_rlvr - mpc_mle), over the episodes both ran."""
    names = [n for n, v in results.items() if isinstance(v, dict) and "outcomes" in v and n != "mpc_oracle"]
    pairs = [(n, "random") for n in names if n != "random" and "random" in names]
    models = [n for n in names if n != "random"]
    pairs += [(b, a) for i, a in enumerate(models) for b in models[i + 1:]]
    out = {}
    for a, b in pairs:
        tasks = [t for t in results[a]["outcomes"] if t in results[b]["outcomes"]]
        if any(len(results[a]["outcomes"][t]) != len(results[b]["outcomes"][t]) for t in tasks):
            continue  # not the same episodes (e.g. fewer oracle seeds)
        flat = lambda name: [c == "1" for t in tasks for c in results[name]["outcomes"][t]]  # noqa: E731
        out[f"{a} - {b}"] = paired_difference(flat(a), flat(b))
    return out


def agent_comparison(cfg, world, stages: dict[str, Path], progress: bool = True) -> dict:
    """Fit the value function on the training trajectories, then run every agent variant."""
    from rlvr_world.config import from_dict

    agent_cfg = from_dict(AgentConfig, cfg.agent, prefix="agent.")
    out_dir = Path(cfg.run_dir) / "agent"
    train = world.load_transitions(cfg.data_path, "train")
    value, value_stats = train_value(train, steps=agent_cfg.value_steps, lr=agent_cfg.value_lr, seed=cfg.seed)
    value.save(out_dir / "value")
    value_stats["val_accuracy"] = value.accuracy(*value_dataset(world.load_transitions(cfg.data_path, "val")))
    seeds = split_seeds(cfg.seed, "test", agent_cfg.episodes_per_task)
    oracle_seeds = seeds[: agent_cfg.oracle_episodes_per_task or len(seeds)]
    results: dict = {"config": asdict(agent_cfg), "value_function": value_stats, "seeds": seeds,
                     "random": evaluate_agent("random", agent_cfg.tasks, seeds, None, value, agent_cfg, cfg.seed, progress)}
    for stage in agent_cfg.stages:
        if stage not in stages:
            continue
        predictor = WorldModelPredictor(stages[stage], world, agent_cfg.samples, agent_cfg.temperature, cfg.seed,
                                        cfg.model.device)
        results[f"mpc_{stage}"] = evaluate_agent(f"mpc_{stage}", agent_cfg.tasks, seeds, lambda task: predictor,
                                                 value, agent_cfg, cfg.seed, progress)
        # Candidates whose prompt was too long for the model and lost its beginning (the instruction).
        results[f"mpc_{stage}"]["prompts_cut"] = [predictor.prompts_cut, predictor.prompts]
    results["mpc_oracle"] = evaluate_agent("mpc_oracle", agent_cfg.tasks, oracle_seeds, OraclePredictor, value,
                                           agent_cfg, cfg.seed, progress)
    results["paired"] = paired_comparisons(results)
    return results

