"""MiniWoB++ collection in real Chromium: recorded differences agree with the browser's DOM
(read independently through Selenium), vanished elements, browser crashes during
collection (restart and replay, nothing lost), resuming, and cache errors."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil
import pytest

from selenium.webdriver.common.by import By

from rlvr_world.worlds.miniwob.browser import WebEpisodes
from rlvr_world.worlds.miniwob.collect import (
    SPLITS,
    CacheError,
    MiniWoBCollectConfig,
    collect,
    jobs,
    load_transitions,
    run_job,
)
from rlvr_world.worlds.miniwob.page import page_diff

TINY = dict(tasks=["click-button", "enter-text"], heldout_tasks=["focus-text"], train_episodes=6,
            val_episodes=1, test_episodes=1, heldout_episodes=1, max_steps=4, workers=1)


def selenium(web: WebEpisodes):
    return web.env.unwrapped.instance.driver


# --- one browser, real pages -----------------------------------------------------------------


@pytest.fixture(scope="module")
def login():
    with WebEpisodes("login-user") as web:
        yield web


@pytest.fixture(scope="module")
def checkboxes():
    with WebEpisodes("click-checkboxes") as web:
        yield web


def ref_of(page: dict, fragment: str) -> str:
    refs = [k for k, line in page.items() if fragment in line]
    assert len(refs) == 1, (fragment, page)
    return refs[0]


def test_typed_value_in_the_diff_matches_the_dom(login):
    page = login.reset(seed=3)
    ref = ref_of(page, "textbox #username")
    assert f"type [{ref}] 'keneth'" in login.candidate_actions()  # the task's field value
    assert page[ref] == f"[{ref}] textbox #username value=''"
    step = login.step(f"type [{ref}] 'kim'")
    assert (step.done, step.raw_reward, step.error) == (False, None, "")
    dom_value = selenium(login).find_element(By.ID, "username").get_attribute("value")
    assert dom_value == "kim"
    assert page_diff(page, step.page) == {"new": (), "deleted": (), "updated": (
        f"[{ref}] textbox #username value='{dom_value}' focused",)}
    assert step.page == login.page and set(step.page) == set(page)  # ids are stable

    # Typing appends to what is there; the page listing keeps following the DOM.
    again = login.step(f"type [{ref}] 'ab'")
    assert selenium(login).find_element(By.ID, "username").get_attribute("value") == "kimab"
    assert page_diff(step.page, again.page)["updated"] == (f"[{ref}] textbox #username value='kimab' focused",)


def test_checkbox_state_in_the_diff_matches_the_dom(checkboxes):
    page = checkboxes.reset(seed=3)
    ref = ref_of(page, "checkbox #ch0")
    assert f"click [{ref}]" in checkboxes.candidate_actions()
    assert not selenium(checkboxes).find_element(By.ID, "ch0").is_selected()
    assert page[ref].endswith("unchecked")
    states = []
    before = page
    for _ in range(3):
        step = checkboxes.step(f"click [{ref}]")
        assert not step.done and step.error == ""
        selected = selenium(checkboxes).find_element(By.ID, "ch0").is_selected()
        diff = page_diff(before, step.page)
        word = "checked" if selected else "unchecked"
        # The first click also focuses the box; later clicks only toggle it.
        assert diff["updated"] == (f"[{ref}] checkbox #ch0 {word} focused",)
        assert diff["new"] == diff["deleted"] == ()
        states.append(selected)
        before = step.page
    assert states == [True, False, True]
    # The other boxes are untouched, in the listing and in the DOM.
    other = ref_of(page, "checkbox #ch1")
    assert step.page[other] == page[other] == f"[{other}] checkbox #ch1 unchecked"
    assert not selenium(checkboxes).find_element(By.ID, "ch1").is_selected()


def test_episode_end_adds_the_cover_and_keeps_ids(login):
    page = login.reset(seed=3)
    user, password = ref_of(page, "#username"), ref_of(page, "#password")
    button = ref_of(page, "button #subbtn 'Login'")
    assert login.fields == (("username", "keneth"), ("password", "91YP"))
    typed = login.step(f"type [{user}] 'keneth'")
    typed = login.step(f"type [{password}] '91YP'")
    end = login.step(f"click [{button}]")
    assert end.done and end.raw_reward == 1.0 and end.error == ""
    assert end.page["cover"] == "[cover] button 'START' last_reward=1.00"
    diff = page_diff(typed.page, end.page)
    # Only the cover is new; nothing vanished; the other items keep their ids.
    assert diff["new"] == ("[cover] button 'START' last_reward=1.00",)
    assert diff["deleted"] == ()
    assert set(end.page) == set(page) | {"cover"}
    assert diff["updated"] == (f"[{password}] textbox #password value='91YP'",  # lost focus
                               f"[{button}] button #subbtn 'Login' focused")

    # A wrong login also ends the episode, with the raw (negative) reward on the cover.
    page = login.reset(seed=3)
    assert "cover" not in page and page[user] == f"[{user}] textbox #username value=''"
    login.step(f"type [{user}] 'kim'")
    end = login.step(f"click [{button}]")
    assert end.done and end.raw_reward == -1.0
    assert page_diff(page, end.page)["new"] == ("[cover] button 'START' last_reward=-1.00",)
    assert page_diff(page, end.page)["deleted"] == ()


def test_action_on_a_vanished_element(login):
    page = login.reset(seed=4)
    step = login.step("click [9999]")
    assert step.error == "element vanished"
    assert (step.done, step.raw_reward) == (False, None)
    assert step.page == page and login.page == page
    # The episode goes on normally afterwards.
    user = ref_of(page, "#username")
    assert login.step(f"type [{user}] 'x'").page[user] == f"[{user}] textbox #username value='x' focused"
    with pytest.raises(ValueError, match="not a web action"):
        login.step("press [3]")


# --- collection with a browser crash ------------------------------------------------------------


class BrowserKiller:
    """Kills the collection's Chromium / chromedriver processes (descendants of this process
    named "chrom*", except browsers that were open before) from a background thread,
    right after the `after`-th step of the first browser playing each task in `plan`; the
    collection waits for the kill, so it always lands mid-collection between two actions.

    Triggered by step count rather than by a timer: with these tiny jobs most of the wall time
    is browser launches, and a browser killed while it launches is not recovered by
    `run_job` (the error escapes `WebEpisodes.open`), so a timed kill would be flaky."""

    def __init__(self, plan: dict[str, int]):
        self.plan, self.steps = dict(plan), defaultdict(int)
        self.request, self.done = threading.Event(), threading.Event()
        self.kills: list[tuple[str, list[str]]] = []  # (task, names of killed processes)
        self.current = ""
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        # Browsers already open (other tests' fixtures) are not the collection's: spare them.
        self.spared = {p.pid for p in psutil.Process().children(recursive=True)}

    def _run(self):
        while not self.stop:
            if not self.request.wait(0.05):
                continue
            self.request.clear()
            try:
                procs, names = [], set()
                for p in psutil.Process().children(recursive=True):
                    if p.pid in self.spared:
                        continue
                    try:
                        name = p.name()
                    except psutil.Error:
                        continue
                    if "chrom" in name:
                        procs.append(p)
                        names.add(name)
                for p in procs:
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
                psutil.wait_procs(procs, timeout=5)
                self.kills.append((self.current, sorted(names)))
            finally:
                self.done.set()

    def wrap(self, real_step):
        def step(web, action):
            result = real_step(web, action)
            self.steps[web.task] += 1
            if self.plan.get(web.task) == self.steps[web.task]:
                self.current = web.task
                self.done.clear()
                self.request.set()
                assert self.done.wait(30), "the killer thread did not answer"
            return result
        return step


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("mw_crash")
    killer = BrowserKiller({"click-button": 3, "enter-text": 3})  # both mid-episode in train
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(WebEpisodes, "step", killer.wrap(WebEpisodes.step))
        killer.thread.start()
        try:
            manifest = collect(MiniWoBCollectConfig(**TINY), data_dir, seed=0, progress=False)
        finally:
            killer.stop = True
            killer.thread.join()
    return data_dir, manifest, killer


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("mw_clean")
    return data_dir, collect(MiniWoBCollectConfig(**TINY), data_dir, seed=0, progress=False)


def test_kills_really_happened(crashed):
    _, manifest, killer = crashed
    assert [task for task, _ in killer.kills] == ["click-button", "enter-text"]
    for _, names in killer.kills:
        assert "chromedriver" in names and any(n.startswith("chrom") and n != "chromedriver" for n in names)
    assert manifest["browser_restarts"] == 2
    assert len(manifest["crashes"]) == 2 and all(c.startswith(("click-button:", "enter-text:")) for c in manifest["crashes"])
    assert manifest["episodes_given_up"] == 0


def test_no_transition_lost_after_a_crash(crashed):
    data_dir, manifest, _ = crashed
    cfg = MiniWoBCollectConfig(**TINY)
    for split in SPLITS:
        rows = load_transitions(data_dir, split)
        tasks = cfg.heldout_tasks if split == "heldout_task" else cfg.tasks
        assert {r["task"] for r in rows} == set(tasks)
        assert {r["split"] for r in rows} == {split}
        episodes = defaultdict(list)
        for r in rows:
            episodes[(r["task"], r["episode"])].append(r)
        for task in tasks:  # exactly the configured episodes, numbered 0..n-1, each with its own seed
            numbers = sorted(e for t, e in episodes if t == task)
            assert numbers == list(range(cfg.episodes(split))), (split, task)
            assert len({episodes[(task, e)][0]["seed"] for e in numbers}) == len(numbers)
        for (task, episode), steps in episodes.items():
            assert [r["step"] for r in steps] == list(range(len(steps))), (split, task, episode)
            assert 1 <= len(steps) <= cfg.max_steps
            assert len({r["seed"] for r in steps}) == 1
            # A transition's page is the previous transition's next page: one unbroken episode.
            for prev, nxt in zip(steps, steps[1:]):
                assert nxt["page"] == prev["next_page"] and not prev["done"]
            assert page_diff(dict(steps[0]["page"]), dict(steps[0]["next_page"])) == {
                k: tuple(v) for k, v in steps[0]["diff"].items()}
            # One success label per episode: it ended with a positive raw reward.
            labels = {r["success"] for r in steps}
            assert len(labels) == 1
            last = steps[-1]
            assert labels == {bool(last["done"] and last["raw_reward"] > 0)}
            if last["done"]:
                assert dict(last["next_page"])["cover"].endswith(f"last_reward={last['raw_reward']:.2f}")
        assert manifest["counts"][split]["episodes"] == len(episodes)
        assert manifest["counts"][split]["transitions"] == len(rows)


def test_crashed_collection_matches_a_clean_one(crashed, clean):
    """A replayed episode restarts from its task seed with its own action stream and without
    focus left over from the episode before, so the collection with two browser crashes is
    row for row the collection without any."""
    crashed_dir, _, _ = crashed
    clean_dir, clean_manifest = clean
    assert clean_manifest["browser_restarts"] == 0
    for split in SPLITS:
        assert load_transitions(crashed_dir, split) == load_transitions(clean_dir, split), split


def test_resume_reuses_finished_parts(crashed, tmp_path):
    data_dir, manifest, _ = crashed
    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    (copy / "manifest.json").unlink()
    (copy / "train.jsonl").unlink()
    t0 = time.perf_counter()
    again = collect(MiniWoBCollectConfig(**TINY), copy, seed=0, progress=False)
    assert time.perf_counter() - t0 < 1.0  # no browser started
    assert again["counts"] == manifest["counts"]
    assert again["browser_restarts"] == manifest["browser_restarts"]
    for split in SPLITS:
        assert (copy / f"{split}.jsonl").read_bytes() == (data_dir / f"{split}.jsonl").read_bytes()
    # The same call on the original folder too, leaving it complete.
    again = collect(MiniWoBCollectConfig(**TINY), data_dir, seed=0, progress=False)
    assert again["counts"] == manifest["counts"] and (data_dir / "manifest.json").is_file()


# --- cache errors ---------------------------------------------------------------------------------


def test_load_transitions_reports_a_corrupted_line(clean, tmp_path):
    data_dir, _ = clean
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(data_dir / "manifest.json", broken / "manifest.json")
    lines = (data_dir / "train.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) >= 3
    lines[1] = lines[1][: len(lines[1]) // 2] + "\n"  # cut in the middle, as by a full disk
    (broken / "train.jsonl").write_text("".join(lines))
    with pytest.raises(CacheError, match=r"train\.jsonl:2: bad JSON") as info:
        load_transitions(broken, "train")
    assert str(broken / "train.jsonl") in str(info.value)
    assert "rlvr-world collect --config miniwob" in str(info.value)
    # A line that is valid JSON but lacks a key is named too.
    row = json.loads(lines[0])
    del row["diff"]
    lines[1] = json.dumps(row) + "\n"
    (broken / "train.jsonl").write_text("".join(lines))
    with pytest.raises(CacheError, match=r"train\.jsonl:2: missing key\(s\) diff"):
        load_transitions(broken, "train")


def test_load_transitions_without_manifest(clean, tmp_path):
    data_dir, _ = clean
    partial = tmp_path / "partial"  # split files without a manifest: an interrupted collection
    partial.mkdir()
    shutil.copy(data_dir / "train.jsonl", partial / "train.jsonl")
    with pytest.raises(CacheError, match=r"manifest\.json is missing.*rlvr-world collect --config miniwob data_dir=.*partial"):
        load_transitions(partial, "train")
    with pytest.raises(CacheError, match="regenerate it"):
        load_transitions(tmp_path / "nowhere", "val")
    with pytest.raises(ValueError, match="unknown split"):
        load_transitions(data_dir, "dev")
    assert len(load_transitions(data_dir, "heldout_task")) >= 1


def _kill_browsers_of_this_process() -> None:
    for p in psutil.Process().children(recursive=True):
        try:
            if "chrom" in p.name():
                p.kill()
        except psutil.Error:
            pass


def test_a_browser_dying_while_it_starts_is_relaunched():
    """Chromium killed during its launch: the launch is retried, the job still finishes."""

    class DiesWhileStarting(WebEpisodes):
        def open(self):
            if self.restarts == 0:
                threading.Timer(0.3, _kill_browsers_of_this_process).start()
            return super().open()

    cfg = MiniWoBCollectConfig(tasks=["click-button"], heldout_tasks=[], train_episodes=3, val_episodes=0,
                               test_episodes=0, heldout_episodes=0, max_steps=3, workers=1)
    result = run_job(jobs(cfg, 0)[0], web_factory=DiesWhileStarting)
    assert result["restarts"] >= 1 and result["crashes"]
    assert result["episodes_given_up"] == 0
    assert sorted({r["episode"] for r in result["rows"]}) == [0, 1, 2]
