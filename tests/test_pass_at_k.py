"""The unbiased pass@k estimator behind the README's sharpening ceilings (scripts/pass_at_k.py)."""

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("pass_at_k", Path(__file__).resolve().parents[1] / "scripts" / "pass_at_k.py")
pass_at_k = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pass_at_k)


@pytest.mark.parametrize("n, right, k, expected", [
    (4, 1, 1, 0.25),       # pass@1 is the share of right samples
    (4, 1, 2, 0.5),        # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (4, 2, 2, 5 / 6),      # 1 - C(2,2)/C(4,2) = 1 - 1/6
    (4, 3, 2, 1.0),        # two draws cannot both miss when only one sample is wrong
    (4, 0, 4, 0.0),        # nothing right: never passes
    (64, 1, 8, 0.125),     # 1 - C(63,8)/C(64,8) = 8/64
])
def test_pass_at_matches_hand_computed_values(n, right, k, expected):
    assert pass_at_k.pass_at(n, right, k) == pytest.approx(expected, abs=1e-12)
