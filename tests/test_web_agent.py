"""The MPC web agent: diff application, intervals, the learned value function, and a real episode."""

from __future__ import annotations

import math
import random

import pytest

from rlvr_world.apps.value import PageValue, line_features, page_features, train_value
from rlvr_world.apps.web_agent import (AgentConfig, OraclePredictor, apply_diff, evaluate_agent, mpc_chooser,
                                      paired_comparisons, paired_difference, pooled_paired_difference,
                                      wilson_interval)


def test_apply_diff_removes_updates_and_adds_by_id():
    page = {"4": "[4] button 'Ok'", "5": "[5] textbox value=''", "6": "[6] div 'x'"}
    diff = {"deleted": frozenset({"[6] div 'x'"}), "updated": frozenset({"[5] textbox value='kim' focused"}),
            "new": frozenset({"[cover] button 'START' last_reward=1.00"})}
    assert apply_diff(page, diff) == {"4": "[4] button 'Ok'", "5": "[5] textbox value='kim' focused",
                                      "cover": "[cover] button 'START' last_reward=1.00"}
    assert apply_diff(page, None) == page  # an unparseable prediction leaves the page as it is
    assert page["5"] == "[5] textbox value=''"  # the input page is not modified


def test_wilson_interval_hand_computed():
    # 8 of 10: p = 0.8, z^2 = 3.8416; centre = (0.8 + 0.19208) / 1.38416 = 0.716738;
    # half = 1.96 * sqrt(0.016 + 0.009604) / 1.38416 = 0.226581 -> [0.490157, 0.943319]
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.490157, abs=1e-5) and hi == pytest.approx(0.943319, abs=1e-5)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_paired_difference_hand_computed():
    # a solves episodes 1, 2 and 7 that b misses, b solves episode 4 that a misses: n10 = 3, n01 = 1.
    # d = 2/10; half = 1.96 * sqrt(3 + 1 - 2^2/10) / 10 = 1.96 * 1.897367 / 10 = 0.371884;
    # McNemar: 2 * P(Bin(4, 1/2) <= 1) = 2 * 5/16 = 0.625.
    a = [bool(x) for x in (1, 1, 1, 0, 0, 1, 0, 1, 1, 0)]
    b = [bool(x) for x in (1, 0, 0, 0, 1, 1, 0, 0, 1, 0)]
    c = paired_difference(a, b)
    assert (c["a_only"], c["b_only"], c["episodes"]) == (3, 1, 10) and c["difference"] == pytest.approx(0.2)
    assert c["ci95"] == pytest.approx([-0.171884, 0.571884], abs=1e-6) and c["p_value"] == pytest.approx(0.625)
    # 6 to 0 in 20: d = 0.3, half = 1.96 * sqrt(6 - 36/20) / 20 = 0.200840, p = 2 / 2^6 = 0.03125.
    c = paired_difference([True] * 6 + [False] * 14, [False] * 20)
    assert c["ci95"] == pytest.approx([0.099160, 0.500840], abs=1e-6) and c["p_value"] == pytest.approx(0.03125)
    assert paired_difference(b, a)["difference"] == pytest.approx(-0.2)  # the order is the sign
    with pytest.raises(ValueError, match="same episodes"):
        paired_difference(a, b[:-1])


def test_pooled_paired_difference_clusters_by_episode():
    # Two comparisons sharing episodes e1 and e2. Differences: comparison 1: e1 +1, e2 0, e3 0;
    # comparison 2: e1 0, e2 +1, e4 -1. N = 6, d = 1/6. Episode sums of (d_i - d): e1 and e2
    # 2/3, e3 -1/6, e4 -7/6; squares 82/36. var = 4/3 * (82/36) / 36 = 328/3888.
    first = {("t", 1): (True, False), ("t", 2): (False, False), ("t", 3): (True, True)}
    second = {("t", 1): (True, True), ("t", 2): (True, False), ("t", 4): (False, True)}
    c = pooled_paired_difference([first, second])
    half = 1.96 * math.sqrt(328 / 3888)
    assert (c["comparisons"], c["rows"], c["episodes"]) == (2, 6, 4)
    assert c["difference"] == pytest.approx(1 / 6)
    assert c["ci95"] == pytest.approx([1 / 6 - half, 1 / 6 + half])
    # One comparison: the paired mean difference's interval (sample std over sqrt(n)).
    from rlvr_world.eval.evaluate import paired_mean_difference

    one = pooled_paired_difference([first])
    assert one["ci95"] == pytest.approx(paired_mean_difference([1, 0, 1], [0, 0, 1])["ci95"])
    with pytest.raises(ValueError, match="at least 2 episodes"):
        pooled_paired_difference([{("t", 1): (True, False)}])


def test_paired_comparisons_pair_world_models_with_random_and_with_each_other():
    results = {"config": {"tasks": ["t", "u"]},
               "random": {"success_rate": 0.25, "outcomes": {"t": "0011", "u": "00"}},
               "mpc_mle": {"success_rate": 0.5, "outcomes": {"t": "0111", "u": "10"}},
               "mpc_rlvr": {"success_rate": 1.0, "outcomes": {"t": "1111", "u": "11"}},
               "mpc_short": {"success_rate": 1.0, "outcomes": {"t": "1", "u": "1"}},  # fewer seeds: not paired
               "mpc_oracle": {"success_rate": 1.0, "outcomes": {"t": "1111", "u": "11"}}}  # the upper bound: not paired
    paired = paired_comparisons(results)
    assert list(paired) == ["mpc_mle - random", "mpc_rlvr - random", "mpc_rlvr - mpc_mle"]
    # Episodes t0..t3, u0, u1 in that order: mle solves t1 (random does not) and u0; rlvr adds t0 and u1.
    assert (paired["mpc_mle - random"]["a_only"], paired["mpc_mle - random"]["b_only"]) == (2, 0)
    assert (paired["mpc_rlvr - mpc_mle"]["a_only"], paired["mpc_rlvr - mpc_mle"]["b_only"]) == (2, 0)
    assert paired["mpc_rlvr - random"]["difference"] == pytest.approx(4 / 6)


def test_mpc_chooser_ranks_candidates_by_the_mean_value_of_their_sampled_pages():
    """A: two sampled pages, one ending in success (value 0.9) and one not (0.1), mean 0.5;
    B: one page of value 0.6. The mean picks B (the most optimistic sample would pick A);
    with A's second page at 0.5 instead, A's mean 0.7 wins."""
    class Web:  # the live episode: only what the chooser reads
        utterance, fields = "Click OK.", []

    class Value:  # a stand-in value function: each page's value is written on it
        def value(self, utterance, fields, pages_lines):
            return [float(lines[0]) for lines in pages_lines]

    def chooser(a_pages):
        predictor = lambda web, history, candidates: [[{"v": v} for v in a_pages], [{"v": "0.6"}]]  # noqa: E731
        stats = {"decisions": 0, "decision_seconds": 0.0}
        return mpc_chooser(predictor, Value(), random.Random(0), stats)(Web(), [], ["click [A]", "click [B]"]), stats

    choice, stats = chooser(["0.9", "0.1"])
    assert choice == "click [B]" and stats["decisions"] == 1
    assert chooser(["0.9", "0.5"])[0] == "click [A]"


def test_line_features_read_role_state_and_field_matches():
    values = ["kim", "ok"]
    assert line_features("[5] textbox #username value='kim' focused", values) == [
        "role=textbox", "textbox:focused", "textbox:value_eq"]
    keys = ["username", "password"]  # field names: an input named like one holds its value or not
    assert line_features("[5] textbox #username value='kim'", values, keys)[-1] == "textbox:value_own_field"
    assert line_features("[5] textbox #password value='kim'", values, keys)[-1] == "textbox:value_other_field"
    assert line_features("[6] checkbox #ch0 unchecked", values) == ["role=checkbox", "checkbox:unchecked"]
    assert line_features("[4] button 'Ok'", values) == ["role=button", "button:text_eq"]
    assert line_features("[cover] button 'START' last_reward=-1.00", values) == [
        "role=button", "button:last_reward=-1.00", "button:text_no"]


def _transition(utterance, fields, pages, success, episode):
    return {"task": "t", "split": "train", "episode": episode, "utterance": utterance, "fields": fields,
            "page": [[str(i), line] for i, line in enumerate(pages[0])],
            "next_page": [[str(i), line] for i, line in enumerate(pages[1])], "success": success}


def test_value_function_learns_which_final_pages_succeed():
    """Episodes that typed the asked-for value and ended with reward 1 succeed; the rest fail.
    The fitted value must rank an unseen right page above an unseen wrong one."""
    rng = random.Random(0)
    rows = []
    for ep in range(40):
        name = "".join(rng.choice("abcdefgh") for _ in range(4))
        other = "".join(rng.choice("stuvwxyz") for _ in range(4))
        good = ep % 2 == 0
        typed = name if good else other
        reward = "1.00" if good else "-1.00"
        rows.append(_transition(f'Enter "{name}" and submit.', [["target", name]],
                                (["[4] textbox value=''"],
                                 [f"[4] textbox value='{typed}'", f"[cover] button 'START' last_reward={reward}"]),
                                good, ep))
    value, stats = train_value(rows, steps=100, lr=0.1)
    assert stats["train_accuracy"] == 1.0
    right, wrong = value.value('Enter "zzq" and submit.', [["target", "zzq"]],
                               [["[4] textbox value='zzq'", "[cover] button 'START' last_reward=1.00"],
                                ["[4] textbox value='abc'", "[cover] button 'START' last_reward=-1.00"]])
    assert right > 0.8 > 0.2 > wrong


def test_value_function_saves_and_loads_without_pickle(tmp_path):
    value = PageValue(dim=64)
    value.weights.weight.data.normal_()
    value.save(tmp_path / "value")
    assert sorted(p.name for p in (tmp_path / "value").iterdir()) == ["value.json", "value.safetensors"]
    again = PageValue.load(tmp_path / "value")
    feats = [page_features("Click ok", [["target", "ok"]], ["[4] button 'ok'"])]
    with __import__("torch").no_grad():
        assert float(again(feats)) == pytest.approx(float(value(feats)))


def test_oracle_agent_solves_click_button_in_chromium():
    """With the true next pages and a value function that knows 'last_reward=1.00' is good,
    MPC clicks the right button; random choice mostly does not. Real Chromium, real task."""
    value = PageValue(dim=1 << 12)
    with __import__("torch").no_grad():
        for feat, w in (("button:last_reward=1.00", 5.0), ("button:last_reward=-1.00", -5.0)):
            idx, _, _ = value.encode([{feat: 1.0}])
            value.weights.weight[idx] = w
    cfg = AgentConfig(tasks=["click-button"], episodes_per_task=3, max_steps=2)
    seeds = [11, 12, 13]
    oracle = evaluate_agent("mpc_oracle", cfg.tasks, seeds, OraclePredictor, value, cfg, progress=False)
    assert oracle["episodes"] == 3 and oracle["success_rate"] == 1.0
    assert oracle["outcomes"] == {task: "111" for task in cfg.tasks}  # per task, in seed order
    assert oracle["decisions_per_s"] > 0
    lo, hi = oracle["ci95"]
    assert lo < 1.0 and hi == pytest.approx(1.0)


def test_agent_evaluation_survives_a_browser_crash(monkeypatch):
    """Chromium killed after the second action: it is relaunched, the episode is replayed from
    its seed, and every episode is still counted once."""
    from rlvr_world.worlds.miniwob.browser import WebEpisodes

    real_step, calls = WebEpisodes.step, {"n": 0}

    def step_then_crash(self, action):
        result = real_step(self, action)
        calls["n"] += 1
        if calls["n"] == 2:
            self.kill()  # a real crash: the browser and its driver are gone
        return result

    monkeypatch.setattr(WebEpisodes, "step", step_then_crash)
    cfg = AgentConfig(tasks=["click-button"], episodes_per_task=3, max_steps=2)
    result = evaluate_agent("random", cfg.tasks, [21, 22, 23], None, PageValue(dim=64), cfg, progress=False)
    assert result["episodes"] == 3 and result["browser_restarts"] == 1


def test_no_agent_in_the_demo_when_it_has_no_episodes(tmp_path):
    from rlvr_world.config import load_config
    from rlvr_world.pipeline import world_of

    cfg = load_config("miniwob_tiny", [f"run_dir={tmp_path}", "agent.episodes_per_task=0"])
    # Returns before any model or browser is needed: the stages given do not exist.
    assert world_of(cfg).downstream(cfg, {"mle": tmp_path / "missing"}) == {}


def test_pool_agent_runs_script_pairs_episodes_by_task_and_seed(tmp_path, capsys):
    """scripts/pool_agent_runs.py: one file with its episode seeds, one (older) with only the run's
    seed; both play seeds 2_000_000 and 2_000_001 of task t, so they pool into 2 episodes."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "pool_agent_runs", Path(__file__).resolve().parents[1] / "scripts" / "pool_agent_runs.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    new = {"agent": {"seeds": [2_000_000, 2_000_001], "mpc_mle": {"outcomes": {"t": "01"}},
                     "mpc_rlvr": {"outcomes": {"t": "11"}}}}
    old = {"seed": 0, "agent": {"mpc_mle": {"outcomes": {"t": "00"}}, "mpc_rlvr": {"outcomes": {"t": "01"}}}}
    (tmp_path / "new.json").write_text(json.dumps(new))
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert script.episode_outcomes(tmp_path / "old.json", "mpc_rlvr", "mpc_mle") == {
        ("t", 2_000_000): (False, False), ("t", 2_000_001): (True, False)}
    out = tmp_path / "pooled.json"
    assert script.main([str(tmp_path / "new.json"), str(tmp_path / "old.json"), "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["command"].startswith("python scripts/pool_agent_runs.py") and str(out) in written["command"]
    pooled = written["pooled"]
    # Differences: new +1 (seed 0), 0 (seed 1); old 0, +1. d = 1/2, and each episode sums to
    # (1 - 1/2) + (0 - 1/2) = 0 about it, so the interval has no width.
    assert (pooled["comparisons"], pooled["rows"], pooled["episodes"]) == (2, 4, 2)
    assert pooled["difference"] == pytest.approx(0.5) and pooled["ci95"] == pytest.approx([0.5, 0.5])
    assert "pooled mpc_rlvr - mpc_mle: +0.500" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text(json.dumps({"agent": {"mpc_rlvr": {"outcomes": {"t": "1"}}}}))
    with pytest.raises(SystemExit, match="bad.json: no per-episode outcomes of 'mpc_mle'"):
        script.main([str(tmp_path / "bad.json")])
