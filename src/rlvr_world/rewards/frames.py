"""Pixel and perceptual metrics on predicted video frames, used as rewards.

A prediction or target is a uint8 array [T, H, W, 3] of T predicted frames ([H, W, 3] is
one frame); a prediction may be ``None`` when the response could not be decoded. Each
metric is the mean over the T frames of a per-frame value with pixels scaled to [0, 1]:

    mae, mse   mean absolute / squared error                     (distance, 0 is best)
    psnr       10 log10(1 / mse) in dB, identical frames 100 dB   (higher is better)
    ssim       Gaussian-window SSIM, mean over channels           (higher is better)
    lpips      ST-LPIPS (shift-tolerant LPIPS, AlexNet)           (distance, 0 is best)

They are metrics, not signed rewards: a world turns distances into rewards with negative
weights, e.g. ``"mae:-1,lpips:-1"`` is the paper's -(MAE + LPIPS).

``None`` gets each metric's *worst* value (``WORST``) instead of raising: a raising reward
scores 0 in `WeightedReward`, and 0 is the best possible score of a negative-weight
distance, so an undecodable response would beat every real one. The LPIPS worst value 1
is a convention, not a bound: ST-LPIPS of an adversarial image can exceed 1 (about 1.2),
but real frames score well below it.

Every metric also has a batch form, ``fn.batch(predictions, targets) -> list[float]``,
that scores all frames of a batch in one torch pass; `WeightedReward.score` uses it.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from rlvr_world.models.lpips import get_lpips
from rlvr_world.rewards import register

WORST = {"mae": 1.0, "mse": 1.0, "psnr": 0.0, "ssim": -1.0, "lpips": 1.0}
PSNR_CAP = 100.0  # dB for identical frames; above any uint8 difference on a 64x64 frame (~89 dB)
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
LPIPS_CHUNK = 128  # frame pairs per ST-LPIPS pass: bounds memory on big batches
DEVICE: Optional[str] = None  # where batch forms run; None: CUDA when available, else CPU

PerFrame = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# Per-frame metrics: float [F, 3, H, W] in [0, 1] (pred, target) -> [F].


def _mae(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (p - t).abs().flatten(1).mean(1)


def _mse(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (p - t).pow(2).flatten(1).mean(1)


def _psnr(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    # mse 0 gives +inf before the clamp, so identical frames get exactly PSNR_CAP
    return (10 * torch.log10(1 / _mse(p, t))).clamp(max=PSNR_CAP)


def _gaussian_blur_valid(x: torch.Tensor) -> torch.Tensor:
    """Separable normalised Gaussian (SSIM_WINDOW taps, SSIM_SIGMA) per channel, no padding."""
    r = SSIM_WINDOW // 2
    taps = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(taps**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, SSIM_WINDOW), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, SSIM_WINDOW, 1), groups=c)


def _ssim(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """SSIM (Wang et al. 2004) averaged over the positions where the window fits and over channels.

    Averaging only windows inside the frame is what scikit-image does too (it filters
    with padding, then crops the border of half a window before taking the mean).
    """
    if min(p.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {tuple(p.shape[-2:])}")
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    mu_p, mu_t = _gaussian_blur_valid(p), _gaussian_blur_valid(t)
    var_p = _gaussian_blur_valid(p * p) - mu_p**2
    var_t = _gaussian_blur_valid(t * t) - mu_t**2
    cov = _gaussian_blur_valid(p * t) - mu_p * mu_t
    ssim_map = (2 * mu_p * mu_t + c1) * (2 * cov + c2) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return ssim_map.flatten(1).mean(1)


def _lpips(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    net = get_lpips(p.device)
    p, t = p.float(), t.float()
    if p.shape != t.shape or p.ndim != 4:
        return net(p, t)  # let the network name the shape problem
    # In a GRPO batch every target is shared by its group's samples: its features are computed once.
    unique, inverse = torch.unique(t.flatten(1), dim=0, return_inverse=True)
    unique = unique.view(-1, *t.shape[1:])
    target_feats = [torch.cat(parts) for parts in zip(*(net.features(unique[i : i + LPIPS_CHUNK])
                                                        for i in range(0, len(unique), LPIPS_CHUNK)))]
    out = []
    for i in range(0, len(p), LPIPS_CHUNK):
        rows = inverse[i : i + LPIPS_CHUNK]
        out.append(net.distance(net.features(p[i : i + LPIPS_CHUNK]), [f[rows] for f in target_feats]))
    # Separate trunk passes can differ in the last bits: an exact copy is at distance 0 exactly.
    return torch.cat(out).masked_fill((p == t).flatten(1).all(1), 0.0)


PER_FRAME: dict[str, PerFrame] = {"mae": _mae, "mse": _mse, "psnr": _psnr, "ssim": _ssim, "lpips": _lpips}


def _compute(name: str, p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    # Pixel metrics in float64: SSIM's E[x^2] - E[x]^2 loses digits in float32.
    if name != "lpips":
        p, t = p.double(), t.double()
    with torch.inference_mode():
        return PER_FRAME[name](p, t)


def per_frame(name: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Metric `name` of every frame: pred, target float [N, T, 3, H, W] in [0, 1] -> [N, T].

    For reporting a metric per horizon step; runs on the tensors' device.
    """
    if name not in PER_FRAME:
        raise KeyError(f"unknown frame metric {name!r} (known: {', '.join(PER_FRAME)})")
    if pred.shape != target.shape or pred.ndim != 5 or pred.shape[2] != 3:
        shapes = f"{tuple(pred.shape)} and {tuple(target.shape)}"
        raise ValueError(f"per_frame wants two [N, T, 3, H, W] tensors of one shape, got {shapes}")
    n, t = pred.shape[:2]
    return _compute(name, pred.flatten(0, 1), target.flatten(0, 1)).view(n, t)


def as_frames(x: Any) -> np.ndarray:
    """A uint8 [T, H, W, 3] array from [T, H, W, 3] or one [H, W, 3] frame."""
    a = np.asarray(x)
    if a.dtype != np.uint8:
        raise TypeError(f"frames must be uint8, got {a.dtype}")
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3 or a.shape[0] == 0:
        raise ValueError(f"frames must be [T, H, W, 3] with T >= 1 or [H, W, 3], got shape {a.shape}")
    return a


def _device() -> torch.device:
    return torch.device(DEVICE or ("cuda" if torch.cuda.is_available() else "cpu"))


def _to_tensor(frames: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """uint8 [F, H, W, 3] -> float [F, 3, H, W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).to(dtype) / 255


def score_batch(name: str, predictions: list, targets: list) -> list[float]:
    """Metric `name` of each (prediction, target) pair, mean over its frames; None -> WORST[name].

    All frames of the batch go through one pass per frame size.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions but {len(targets)} targets")
    scores = [WORST[name]] * len(predictions)
    groups: dict[tuple[int, int], list[tuple[int, np.ndarray, np.ndarray]]] = {}
    for i, (p, t) in enumerate(zip(predictions, targets)):
        if p is None:
            continue
        p, t = as_frames(p), as_frames(t)
        if p.shape != t.shape:
            raise ValueError(f"prediction {i} has shape {p.shape} but its target {t.shape}")
        groups.setdefault(p.shape[1:3], []).append((i, p, t))
    device, dtype = _device(), torch.float32 if name == "lpips" else torch.float64
    for items in groups.values():
        p = _to_tensor(np.concatenate([p for _, p, _ in items]), device, dtype)
        t = _to_tensor(np.concatenate([t for _, _, t in items]), device, dtype)
        values = _compute(name, p, t).double().cpu().numpy()
        start = 0
        for i, frames, _ in items:
            scores[i] = float(values[start : start + len(frames)].mean())
            start += len(frames)
    return scores


PATCH_METRICS = ("mae", "mse")  # the frame's value is exactly the mean of its equal patches


def patch_scores(name: str, prediction: Optional[np.ndarray], target: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Metric `name` on each cell of a grid laid over every frame: float64 [T, gh, gw].

    For `PATCH_METRICS` the mean over a frame's cells is the frame's metric exactly (the grid
    must divide the frame). A frame tokenizer's code draws mostly its own cell, so this splits
    a frame's reward over its codes (dense credit in GRPO). None -> WORST[name] everywhere.
    """
    if name not in PATCH_METRICS:
        raise KeyError(f"{name!r} has no per-patch form (those that do: {', '.join(PATCH_METRICS)})")
    t = as_frames(target)
    (gh, gw), (h, w) = grid, t.shape[1:3]
    if h % gh or w % gw:
        raise ValueError(f"a {gh}x{gw} grid does not divide {h}x{w} frames")
    if prediction is None:
        return np.full((len(t), gh, gw), WORST[name])
    p = as_frames(prediction)
    if p.shape != t.shape:
        raise ValueError(f"prediction has shape {p.shape} but its target {t.shape}")
    err = np.abs(p.astype(np.float64) - t) / 255
    if name == "mse":
        err = err**2
    return err.reshape(len(t), gh, h // gh, gw, w // gw, 3).mean(axis=(2, 4, 5))


def _batch_form(name: str) -> Callable[[list, list], list[float]]:
    def batch(predictions: list, targets: list) -> list[float]:
        return score_batch(name, predictions, targets)

    batch.__name__ = batch.__qualname__ = f"{name}_batch"
    batch.__doc__ = f"`{name}` of a whole batch in one torch pass: predictions, targets (lists) -> list of floats."
    return batch


@register("mae")
def mae(prediction: Optional[np.ndarray], target: np.ndarray) -> float:
    """Mean absolute pixel error in [0, 1], averaged over frames; None scores 1 (the worst)."""
    return score_batch("mae", [prediction], [target])[0]


@register("mse")
def mse(prediction: Optional[np.ndarray], target: np.ndarray) -> float:
    """Mean squared pixel error in [0, 1], averaged over frames; None scores 1 (the worst)."""
    return score_batch("mse", [prediction], [target])[0]


@register("psnr")
def psnr(prediction: Optional[np.ndarray], target: np.ndarray) -> float:
    """Per-frame PSNR in dB (data range 1, identical frames PSNR_CAP), averaged; None scores 0."""
    return score_batch("psnr", [prediction], [target])[0]


@register("ssim")
def ssim(prediction: Optional[np.ndarray], target: np.ndarray) -> float:
    """Per-frame SSIM (Gaussian window 11, sigma 1.5, K1 .01, K2 .03), averaged; None scores -1."""
    return score_batch("ssim", [prediction], [target])[0]


@register("lpips")
def lpips(prediction: Optional[np.ndarray], target: np.ndarray) -> float:
    """Per-frame ST-LPIPS distance, averaged; None scores 1 (see the module docstring)."""
    return score_batch("lpips", [prediction], [target])[0]


for _fn in (mae, mse, psnr, ssim, lpips):
    _fn.batch = _batch_form(_fn.__name__)  # type: ignore[attr-defined]
