"""Read a user's ByteSized32-State-Prediction files and cache them as train / val / test JSONL.

Nothing is played here: the transitions were recorded by the dataset's authors (or by the
user, in the same format; format.py documents every field). `collect` validates every
line, splits the transitions and writes, in `data_dir`:

    train.jsonl, val.jsonl, test.jsonl   one transition per line (below)
    rules.json                           game -> {"object", "action", "score"} rules text
    manifest.json                        sources (with sha256), split, counts, checks

Each cached transition::

    {"game": "mix-paint", "state_id": 215, "source": "data/test.jsonl:17",
     "task": "Your task is to ...", "action": "mix cup 1 (ID: 4)", "uuid_base": 9,
     "current": {"objects": [...], "score": {...}},   # current_state, current_score_state
     "next": {"objects": [...], "score": {...}},      # tick_state, next_score_state
     "changed": true}

The target is the state after the action *and* the game tick (``tick_state``), as in the
paper's "full" setting. Split (deterministic from the seed): whole games are held out for
test by default, so test games are unseen in training; a separate test file (e.g. the
published ``test.jsonl``) can be given instead. Before the manifest is written, every
transition's ground-truth answer is scored with both rewards: it must get the maximum
(binary 1.0; task-specific 1.3, or 0.3 when nothing changes), and the manifest says so.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rlvr_world.worlds.bytesized32 import format as bs_format
from rlvr_world.worlds.bytesized32.codec import SCORE_FIELDS, changed_fields, parse_diff, render_diff, state_diff
from rlvr_world.worlds.cache import open_cache, package_versions, read_jsonl, read_manifest, write_atomic

SPLITS = ("train", "val", "test")
SAMPLE_DIR = Path(__file__).parent / "sample"
SAMPLE_FILE = SAMPLE_DIR / "states.jsonl"
SAMPLE_RULES = SAMPLE_DIR / "rules"
TRANSITION_KEYS = ("game", "state_id", "source", "task", "action", "uuid_base", "current", "next", "changed")
REGENERATE_HINT = "regenerate it with `rlvr-world collect --config bytesized32 data_dir={data_dir}` (or your config)"


class CacheError(RuntimeError):
    """The transition cache is missing, incomplete or malformed."""


@dataclass
class ByteSized32CollectConfig:
    """Where the user's files are and how to split them (YAML `collect:` section)."""

    path: str = ""  # ByteSized32-State-Prediction JSONL; "" = the sample shipped with rlvr-world
    # Folder with object_rules.json / action_rules.json / score_rules.json; "" = the sample's
    # rules when `path` is the sample, else no rules; "none" = no rules.
    rules: str = ""
    test_path: str = ""  # a JSONL used whole as the test split (e.g. the published test.jsonl)
    test_games: int = 1  # games held out whole for test (when no test_path)
    test_fraction: float = 0.2  # share of random transitions for test, when test_games is 0
    val_fraction: float = 0.15  # share of the training transitions held out for validation

    def __post_init__(self):
        if self.test_games < 0:
            raise ValueError(f"collect.test_games must be >= 0, got {self.test_games}")
        for name in ("test_fraction", "val_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"collect.{name} must be in [0, 1), got {value}")

    def data_file(self) -> Path:
        return Path(self.path) if self.path else SAMPLE_FILE

    def rules_dir(self) -> Path | None:
        if self.rules.lower() == "none":
            return None
        if self.rules:
            return Path(self.rules)
        return None if self.path else SAMPLE_RULES


def to_transition(row: dict, where: str) -> dict:
    """A validated line of the published format as a cached transition."""
    current, after = row["current_state"], row["tick_state"]
    cur_score = {k: row["current_score_state"][k] for k in SCORE_FIELDS}
    next_score = {k: row["next_score_state"][k] for k in SCORE_FIELDS}
    return {
        "game": row["game"],
        "state_id": row["state_id"],
        "source": where,
        "task": str(current.get("taskDesc", "") or ""),
        "action": after["lastAction"],
        "uuid_base": current.get("max_UUID"),
        "current": {"objects": current["objects"], "score": cur_score},
        "next": {"objects": after["objects"], "score": next_score},
        "changed": bool(changed_fields(current["objects"], cur_score, after["objects"], next_score)),
    }


def target_of(transition: dict) -> dict:
    """What the rewards compare a prediction with: the current and the true next state."""
    return {"current": transition["current"], "next": transition["next"]}


def target_diff(transition: dict) -> dict:
    """The ground-truth difference (codec.state_diff) of a transition."""
    return state_diff(transition["current"]["objects"], transition["next"]["objects"], transition["next"]["score"])


def read_transitions(path: Path) -> list[dict]:
    return [to_transition(row, where) for where, row in bs_format.iter_lines(path)]


def check_ground_truth(transitions: list[dict]) -> dict:
    """Score each transition's ground-truth answer, read back from its text, with both
    rewards; RuntimeError naming the first line that does not get the maximum."""
    from rlvr_world.rewards.bytesized32 import bytesized32_binary, bytesized32_task_specific, max_task_specific

    for t in transitions:
        prediction = parse_diff(render_diff(target_diff(t)))
        target = target_of(t)
        binary, task = bytesized32_binary(prediction, target), bytesized32_task_specific(prediction, target)
        best = max_task_specific(target)
        if binary != 1.0 or not math.isclose(task, best, abs_tol=1e-9):
            raise RuntimeError(f"{t['source']}: the ground-truth difference scores binary {binary}, "
                               f"task-specific {task} (expected 1.0 and {best}); please report this line")
    return {"transitions": len(transitions), "binary_reward_1": len(transitions), "task_specific_max": len(transitions)}


def split(transitions: list[dict], cfg: ByteSized32CollectConfig, seed: int,
          test: list[dict] | None = None) -> tuple[dict[str, list[dict]], list[str]]:
    """Deterministic split from the seed; returns ({split: transitions}, held-out test games).

    `test` given: it is the test split, the rest is train + val. Else `cfg.test_games`
    whole games (or, when 0, `cfg.test_fraction` of the transitions) go to test.
    """
    rng = random.Random(f"bytesized32-split-{seed}")
    held_out: list[str] = []
    if test is None:
        games = sorted({t["game"] for t in transitions})
        if cfg.test_games:
            if cfg.test_games >= len(games):
                raise ValueError(f"collect.test_games={cfg.test_games} leaves no game to train on "
                                 f"(the file has {len(games)}: {', '.join(games)})")
            held_out = sorted(rng.sample(games, cfg.test_games))
            test = [t for t in transitions if t["game"] in held_out]
            transitions = [t for t in transitions if t["game"] not in held_out]
        else:
            transitions, test = _take_fraction(transitions, cfg.test_fraction, rng)
    train, val = _take_fraction(transitions, cfg.val_fraction, rng)
    return {"train": train, "val": val, "test": test}, held_out


def _take_fraction(rows: list[dict], fraction: float, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """(rest, taken): a random `fraction` of the rows (at least one when fraction > 0 and
    two or more rows), both in file order."""
    n = round(fraction * len(rows))
    if fraction > 0 and len(rows) > 1:
        n = max(1, min(n, len(rows) - 1))
    taken = set(rng.sample(range(len(rows)), n))
    return [r for i, r in enumerate(rows) if i not in taken], [r for i, r in enumerate(rows) if i in taken]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def collect(cfg: ByteSized32CollectConfig | dict, data_dir: Path, seed: int = 0) -> dict:
    """Validate the user's files, split them, check the ground truths, write the cache."""
    if isinstance(cfg, dict):
        cfg = ByteSized32CollectConfig(**cfg)
    t0 = time.perf_counter()
    data_dir = open_cache(data_dir)
    manifest_path = data_dir / "manifest.json"

    source = cfg.data_file()
    transitions = read_transitions(source)
    if not transitions:
        raise ValueError(f"{source}: no transitions (the file is empty)")
    sources = {"path": str(source), "sha256": _sha256(source)}
    test = None
    if cfg.test_path:
        test = read_transitions(Path(cfg.test_path))
        sources["test_path"], sources["test_sha256"] = cfg.test_path, _sha256(Path(cfg.test_path))
    splits, held_out = split(transitions, cfg, seed, test)
    everything = [t for s in SPLITS for t in splits[s]]
    gt_check = check_ground_truth(everything)

    games = sorted({t["game"] for t in everything})
    rules_dir = cfg.rules_dir()
    all_rules = bs_format.read_rules(rules_dir) if rules_dir is not None else {}
    rules = {g: all_rules[g] for g in games if g in all_rules}
    if rules_dir is not None:
        sources["rules"] = str(rules_dir)
    write_atomic(data_dir / "rules.json", [json.dumps(rules, indent=1) + "\n"])
    for name in SPLITS:
        write_atomic(data_dir / f"{name}.jsonl", (json.dumps(t) + "\n" for t in splits[name]))

    manifest = {
        "world": "bytesized32",
        "seed": seed,
        "config": asdict(cfg),
        "sources": sources,
        "games": {name: sorted({t["game"] for t in splits[name]}) for name in SPLITS},
        "test_games_held_out": held_out,  # games never seen in train / val (empty: none held out)
        "counts": {name: {"transitions": len(splits[name]),
                          "fraction_changed": _mean(t["changed"] for t in splits[name])} for name in SPLITS},
        "transitions": len(everything),
        "fraction_changed": _mean(t["changed"] for t in everything),
        "objects_per_state": {"mean": _mean(len(t["current"]["objects"]) for t in everything),
                              "max": max(len(t["current"]["objects"]) for t in everything)},
        # Every transition's ground-truth answer, rendered as text and parsed back, scored the
        # maximum of both rewards (collection fails otherwise).
        "ground_truth_check": gt_check,
        "games_without_rules": [g for g in games if g not in rules] if rules_dir is not None else games,
        "seconds": round(time.perf_counter() - t0, 3),
        "versions": package_versions("rlvr-world"),
    }
    write_atomic(manifest_path, [json.dumps(manifest, indent=2) + "\n"])
    return manifest


def _hint(data_dir: Path) -> str:
    return REGENERATE_HINT.format(data_dir=data_dir)


def load_transitions(data_dir: Path, split_name: str) -> list[dict]:
    """One split of the cache, each transition with its game's rules under "rules"."""
    if split_name not in SPLITS:
        raise ValueError(f"unknown split {split_name!r} (known: {', '.join(SPLITS)})")
    data_dir = Path(data_dir)
    read_manifest(data_dir, "ByteSized32", _hint(data_dir), CacheError)
    rows = read_jsonl(data_dir / f"{split_name}.jsonl", TRANSITION_KEYS, CacheError, _hint(data_dir))
    rules_path = data_dir / "rules.json"
    try:
        rules = json.loads(rules_path.read_text(encoding="utf-8")) if rules_path.is_file() else {}
    except json.JSONDecodeError as e:
        raise CacheError(f"{rules_path}: bad JSON ({e}); {_hint(data_dir)}") from None
    for row in rows:
        row["rules"] = rules.get(row["game"], {})
    return rows
