"""ByteSized32 world: the published file format, state differences, answer parsing, rewards."""

from __future__ import annotations

import copy
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from rlvr_world.rewards import WeightedReward, get_reward
from rlvr_world.rewards.bytesized32 import bytesized32_binary, bytesized32_task_specific, max_task_specific
from rlvr_world.worlds import get_world
from rlvr_world.worlds.bytesized32 import format as bs_format
from rlvr_world.worlds.bytesized32.codec import apply_diff, extract_json, parse_diff, render_diff
from rlvr_world.worlds.bytesized32.collect import (
    SAMPLE_FILE, SAMPLE_RULES, ByteSized32CollectConfig, collect, load_transitions, read_transitions, target_diff,
    target_of,
)

SAMPLE = read_transitions(SAMPLE_FILE)


def _rewards(prediction, target):
    return bytesized32_binary(prediction, target), bytesized32_task_specific(prediction, target)


def _obj(uuid, props, contains=(), name=None, typ="Thing"):
    return {"name": name or f"thing (ID: {uuid})", "uuid": uuid, "type": typ, "properties": props,
            "contains": list(contains)}


def _score(score=0, over=False, won=False):
    return {"score": score, "gameOver": over, "gameWon": won}


# ---------------------------------------------------------------------------------------------
# Must show: ground truths score the maximum on every sample line; corruptions score less


def test_sample_has_changed_and_unchanged_lines_and_new_and_removed_objects():
    assert 40 <= len(SAMPLE) <= 80 and len({t["game"] for t in SAMPLE}) == 4
    changed = [t for t in SAMPLE if t["changed"]]
    assert 0 < len(changed) < len(SAMPLE)
    diffs = [target_diff(t) for t in SAMPLE]
    assert any(d["removed"] for d in diffs)
    assert any(uuid not in {o["uuid"] for o in t["current"]["objects"]}
               for t, d in zip(SAMPLE, diffs) for uuid in (o["uuid"] for o in d["modified"]))


def test_every_ground_truth_scores_the_maximum():
    for t in SAMPLE:
        target = target_of(t)
        prediction = parse_diff(render_diff(target_diff(t)))  # through the text the model learns
        binary, task = _rewards(prediction, target)
        assert binary == 1.0, t["source"]
        assert task == pytest.approx(1.3 if t["changed"] else 0.3), t["source"]
        assert max_task_specific(target) == pytest.approx(1.3 if t["changed"] else 0.3)


def _corruptions(t: dict, rng: random.Random):
    """(name, difference) pairs that are each wrong about the transition."""
    truth = target_diff(t)
    current_uuids = [o["uuid"] for o in t["current"]["objects"]]
    out = []
    if t["changed"]:
        out.append(("no change", {"modified": [], "removed": [], "score": {}}))
    for i, obj in enumerate(truth["modified"]):
        for key, value in obj["properties"].items():
            bad = copy.deepcopy(truth)
            bad["modified"][i]["properties"][key] = (not value) if isinstance(value, bool) else (
                value + 7 if isinstance(value, (int, float)) else f"{value}-x")
            out.append((f"property {key}", bad))
            break
        bad = copy.deepcopy(truth)
        del bad["modified"][i]
        out.append((f"object {obj['uuid']} left out", bad))
        bad = copy.deepcopy(truth)
        bad["modified"][i]["contains"] = bad["modified"][i]["contains"] + ["ghost (ID: 99)"]
        out.append((f"contents of {obj['uuid']}", bad))
    for i in range(len(truth["removed"])):
        bad = copy.deepcopy(truth)
        del bad["removed"][i]
        out.append(("removal left out", bad))
    kept = [u for u in current_uuids if u not in truth["removed"]]
    bad = copy.deepcopy(truth)
    bad["removed"].append(rng.choice(kept))
    out.append(("an object wrongly removed", bad))
    for field in ("score", "gameOver", "gameWon"):
        bad = copy.deepcopy(truth)
        value = bad["score"][field]
        bad["score"][field] = (not value) if isinstance(value, bool) else value + 1
        out.append((f"score field {field}", bad))
    # An unchanged object predicted as changed.
    untouched = [o for o in t["current"]["objects"] if o["uuid"] not in {m["uuid"] for m in truth["modified"]}
                 and o["uuid"] not in truth["removed"]]
    if untouched:
        bad = copy.deepcopy(truth)
        wrong = copy.deepcopy(untouched[0])
        wrong["properties"]["isBroken"] = True
        bad["modified"].append(wrong)
        out.append(("an unchanged object changed", bad))
    return out


def test_corrupted_differences_score_less():
    rng = random.Random(0)
    n = 0
    for t in SAMPLE:
        target = target_of(t)
        best = 1.3 if t["changed"] else 0.3
        for name, bad in _corruptions(t, rng):
            binary, task = _rewards(parse_diff(render_diff(bad)), target)
            assert binary == 0.0, (t["source"], name)
            assert task < best - 1e-9, (t["source"], name)
            n += 1
    assert n > 5 * len(SAMPLE)


def test_what_is_not_penalised_order_of_contents_extra_objects_names():
    for t in SAMPLE:
        truth = target_diff(t)
        target = target_of(t)
        best = 1.3 if t["changed"] else 0.3
        ok = copy.deepcopy(truth)
        for o in ok["modified"]:
            o["contains"].reverse()
            o["name"] = "renamed"  # the paper compares properties and contents only
        ok["modified"].append(_obj(1000, {"isGhost": True}))  # an extra new object
        assert _rewards(ok, target) == (1.0, pytest.approx(best)), t["source"]
        # an unchanged score may be left out: the current one carries over
        if t["current"]["score"] == t["next"]["score"]:
            no_score = {**truth, "score": {}}
            assert _rewards(no_score, target) == (1.0, pytest.approx(best))


def _fuzz_texts(rng: random.Random):
    alphabet = "{}[]\"':,.0123456789 truefalsnTFN\\\n`abcxyz-"
    for _ in range(300):
        yield "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
    for t in rng.sample(SAMPLE, 12):
        text = render_diff(target_diff(t))
        for _ in range(20):
            chars = list(text)
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(chars))
                op = rng.random()
                if op < 0.4:
                    del chars[i]
                elif op < 0.8:
                    chars.insert(i, rng.choice(alphabet))
                else:
                    chars[i] = rng.choice(alphabet)
            yield "".join(chars)
        yield text[: rng.randrange(len(text))]  # truncated
    yield "{" * 5000
    yield "{'a': " * 400 + "1" + "}" * 400
    yield "[" * 3000 + "]" * 3000
    yield '{"modified": {1, 2}, "removed": b"x", "score": 1j}'
    yield '{"modified": [{"uuid": [1]}, {"uuid": true}, 7, null], "removed": [{"a": 1}, null, 2.5], "score": [1]}'


def test_junk_never_raises():
    rng = random.Random(1)
    targets = [target_of(t) for t in rng.sample(SAMPLE, 6)]
    for text in _fuzz_texts(rng):
        prediction = parse_diff(text)
        assert prediction is None or set(prediction) == {"modified", "removed", "score"}
        for target in targets:
            binary, task = _rewards(prediction, target)
            assert binary in (0.0, 1.0) and 0.0 <= task <= 1.3 + 1e-9
    junk_predictions = [None, 0, "text", [], {}, {"modified": "x"}, {"removed": 5}, {"score": None},
                        {"modified": [{"uuid": "7", "properties": None, "contains": None}]},
                        {"modified": [{"uuid": 1, "properties": {"a": {1, 2}}}]}, {"modified": [[1, 2]]}]
    for prediction in junk_predictions:
        for target in targets:
            binary, task = _rewards(prediction, target)
            assert 0.0 <= task <= 1.3 + 1e-9 and binary in (0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Hand-computed reward values


def _hand_target():
    current = [_obj(1, {"on": False, "t": 20}), _obj(2, {"x": 1}, ["thing (ID: 3)"]), _obj(3, {"y": "a"})]
    after = [_obj(1, {"on": True, "t": 20}), _obj(2, {"x": 1}), _obj(4, {"k": 1})]
    return {"current": {"objects": current, "score": _score()}, "next": {"objects": after, "score": _score(1, True)}}


def test_hand_computed_task_specific_reward():
    target = _hand_target()
    # Changed fields: (1, on), (2, contains), (4, k), (4, contains), 3 removed, score, gameOver = 7.
    prediction = {"modified": [_obj(1, {"on": True, "t": 20})], "removed": [3],
                  "score": {"score": 1, "gameOver": False, "gameWon": False}}
    # Rebuilt: 1 right, 2 wrong (still holds 3), 4 missing -> objects 1/3.
    # Score: score right, gameOver wrong, gameWon right -> 2/3. Exact 0.
    # Changed fields right: (1, on), 3 removed, score -> 3/7.
    expected = 0.09 * (1 / 3) + 0.01 * (2 / 3) + 0.2 * 0 + 3 / 7
    assert bytesized32_task_specific(prediction, target) == pytest.approx(expected)
    assert bytesized32_binary(prediction, target) == 0.0

    perfect = {"modified": [_obj(1, {"on": True, "t": 20}), _obj(2, {"x": 1}), _obj(4, {"k": 1})], "removed": [3],
               "score": _score(1, True)}
    assert _rewards(perfect, target) == (1.0, pytest.approx(1.3))
    # Everything but gameOver: objects 1, score 2/3, exact 0, changed 6/7.
    almost = {**perfect, "score": {"score": 1}}
    assert bytesized32_task_specific(almost, target) == pytest.approx(0.09 + 0.01 * 2 / 3 + 6 / 7)
    # A property that disappears counts as a changed field; keeping it is wrong.
    target2 = {"current": {"objects": [_obj(1, {"a": 1, "b": 2})], "score": _score()},
               "next": {"objects": [_obj(1, {"a": 1})], "score": _score()}}
    kept = {"modified": [], "removed": [], "score": {}}
    assert bytesized32_task_specific(kept, target2) == pytest.approx(0.0 + 0.01 + 0.0 + 0.0)


def test_hand_computed_when_nothing_changes():
    state = [_obj(1, {"on": False}), _obj(2, {"n": 3})]
    target = {"current": {"objects": state, "score": _score(2)}, "next": {"objects": copy.deepcopy(state),
                                                                          "score": _score(2)}}
    assert _rewards({"modified": [], "removed": [], "score": {}}, target) == (1.0, pytest.approx(0.3))
    wrong = {"modified": [_obj(1, {"on": True})], "removed": [], "score": {}}
    # objects 1/2, score 3/3, exact 0, no changed-field term
    assert bytesized32_task_specific(wrong, target) == pytest.approx(0.09 * 0.5 + 0.01)
    assert bytesized32_task_specific(None, target) == 0.0


def test_values_compare_as_json():
    target = {"current": {"objects": [_obj(1, {"n": 1, "flag": False})], "score": _score()},
              "next": {"objects": [_obj(1, {"n": 2, "flag": False})], "score": _score()}}
    as_float = {"modified": [_obj(1, {"n": 2.0, "flag": False})]}
    assert bytesized32_binary(as_float, target) == 1.0  # 2 == 2.0
    as_int_flag = {"modified": [_obj(1, {"n": 2, "flag": 0})]}
    assert bytesized32_binary(as_int_flag, target) == 0.0  # false is not 0
    string_uuid = {"modified": [{**_obj(1, {"n": 2, "flag": False}), "uuid": "1"}]}
    assert bytesized32_binary(string_uuid, target) == 1.0


def test_rewards_are_registered_and_compose():
    target = _hand_target()
    assert get_reward("bytesized32_binary") is bytesized32_binary
    spec = WeightedReward.parse("bytesized32_binary:1,bytesized32_task_specific:0.5")
    assert spec(None, target) == 0.0


# ---------------------------------------------------------------------------------------------
# Parsing answers


def test_parse_tolerates_reasoning_fences_and_loose_json():
    text = """Let me think. The lamp {was off} and the agent's action turns it on.
Draft: {"modified": [], "removed": [], "score": {}}
Final answer:
```json
{'modified': [{'name': 'lamp (ID: 2)', 'uuid': '2', 'type': 'Lamp', 'properties': {'isOn': True, 'note': None,},
  'contains': [],},], 'removed': [5,], 'score': {'score': 1, 'gameOver': false, 'gameWon': False}}
```"""
    diff = parse_diff(text)
    assert diff == {"modified": [{"name": "lamp (ID: 2)", "uuid": "2", "type": "Lamp",
                                  "properties": {"isOn": True, "note": None}, "contains": []}],
                    "removed": [5], "score": {"score": 1, "gameOver": False, "gameWon": False}}
    # A brace that never closes in the reasoning does not hide the answer.
    assert parse_diff('I guess {the oven is hot. {"modified": [], "removed": [3], "score": {}}') == {
        "modified": [], "removed": [3], "score": {}}
    # JSON literals with Python words mixed in, missing keys default to empty.
    assert parse_diff('{"removed": [1], "score": {"gameWon": true, "gameOver": True}}') == {
        "modified": [], "removed": [1], "score": {"gameWon": True, "gameOver": True}}
    assert extract_json("a {\"x\": 1} b {\"y\": [1, 2,]} c") == {"y": [1, 2]}


def test_parse_returns_none_for_junk():
    for text in ["", "no change", "{}", '{"answer": 1}', "[1, 2]", "{'modified': }", "```json\n```", None, 5]:
        assert parse_diff(text) is None, text


def test_apply_diff_rebuilds_the_next_state():
    t = next(t for t in SAMPLE if target_diff(t)["removed"])
    objects, score = apply_diff(t["current"]["objects"], t["current"]["score"], target_diff(t))
    assert sorted(o["uuid"] for o in objects) == sorted(o["uuid"] for o in t["next"]["objects"])
    assert score == t["next"]["score"]


# ---------------------------------------------------------------------------------------------
# The file format: errors name the file, the line and the field


def _write_lines(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _sample_rows(n=3):
    with open(SAMPLE_FILE) as f:
        return [json.loads(next(f)) for _ in range(n)]


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r.pop("tick_state"), "'tick_state'"),
    (lambda r: r.pop("next_score_state"), "'next_score_state'"),
    (lambda r: r["tick_state"].pop("lastAction"), "'tick_state.lastAction'"),
    (lambda r: r["current_state"]["objects"][1].pop("uuid"), "'current_state.objects[1].uuid'"),
    (lambda r: r["action_state"]["objects"][0].pop("contains"), "'action_state.objects[0].contains'"),
    (lambda r: r["current_score_state"].pop("gameWon"), "'current_score_state.gameWon'"),
    (lambda r: r["tick_state"].pop("objects"), "'tick_state.objects'"),
])
def test_missing_field_names_file_line_and_field(tmp_path, mutate, field):
    rows = _sample_rows()
    mutate(rows[1])
    path = _write_lines(tmp_path / "user.jsonl", rows)
    with pytest.raises(ValueError, match=r"user\.jsonl:2: missing field") as err:
        read_transitions(path)
    assert field in str(err.value)
    with pytest.raises(ValueError, match=r"user\.jsonl:2"):  # collection stops the same way
        collect(ByteSized32CollectConfig(path=str(path), test_games=0), tmp_path / "data")


def test_bad_json_wrong_types_and_duplicate_uuids_are_named(tmp_path):
    rows = _sample_rows()
    path = _write_lines(tmp_path / "a.jsonl", [rows[0], "", '{"game": "x",'])
    with pytest.raises(bs_format.FormatError, match=r"a\.jsonl:3: bad JSON"):
        read_transitions(path)
    rows[0]["current_state"]["objects"][2]["properties"] = []
    with pytest.raises(bs_format.FormatError, match=r"b\.jsonl:1: field 'current_state\.objects\[2\]\.properties'"):
        read_transitions(_write_lines(tmp_path / "b.jsonl", rows[:1]))
    rows = _sample_rows()
    rows[0]["tick_state"]["objects"][1]["uuid"] = rows[0]["tick_state"]["objects"][0]["uuid"]
    with pytest.raises(bs_format.FormatError, match=r"c\.jsonl:1: .*tick_state\.objects\[1\]\.uuid"):
        read_transitions(_write_lines(tmp_path / "c.jsonl", rows[:1]))
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "score_rules.json").write_text('{"water-plant": 3}')
    with pytest.raises(bs_format.FormatError, match=r"score_rules\.json: rules of game 'water-plant'"):
        bs_format.read_rules(tmp_path / "rules")


# ---------------------------------------------------------------------------------------------
# Collection and the world


def test_collect_sample_holds_out_whole_games(tmp_path):
    manifest = collect(ByteSized32CollectConfig(), tmp_path / "data", seed=0)
    assert manifest["ground_truth_check"] == {"transitions": 72, "binary_reward_1": 72, "task_specific_max": 72}
    test_games = set(manifest["games"]["test"])
    assert test_games == set(manifest["test_games_held_out"]) and len(test_games) == 1
    train = load_transitions(tmp_path / "data", "train")
    assert not test_games & {t["game"] for t in train}
    assert sum(manifest["counts"][s]["transitions"] for s in ("train", "val", "test")) == 72
    assert train[0]["rules"]["object"]  # the sample's rules come along
    again = collect(ByteSized32CollectConfig(), tmp_path / "again", seed=0)
    assert again["games"] == manifest["games"]
    assert (tmp_path / "data" / "train.jsonl").read_text() == (tmp_path / "again" / "train.jsonl").read_text()


def test_collect_a_user_file_with_a_test_file_and_rules(tmp_path):
    """Any file of the published format: the manifest records that every ground truth scores the maximum."""
    lines = SAMPLE_FILE.read_text().splitlines()
    train = _write_lines(tmp_path / "train.jsonl", lines[:50])
    test = _write_lines(tmp_path / "test.jsonl", lines[50:])
    manifest = collect(ByteSized32CollectConfig(path=str(train), test_path=str(test), rules=str(SAMPLE_RULES)),
                       tmp_path / "data", seed=3)
    assert manifest["counts"]["test"]["transitions"] == len(lines) - 50
    assert manifest["ground_truth_check"]["task_specific_max"] == len(lines)
    assert manifest["test_games_held_out"] == [] and manifest["games_without_rules"] == []
    rows = load_transitions(tmp_path / "data", "test")
    assert rows[0]["source"].endswith("test.jsonl:1")


def test_world_prompt_target_ground_truth_and_metrics(tmp_path):
    world = get_world("bytesized32")
    collect(ByteSized32CollectConfig(), tmp_path / "data", seed=0)
    rows = world.load_transitions(tmp_path / "data", "test")
    t = next(r for r in rows if r["changed"])
    prompt = world.prompt_text(t)
    assert f"Action: {t['action']}" in prompt and "Score rules:" in prompt and prompt.endswith("Difference:")
    assert "Score rules:" not in get_world("bytesized32", rules_in_prompt=False).prompt_text(t)
    assert world.target_from_ground_truth(world.ground_truth(t)) == world.target(t)
    assert world.parse(world.target_text(t)) is not None

    tokenizer = world.train_tokenizer(rows, tmp_path)
    examples = world.make_examples(rows, tokenizer)
    truth = [world.parse(world.target_text(r)) for r in rows]
    m = world.metrics(truth, examples)
    assert m["accuracy"] == m["accuracy_changed"] == m["accuracy_unchanged"] == 1.0
    n_changed = sum(r["changed"] for r in rows)
    assert m["task_specific"] == pytest.approx((1.3 * n_changed + 0.3 * (len(rows) - n_changed)) / len(rows))
    assert m["parse_failure_rate"] == 0.0 and m["changed_accuracy"] == 1.0
    none = world.metrics([None] * len(rows), examples)
    assert none["accuracy"] == 0.0 and none["parse_failure_rate"] == 1.0 and none["task_specific"] == 0.0
    no_change = world.metrics(world.baselines(examples)["no_change"], examples)
    assert no_change["accuracy_unchanged"] == 1.0 and no_change["accuracy_changed"] == 0.0
    # Decoding the target's own tokens gives back a perfect prediction (word tokenizer spacing).
    decoded = world.decode(examples[0].target_ids, tokenizer)
    assert bytesized32_binary(decoded, examples[0].target) == 1.0


@pytest.mark.slow
def test_tiny_demo_end_to_end(tmp_path):
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "rlvr_world.cli", "demo", "--config", "bytesized32_tiny",
                    f"run_dir={run}"], check=True, capture_output=True, timeout=600)
    results = json.loads((run / "results.json").read_text())
    assert results["world"] == "bytesized32"
    stages = results["state_prediction"]
    assert {"mle", "mle_longer", "rlvr", "rlvr_task_specific"} <= set(stages)
    for stage in stages.values():
        for key in ("accuracy", "accuracy_changed", "accuracy_unchanged", "task_specific", "parse_failure_rate",
                    "reward_bytesized32_binary", "reward_bytesized32_task_specific"):
            assert key in stage["greedy"]
        assert 0.0 <= stage["greedy"]["reward_bytesized32_task_specific"] <= 1.3
    assert not math.isnan(results["baselines"]["test"]["no_change"]["accuracy"])
    assert (run / "report.md").exists()


def test_parse_finds_the_answer_after_misleading_reasoning():
    answer = '{"modified": [], "removed": [3], "score": {"score": 1, "gameOver": true, "gameWon": true}}'
    for reasoning in ["The agent's {move is odd. ", "Braces { { and quotes ' \" here. ", "{'a': 1} then {x} ",
                      "Think: {the cup's dirty} so "]:
        assert parse_diff(reasoning + answer) == {"modified": [], "removed": [3],
                                                  "score": {"score": 1, "gameOver": True, "gameWon": True}}, reasoning
    # a lone score object is not a difference
    assert parse_diff('{"score": 1, "gameOver": true, "gameWon": true}') is None
