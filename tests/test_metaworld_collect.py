"""Meta-World collection on the real simulator (MuJoCo, rendered on CPU): shapes, splits by
episode and by held-out task, reproducibility, resuming, crash retries and cache errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("metaworld")

from rlvr_world.worlds.metaworld import collect as mw  # noqa: E402
from rlvr_world.worlds.metaworld.collect import (  # noqa: E402
    SPLITS,
    MetaWorldCollectConfig,
    collect,
    episode_seed,
    load_episodes,
    record_episode,
)

SEED = 5
TINY = dict(tasks=("reach-v3", "door-open-v3"), held_out_tasks=("drawer-close-v3",), episodes_per_task=3,
            heldout_episodes_per_task=2, val_fraction=0.34, test_fraction=0.34, action_noise=(0.0, 1.0),
            max_steps=10, steps_after_success=2, workers=1, max_retries=1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("mw_collect")
    manifest = collect(MetaWorldCollectConfig(**TINY), data_dir, seed=SEED, progress=False)
    return data_dir, manifest


def test_config_validates():
    cfg = MetaWorldCollectConfig(tasks=["reach-v3"], held_out_tasks=[], action_noise=[0, 0.5])
    assert cfg.tasks == ("reach-v3",) and cfg.held_out_tasks == () and cfg.action_noise == (0.0, 0.5)
    with pytest.raises(ValueError, match="both tasks and held_out_tasks"):
        MetaWorldCollectConfig(tasks=("reach-v3",), held_out_tasks=("reach-v3",))
    with pytest.raises(ValueError, match="no train episode"):
        MetaWorldCollectConfig(episodes_per_task=2, val_fraction=0.3, test_fraction=0.3)
    with pytest.raises(ValueError, match="action_noise"):
        MetaWorldCollectConfig(action_noise=(-1.0,))
    with pytest.raises(ValueError, match="unknown Meta-World task 'reach-v9'"):
        mw.check_tasks(MetaWorldCollectConfig(tasks=("reach-v9",)))
    with pytest.raises(ValueError, match="unknown camera"):
        mw.check_tasks(MetaWorldCollectConfig(camera="nope"))


def test_split_by_episode_is_balanced_over_noise():
    cfg = MetaWorldCollectConfig(tasks=("reach-v3",), held_out_tasks=("drawer-close-v3",), episodes_per_task=40,
                                 heldout_episodes_per_task=5, action_noise=(0.0, 0.5, 1.0, 1.5))
    split = mw.split_of_episodes(cfg, 0, "reach-v3")
    assert split == mw.split_of_episodes(cfg, 0, "reach-v3")  # deterministic
    for name in ("val", "test"):
        levels = sorted(mw.noise_of(cfg, i) for i, s in split.items() if s == name)
        assert levels == [0.0, 0.5, 1.0, 1.5]  # one episode per noise level
    assert set(mw.split_of_episodes(cfg, 0, "drawer-close-v3").values()) == {"heldout_task"}


@pytest.mark.slow
def test_episode_arrays(cache):
    data_dir, manifest = cache
    n = 0
    for split in SPLITS:
        for ep in load_episodes(data_dir, split):
            frames, actions, success = ep["frames"], ep["actions"], ep["success"]
            t = len(actions)
            assert 1 <= t <= TINY["max_steps"]
            assert frames.dtype == np.uint8 and frames.shape == (t + 1, 64, 64, 3)
            assert actions.dtype == np.float32 and actions.shape == (t, 4)
            assert success.dtype == np.bool_ and success.shape == (t + 1,)
            assert np.abs(actions).max() <= 1.0
            assert (frames.reshape(t + 1, -1).max(axis=1) > 0).all(), f"black frame in {ep['file']}"
            diffs = np.abs(frames[1:].astype(int) - frames[:-1].astype(int)).mean(axis=(1, 2, 3))
            assert diffs.max() > 1.0, f"frames never change in {ep['file']}"
            first = np.flatnonzero(success)
            if len(first):  # cut steps_after_success after the first success
                assert t == min(first[0] + TINY["steps_after_success"], TINY["max_steps"])
            n += 1
    assert n == len(manifest["episodes"]) == 2 * 3 + 2


@pytest.mark.slow
def test_splits_and_manifest(cache):
    data_dir, manifest = cache
    seen = {split: {(e["task"], e["episode"]) for e in load_episodes(data_dir, split)} for split in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not seen[a] & seen[b], (a, b)
    assert {t for t, _ in seen["heldout_task"]} == {"drawer-close-v3"}
    for split in ("train", "val", "test"):
        assert seen[split] and {t for t, _ in seen[split]} == {"reach-v3", "door-open-v3"}
    assert manifest["counts"]["per_task"]["drawer-close-v3"] == {"heldout_task": 2}
    assert manifest["counts"]["per_split"]["train"]["episodes"] == 2
    assert set(manifest["success_rate_per_noise"]) == {"0.0", "1.0"}
    assert manifest["versions"]["metaworld"] and manifest["versions"]["mujoco"] and manifest["versions"]["numpy"]
    assert manifest["collection"]["frames_per_s"] > 0
    assert json.loads((data_dir / "manifest.json").read_text()) == manifest
    rec = manifest["episodes"][0]
    assert set(rec) >= {"file", "task", "split", "episode", "noise", "length", "first_success", "retries"}


@pytest.mark.slow
def test_episode_reproducible_from_seed(cache):
    data_dir, manifest = cache
    cfg = MetaWorldCollectConfig(**TINY)
    rec = next(r for r in manifest["episodes"] if r["task"] == "door-open-v3" and r["noise"] > 0)
    again = record_episode(rec["task"], cfg, episode_seed(SEED, rec["task"], rec["episode"]), rec["noise"])
    with np.load(data_dir / rec["file"]) as stored:
        for key in ("frames", "actions", "success"):
            np.testing.assert_array_equal(again[key], stored[key])
    other = record_episode(rec["task"], cfg, episode_seed(SEED + 1, rec["task"], rec["episode"]), rec["noise"])
    assert not np.array_equal(other["frames"][0], again["frames"][0])  # a new layout per seed


@pytest.mark.slow
def test_resume_does_not_rerun(cache, tmp_path):
    data_dir = tmp_path / "copy"
    shutil.copytree(cache[0], data_dir)
    files = sorted((data_dir / "episodes").glob("*/*.npz"))
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    manifest = collect(MetaWorldCollectConfig(**TINY), data_dir, seed=SEED, progress=False)
    assert {f: f.stat().st_mtime_ns for f in files} == mtimes
    assert manifest["collection"]["episodes_recorded_now"] == 0
    assert manifest["episodes"] == cache[1]["episodes"]
    # A lost file is recorded again, identically.
    before = np.load(files[0])["frames"]
    files[0].unlink()
    manifest = collect(MetaWorldCollectConfig(**TINY), data_dir, seed=SEED, progress=False)
    assert manifest["collection"]["episodes_recorded_now"] == 1
    np.testing.assert_array_equal(np.load(files[0])["frames"], before)
    assert all(f.stat().st_mtime_ns == mtimes[f] for f in files[1:])
    # So is a damaged one, with a warning.
    before = np.load(files[1])["frames"]
    files[1].write_bytes(b"damaged")
    with pytest.warns(UserWarning, match=rf"{files[1].name}.*recording it again"):
        manifest = collect(MetaWorldCollectConfig(**TINY), data_dir, seed=SEED, progress=False)
    assert manifest["collection"]["episodes_recorded_now"] == 1
    np.testing.assert_array_equal(np.load(files[1])["frames"], before)
    # Other content settings in the same folder would mix two datasets: refused.
    with pytest.raises(ValueError, match="frame_skip"):
        collect(MetaWorldCollectConfig(**{**TINY, "frame_skip": 2}), data_dir, seed=SEED, progress=False)


@pytest.mark.slow
def test_load_errors(cache, tmp_path):
    with pytest.raises(FileNotFoundError, match="rlvr-world collect --config metaworld"):
        load_episodes(tmp_path / "nothing", "train")
    with pytest.raises(ValueError, match="unknown split"):
        load_episodes(cache[0], "training")
    data_dir = tmp_path / "copy"
    shutil.copytree(cache[0], data_dir)
    rec = next(r for r in cache[1]["episodes"] if r["split"] == "train")
    path = data_dir / rec["file"]

    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(ValueError, match=rf"{path.name}.*not a readable npz"):
        load_episodes(data_dir, "train")

    t = rec["length"]
    np.savez_compressed(path, frames=np.zeros((t + 1, 32, 32, 3), np.uint8), actions=np.zeros((t, 4), np.float32),
                        success=np.zeros(t + 1, bool))
    with pytest.raises(ValueError, match=rf"{path.name}.*frames uint8 \[T\+1,64,64,3\] with actions float32 \[T,4\]"):
        load_episodes(data_dir, "train")

    np.savez_compressed(path, frames=np.ones((t + 1, 64, 64, 3), np.uint8), actions=np.zeros((t, 4), np.float64),
                        success=np.zeros(t + 1, bool))
    with pytest.raises(ValueError, match=rf"{path.name}.*got frames uint8 .* actions float64"):
        load_episodes(data_dir, "train")

    np.savez_compressed(path, frames=np.ones((t + 1, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=rf"{path.name}.*missing array\(s\) actions, success"):
        load_episodes(data_dir, "train")


def _one_task(**kw):
    return MetaWorldCollectConfig(**{**TINY, "tasks": ("reach-v3",), "held_out_tasks": (), "episodes_per_task": 2,
                                     "val_fraction": 0.0, "test_fraction": 0.0, "max_steps": 4, **kw})


@pytest.mark.slow
def test_fake_crash_is_retried(tmp_path, monkeypatch):
    """A FAKE simulator crash (a real MuJoCo crash cannot be caused on demand): the first attempt
    of episode 1 raises; it is retried with a fresh env and recorded, and the retry is counted."""
    real, calls = mw.record_episode, []

    def crash_once(task, cfg, ep_seed, noise, sim=None):
        calls.append(ep_seed)
        if ep_seed == episode_seed(SEED, "reach-v3", 1, attempt=0):
            raise RuntimeError("fake simulator crash (injected by the test)")
        return real(task, cfg, ep_seed, noise, sim)

    monkeypatch.setattr(mw, "record_episode", crash_once)
    manifest = collect(_one_task(), tmp_path, seed=SEED, progress=False)
    assert calls == [episode_seed(SEED, "reach-v3", 0), episode_seed(SEED, "reach-v3", 1, attempt=0),
                     episode_seed(SEED, "reach-v3", 1, attempt=1)]
    rec = {r["episode"]: r for r in manifest["episodes"]}
    assert rec[0]["retries"] == 0 and rec[1]["retries"] == 1
    assert manifest["retries"]["total"] == 1
    assert "fake simulator crash" in manifest["retries"]["episodes"][rec[1]["file"]]["errors"][0]
    assert len(load_episodes(tmp_path, "train")) == 2


@pytest.mark.slow
def test_episode_that_always_crashes(tmp_path, monkeypatch):
    """FAKE crashes on every attempt of episode 1: the other episode is kept, no manifest is
    written, and the next run resumes without re-running what was recorded."""
    real = mw.record_episode

    def always_crash(task, cfg, ep_seed, noise, sim=None):
        if ep_seed in {episode_seed(SEED, "reach-v3", 1, attempt=a) for a in range(3)}:
            raise RuntimeError("fake simulator crash")
        return real(task, cfg, ep_seed, noise, sim)

    monkeypatch.setattr(mw, "record_episode", always_crash)
    with pytest.raises(RuntimeError, match=r"(?s)1 episode\(s\) failed .*00001\.npz: attempt 0 .*fake simulator crash"):
        collect(_one_task(), tmp_path, seed=SEED, progress=False)
    kept = tmp_path / "episodes/reach-v3/00000.npz"
    assert kept.is_file() and not (tmp_path / "manifest.json").exists()
    mtime = kept.stat().st_mtime_ns
    monkeypatch.setattr(mw, "record_episode", real)
    manifest = collect(_one_task(), tmp_path, seed=SEED, progress=False)
    assert manifest["collection"]["episodes_recorded_now"] == 1 and kept.stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_worker_processes_record_the_same_episodes(tmp_path):
    """Two spawned workers write the same files as one in-process worker."""
    cfg = dict(tasks=("reach-v3",), held_out_tasks=("drawer-close-v3",), heldout_episodes_per_task=1,
               episodes_per_task=1, val_fraction=0.0, test_fraction=0.0, max_steps=3)
    one = collect(_one_task(**cfg, workers=1), tmp_path / "one", seed=SEED, progress=False)
    two = collect(_one_task(**cfg, workers=2), tmp_path / "two", seed=SEED, progress=False)
    assert two["collection"]["workers"] == 2 and one["episodes"] == two["episodes"]
    for rec in one["episodes"]:
        with np.load(tmp_path / "one" / rec["file"]) as a, np.load(tmp_path / "two" / rec["file"]) as b:
            np.testing.assert_array_equal(a["frames"], b["frames"])
