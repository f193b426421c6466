"""ActionBinner: uniform per-dimension bins over the fitted data range."""

import json

import numpy as np
import pytest

from rlvr_world.worlds.metaworld.actions import ActionBinner


def actions(n=500, seed=0):
    rng = np.random.default_rng(seed)
    a = np.stack([rng.uniform(-1, 1, n), rng.uniform(-0.3, 0.7, n), rng.normal(0, 0.2, n), rng.uniform(-1, 1, n)], 1)
    return a.astype(np.float32)


def test_fit_reads_per_dimension_range():
    a = actions()
    b = ActionBinner(bins=256).fit(a)
    np.testing.assert_allclose(b.low, a.min(0))
    np.testing.assert_allclose(b.high, a.max(0))
    np.testing.assert_allclose(b.bin_width, (a.max(0) - a.min(0)) / 256)


def test_round_trip_within_half_a_bin_per_dimension():
    a = actions()
    for bins in (256, 7, 1):
        b = ActionBinner(bins=bins).fit(a)
        codes = b.encode(a)
        assert codes.dtype == np.int64 and codes.shape == a.shape
        assert codes.min() >= 0 and codes.max() < bins
        err = np.abs(b.decode(codes) - a)
        assert (err <= b.bin_width / 2 + 1e-6).all(), (bins, (err / b.bin_width).max())
    # The extremes land in the edge bins.
    b = ActionBinner(bins=256).fit(a)
    codes = b.encode(a)
    assert (codes[a.argmin(0), range(4)] == 0).all()
    assert (codes[a.argmax(0), range(4)] == 255).all()


def test_hand_computed_bins():
    b = ActionBinner(bins=4).fit(np.array([[0.0, -2.0], [1.0, 2.0]]))
    # dim 0: edges 0, .25, .5, .75, 1; dim 1: edges -2, -1, 0, 1, 2
    codes = b.encode(np.array([[0.1, -1.5], [0.25, 0.0], [0.74, 0.99], [1.0, 2.0]]))
    np.testing.assert_array_equal(codes, [[0, 0], [1, 2], [2, 2], [3, 3]])
    np.testing.assert_allclose(b.decode(np.array([[0, 3]])), [[0.125, 1.5]])


def test_out_of_range_values_clip_to_edge_bins():
    b = ActionBinner(bins=256).fit(actions())
    far = np.array([[-100.0, -5.0, -3.0, -1.5], [100.0, 5.0, 3.0, 1.5], [np.inf, -np.inf, 0.0, 0.0]])
    codes = b.encode(far)
    np.testing.assert_array_equal(codes[0], 0)
    np.testing.assert_array_equal(codes[1], 255)
    assert codes[2, 0] == 255 and codes[2, 1] == 0
    with pytest.raises(ValueError, match="NaN"):
        b.encode(np.full((1, 4), np.nan))


def test_constant_dimension_does_not_divide_by_zero():
    a = actions()
    a[:, 3] = 1.0  # e.g. a gripper held closed in every step
    b = ActionBinner(bins=256).fit(a)
    with np.errstate(all="raise"):  # any division by zero or invalid op raises
        codes = b.encode(a)
        back = b.decode(codes)
    assert np.isfinite(back).all()
    assert 0 <= codes[:, 3].min() and codes[:, 3].max() < 256
    np.testing.assert_allclose(back[:, 3], 1.0, atol=1e-6)
    np.testing.assert_array_equal(b.encode(np.array([[0, 0, 0, 5.0], [0, 0, 0, -5.0]]))[:, 3], [255, 0])


def test_dict_round_trip_through_json():
    a = actions()
    b = ActionBinner(bins=100).fit(a)
    c = ActionBinner.from_dict(json.loads(json.dumps(b.to_dict())))
    assert c.bins == 100
    np.testing.assert_array_equal(c.encode(a), b.encode(a))
    np.testing.assert_array_equal(c.decode(b.encode(a)), b.decode(b.encode(a)))


def test_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        ActionBinner().encode(np.zeros((1, 4)))
    b = ActionBinner(bins=8).fit(actions())
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        b.encode(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="bins must lie"):
        b.decode(np.full((1, 4), 8))
    with pytest.raises(ValueError):
        ActionBinner(bins=0)
