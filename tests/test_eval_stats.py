"""Paired comparisons of two models' per-example scores, against values computed by hand."""

import math

import pytest

from rlvr_world.eval.evaluate import paired_evaluations, paired_mean_difference


def test_paired_mean_difference_by_hand():
    # differences 1, 0, -0.5: mean 1/6; sample variance ((5/6)^2 + (1/6)^2 + (2/3)^2) / 2 = 7/12
    out = paired_mean_difference([1.0, 0.5, 0.0], [0.0, 0.5, 0.5])
    half = 1.96 * math.sqrt(7 / 12) / math.sqrt(3)  # 0.864280
    assert out["difference"] == pytest.approx(1 / 6)
    assert out["ci95"] == pytest.approx([1 / 6 - half, 1 / 6 + half])
    assert out["ci95"][0] == pytest.approx(-0.697613, abs=1e-6)
    assert (out["a_better"], out["b_better"], out["n"]) == (1, 1, 3)
    # the same scores shifted by a constant: a zero-width interval at the shift
    same = paired_mean_difference([0.3, 0.9], [0.1, 0.7])
    assert same["difference"] == pytest.approx(0.2) and same["ci95"] == pytest.approx([0.2, 0.2])
    with pytest.raises(ValueError, match="same examples"):
        paired_mean_difference([1.0], [1.0, 0.0])


def test_paired_evaluations_pair_files_of_the_same_examples_only():
    def ev(greedy, sampled, split="test", reward="f1"):
        return {"split": split, "per_example": {"reward": reward, "greedy": greedy, "sampled": sampled}}

    evals = {"rlvr": ev([1.0, 0.5], [0.5, 0.5]), "mle": ev([0.0, 0.5], [0.5, 0.0]),
             "mle_longer": {"split": "test"},  # written before per-example scores were recorded
             "other": ev([1.0, 0.5], [0.5, 0.5], split="val"), "short": ev([1.0], [1.0])}
    out = paired_evaluations(evals, [("rlvr", "mle"), ("rlvr", "mle_longer"), ("rlvr", "other"), ("rlvr", "short")])
    assert list(out) == ["rlvr - mle"]
    assert out["rlvr - mle"]["reward"] == "f1"
    assert out["rlvr - mle"]["greedy"]["difference"] == pytest.approx(0.5)
    assert out["rlvr - mle"]["sampled"]["difference"] == pytest.approx(0.25)
    assert (out["rlvr - mle"]["greedy"]["a_better"], out["rlvr - mle"]["greedy"]["b_better"]) == (1, 0)
