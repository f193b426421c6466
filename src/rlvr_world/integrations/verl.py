"""A text world's data and verifiable reward in verl.

verl trains on parquet files of RL rows and scores each response with a reward function it
loads from a file (``reward.custom_reward_function.path=<this file>``,
``reward.custom_reward_function.name=compute_score``). This module gives both:

* `export_parquet` writes ``<out_dir>/<split>.parquet`` with verl's RL dataset columns::

      data_source   "rlvr_world/textworld"   (names the world; `compute_score` finds it from this)
      prompt        [{"role": "user", "content": <world.prompt_text(t)>}]   (verl applies the
                    tokenizer's chat template itself)
      ability       "world_model"
      reward_model  {"style": "rule", "ground_truth": <world.ground_truth(t)>}
      extra_info    {"split", "index", "reward": reward spec, "world_options": JSON of the
                    world's constructor options, "meta": the world's facts about t}

* `compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs)`: the
  world parses the response (`parse`; None -> 0.0) and the ground truth
  (`target_from_ground_truth`) and the reward spec scores the pair (``extra_info["reward"]``,
  or a ``reward=`` keyword from ``reward.custom_reward_function.reward_kwargs``, default the
  world's `default_reward`). Junk response text scores 0 and never raises.

verl's environment pins its own transformers and torch, so our package goes there with
``pip install --no-deps`` (scripts/setup_verl.sh): importing this module and scoring must not
need anything beyond what verl brings. Hence the lazy imports of the export path (pipeline,
pyarrow) and a world is only imported when a row names it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Optional

from rlvr_world.rewards import WeightedReward
from rlvr_world.worlds import WORLDS, get_world
from rlvr_world.worlds.language import LanguageWorld, chat_messages, text_world

DATA_SOURCE_PREFIX = "rlvr_world/"
ABILITY = "world_model"  # verl groups validation metrics by data_source; `ability` is informational


def data_source(world_name: str) -> str:
    """verl's `data_source` of a world's rows: ``rlvr_world/<world name>``."""
    return DATA_SOURCE_PREFIX + world_name


def world_name_of(source: str) -> str:
    """Inverse of `data_source`; ValueError for a data source that is not one of our worlds."""
    if not isinstance(source, str) or not source.startswith(DATA_SOURCE_PREFIX):
        raise ValueError(f"data_source {source!r} is not an rlvr_world one: expected "
                         f"{', '.join(repr(data_source(w)) for w in sorted(WORLDS))}")
    name = source[len(DATA_SOURCE_PREFIX):]
    if name not in WORLDS:
        raise ValueError(f"data_source {source!r} names no registered world; known: "
                         f"{', '.join(repr(data_source(w)) for w in sorted(WORLDS))}")
    return name


@lru_cache(maxsize=32)
def _world(name: str, options_json: str) -> LanguageWorld:
    # verl calls compute_score once per response: build each world (and options) once per process.
    return text_world(get_world(name, **json.loads(options_json)), "verl's rule rewards read text")


@lru_cache(maxsize=64)
def _reward(spec: str) -> WeightedReward:
    return WeightedReward.parse(spec)


def _options_json(options: Any) -> str:
    """World options as canonical JSON (they travel in `extra_info` as a JSON string, so rows of
    any world share one parquet schema)."""
    if options is None or options == "":
        return "{}"
    if isinstance(options, str):
        options = json.loads(options)
    return json.dumps(dict(options), sort_keys=True)


def world_for(source: str, extra_info: Optional[dict] = None) -> LanguageWorld:
    """The text world a row comes from, built with the options its `extra_info` carries."""
    name = world_name_of(source)
    return _world(name, _options_json((extra_info or {}).get("world_options")))


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: Optional[dict] = None,
                  reward: Optional[str] = None, **kwargs: Any) -> float:
    """verl's custom reward function: the world's reward of one response.

    data_source: ``rlvr_world/<world>`` (ValueError otherwise).
    solution_str: the decoded response; text the world cannot parse scores 0.0.
    ground_truth: ``reward_model.ground_truth`` of the row (`world.ground_truth(t)`).
    extra_info: the row's `extra_info`; its ``reward`` spec and ``world_options`` are used,
        anything verl adds (``num_turns``, ``rollout_reward_scores``...) is ignored.
    reward: a reward spec overriding the row's (``"binary"``, ``"f1:1,exact:0.2"``).
    kwargs: whatever else verl passes (e.g. ``reward_router_address``); ignored.
    """
    extra_info = extra_info if isinstance(extra_info, dict) else {}
    world = world_for(data_source, extra_info)
    fn = _reward(reward or extra_info.get("reward") or world.default_reward)
    target = world.target_from_ground_truth(ground_truth)
    if target is None:  # the data is broken, not the policy: say so rather than train on zeros
        raise ValueError(f"{data_source}: ground truth does not parse: {str(ground_truth)[:200]!r}")
    try:
        prediction = world.parse(solution_str) if isinstance(solution_str, str) else None
    except Exception:  # `parse` should never raise; a world bug must not kill a training run either
        prediction = None
    if prediction is None:
        return 0.0
    (score,), _ = fn.score([prediction], [target])  # a reward that raises or is not finite scores 0
    return float(score)


# ---- export --------------------------------------------------------------------------------------

def export_rows(world: LanguageWorld, transitions: Iterable[dict], split: str, world_name: Optional[str] = None,
                world_options: Optional[dict] = None, reward: Optional[str] = None) -> list[dict]:
    """verl RL dataset rows of one split (see the module docstring for the columns).

    world_name: the registered name (default `world.name`); world_options: the constructor
    options `compute_score` rebuilds the world with; reward: the spec `compute_score` applies
    (default the world's `default_reward`).
    """
    world = text_world(world, "verl rows are text")
    name = world_name or world.name
    world_name_of(data_source(name))  # fail now on a world compute_score could not find
    spec = reward or world.default_reward
    _reward(spec)  # an unknown reward fails now, not in the middle of a verl run
    options = _options_json(world_options)
    rows = []
    for index, t in enumerate(transitions):
        rows.append({
            "data_source": data_source(name),
            "prompt": chat_messages(world.prompt_text(t)),
            "ability": ABILITY,
            "reward_model": {"style": "rule", "ground_truth": world.ground_truth(t)},
            "extra_info": {"split": split, "index": index, "reward": spec, "world_options": options,
                           "meta": world.meta(t)},
        })
    return rows


def write_parquet(rows: list[dict], path: Path) -> Path:
    """Rows as one parquet file (pyarrow infers the nested struct / list-of-struct columns)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise RuntimeError("writing verl parquet files needs pyarrow: pip install pyarrow") from e
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    tmp.replace(path)  # a half-written file never looks like an export
    return path


def export_parquet(cfg: Any, out_dir: str | Path, splits: Iterable[str] = ("train", "val", "test")) -> list[Path]:
    """`<out_dir>/<split>.parquet` for each split of the run's transition cache (collected first
    when the cache has no manifest, as `rlvr-world collect` would). Returns the written paths.

    The reward spec is the run's `rlvr.reward` (default the world's `default_reward`).
    """
    from rlvr_world import pipeline

    world = text_world(pipeline.world_of(cfg), "only text worlds export to verl")
    if not (Path(cfg.data_path) / "manifest.json").exists():
        pipeline.collect(cfg)
    paths = []
    for split in splits:
        rows = export_rows(world, world.load_transitions(cfg.data_path, split), split, world_name=cfg.world,
                           world_options=cfg.world_options, reward=cfg.rlvr.reward or None)
        if not rows:
            raise ValueError(f"{cfg.data_path}: split {split!r} has no transitions to export")
        paths.append(write_parquet(rows, Path(out_dir) / f"{split}.parquet"))
    return paths


__all__ = ["compute_score", "data_source", "export_parquet", "export_rows", "world_for", "world_name_of",
           "write_parquet"]
