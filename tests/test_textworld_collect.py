"""TextWorld collection on the real engine: split by game, exact differences (checked by an
independent replay), manifest counts, caching, and cache errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rlvr_world.worlds.textworld.collect import (
    SPLITS,
    CacheError,
    TextWorldCollectConfig,
    collect,
    load_transitions,
    room_view,
    view_covers,
)

TINY = dict(n_train_games=1, n_val_games=1, n_test_games=1, world_size=[2, 4], nb_objects=[3, 6],
            quest_length=[1, 3], episodes_per_game=2, steps_per_episode=12, walkthrough_prob=0.3)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tw_collect")
    manifest = collect(TextWorldCollectConfig(**TINY, workers=2), data_dir, seed=7, progress=False)
    return data_dir, manifest


def test_config_accepts_yaml_lists_and_validates():
    cfg = TextWorldCollectConfig(world_size=[3, 6], nb_objects=5)
    assert cfg.world_size == (3, 6) and cfg.nb_objects == (5, 5)
    with pytest.raises(ValueError, match="world_size"):
        TextWorldCollectConfig(world_size=[6, 3])
    with pytest.raises(ValueError, match="state_view"):
        TextWorldCollectConfig(state_view="everything")


def test_room_view_hand_written():
    facts = [
        "at(P, kitchen: r)",
        "at(chest: c, kitchen: r)",
        "in(apple: f, chest: c)",
        "in(seed: o, apple: f)",  # nested: visible
        "at(table: s, attic: r)",  # another room: hidden
        "on(cup: o, table: s)",  # hidden
        "in(box: c, I)",
        "in(coin: o, box: c)",  # inside the inventory: visible
        "link(kitchen: r, wooden door: d, attic: r)",
        "link(attic: r, wooden door: d, kitchen: r)",
        "closed(wooden door: d)",
        "north_of(attic: r, kitchen: r)",
        "north_of(cellar: r, attic: r)",  # two rooms away: hidden
        "match(key: k, chest: c)",  # the key lies elsewhere: hidden
        "at(key: k, cellar: r)",
    ]
    assert room_view(facts) == sorted([
        "at(P, kitchen: r)", "at(chest: c, kitchen: r)", "in(apple: f, chest: c)", "in(seed: o, apple: f)",
        "in(box: c, I)", "in(coin: o, box: c)", "link(kitchen: r, wooden door: d, attic: r)",
        "link(attic: r, wooden door: d, kitchen: r)", "closed(wooden door: d)", "north_of(attic: r, kitchen: r)",
    ])
    view = room_view(facts)
    assert view_covers(view, added=["at(P, attic: r)"], removed=["at(P, kitchen: r)"])
    assert not view_covers(view, added=["in(key: k, I)"], removed=["at(key: k, cellar: r)"])
    assert not view_covers(view, added=["in(cup: o, I)"], removed=[])


def test_splits_are_disjoint_by_game(cache):
    data_dir, manifest = cache
    games = {split: {r["game"] for r in load_transitions(data_dir, split)} for split in SPLITS}
    seeds = {split: {r["seed"] for r in load_transitions(data_dir, split)} for split in SPLITS}
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        assert not games[a] & games[b] and not seeds[a] & seeds[b]
        assert not set(manifest["game_seeds"][a]) & set(manifest["game_seeds"][b])
    for split in SPLITS:
        assert games[split] == set(manifest["games"][split]) and len(games[split]) == 1
        assert seeds[split] == set(manifest["game_seeds"][split])


def test_manifest_counts(cache):
    data_dir, manifest = cache
    assert json.loads((data_dir / "manifest.json").read_text()) == manifest
    total = changed = 0
    for split in SPLITS:
        rows = load_transitions(data_dir, split)
        lines = (data_dir / f"{split}.jsonl").read_text().splitlines()
        assert manifest["counts"][split]["transitions"] == len(rows) == len(lines) > 0
        assert manifest["counts"][split]["games"] == 1
        total += len(rows)
        changed += sum(r["changed"] for r in rows)
    assert manifest["transitions"] == total
    assert manifest["fraction_changed"] == pytest.approx(changed / total)
    assert 0 < manifest["fraction_changed"] < 1
    assert manifest["view_coverage"] == 1.0  # OFFLINE.md: the room view never hid a change
    assert manifest["versions"]["textworld"] == "1.7.0"
    assert manifest["config"]["world_size"] == [2, 4]
    assert manifest["games_generated"] == 3
    assert sorted(p.suffix for p in (data_dir / "games").iterdir()) == [".json"] * 3 + [".z8"] * 3


@pytest.mark.filterwarnings("ignore:Unable to find valid actions")
def test_transitions_match_independent_replay(cache):
    """Replay every recorded command in a fresh TextWorld env: facts, added and removed agree."""
    import textworld

    data_dir, _ = cache
    infos = textworld.EnvInfos(facts=True, admissible_commands=True)
    n_checked = 0
    for split in SPLITS:
        rows = load_transitions(data_dir, split)
        env = textworld.start(str(data_dir / "games" / f"{rows[0]['game']}.z8"), infos)
        episodes = sorted({r["episode"] for r in rows})
        assert episodes == list(range(len(episodes)))
        for episode in episodes:
            steps = [r for r in rows if r["episode"] == episode]
            assert [r["step"] for r in steps] == list(range(len(steps)))
            state = env.reset()
            for r in steps:
                before = {str(f) for f in state["facts"]}
                assert r["facts"] == sorted(before)
                assert r["command"] in state["admissible_commands"]
                assert r["view"] == room_view(r["facts"]) and set(r["view"]) <= before
                state, _, _ = env.step(r["command"])
                after = {str(f) for f in state["facts"]}
                assert r["added"] == sorted(after - before)
                assert r["removed"] == sorted(before - after)
                assert r["changed"] == bool(after ^ before)
                n_checked += 1
        env.close()
    assert n_checked == sum(len(load_transitions(data_dir, s)) for s in SPLITS)


def test_games_are_cached_and_collection_is_deterministic(cache, tmp_path):
    data_dir, _ = cache
    copy = tmp_path / "copy"
    shutil.copytree(data_dir / "games", copy / "games")
    manifest = collect(TextWorldCollectConfig(**TINY, workers=1), copy, seed=7, progress=False)
    assert manifest["games_generated"] == 0
    for split in SPLITS:
        assert (copy / f"{split}.jsonl").read_bytes() == (data_dir / f"{split}.jsonl").read_bytes()


def _broken_copy(data_dir: Path, tmp_path: Path, lineno: int, replacement: str) -> Path:
    out = tmp_path / "broken"
    out.mkdir()
    shutil.copy(data_dir / "manifest.json", out / "manifest.json")
    lines = (data_dir / "train.jsonl").read_text().splitlines(keepends=True)
    lines[lineno - 1] = replacement + "\n"
    (out / "train.jsonl").write_text("".join(lines))
    return out


def test_load_transitions_reports_bad_json_line(cache, tmp_path):
    data_dir, _ = cache
    broken = _broken_copy(data_dir, tmp_path, 3, '{"game": "tw-1", "seed": ')
    with pytest.raises(CacheError, match=r"train\.jsonl:3: bad JSON") as info:
        load_transitions(broken, "train")
    assert str(broken / "train.jsonl") in str(info.value)


def test_load_transitions_reports_missing_key(cache, tmp_path):
    data_dir, _ = cache
    row = load_transitions(data_dir, "train")[1]
    del row["command"]
    broken = _broken_copy(data_dir, tmp_path, 2, json.dumps(row))
    with pytest.raises(CacheError, match=r"train\.jsonl:2: missing key\(s\) command"):
        load_transitions(broken, "train")


def test_load_transitions_missing_cache(cache, tmp_path):
    with pytest.raises(CacheError, match=r"rlvr-world collect --config textworld data_dir=.*nowhere"):
        load_transitions(tmp_path / "nowhere", "train")
    data_dir, _ = cache
    partial = tmp_path / "partial"  # split files without a manifest: an interrupted collection
    partial.mkdir()
    shutil.copy(data_dir / "train.jsonl", partial / "train.jsonl")
    with pytest.raises(CacheError, match="manifest.json is missing"):
        load_transitions(partial, "train")
    with pytest.raises(ValueError, match="unknown split"):
        load_transitions(data_dir, "dev")


def test_quest_is_shortened_when_none_exists(tmp_path, monkeypatch):
    """A world with no quest of the drawn length falls back to a shorter quest, remembered."""
    import textworld
    from textworld.generator import QuestGenerationError

    from rlvr_world.worlds.textworld.collect import make_game_file

    real_make, lengths = textworld.make, []

    def make_only_short_quests(options, *args, **kwargs):  # the real generator, for short quests
        lengths.append(options.chaining.max_length)
        if options.chaining.max_length > 1:
            raise QuestGenerationError("no quest of that length")
        return real_make(options, *args, **kwargs)

    monkeypatch.setattr(textworld, "make", make_only_short_quests)
    params = {"world_size": 2, "nb_objects": 3, "quest_length": 3}
    path, generated = make_game_file(11, params, tmp_path)
    assert (path.name, generated, lengths) == ("tw-s11-w2-o3-q1.z8", True, [3, 2, 1])
    assert path.with_suffix(".json").is_file()
    assert sorted(p.name for p in tmp_path.glob("*.noquest")) == ["tw-s11-w2-o3-q2.noquest", "tw-s11-w2-o3-q3.noquest"]
    assert make_game_file(11, params, tmp_path) == (path, False) and lengths == [3, 2, 1]
    assert not list(tmp_path.glob(".tmp-*"))
