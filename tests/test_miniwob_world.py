"""The MiniWoB++ web world end to end on a tiny real collection in Chromium: the demo's
results file (state prediction and the MPC agent) and the `agent` subcommand."""

import json
import subprocess
import sys

import pytest

from rlvr_world import pipeline
from rlvr_world.config import load_config
from rlvr_world.runlog import read_metrics
from rlvr_world.worlds.miniwob.browser import ACTION
from rlvr_world.worlds.miniwob.page import parse_diff
from rlvr_world.worlds.miniwob.rename import renamable
from rlvr_world.worlds.miniwob.world import MiniWoBWorld, action_element

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "rlvr_world.cli"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The tiny MiniWoB++ demo, run once through the CLI (collect included)."""
    run = tmp_path_factory.mktemp("web") / "run"
    subprocess.run(CLI + ["demo", "--world", "miniwob", "--config", "miniwob_tiny", f"run_dir={run}"],
                   check=True, capture_output=True)
    return run


def test_demo_writes_the_results_file_the_issue_asks_for(demo_run):
    results = json.loads((demo_run / "results.json").read_text())
    assert results["world"] == "miniwob" and "--world miniwob" in results["command"]
    assert {"hardware", "seed"} <= set(results)
    assert set(results["state_prediction"]) == {"mle", "mle_longer", "rlvr"}
    for block in results["state_prediction"].values():
        greedy = block["greedy"]
        for metric in ("precision", "recall", "f1", "exact", "micro_f1"):
            assert 0.0 <= greedy[metric] <= 1.0, metric
        for kind in ("click", "type"):  # NaN only for an action type with no test transition
            assert 0.0 <= greedy[f"f1_{kind}"] <= 1.0 if greedy[f"n_{kind}"] else greedy[f"f1_{kind}"] != greedy[f"f1_{kind}"]
        assert block["f1"] == block["greedy"]["f1"]
        assert "greedy" in block["heldout_task"]
    cfg = load_config("miniwob_tiny", [f"run_dir={demo_run}"])
    episodes = len(cfg.agent["tasks"]) * cfg.agent["episodes_per_task"]
    for variant in ("random", "mpc_mle", "mpc_rlvr", "mpc_oracle"):
        block = results["agent"][variant]
        assert block["episodes"] == episodes
        lo, hi = block["ci95"]
        assert 0.0 <= lo <= block["success_rate"] <= hi <= 1.0
    assert results["agent"]["mpc_mle"]["decisions_per_s"] > 0
    assert (demo_run / "agent" / "value" / "value.safetensors").is_file()
    assert "Downstream agent" in (demo_run / "report.md").read_text() and (demo_run / "agent.png").stat().st_size > 0
    # Paired over the same episodes: a paired difference is the difference of the two success rates.
    paired = results["agent"]["paired"]
    assert list(paired) == ["mpc_mle - random", "mpc_rlvr - random", "mpc_rlvr - mpc_mle"]
    for name, c in paired.items():
        a, b = name.split(" - ")
        assert c["episodes"] == episodes
        assert c["difference"] == pytest.approx(results["agent"][a]["success_rate"] - results["agent"][b]["success_rate"])
    assert "Paired over the same episodes" in (demo_run / "report.md").read_text()
    assert results["agent"]["seeds"] == [2_000_000 + i for i in range(cfg.agent["episodes_per_task"])]
    cut, prompts = results["agent"]["mpc_mle"]["prompts_cut"]
    assert 0 <= cut <= prompts and prompts >= results["agent"]["mpc_mle"]["decisions"]


def test_world_model_predictor_counts_the_prompts_it_cuts(demo_run):
    """A candidate whose prompt is over the world's limit still gets a page, from the prompt's
    last tokens, and is counted; the others are not."""
    from types import SimpleNamespace

    from rlvr_world.apps.web_agent import WorldModelPredictor

    cfg = load_config("miniwob_tiny", [f"run_dir={demo_run}"])
    world = pipeline.world_of(cfg)
    row = world.load_transitions(cfg.data_path, "test")[0]
    web = SimpleNamespace(page=dict(row["page"]), utterance=row["utterance"])  # what the predictor reads of an episode
    ids = list(web.page)
    candidates = [f"click [{ids[0]}]", f"type [{ids[0]}] '{'long value ' * 30}'"]
    tokenizer = pipeline.tokenizer_for(cfg, world)
    lengths = [len(world.encode_prompt(world.action_prompt(web.utterance, list(web.page.values()), a), tokenizer))
               for a in candidates]
    assert lengths[1] > lengths[0]
    world.max_prompt_tokens = lengths[0]  # the click fits exactly, the long typing does not
    predictor = WorldModelPredictor(demo_run / "mle" / "final", world)
    pages = predictor(web, [], candidates)
    assert [len(p) for p in pages] == [1, 1] and all(isinstance(p[0], dict) for p in pages)
    assert (predictor.prompts_cut, predictor.prompts) == (1, 2)


def test_recorded_targets_parse_back_exactly(demo_run):
    """Every cached difference, rendered as the model's target text and decoded through the
    run's own tokenizer, parses back to the recorded sets: the reward can reach 1."""
    cfg = load_config("miniwob_tiny", [f"run_dir={demo_run}"])
    world = pipeline.world_of(cfg)
    tokenizer = pipeline.tokenizer_for(cfg, world)
    for split in ("train", "test"):
        for ex in pipeline.examples(cfg, world, tokenizer, split):
            assert world.decode(ex.target_ids, tokenizer) == ex.target
            assert parse_diff(tokenizer.decode(ex.target_ids, skip_special_tokens=True)) == ex.target


def test_split_quoted_copies_typed_values_token_for_token(demo_run):
    """With `split_quoted`, a value typed into an empty text box (and shown there) has the same
    tokens in the action (prompt) as in the updated page item (target)."""
    cfg = load_config("miniwob_tiny", [f"run_dir={demo_run}"])
    world = MiniWoBWorld(**cfg.world_options, split_quoted=True)
    transitions = world.load_transitions(cfg.data_path, "train")
    tokenizer = world.train_tokenizer(transitions, demo_run / "quoted_tokenizer")
    checked = 0
    for t in transitions:
        kind, value = ACTION.match(t["action"]).group(1, 3)
        if kind != "type" or "value=''" not in action_element([line for _, line in t["page"]], t["action"]):
            continue
        if not any(f"value='{value}'" in line for line in t["diff"]["updated"]):
            continue  # the typing was blocked (a pop-up) or the box ignored it
        quoted = tokenizer.tokenize(f"'{value}'")
        assert quoted[0] == "\u2581'" and quoted[-1] == "'" and len(quoted) > 2, quoted  # quotes split off
        typed = quoted[1:-1]  # the value between its quote tokens
        target = tokenizer.tokenize(world.target_text(t))
        assert any(target[i:i + len(typed)] == typed for i in range(len(target))), (typed, target)
        checked += 1
    assert checked >= 3


def test_renamed_typed_values_reach_training_and_nothing_else(demo_run):
    """With `world_options.rename_typed=1`, the training stages learn every recorded typing with
    a new value, in the prompt and in the target alike; evaluation reads the recorded pages."""
    cfg = load_config("miniwob_tiny", [f"run_dir={demo_run}", "world_options.rename_typed=1.0"])
    world = pipeline.world_of(cfg)
    tokenizer = pipeline.tokenizer_for(cfg, world)
    recorded = {(t["task"], t["seed"], t["episode"], t["step"]): t
                for t in world.load_transitions(cfg.data_path, "train")}
    typed = [t for t in recorded.values() if ACTION.match(t["action"]).group(1) == "type"]
    renamed = [t for t in world.training_transitions(list(recorded.values()), cfg.seed) if "renamed" in t]
    assert len(renamed) == sum(renamable(ACTION.match(t["action"]).group(3)) for t in typed) >= 3
    trained = {tuple(ex.prompt_ids): ex for ex in pipeline.train_examples(cfg, world, tokenizer)}
    for t in renamed:
        old, new = t["renamed"]
        before = recorded[(t["task"], t["seed"], t["episode"], t["step"])]
        exs, was = world.make_examples([t], tokenizer), world.make_examples([before], tokenizer)
        if not (exs and was):
            continue  # a prompt over max_prompt_tokens is left out either way
        ex, was = exs[0], was[0]
        assert tuple(ex.prompt_ids) in trained and tuple(was.prompt_ids) not in trained
        prompt, target = tokenizer.decode(ex.prompt_ids).lower(), tokenizer.decode(ex.target_ids).lower()
        assert new in prompt and old.lower() not in t["action"].lower()
        if old.lower() in world.target_text(before).lower():
            assert new in target
    test = pipeline.eval_examples(cfg, world, tokenizer, "test")
    assert [ex.prompt_ids for ex in test] == [ex.prompt_ids for ex in pipeline.examples(cfg, world, tokenizer, "test")]


def test_grpo_with_f1_credited_item_by_item_runs_from_the_demo_start(demo_run, tmp_path):
    """`rlvr.dense_rewards=[f1]` through the trainer on real web transitions: the world scores
    each sampled response's tokens, the run logs every step, and asking for a term the reward
    does not have is refused. (The tiny model's F1 is 0, so this checks the wiring; the token
    scores themselves are checked by hand in test_miniwob_page.py.)"""
    common = [f"run_dir={demo_run}", "rlvr.steps=2", "rlvr.eval_every=0", "rlvr.advantage=gdpo"]
    cfg = load_config("miniwob_tiny", [*common, "rlvr.dense_rewards=[f1]"])
    final = pipeline.rlvr(cfg, stage=str(tmp_path / "item_f1"), init=demo_run / "mle" / "final")
    assert (final / "model.safetensors").exists()
    assert [r["step"] for r in read_metrics(tmp_path / "item_f1") if r["split"] == "train"] == [1, 2]
    cfg = load_config("miniwob_tiny", [*common, "rlvr.dense_rewards=[exact]"])
    with pytest.raises(ValueError, match="dense_rewards"):
        pipeline.rlvr(cfg, stage=str(tmp_path / "bad"), init=demo_run / "mle" / "final")


def test_agent_subcommand_reruns_the_comparison(demo_run, tmp_path):
    copy = tmp_path / "results" / "agent.json"
    out = subprocess.run(CLI + ["agent", "--config", "miniwob_tiny", f"run_dir={demo_run}",
                                "agent.tasks=[click-button]", "agent.episodes_per_task=2", "--results-file", str(copy)],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads((demo_run / "agent" / "results.json").read_text())
    assert {"random", "mpc_mle", "mpc_rlvr", "mpc_oracle"} <= set(result["agent"])
    assert result["agent"]["mpc_oracle"]["episodes"] == 2
    assert "mpc_oracle" in out and "success" in out
    # The file says how to rerun it and with which models, and --results-file copies it whole.
    assert result["command"].startswith("rlvr-world agent --config miniwob_tiny") and "episodes_per_task=2" in result["command"]
    assert result["seed"] == 0 and result["world"] == "miniwob" and result["hardware"]
    assert result["models"]["rlvr"] == str(demo_run / "rlvr" / "final")
    assert json.loads(copy.read_text()) == result
    off = load_config("miniwob_tiny", [f"run_dir={demo_run}", "agent.episodes_per_task=0"])
    with pytest.raises(ValueError, match="turns it off"):  # a preset without the agent says so, not "no app"
        pipeline.agent(off)


def test_web_outcomes_counts_every_sample_of_every_candidate(demo_run, tmp_path):
    """scripts/web_outcomes.py on the tiny run: each candidate click of a test episode's first
    page gets exactly --samples predicted outcomes, and the episode's own click is marked with
    the reward the browser gave it."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("web_outcomes", Path(__file__).resolve().parents[1] / "scripts" / "web_outcomes.py")
    web_outcomes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(web_outcomes)
    assert web_outcomes.outcome(None) == "unparsed"
    assert web_outcomes.outcome(parse_diff("New items:\n[cover] button 'START' last_reward=-1.00\nDeleted items:\nNone\n"
                                           "Updated items:\nNone")) == "reward -1.00"
    assert web_outcomes.outcome(parse_diff("New items:\nNone\nDeleted items:\nNone\nUpdated items:\n[4] button 'a' focused")) == "none"

    cfg = load_config("miniwob_tiny", [f"run_dir={demo_run}"])
    world = pipeline.world_of(cfg)
    first = next(t for t in world.load_transitions(cfg.data_path, "test") if t["step"] == 0)
    out = tmp_path / "outcomes.json"
    assert web_outcomes.main(["--run-dir", str(demo_run), "--task", first["task"], "--episodes", "1",
                              "--samples", "3", "--json", str(out)]) == 0
    episode = json.loads(out.read_text())["episodes"][0]
    assert episode["utterance"] == first["utterance"]
    assert [c["action"] for c in episode["candidates"]] == [f"click [{ref}]" for ref, _ in first["page"] if ref.isdigit()]
    assert all(sum(c["counts"].values()) == 3 for c in episode["candidates"])
    marked = [c for c in episode["candidates"] if c["true"]]
    if first["done"] and first["action"].startswith("click"):
        assert [c["action"] for c in marked] == [first["action"]]
        assert marked[0]["true"] == f"reward {first['raw_reward']:+.2f}"
    else:
        assert marked == []


def test_pass_at_k_splits_rows_by_action(demo_run, tmp_path):
    """scripts/pass_at_k.py --by action on the tiny run: one row per action kind plus (all),
    whose counts and greedy mean are those of the rows, over every test transition."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("pass_at_k", Path(__file__).resolve().parents[1] / "scripts" / "pass_at_k.py")
    pass_at_k = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pass_at_k)
    out = tmp_path / "by_action.json"
    assert pass_at_k.main(["--run-dir", str(demo_run), "--split", "test", "--reward", "f1", "--k", "2",
                           "--limit", "1000", "--by", "action", "--json", str(out)]) == 0
    rows = {r["action"]: r for r in json.loads(out.read_text())["rows"]}
    cfg = load_config("miniwob_tiny", [f"run_dir={demo_run}"])
    world = pipeline.world_of(cfg)
    from rlvr_world.models.lm import load_model

    _, tokenizer = load_model(demo_run / "mle" / "final")
    kinds = [e.meta["action"] for e in pipeline.examples(cfg, world, tokenizer, "test")]
    assert set(rows) == {"(all)", *kinds}
    assert {k: rows[k]["n"] for k in set(kinds)} == {k: kinds.count(k) for k in set(kinds)}
    assert rows["(all)"]["n"] == len(kinds)
    parts = [rows[k] for k in set(kinds)]
    assert rows["(all)"]["greedy"] == pytest.approx(sum(r["greedy"] * r["n"] for r in parts) / len(kinds))
    for r in rows.values():
        assert 0.0 <= r["sampled_mean"] <= r["best_of_2"] <= 1.0
