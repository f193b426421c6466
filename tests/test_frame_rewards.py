"""Frame metrics: pixel metrics by hand and against scikit-image, ST-LPIPS behaviour and a
value pinned from the stlpips-pytorch package, None scoring, batch forms, WeightedReward."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from rlvr_world.models import lpips as lpips_module
from rlvr_world.rewards import REWARDS, WeightedReward, register
from rlvr_world.rewards import frames
from rlvr_world.rewards.frames import WORST, lpips, mae, mse, patch_scores, per_frame, psnr, ssim

NAMES = ("mae", "mse", "psnr", "ssim", "lpips")


def structured(seed: int, t: int = 1, size: int = 64) -> np.ndarray:
    """uint8 [t, size, size, 3]: smooth random blobs plus edges, like a rendered scene."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(t):
        coarse = rng.random((8, 8, 3))
        blobs = np.kron(coarse, np.ones((size // 8, size // 8, 1)))
        blobs = gaussian_filter(blobs, sigma=(2, 2, 0))
        edges = ((x * rng.integers(2, 6) + y * rng.integers(1, 4)) % 1 > 0.5)[..., None] * 0.3
        out.append(np.clip(0.7 * blobs + edges, 0, 1))
    return np.round(np.stack(out) * 255).astype(np.uint8)


def analytic(phase: float) -> np.ndarray:
    """A deterministic 64x64 test card (no RNG), used to pin an ST-LPIPS value."""
    y, x = np.mgrid[0:64, 0:64] / 64.0
    r = 0.5 + 0.4 * np.sin(2 * np.pi * (3 * x + phase)) * np.cos(2 * np.pi * 2 * y)
    g = 0.2 + 0.6 * x * y
    b = ((x * 8 + phase * 8).astype(int) + (y * 8).astype(int)) % 2 * 0.7 + 0.15
    return np.round(np.stack([r, g, b], -1) * 255).astype(np.uint8)


def test_registered_with_batch_forms():
    for name in NAMES:
        assert callable(REWARDS[name].batch)
    assert REWARDS["lpips"] is lpips


def test_importing_rewards_does_not_load_lpips_weights():
    code = (
        "import sys, rlvr_world.rewards, rlvr_world.models.lpips as m; "
        "assert not m._models, 'weights loaded at import'; "
        "assert 'stlpips_pytorch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_mae_mse_psnr_by_hand():
    zero = np.zeros((2, 2, 3), np.uint8)
    one_hot = zero.copy()
    one_hot[0, 0, 0] = 255  # one of 12 values off by 1
    assert mae(one_hot, zero) == pytest.approx(1 / 12)
    assert mse(one_hot, zero) == pytest.approx(1 / 12)
    grey = np.full((2, 2, 3), 51, np.uint8)  # 51/255 = 0.2 everywhere
    assert mae(grey, zero) == pytest.approx(0.2)
    assert mse(grey, zero) == pytest.approx(0.04)
    assert psnr(grey, zero) == pytest.approx(10 * math.log10(1 / 0.04))  # 13.98 dB
    # T = 2: the mean of per-frame values (PSNR too: mean of dB, not dB of the mean MSE)
    pred, target = np.stack([grey, np.full((2, 2, 3), 204, np.uint8)]), np.stack([zero, np.full((2, 2, 3), 255, np.uint8)])
    assert mae(pred, target) == pytest.approx(0.2)  # |0.2| and |0.8 - 1|
    light = np.full((2, 2, 3), 26, np.uint8)  # 26/255 off in frame 1
    pred2 = np.stack([grey, light])
    target2 = np.stack([zero, zero])
    mse1 = (26 / 255) ** 2
    assert mse(pred2, target2) == pytest.approx((0.04 + mse1) / 2)
    assert psnr(pred2, target2) == pytest.approx((10 * math.log10(25) + 10 * math.log10(1 / mse1)) / 2)
    # identical frames: the documented finite cap; order of arguments does not matter
    assert psnr(grey, grey) == frames.PSNR_CAP == 100.0
    assert mae(zero, grey) == mae(grey, zero) and mse(grey, zero) == mse(zero, grey)


def test_patch_scores_split_mae_and_mse_over_a_grid():
    # A 4x4 frame on a 2x2 grid: the prediction is off by 51/255 = 0.2 in every channel of
    # the top-left 2x2 cell only, and in one of the bottom-right cell's 4 pixels by 0.2 in red.
    target = np.zeros((1, 4, 4, 3), np.uint8)
    pred = target.copy()
    pred[0, :2, :2] = 51
    pred[0, 3, 3, 0] = 51
    cells = patch_scores("mae", pred, target, (2, 2))
    # bottom-right: one channel of one pixel of 4 pixels x 3 channels -> 0.2 / 12
    assert cells == pytest.approx(np.array([[[0.2, 0.0], [0.0, 0.2 / 12]]]))
    assert patch_scores("mse", pred, target, (2, 2)) == pytest.approx(np.array([[[0.04, 0.0], [0.0, 0.04 / 12]]]))
    # on real-looking frames the cells average to the frame's metric, per frame and over frames
    p, t = structured(5, t=2), structured(6, t=2)
    for name, fn in (("mae", mae), ("mse", mse)):
        cells = patch_scores(name, p, t, (8, 8))
        assert cells.shape == (2, 8, 8)
        assert cells.mean() == pytest.approx(fn(p, t), rel=1e-9)
        assert cells[1].mean() == pytest.approx(fn(p[1], t[1]), rel=1e-9)
    assert (patch_scores("mae", None, t, (8, 8)) == WORST["mae"]).all()
    with pytest.raises(KeyError, match="no per-patch form"):
        patch_scores("lpips", p, t, (8, 8))
    with pytest.raises(ValueError, match="does not divide"):
        patch_scores("mae", p, t, (6, 6))


def test_psnr_and_ssim_match_scikit_image():
    preds, targets = structured(1, t=3), structured(2, t=3)
    noisy = np.clip(targets + np.random.default_rng(3).normal(0, 12, targets.shape), 0, 255).astype(np.uint8)
    for pred in (preds, noisy):
        for p, t in zip(pred, targets):
            pf, tf = p / 255.0, t / 255.0
            want_psnr = peak_signal_noise_ratio(tf, pf, data_range=1)
            want_ssim = structural_similarity(
                pf, tf, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1
            )
            assert psnr(p, t) == pytest.approx(want_psnr, abs=1e-4)
            assert ssim(p, t) == pytest.approx(want_ssim, abs=1e-4)
        # the [T, ...] form is the mean of the per-frame values
        want = np.mean([
            structural_similarity(p / 255.0, t / 255.0, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, data_range=1, channel_axis=-1)
            for p, t in zip(pred, targets)
        ])
        assert ssim(pred, targets) == pytest.approx(want, abs=1e-4)
    assert ssim(targets, targets) == pytest.approx(1.0)


def test_lpips_pinned_to_the_reference_package():
    # values from stlpips_pytorch's own LPIPS(net="alex", variant="shift_tolerant") on these cards
    a, b = analytic(0.0), analytic(0.3)
    assert lpips(b, a) == pytest.approx(0.0681032, abs=1e-5)
    assert lpips(np.roll(a, 1, axis=1), a) == pytest.approx(0.0064855, abs=1e-5)


def test_lpips_identity_symmetry_and_monotonicity():
    img = structured(4)[0]
    noise = np.random.default_rng(5).normal(0, 1, img.shape)
    blurred = [np.round(gaussian_filter(img.astype(float), sigma=(s, s, 0))).astype(np.uint8) for s in (0.5, 1, 2, 4)]
    noisy = [np.clip(img + 255 * s * noise, 0, 255).astype(np.uint8) for s in (0.02, 0.05, 0.1, 0.2)]
    other = structured(6)[0]
    preds = [img, other, img] + blurred + noisy
    targets = [img, img, other] + [img] * 8
    d = lpips.batch(preds, targets)
    assert d[0] == 0.0
    assert d[1] == pytest.approx(d[2], abs=1e-6) and d[1] > 0.05
    blur_d, noise_d = d[3:7], d[7:11]
    assert all(x < y for x, y in zip(blur_d, blur_d[1:])), blur_d
    assert all(x < y for x, y in zip(noise_d, noise_d[1:])), noise_d
    assert blur_d[0] > 0 and noise_d[0] > 0


def test_none_gets_the_worst_value():
    target = structured(7, t=2)
    assert WORST == {"mae": 1.0, "mse": 1.0, "psnr": 0.0, "ssim": -1.0, "lpips": 1.0}
    for name in NAMES:
        assert REWARDS[name](None, target) == WORST[name]
        assert REWARDS[name].batch([None, None], [target, target]) == [WORST[name]] * 2
    # the worst is really no better than the worst real prediction for the pixel metrics
    black, white = np.zeros_like(target), np.full_like(target, 255)
    assert mae(black, white) == 1.0 and mse(black, white) == 1.0 and psnr(black, white) == 0.0


def test_batch_equals_per_item():
    t64, t32 = structured(8, t=3), structured(9, t=2, size=32)
    p64, p32 = structured(10, t=3), structured(11, t=2, size=32)
    one_frame = structured(12)[0]  # [H, W, 3] is T = 1
    preds = [p64, None, p32, one_frame, t64]
    targets = [t64, t64, t32, structured(13)[0], t64]
    for name in NAMES:
        fn = REWARDS[name]
        batch = fn.batch(preds, targets)
        single = [fn(p, t) for p, t in zip(preds, targets)]
        assert batch == pytest.approx(single, abs=1e-6), name
        assert all(isinstance(v, float) for v in batch)


def test_per_frame_shape_and_values():
    pred, target = structured(14, t=3), structured(15, t=3)
    to_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255
    p = torch.stack([to_t(pred), to_t(target)])  # [N=2, T=3, 3, H, W]
    t = torch.stack([to_t(target), to_t(target)])
    for name in ("mae", "psnr", "ssim", "lpips"):
        out = per_frame(name, p, t)
        assert out.shape == (2, 3)
        assert out[0].mean().item() == pytest.approx(REWARDS[name](pred, target), rel=1e-5)
        want_frame = REWARDS[name](pred[1], target[1])
        assert out[0, 1].item() == pytest.approx(want_frame, rel=1e-5)
    assert per_frame("lpips", p, t)[1].abs().max().item() == 0.0
    with pytest.raises(ValueError, match="N, T"):
        per_frame("mae", p[0], t[0])


def test_bad_frames_raise():
    target = structured(16)
    with pytest.raises(TypeError, match="uint8"):
        mae(target.astype(np.float32), target)
    with pytest.raises(ValueError, match="shape"):
        mae(target[:, :32], target)


def test_weighted_reward_uses_the_batch_path(monkeypatch):
    calls = []
    for name in ("mae", "lpips"):
        original = REWARDS[name].batch

        def item(p, t):
            pytest.fail("per-item path used")

        def spy(preds, targets, _original=original, _name=name):
            calls.append((_name, len(preds)))
            return _original(preds, targets)

        item.batch = spy
        monkeypatch.setitem(REWARDS, name, item)
    target = structured(17, t=2)
    preds = [target, structured(18, t=2), None]
    rewards, errors = WeightedReward.parse("mae:-1,lpips:-1").score(preds, [target] * 3)
    assert calls == [("mae", 3), ("lpips", 3)]
    assert errors == 0
    monkeypatch.undo()
    assert rewards[0] == 0.0
    assert rewards[1] == pytest.approx(-(mae(preds[1], target) + lpips(preds[1], target)), abs=1e-6)
    assert rewards[2] == -2.0  # None: worst MAE 1 and worst LPIPS 1
    assert rewards[0] > rewards[1] > rewards[2]


@pytest.fixture
def batched_reward():
    """A reward whose batch form raises (or returns NaN) and whose item form raises on 'boom'."""
    name = "_test_batched_reward_7c1d"
    mode = {"batch": "raise"}

    def item(prediction, target):
        if prediction == "boom":
            raise RuntimeError("deliberate failure")
        return math.nan if prediction == "nan" else 0.5

    def batch(predictions, targets):
        if mode["batch"] == "raise":
            raise RuntimeError("batch failure")
        return [item(p, t) if p != "boom" else math.inf for p, t in zip(predictions, targets)]

    item.batch = batch
    register(name)(item)
    try:
        yield name, mode
    finally:
        REWARDS.pop(name, None)


def test_weighted_reward_falls_back_when_the_batch_raises(batched_reward):
    name, mode = batched_reward
    combined = WeightedReward.parse(f"{name}:2")
    preds = ["ok", "boom", "nan", "ok"]
    with pytest.warns(RuntimeWarning, match="item by item"):
        rewards, errors = combined.score(preds, [None] * 4)
    assert rewards == [1.0, 0.0, 0.0, 1.0] and errors == 2  # per-item counting
    mode["batch"] = "values"  # batch path: non-finite totals score 0 and are counted
    rewards, errors = combined.score(preds, [None] * 4)
    assert rewards == [1.0, 0.0, 0.0, 1.0] and errors == 2


def test_weighted_reward_mixed_terms_use_the_item_loop():
    # f1 has no batch form, so the loop runs; a frame prediction breaks f1, which is counted
    target, other = structured(19), structured(20)
    rewards, errors = WeightedReward.parse("mae:-1,f1:1").score([other, None], [target, target])
    assert errors == 1 and rewards == [0.0, -1.0]  # None: mae worst 1, f1 of None 0


def test_weights_file_errors_and_swapping(tmp_path, monkeypatch):
    assert lpips_module.default_weights_path().is_file()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        lpips_module.load_stlpips(tmp_path / "missing.pth")
    monkeypatch.setattr(lpips_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install stlpips-pytorch"):
        lpips_module.default_weights_path()
    monkeypatch.undo()

    a, b = analytic(0.0), analytic(0.3)
    base = lpips(b, a)
    state = torch.load(lpips_module.default_weights_path(), map_location="cpu", weights_only=True)
    for k in range(5):
        state[f"lin{k}.model.1.weight"] *= 2  # every layer's weights doubled: the distance doubles
    path = tmp_path / "double.pth"
    torch.save(state, path)
    try:
        lpips_module.set_lpips_weights(path)
        assert lpips(b, a) == pytest.approx(2 * base, rel=1e-5)
    finally:
        lpips_module.set_lpips_weights(None)
    assert lpips(b, a) == pytest.approx(base, rel=1e-6)
    assert "stlpips_pytorch" not in sys.modules


def test_lpips_first_loaded_by_a_reward_still_gives_gradients():
    """The shared network is first loaded wherever it is first used, often inside a reward's
    inference_mode; a perceptual training loss that uses it later needs gradients through it."""
    lpips_module.set_lpips_weights(None)  # forget the shared network: the next call loads it
    try:
        with torch.inference_mode():
            lpips_module.get_lpips()
        x = torch.rand(2, 3, 32, 32, requires_grad=True)
        lpips_module.get_lpips()(x, torch.rand(2, 3, 32, 32)).sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
    finally:
        lpips_module.set_lpips_weights(None)
