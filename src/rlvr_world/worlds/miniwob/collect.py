"""Play MiniWoB++ tasks in Chromium and cache (page, action, next page) transitions as JSONL.

Each transition is one JSON line::

    {"task": "login-user", "split": "train", "seed": 17, "episode": 3, "step": 1,
     "policy": "scripted", "utterance": "Enter the username ...", "fields": [["username", "vina"], ...],
     "page": [["7", "[7] textbox #username value=''"], ...], "action": "type [7] 'vina'",
     "next_page": [...], "diff": {"new": [...], "deleted": [...], "updated": [...]},
     "done": false, "raw_reward": null, "error": "", "success": true}

`page` and `next_page` are `page.page_items` listings as [id, line] pairs in page order;
`diff` is their exact difference; `success` is whether the episode this step belongs to
ended with a positive raw reward (the label a value function learns from); `error` names an
action that could not be applied ("element vanished").

Splits: the tasks in `tasks` give train / val / test episodes from disjoint seed ranges
(test seeds are unseen); the tasks in `heldout_tasks` give only `heldout_task` episodes, a
task the model never trained on. Each worker process runs one browser; a browser that dies
is relaunched and the episode it was playing is replayed from its seed, so every recorded
episode is complete. Finished (task, split) parts are kept, so a killed collection resumes.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from rlvr_world.worlds.cache import open_cache, package_versions, read_jsonl, read_manifest, write_atomic
from rlvr_world.worlds.miniwob.browser import BrowserCrash, WebEpisodes
from rlvr_world.worlds.miniwob.page import page_diff
from rlvr_world.worlds.miniwob.policies import SOLVERS, choose_action

SPLITS = ("train", "val", "test", "heldout_task")
TRANSITION_KEYS = ("task", "split", "seed", "episode", "step", "utterance", "fields", "page",
                   "action", "next_page", "diff", "done", "raw_reward", "error", "success")
SEED_BASE = {"train": 0, "val": 1_000_000, "test": 2_000_000, "heldout_task": 3_000_000}
REGENERATE_HINT = "regenerate it with `rlvr-world collect --config miniwob data_dir={data_dir}` (or your config)"

DEFAULT_TASKS = (
    "click-button", "click-button-sequence", "click-checkboxes", "click-checkboxes-soft",
    "click-collapsible", "click-collapsible-2", "click-dialog", "click-dialog-2", "click-link",
    "click-option", "click-tab", "click-tab-2", "click-test", "click-test-2", "click-widget",
    "enter-password", "enter-text", "enter-text-2", "focus-text", "login-user",
    "login-user-popup", "navigate-tree", "use-autocomplete", "search-engine", "enter-date",
    "grid-coordinate", "identify-shape", "click-scroll-list", "form-sequence-2",
    "multi-layouts", "find-word", "read-table", "simple-arithmetic", "click-shades",
    "click-color", "click-pie", "tic-tac-toe", "guess-number", "phone-book", "click-shape",
)
DEFAULT_HELDOUT_TASKS = ("unicode-test", "enter-text-dynamic", "focus-text-2")


class CacheError(RuntimeError):
    """The transition cache is missing, incomplete or malformed."""


@dataclass
class MiniWoBCollectConfig:
    """Which tasks to play, how many episodes, and by whom (YAML `collect:` section)."""

    tasks: list = field(default_factory=lambda: list(DEFAULT_TASKS))
    heldout_tasks: list = field(default_factory=lambda: list(DEFAULT_HELDOUT_TASKS))
    train_episodes: int = 30  # per task
    val_episodes: int = 3
    test_episodes: int = 6
    heldout_episodes: int = 10  # per held-out task
    max_steps: int = 6  # an episode also ends when the task does
    # Fraction of episodes played by a scripted solver, for tasks that have one (policies.SOLVERS);
    # the rest explore at random. A solver takes a random action instead with prob solver_noise.
    scripted_fraction: float = 0.5
    solver_noise: float = 0.2
    retries: int = 3  # browser relaunches per episode before the episode is given up
    workers: int = 2  # processes, one browser each

    def __post_init__(self):
        self.tasks, self.heldout_tasks = list(self.tasks), list(self.heldout_tasks)
        overlap = set(self.tasks) & set(self.heldout_tasks)
        if overlap:
            raise ValueError(f"collect.tasks and collect.heldout_tasks overlap: {sorted(overlap)}")
        for name in ("train_episodes", "val_episodes", "test_episodes", "heldout_episodes", "retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"collect.{name} must be >= 0")
        if self.max_steps < 1 or self.workers < 1:
            raise ValueError("collect.max_steps and collect.workers must be >= 1")
        for name in ("scripted_fraction", "solver_noise"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"collect.{name} must be in [0, 1]")

    def episodes(self, split: str) -> int:
        return {"train": self.train_episodes, "val": self.val_episodes, "test": self.test_episodes,
                "heldout_task": self.heldout_episodes}[split]


def _derive(*parts) -> int:
    """A stable 31-bit integer from the parts (same in every process and Python run)."""
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big") % (2**31 - 1)


def split_seeds(seed: int, split: str, n: int) -> list[int]:
    """The first `n` task seeds of one split of the run with `seed`: disjoint ranges per split
    (so test episodes are unseen) and per run seed."""
    return [seed * 10_000_000 + SEED_BASE[split] + i for i in range(n)]


def episode_seeds(cfg: MiniWoBCollectConfig, seed: int, split: str) -> list[int]:
    """Task seeds of one split's collected episodes."""
    return split_seeds(seed, split, cfg.episodes(split))


def jobs(cfg: MiniWoBCollectConfig, seed: int) -> list[dict]:
    out = []
    for split in SPLITS:
        for task in (cfg.heldout_tasks if split == "heldout_task" else cfg.tasks):
            if cfg.episodes(split):
                out.append({"task": task, "split": split, "seeds": episode_seeds(cfg, seed, split),
                            "seed": seed, "cfg": asdict(cfg)})
    return out


def play_episode(web: WebEpisodes, task: str, split: str, seed: int, episode: int, policy: str,
                 cfg: MiniWoBCollectConfig, rng: random.Random) -> list[dict]:
    """One episode's transitions; BrowserCrash propagates (the caller relaunches and replays)."""
    page = web.reset(seed)
    rows, done_actions = [], []
    for step in range(cfg.max_steps):
        action = choose_action(task, policy, web.elements, web.fields, web.candidate_actions(),
                               done_actions, rng, cfg.solver_noise)
        if action is None:
            break
        result = web.step(action)
        done_actions.append(action)
        rows.append({
            "task": task, "split": split, "seed": seed, "episode": episode, "step": step,
            "policy": policy, "utterance": web.utterance, "fields": [list(f) for f in web.fields],
            "page": [[k, v] for k, v in page.items()], "action": action,
            "next_page": [[k, v] for k, v in result.page.items()],
            "diff": {k: list(v) for k, v in page_diff(page, result.page).items()},
            "done": result.done, "raw_reward": result.raw_reward, "error": result.error,
        })
        page = result.page
        if result.done:
            break
    success = bool(rows and rows[-1]["done"] and (rows[-1]["raw_reward"] or 0) > 0)
    for row in rows:
        row["success"] = success
    return rows


def run_job(job: dict, web_factory=WebEpisodes) -> dict:
    """All episodes of one (task, split) in one browser; relaunch and replay after a crash."""
    cfg = MiniWoBCollectConfig(**job["cfg"])
    task, split = job["task"], job["split"]
    rows, crashes, given_up, t0 = [], [], 0, time.perf_counter()
    web = web_factory(task)
    try:
        for episode, seed in enumerate(job["seeds"]):
            rng = random.Random(_derive("miniwob-play", job["seed"], task, split, episode))
            scripted = task in SOLVERS and rng.random() < cfg.scripted_fraction
            play_seed = rng.random()  # drawn once: a replay after a crash plays the same actions
            for attempt in range(cfg.retries + 1):
                try:
                    web.ensure_open()  # first launch, or a relaunch after a crash
                    rows.extend(play_episode(web, task, split, seed, episode, "scripted" if scripted else "random",
                                             cfg, random.Random(play_seed)))
                    break
                except BrowserCrash as err:
                    crashes.append(str(err).splitlines()[0][:200])
                    web.discard()
                    if attempt == cfg.retries:
                        given_up += 1
    finally:
        restarts = web.restarts
        web.close()
    return {"task": task, "split": split, "rows": rows, "crashes": crashes, "restarts": restarts,
            "episodes_given_up": given_up, "seconds": time.perf_counter() - t0}


def _part_path(data_dir: Path, job: dict) -> Path:
    key = hashlib.sha256(json.dumps([job["cfg"], job["seed"]], sort_keys=True).encode()).hexdigest()[:12]
    return data_dir / "parts" / key / f"{job['split']}--{job['task']}.json"


def _run_and_keep(args) -> dict:
    job, path = args
    result = run_job(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, [json.dumps(result)])
    return result


def collect(cfg: MiniWoBCollectConfig | dict, data_dir: Path, seed: int = 0, progress: bool = True) -> dict:
    """Play every job, write `{split}.jsonl` and `manifest.json`; resumes from finished parts."""
    if isinstance(cfg, dict):
        cfg = MiniWoBCollectConfig(**cfg)
    data_dir = open_cache(data_dir)
    manifest_path = data_dir / "manifest.json"
    t0 = time.perf_counter()
    all_jobs = jobs(cfg, seed)
    results, todo = [], []
    for job in all_jobs:
        path = _part_path(data_dir, job)
        if path.is_file():
            results.append(json.loads(path.read_text(encoding="utf-8")))
        else:
            todo.append((job, path))
    bar = tqdm(total=len(all_jobs), initial=len(results), desc="miniwob tasks", unit="job", disable=not progress)
    if cfg.workers == 1 or len(todo) <= 1:
        for item in todo:
            results.append(_run_and_keep(item))
            bar.update()
    else:
        # fork: workers only drive browsers, start instantly, and scripts need no __main__ guard.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(min(cfg.workers, len(todo))) as pool:
            for result in pool.imap_unordered(_run_and_keep, todo):
                results.append(result)
                bar.update()
    bar.close()
    order = {(j["split"], j["task"]): i for i, j in enumerate(all_jobs)}
    results.sort(key=lambda r: order[(r["split"], r["task"])])

    counts = {}
    for split in SPLITS:
        rows = [row for r in results if r["split"] == split for row in r["rows"]]
        write_atomic(data_dir / f"{split}.jsonl", (json.dumps(row) + "\n" for row in rows))
        episodes = {(row["task"], row["episode"]): row["success"] for row in rows}
        counts[split] = {
            "tasks": len({r["task"] for r in results if r["split"] == split}),
            "episodes": len(episodes),
            "transitions": len(rows),
            "episode_success_rate": sum(episodes.values()) / len(episodes) if episodes else 0.0,
            "fraction_changed": sum(any(row["diff"].values()) for row in rows) / len(rows) if rows else 0.0,
            "fraction_terminal": sum(row["done"] for row in rows) / len(rows) if rows else 0.0,
        }
    manifest = {
        "world": "miniwob",
        "seed": seed,
        "config": asdict(cfg),
        "counts": counts,
        "transitions": sum(c["transitions"] for c in counts.values()),
        "browser_restarts": sum(r["restarts"] for r in results),
        "crashes": [c for r in results for c in r["crashes"]],
        "episodes_given_up": sum(r["episodes_given_up"] for r in results),
        "actions_failed": sum(1 for r in results for row in r["rows"] if row["error"]),
        "seconds": {"total": time.perf_counter() - t0, "browser": sum(r["seconds"] for r in results)},
        "versions": package_versions("miniwob", "selenium", "rlvr-world"),
    }
    write_atomic(manifest_path, [json.dumps(manifest, indent=2) + "\n"])
    return manifest


def _hint(data_dir: Path) -> str:
    return REGENERATE_HINT.format(data_dir=data_dir)


def load_manifest(data_dir: Path) -> dict:
    return read_manifest(data_dir, "MiniWoB++", _hint(data_dir), CacheError)


def load_transitions(data_dir: Path, split: str) -> list[dict]:
    """Read one split of the cache; CacheError naming the file and line when it is broken."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    load_manifest(Path(data_dir))
    return read_jsonl(Path(data_dir) / f"{split}.jsonl", TRANSITION_KEYS, CacheError, _hint(Path(data_dir)))
