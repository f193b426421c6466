"""The reward registry and the set-difference rewards on crafted cases (values by hand)."""

import pytest

from rlvr_world.rewards import REWARDS, WeightedReward, get_reward, register
from rlvr_world.rewards.set_diff import exact, f1, precision_recall_f1, task_specific

SET_DIFF_REWARDS = ("exact", "binary", "f1", "task_specific")


def sd(**sections):
    """A set-diff prediction/target: section -> frozenset of lines."""
    return {name: frozenset(lines) for name, lines in sections.items()}


def test_registry_names():
    for name in SET_DIFF_REWARDS:
        assert name in REWARDS
    assert get_reward("binary") is get_reward("exact")  # the paper's name for the same reward
    with pytest.raises(ValueError, match="already registered"):
        register("f1")(lambda p, t: 0.0)


def test_exact_match():
    target = sd(added={"a", "b"}, removed={"c"})
    assert exact(sd(added={"b", "a"}, removed={"c"}), target) == 1.0
    assert exact(sd(added={"a", "b"}, removed={"c"}, updated=set()), target) == 1.0  # empty == missing
    assert exact(sd(added={"a"}, removed={"c"}), target) == 0.0
    assert exact(sd(added={"a", "b", "c"}), target) == 0.0  # right line, wrong section


def test_f1_partial_overlap_across_two_sections():
    # pred {added: a, b; removed: c} vs target {added: a, b; removed: d}
    # tp = 2 (a, b), fp = 1 (c), fn = 1 (d): P = 2/3, R = 2/3, F1 = 2*2 / (2*2 + 1 + 1) = 2/3
    pred, target = sd(added={"a", "b"}, removed={"c"}), sd(added={"a", "b"}, removed={"d"})
    p, r, f = precision_recall_f1(pred, target)
    assert p == pytest.approx(2 / 3) and r == pytest.approx(2 / 3) and f == pytest.approx(2 / 3)
    assert f1(pred, target) == pytest.approx(2 / 3)
    assert exact(pred, target) == 0.0
    assert task_specific(pred, target) == pytest.approx(2 / 3)  # partial credit, no exact bonus


def test_f1_unequal_precision_and_recall():
    # pred {added: a, b, c} vs target {added: a; removed: x}
    # tp = 1, fp = 2 (b, c), fn = 1 (x): P = 1/3, R = 1/2, F1 = 2*(1/6)/(5/6) = 2/(2+2+1) = 0.4
    p, r, f = precision_recall_f1(sd(added={"a", "b", "c"}), sd(added={"a"}, removed={"x"}))
    assert (p, r, f) == pytest.approx((1 / 3, 1 / 2, 0.4))
    # the same line in the wrong section earns nothing
    assert f1(sd(added={"a"}), sd(removed={"a"})) == 0.0


def test_both_empty_is_a_perfect_answer():
    for name in SET_DIFF_REWARDS:
        expected = 1.2 if name == "task_specific" else 1.0
        assert REWARDS[name]({}, {}) == pytest.approx(expected)
        assert REWARDS[name](sd(added=set()), sd(removed=set())) == pytest.approx(expected)
    assert precision_recall_f1({}, {}) == (1.0, 1.0, 1.0)


def test_empty_prediction_against_changes_and_changes_against_none():
    target = sd(added={"a"}, removed={"b"})
    for name in SET_DIFF_REWARDS:
        assert REWARDS[name]({}, target) == 0.0  # predicted "no change", something changed
        assert REWARDS[name](target, {}) == 0.0  # predicted changes, nothing changed


def test_unparseable_prediction_scores_zero_everywhere():
    target = sd(added={"a"})
    for name in SET_DIFF_REWARDS:
        assert REWARDS[name](None, target) == 0.0
        assert REWARDS[name](None, {}) == 0.0
    assert precision_recall_f1(None, target) == (0.0, 0.0, 0.0)


def test_task_specific_values():
    target = sd(added={"a", "b"}, removed={"c"})
    assert task_specific(target, target) == pytest.approx(1.2)  # max: F1 1 + bonus 0.2
    # two of three changed facts right, nothing extra: tp 2, fp 0, fn 1 -> F1 = 4/5 = 0.8, no bonus
    assert task_specific(sd(added={"a", "b"}), target) == pytest.approx(0.8)
    # plus one wrong fact: tp 2, fp 1, fn 1 -> F1 = 4/6 = 0.6667
    assert task_specific(sd(added={"a", "b", "z"}), target) == pytest.approx(2 / 3)


CASES = [
    (sd(added={"a", "b"}, removed={"c"}), sd(added={"a", "b"}, removed={"d"})),
    (sd(added={"a"}), sd(added={"a"})),
    ({}, {}),
    (None, sd(added={"a"})),
    (sd(added={"a", "b", "c"}), sd(added={"a"}, removed={"x"})),
]


def test_weighted_reward_parse_and_sum():
    spec = WeightedReward.parse("f1:1,exact:0.2")
    assert spec.terms == [("f1", 1.0), ("exact", 0.2)]
    for pred, target in CASES:
        assert spec(pred, target) == pytest.approx(f1(pred, target) + 0.2 * exact(pred, target))
        assert spec(pred, target) == pytest.approx(task_specific(pred, target))
    # whitespace, empty parts and a missing weight (1.0) are accepted
    assert WeightedReward.parse(" f1 , exact : 0.5 ,").terms == [("f1", 1.0), ("exact", 0.5)]


def test_weighted_reward_unknown_name_suggests_close_one():
    with pytest.raises(KeyError, match="did you mean f1"):
        WeightedReward.parse("f11:1")
    with pytest.raises(KeyError, match="unknown reward"):
        get_reward("no_such_reward_at_all")


def test_weighted_reward_bad_specs():
    with pytest.raises(ValueError, match="not a number"):
        WeightedReward.parse("f1:one")
    with pytest.raises(ValueError, match="names no reward"):
        WeightedReward.parse(" , ")


@pytest.fixture
def raising_reward():
    """A reward registered under a unique name that raises on predictions with a 'boom' section."""
    name = "_test_raising_reward_9f3a"

    def boom(prediction, target):
        if prediction is not None and "boom" in prediction:
            raise RuntimeError("deliberate failure")
        return 0.5

    register(name)(boom)
    try:
        yield name
    finally:
        REWARDS.pop(name, None)


def test_weighted_reward_score_counts_a_raising_reward_and_scores_zero(raising_reward):
    combined = WeightedReward.parse(f"f1:1,{raising_reward}:2")
    target = sd(added={"a"})
    predictions = [sd(added={"a"}), sd(boom={"x"}), None, sd(boom={"y"})]
    rewards, errors = combined.score(predictions, [target] * 4)
    # ok: 1 + 2*0.5 = 2.0; boom: raised -> 0; None: f1 0 + 2*0.5 = 1.0; boom again -> 0
    assert rewards == [2.0, 0.0, 1.0, 0.0]
    assert errors == 2
    assert all(isinstance(r, float) for r in rewards)


def test_score_terms_gives_each_terms_unweighted_score(raising_reward):
    combined = WeightedReward.parse(f"f1:1,{raising_reward}:2")
    target = sd(added={"a"})
    rows, errors = combined.score_terms([sd(added={"a"}), sd(boom={"x"}), None], [target] * 3)
    # ok: f1 1, raising 0.5; boom: raised -> every term 0; None: f1 0, raising 0.5
    assert rows == [[1.0, 0.5], [0.0, 0.0], [0.0, 0.5]]
    assert errors == 1
    assert combined.weights == [1.0, 2.0]
    assert [combined.combine(r) for r in rows] == [2.0, 0.0, 1.0]


def test_raising_reward_fixture_cleans_up():
    assert not any(name.startswith("_test_") for name in REWARDS)


def test_non_finite_weights_and_rewards_are_rejected_or_counted():
    import math

    import pytest

    from rlvr_world.rewards import REWARDS, WeightedReward, register

    with pytest.raises(ValueError, match="finite"):
        WeightedReward.parse("f1:nan")
    register("_test_nan_reward")(lambda p, t: math.nan)
    try:
        rewards, errors = WeightedReward.parse("_test_nan_reward").score([None, None], [{}, {}])
        assert rewards == [0.0, 0.0] and errors == 2
        with pytest.raises(ValueError, match="2 targets"):
            WeightedReward.parse("f1").score([None], [{}, {}])
    finally:
        del REWARDS["_test_nan_reward"]
