"""A small convolutional autoencoder with finite scalar quantisation (FSQ) for 64x64 frames.

A frame [H, W, 3] (uint8) becomes a grid of discrete codes [H/downsample, W/downsample] in
[0, codebook_size); the video world model predicts these codes, and `decode` turns them back
into pixels.

FSQ (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple") has no codebook
to learn and no commitment loss: the encoder projects to d = len(levels) channels, channel i
is squashed by a shifted tanh onto an interval that rounds to exactly `levels[i]` integers,
the rounding passes gradients straight through, and a code's index is the mixed-radix number
whose digits are the channels' integer values. Every code is reachable, so codebook collapse
cannot happen the way it does with VQ.

Weights are saved as safetensors and the config as JSON (no pickle), each file written under
a temporary name and renamed into place (the JSON last, so its presence means both are
complete). Training checkpoints reuse `rlvr_world.checkpoint`, so a killed
`train_frame_tokenizer` run resumes from its last checkpoint.

Measured (the shared 2-core AMD EPYC machine, torch 2.13 CPU, 2 threads; Meta-World corner4
64x64 frames of expert episodes in 8 tasks, 4627 train and 971 val frames from other episodes):
- Training throughput, default architecture (660k parameters), batch 32: 260-275 frames/s
  when the machine was otherwise idle; res_blocks=0: ~380; downsample=4: ~300. With other
  jobs on the cores it fell to 30-60 frames/s.
- Val PSNR after 600 steps of batch 32 (about 75 s of idle-machine training): 23.1 / 24.0 /
  24.8 dB at lr 2e-3 / 4e-3 / 8e-3 (res_blocks=0 at 2e-3: 22.3 dB); the mean training frame
  scores 19.9 dB. Pixels that differ from the mean frame (the arm, the objects) reconstruct
  at 17-18.5 dB against 31-34 dB for the rest: small objects (the push puck, goal markers)
  are lost at 8x8 codes of 1000.
- `motion_weight` (extra loss weight on those pixels): 3 at lr 2e-3 gave +0.4 dB overall,
  +1.6 dB on them, -4.2 dB elsewhere; 1 at lr 4e-3 gave +0.5 / +0.9 / -2.3 dB. lr 8e-3
  without it matched lr 4e-3 with it on those pixels, so it is off by default.

Decoding against a reference frame (`FrameTokenizerConfig.reference`): a world model
predicts frames right after ones it has seen, and at 64 px only 1-4% of pixels change per
step, so most of a predicted frame is already known exactly. A small per-pixel gate
(`_CopyGate`) copies the last observed frame's pixels where they agree with the decoded
frame; the codes are unchanged. Measured on the embedded default's data (4 tasks, 300 s of
training at lr 8e-3 each, frames 1-4 steps after their reference, 1,024 test pairs): MAE
0.0112 -> 0.0087, PSNR 26.4 -> 27.1 dB, ST-LPIPS 0.062 -> 0.035, but MAE on the pixels that
changed 0.060 -> 0.077 (the gate sometimes copies a pixel that moved); copying the reference
itself: 0.0189, 22.4 dB, 0.021, 0.206. Throughput 184 against 315 frames/s. Two ways of
training it failed: jointly with the decoder (the decoder learns to copy and the codes
collapse onto one; blacking out a quarter of the references did not stop it, half did in
one run), and the gate through the mixture's L1 (it saturates at "copy" before the decoder
is any good)."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from rlvr_world.checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint
from rlvr_world.models.lm import resolve_device
from rlvr_world.runlog import RunLog
from rlvr_world.training import NonFiniteGuard, lr_factor, make_optimizer, parameters_finite, set_lr, set_seed, step_rng

WEIGHTS_NAME = "frame_tokenizer.safetensors"
CONFIG_NAME = "frame_tokenizer.json"
_FORMAT = "rlvr_world.frame_tokenizer"
_FORMAT_VERSION = 1
MOTION_THRESHOLD = 0.1  # see FrameTokenizerTrainConfig.motion_weight


# ---------------------------------------------------------------------------------------------
# Finite scalar quantisation
# ---------------------------------------------------------------------------------------------


class FSQ(nn.Module):
    """Finite scalar quantisation over the last dimension (d = len(levels) channels).

    `quantize(z)` maps real [..., d] to quantised values on the grid {k / (L_i // 2)} for
    integer k in [-(L_i // 2), L_i - 1 - L_i // 2], i.e. in [-1, 1]; the forward pass rounds,
    the backward pass is the identity through the rounding (straight-through estimator).
    """

    def __init__(self, levels: Sequence[int], eps: float = 1e-3):
        super().__init__()
        levels = tuple(int(l) for l in levels)
        if not levels or min(levels) < 2:
            raise ValueError(f"FSQ levels must be integers >= 2, got {levels}")
        self.levels_tuple = levels
        self.eps = eps
        lv = torch.tensor(levels, dtype=torch.float32)
        basis = torch.cumprod(torch.tensor((1,) + levels[:-1], dtype=torch.int64), 0)
        self.register_buffer("_levels", lv, persistent=False)
        self.register_buffer("_half_width", torch.floor(lv / 2), persistent=False)  # L // 2
        self.register_buffer("_basis", basis, persistent=False)
        # Even L: the L integers {-L/2, ..., L/2 - 1} are not symmetric around 0, so the tanh
        # output is shifted down by 0.5 and its input shifted so that bound(0) == 0 (for L = 2
        # no shift can do that, as |offset| > half_l; it gets none and bound(0) = -0.5).
        half_l = (lv - 1) * (1 - eps) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        ratio = offset / half_l
        shift = torch.where(ratio < 1, torch.atanh(ratio.clamp(max=0.999)), torch.zeros_like(ratio))
        self.register_buffer("_half_l", half_l, persistent=False)
        self.register_buffer("_offset", offset, persistent=False)
        self.register_buffer("_shift", shift, persistent=False)

    @property
    def dim(self) -> int:
        return len(self.levels_tuple)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels_tuple)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash z [..., d] into intervals whose rounding takes exactly levels[i] values."""
        return torch.tanh(z + self._shift) * self._half_l - self._offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Bound, round (straight-through) and normalise to [-1, 1]; returns [..., d]."""
        b = self.bound(z)
        q = b + (torch.round(b) - b).detach()
        return q / self._half_width

    def codes_to_indices(self, zhat: torch.Tensor) -> torch.Tensor:
        """Quantised values [..., d] (as returned by `quantize`) -> int64 indices [...]."""
        digits = torch.round(zhat * self._half_width + self._half_width).long()
        return (digits * self._basis).sum(-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """int64 indices [...] -> quantised values [..., d] on the level grid."""
        indices = indices.long().unsqueeze(-1)
        digits = torch.div(indices, self._basis, rounding_mode="floor") % self._levels.long()
        return (digits.float() - self._half_width) / self._half_width


# ---------------------------------------------------------------------------------------------
# Autoencoder
# ---------------------------------------------------------------------------------------------


@dataclass
class FrameTokenizerConfig:
    """Architecture of the frame tokenizer.

    `downsample` must be a power of two; it sets the number of stride-2 stages. Stage i
    outputs `channels[i]` (the last entry repeats if there are more stages than entries, and
    extra entries are unused), so downsample 4 with channels (32, 64, 128) works on a 16x16
    grid of width 64 at about the cost of the 8x8 grid of width 128.
    """

    image_size: int = 64
    levels: tuple[int, ...] = (8, 5, 5, 5)  # 1000 codes
    channels: tuple[int, ...] = (32, 64, 128)
    downsample: int = 8
    res_blocks: int = 1  # residual blocks at the bottleneck, in the encoder and in the decoder
    # Decoding also takes a reference frame (the last observed one), and a learned per-pixel
    # gate copies its exact pixels where it agrees with the decoded frame, so the static
    # background no longer passes through the 8x8 bottleneck. The encoder and decoder (and so
    # every code) are those of the plain tokenizer. See `_CopyGate`.
    reference: bool = False

    def __post_init__(self):
        self.levels = tuple(int(l) for l in self.levels)
        self.channels = tuple(int(c) for c in self.channels)
        d = self.downsample
        if d < 2 or d & (d - 1):
            raise ValueError(f"downsample must be a power of two >= 2, got {d}")
        if self.image_size % d:
            raise ValueError(f"image_size {self.image_size} is not divisible by downsample {d}")
        if not self.channels:
            raise ValueError("channels must not be empty")

    @property
    def stages(self) -> int:
        return int(math.log2(self.downsample))

    def stage_channels(self) -> list[int]:
        return [self.channels[min(i, len(self.channels) - 1)] for i in range(self.stages)]

    @classmethod
    def from_dict(cls, d: dict) -> "FrameTokenizerConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown FrameTokenizerConfig fields: {sorted(unknown)}")
        return cls(**d)


class _ResBlock(nn.Module):
    """x + conv1x1(act(conv3x3(act(x)))); the last conv starts at zero, so the block starts as identity."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class _CopyGate(nn.Module):
    """Where to take the reference frame's own pixels instead of the decoded ones.

    out = g * reference + (1 - g) * decoded, with the gate g in (0, 1) per pixel computed
    from the decoded frame, the reference and their difference: where the two agree (the
    static background) the reference's exact pixels replace the decoder's blurred ones; where
    they differ (the arm moved) the decoded pixels stay. Shapes: [N, 3, H, W] in [-1, 1] each.

    It learns as a per-pixel classifier (`loss`): is the reference closer to the true pixel
    than the decoder is? Trained instead through the mixture's L1, the gate saturates at
    "copy" while the decoder is still poor and never reopens; trained jointly with the
    decoder, the decoder learns to copy the reference and the codes collapse onto one.
    """

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(9, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, 1, 3, padding=1)

    def logits(self, decoded: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """[N, 1, H, W]: the gate before its sigmoid."""
        return self.conv2(F.silu(self.conv1(torch.cat([decoded, reference, (decoded - reference).abs()], 1))))

    def forward(self, decoded: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.logits(decoded, reference))
        return g * reference + (1 - g) * decoded

    def loss(self, decoded: torch.Tensor, reference: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of the gate against "the reference's pixel is the closer one",
        each pixel weighted by how much the choice changes its L1 error (so ties do not count).
        The decoded frames are taken as given (no gradient flows into the decoder)."""
        decoded = decoded.detach()
        err_ref = (reference - target).abs().sum(1, keepdim=True)
        err_dec = (decoded - target).abs().sum(1, keepdim=True)
        weight = (err_ref - err_dec).abs()
        bce = F.binary_cross_entropy_with_logits(self.logits(decoded, reference), (err_ref < err_dec).float(),
                                                 reduction="none")
        return (bce * weight).sum() / weight.sum().clamp_min(1e-8)


class FrameTokenizer(nn.Module):
    """Conv encoder -> FSQ -> conv decoder.

    encode(uint8 [N, H, W, 3]) -> int64 codes [N, h, w]; decode(codes) -> float [N, 3, H, W]
    in [0, 1]; forward(float [N, 3, H, W] in [0, 1]) -> (raw reconstruction, codes) for
    training. Decoder outputs that are not finite are replaced (NaN -> 0, +inf -> 1,
    -inf -> 0) and counted per frame in `nonfinite_count`.

    With `config.reference`, decoding also takes a reference frame per code grid (the same
    shapes as the frames: uint8 [N, H, W, 3] for `decode`, float [N, 3, H, W] in [0, 1] for
    `decode_latent` and `copy_reference`); a tokenizer without it ignores any reference it is
    given. `forward` always returns the decoder's own reconstruction, without the reference.
    """

    def __init__(self, config: Optional[FrameTokenizerConfig] = None):
        super().__init__()
        self.config = cfg = config or FrameTokenizerConfig()
        self.fsq = FSQ(cfg.levels)
        chans = cfg.stage_channels()
        enc: list[nn.Module] = []
        c_in = 3
        for c in chans:
            enc += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.SiLU()]
            c_in = c
        enc += [_ResBlock(c_in) for _ in range(cfg.res_blocks)]
        enc += [nn.SiLU(), nn.Conv2d(c_in, self.fsq.dim, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(self.fsq.dim, c_in, 1)]
        dec += [_ResBlock(c_in) for _ in range(cfg.res_blocks)]
        outs = list(reversed(chans[:-1])) + [3]
        for c in outs:
            dec += [nn.SiLU(), nn.ConvTranspose2d(c_in, c, 4, stride=2, padding=1)]
            c_in = c
        self.decoder = nn.Sequential(*dec)
        if cfg.reference:  # (an extra module: tokenizers saved without it keep their state-dict layout)
            self.copy_gate = _CopyGate()
        self.nonfinite_count = 0  # frames whose decoder output had a NaN or inf (decode only)

    # -- sizes ------------------------------------------------------------------------------

    @property
    def codebook_size(self) -> int:
        return self.fsq.codebook_size

    @property
    def grid(self) -> tuple[int, int]:
        g = self.config.image_size // self.config.downsample
        return (g, g)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- the network ------------------------------------------------------------------------

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """float [N, 3, H, W] in [0, 1] -> quantised latents [N, h, w, d] (differentiable, STE)."""
        z = self.encoder(x * 2 - 1).permute(0, 2, 3, 1)
        return self.fsq.quantize(z)

    def decode_latent(self, zhat: torch.Tensor, reference: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Quantised latents [N, h, w, d] (+ reference float [N, 3, H, W] in [0, 1] when the
        tokenizer uses one) -> raw reconstruction [N, 3, H, W] (about [0, 1], not clamped)."""
        y = self.decoder(zhat.permute(0, 3, 1, 2)) * 0.5 + 0.5
        return self.copy_reference(y, reference) if self.config.reference else y

    def copy_reference(self, decoded: torch.Tensor, reference: Optional[torch.Tensor]) -> torch.Tensor:
        """The decoder's frames [N, 3, H, W] with the reference's pixels copied in where the gate
        opens (reference float [N, 3, H, W] in [0, 1])."""
        self._check_reference(decoded, reference)
        return self.copy_gate(decoded * 2 - 1, reference * 2 - 1) * 0.5 + 0.5

    def gate_loss(self, decoded: torch.Tensor, reference: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The copy gate's training loss (`_CopyGate.loss`); all float [N, 3, H, W] in [0, 1]."""
        self._check_reference(decoded, reference)
        return self.copy_gate.loss(decoded * 2 - 1, reference * 2 - 1, target * 2 - 1)

    @staticmethod
    def _check_reference(decoded: torch.Tensor, reference: Optional[torch.Tensor]) -> None:
        if reference is None or reference.shape != decoded.shape:
            raise ValueError("this frame tokenizer decodes against a reference frame: pass one per code grid "
                             f"{tuple(decoded.shape)}, got {None if reference is None else tuple(reference.shape)}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: x float [N, 3, H, W] in [0, 1] -> (the decoder's raw reconstruction
        [N, 3, H, W], codes [N, h, w]); a reference tokenizer's gate is applied separately
        (`copy_reference`).

        The reconstruction is not clamped (so the loss has gradients everywhere); `decode`
        clamps.
        """
        zhat = self.encode_latent(x)
        return self.decoder(zhat.permute(0, 3, 1, 2)) * 0.5 + 0.5, self.fsq.codes_to_indices(zhat.detach())

    # -- inference --------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, frames, batch_size: int = 256) -> torch.Tensor:
        """uint8 frames [N, H, W, 3] (numpy or tensor) -> int64 codes [N, h, w] in [0, codebook_size)."""
        frames = frames if torch.is_tensor(frames) else torch.from_numpy(np.ascontiguousarray(frames))
        size = self.config.image_size
        if frames.dim() != 4 or tuple(frames.shape[1:]) != (size, size, 3) or frames.dtype != torch.uint8:
            raise ValueError(f"encode expects uint8 frames [N, {size}, {size}, 3], got {frames.dtype} {tuple(frames.shape)}")
        out = []
        for i in range(0, frames.shape[0], batch_size):
            x = frames_to_tensor(frames[i : i + batch_size]).to(self.device)
            out.append(self.fsq.codes_to_indices(self.encode_latent(x)).cpu())
        if not out:
            return torch.zeros((0, *self.grid), dtype=torch.long)
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, codes, batch_size: int = 256, reference=None) -> torch.Tensor:
        """int codes [N, h, w] (+ uint8 reference frames [N, H, W, 3] when the tokenizer uses
        them) -> float frames [N, 3, H, W] in [0, 1] (non-finite outputs replaced and counted)."""
        codes = torch.as_tensor(codes).long()
        if codes.dim() != 3 or tuple(codes.shape[1:]) != self.grid:
            raise ValueError(f"decode expects codes [N, {self.grid[0]}, {self.grid[1]}], got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}); got [{int(codes.min())}, {int(codes.max())}]")
        ref = None
        if self.config.reference:
            size = self.config.image_size
            if reference is None or tuple(np.shape(reference)) != (codes.shape[0], size, size, 3):
                raise ValueError(f"this frame tokenizer decodes against reference frames: expected uint8 "
                                 f"[{codes.shape[0]}, {size}, {size}, 3], got "
                                 f"{None if reference is None else tuple(np.shape(reference))}")
            ref = reference if torch.is_tensor(reference) else torch.from_numpy(np.ascontiguousarray(reference))
        out = []
        for i in range(0, codes.shape[0], batch_size):
            zhat = self.fsq.indices_to_codes(codes[i : i + batch_size].to(self.device))
            r = None if ref is None else frames_to_tensor(ref[i : i + batch_size]).to(self.device)
            out.append(self._sanitize(self.decode_latent(zhat, r)).cpu())
        if not out:
            s = self.config.image_size
            return torch.zeros((0, 3, s, s))
        return torch.cat(out)

    def _sanitize(self, y: torch.Tensor) -> torch.Tensor:
        bad = ~torch.isfinite(y)
        if bad.any():
            self.nonfinite_count += int(bad.flatten(1).any(1).sum())
            y = torch.nan_to_num(y, nan=0.0, posinf=1.0, neginf=0.0)
        return y.clamp(0.0, 1.0)

    @torch.no_grad()
    def reconstruct(self, frames, batch_size: int = 256, reference=None) -> torch.Tensor:
        """uint8 frames [N, H, W, 3] (+ reference frames, the same shape) -> float reconstructions [N, 3, H, W] in [0, 1]."""
        return self.decode(self.encode(frames, batch_size), batch_size, reference)

    # -- persistence ------------------------------------------------------------------------

    def save(self, directory) -> Path:
        """Write `frame_tokenizer.safetensors` and `frame_tokenizer.json` into `directory`.

        Each file is written under a temporary name and renamed into place, so a reader never
        sees a half-written file. Returns the directory.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        tmp_w = directory / f".{WEIGHTS_NAME}.tmp"
        tmp_c = directory / f".{CONFIG_NAME}.tmp"
        save_file(weights, str(tmp_w), metadata={"format": _FORMAT})
        meta = {"format": _FORMAT, "version": _FORMAT_VERSION, "config": asdict(self.config)}
        tmp_c.write_text(json.dumps(meta, indent=1))
        os.replace(tmp_w, directory / WEIGHTS_NAME)
        os.replace(tmp_c, directory / CONFIG_NAME)
        return directory

    # `save_checkpoint` (rlvr_world.checkpoint) calls model.save_pretrained(dir).
    def save_pretrained(self, directory) -> Path:
        return self.save(directory)

    @classmethod
    def load(cls, directory, map_location: str = "cpu") -> "FrameTokenizer":
        """Load a tokenizer written by `save` (safetensors + JSON; no pickle)."""
        directory = Path(directory)
        cfg_path, w_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise FileNotFoundError(f"frame tokenizer file {p} is missing (expected {CONFIG_NAME} and {WEIGHTS_NAME} written by FrameTokenizer.save)")
        meta = json.loads(cfg_path.read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{cfg_path} is not a frame tokenizer config (format {meta.get('format')!r})")
        model = cls(FrameTokenizerConfig.from_dict(meta["config"]))
        try:
            model.load_state_dict(load_file(str(w_path), device=map_location))
        except RuntimeError as e:
            raise RuntimeError(f"{w_path} does not match the config in {cfg_path}: {e}") from e
        return model.to(map_location).eval()


def frames_to_tensor(frames) -> torch.Tensor:
    """uint8 [..., H, W, 3] (numpy or tensor) -> float [..., 3, H, W] in [0, 1]."""
    t = frames if torch.is_tensor(frames) else torch.from_numpy(np.ascontiguousarray(frames))
    return t.movedim(-1, -3).float().div_(255.0).contiguous()


def tensor_to_frames(frames: torch.Tensor) -> np.ndarray:
    """float [..., 3, H, W] in [0, 1] -> uint8 [..., H, W, 3] (the inverse of `frames_to_tensor`)."""
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).movedim(-3, -1).numpy()


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


@dataclass
class FrameTokenizerTrainConfig:
    """Training of the frame tokenizer; see the module docstring for what was measured with these defaults."""

    steps: int = 6000
    max_seconds: float = 0.0  # wall-clock budget of the training steps; 0 = none
    batch_size: int = 32
    lr: float = 8e-3  # best of 2e-3 / 4e-3 / 8e-3 at 600 steps (23.1 / 24.0 / 24.8 dB val PSNR)
    warmup: int = 100  # steps
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    # Extra L1 weight on pixels that differ from the mean training frame by > MOTION_THRESHOLD
    # in some channel (the arm and the objects; the background is mostly static):
    # weight 1 + motion_weight there, 1 elsewhere. It trades background for foreground
    # quality; see the module docstring. 0 = plain L1.
    motion_weight: float = 0.0
    perceptual_weight: float = 0.0  # weight of perceptual(recon, target).mean(), if a perceptual fn is given
    log_every: int = 50
    eval_every: int = 1000  # validation metrics on up to `eval_frames` val frames; 0 = only at the end
    eval_frames: int = 512
    save_every: int = 500  # checkpoint steps; 0 = only at the end
    max_consecutive_nan: int = 5
    tensorboard: bool = True
    device: str = "auto"  # where it trains and the world runs it: "auto" (CUDA when torch sees it), "cpu", "cuda:N"


class _NoTokenizer:
    """`save_checkpoint` also saves a text tokenizer; the frame tokenizer has none."""

    def save_pretrained(self, directory) -> None:
        pass


@torch.no_grad()
def evaluate_frame_tokenizer(model: FrameTokenizer, frames, batch_size: int = 256, pairs=None) -> dict:
    """psnr (mean over frames, dB), l1 (mean abs error in [0, 1] units), code_usage (fraction of
    the codebook used), code_perplexity (exp of the code entropy) and the model's running
    nonfinite_count on uint8 frames [N, H, W, 3]. A tokenizer that decodes against a reference
    is scored on `pairs` (int [M, 2]: frame index, reference index) and also reports
    l1_copy_reference, the error of taking the reference itself as the reconstruction."""
    was_training = model.training
    model.eval()
    sq_err, abs_err, copy_err, counts, n = [], 0.0, 0.0, torch.zeros(model.codebook_size, dtype=torch.long), 0
    frames = np.asarray(frames) if not torch.is_tensor(frames) else frames
    if model.config.reference:
        pairs = _check_pairs("pairs", pairs, len(frames))
        batches = [(frames[pairs[i : i + batch_size, 0]], frames[pairs[i : i + batch_size, 1]])
                   for i in range(0, len(pairs), batch_size)]
    else:
        batches = [(frames[i : i + batch_size], None) for i in range(0, len(frames), batch_size)]
    for chunk, ref in batches:
        codes = model.encode(chunk, batch_size)
        recon = model.decode(codes, batch_size, ref)
        target = frames_to_tensor(chunk)
        sq_err.append(((recon - target) ** 2).flatten(1).mean(1))
        abs_err += float((recon - target).abs().sum())
        if ref is not None:
            copy_err += float((frames_to_tensor(ref) - target).abs().sum())
        n += target.numel()
        counts += torch.bincount(codes.flatten(), minlength=model.codebook_size)
    model.train(was_training)
    extra = {"l1_copy_reference": copy_err / n if n else float("nan")} if model.config.reference else {}
    if n == 0:
        return {"psnr": float("nan"), "l1": float("nan"), "code_usage": 0.0, "code_perplexity": 0.0,
                "nonfinite_count": model.nonfinite_count, **extra}
    mse = torch.cat(sq_err).clamp_min(1e-10)
    p = counts.double() / counts.sum()
    entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
    return {
        "psnr": float((10 * torch.log10(1.0 / mse)).mean()),
        "l1": abs_err / n,
        "code_usage": float((counts > 0).sum()) / model.codebook_size,
        "code_perplexity": math.exp(entropy),
        "nonfinite_count": model.nonfinite_count,
        **extra,
    }


def _check_frames(name: str, frames: np.ndarray, size: int) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[1:] != (size, size, 3) or frames.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 [N, {size}, {size}, 3], got {frames.dtype} {frames.shape}")
    if len(frames) == 0:
        raise ValueError(f"{name} is empty")
    return frames


def _check_pairs(name: str, pairs, n_frames: int) -> np.ndarray:
    if pairs is None:
        raise ValueError(f"this frame tokenizer decodes against a reference frame: {name} (int [M, 2]: frame index, "
                         "reference frame index) is required")
    pairs = np.asarray(pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or not np.issubdtype(pairs.dtype, np.integer) or len(pairs) == 0:
        raise ValueError(f"{name} must be a non-empty int array [M, 2], got {pairs.dtype} {pairs.shape}")
    if pairs.min() < 0 or pairs.max() >= n_frames:
        raise ValueError(f"{name} index frames outside [0, {n_frames})")
    return pairs


def reference_pairs(lengths: Sequence[int], max_offset: int) -> np.ndarray:
    """(frame, reference) index pairs [M, 2] over episodes of the given lengths laid end to end:
    every frame with each of the 1..max_offset frames before it in its own episode, the way a
    world model decodes its k-th predicted frame against the last observed one."""
    rows, start = [], 0
    for n in lengths:
        for k in range(1, max_offset + 1):
            t = np.arange(start + k, start + n)
            rows.append(np.stack([t, t - k], 1))
        start += n
    return np.concatenate(rows) if rows else np.zeros((0, 2), np.int64)


def train_frame_tokenizer(
    train_frames: np.ndarray,
    val_frames: np.ndarray,
    cfg: FrameTokenizerTrainConfig,
    out_dir: Path,
    seed: int = 0,
    progress: bool = True,
    perceptual: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    model_config: Optional[FrameTokenizerConfig] = None,
    train_pairs: Optional[np.ndarray] = None,
    val_pairs: Optional[np.ndarray] = None,
) -> tuple[FrameTokenizer, dict]:
    """Train a frame tokenizer on uint8 frames [N, H, W, 3]; resume from `out_dir` if it holds a checkpoint.

    A tokenizer that decodes against a reference (`model_config.reference`) trains and is
    validated on (frame, reference) index pairs [M, 2] into the frames (`reference_pairs`).

    Loss: L1 between the raw reconstruction and the frame, plus
    `cfg.perceptual_weight * perceptual(recon, target).mean()` when `perceptual` is given
    (it takes float [B, 3, H, W] in [0, 1] and returns [B]). Writes `metrics.jsonl` (and
    TensorBoard events) under `out_dir`, checkpoints under `out_dir/checkpoints/`, and the
    final model with `FrameTokenizer.save(out_dir)`. The batch of step s depends only on
    (seed, s), so a resumed run draws the same batches.

    Returns (model, val metrics {psnr, l1, code_usage, code_perplexity, frames_per_s}), where
    frames_per_s is the training throughput (frames per second of training steps).
    """
    out_dir = Path(out_dir)
    set_seed(seed)
    step, elapsed, frames_seen = 0, 0.0, 0
    ckpt = latest_checkpoint(out_dir)
    if ckpt is not None:
        model = FrameTokenizer.load(ckpt / "model")
        if model_config is not None and model_config != model.config:
            raise ValueError(f"{ckpt} holds a frame tokenizer with config {model.config}, not the requested "
                             f"{model_config}; resume with the same config or use a new out_dir")
    else:
        model = FrameTokenizer(model_config or FrameTokenizerConfig())
    device = resolve_device(cfg.device)
    model = model.to(device)
    size = model.config.image_size
    train_frames = _check_frames("train_frames", train_frames, size)
    val_frames = _check_frames("val_frames", val_frames, size)
    if model.config.reference:
        train_pairs = _check_pairs("train_pairs", train_pairs, len(train_frames))
        val_pairs = _check_pairs("val_pairs", val_pairs, len(val_frames))
    else:
        train_pairs = val_pairs = None
    model.train()
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    if ckpt is not None:
        state = load_trainer_state(ckpt, optimizer)
        step, elapsed, frames_seen = state["step"], state["elapsed"], state.get("frames_seen", 0)
    use_perceptual = perceptual is not None and cfg.perceptual_weight > 0

    def throughput() -> float:
        return frames_seen / elapsed if elapsed > 0 else float("nan")

    def out_of_time() -> bool:
        return cfg.max_seconds > 0 and elapsed >= cfg.max_seconds

    def state() -> dict:
        return {"elapsed": elapsed, "seed": seed, "frames_seen": frames_seen}

    if ckpt is not None and (out_dir / WEIGHTS_NAME).exists() and (step >= cfg.steps or out_of_time()):
        model = FrameTokenizer.load(out_dir)  # already finished
        return model, {**evaluate_frame_tokenizer(model, val_frames, pairs=val_pairs), "frames_per_s": throughput()}

    log = RunLog(out_dir, resume_step=step if ckpt is not None else None, tensorboard=cfg.tensorboard)
    guard = NonFiniteGuard(cfg.max_consecutive_nan)
    train_t = torch.from_numpy(train_frames)
    mean_frame = None
    if cfg.motion_weight > 0:  # the mean of at most ~2000 evenly spaced training frames
        mean_frame = frames_to_tensor(train_frames[:: max(1, len(train_frames) // 2000)]).mean(0).to(device)
    # Periodic validation on a fixed subset; the last one on every val frame (or pair).
    eval_subset = val_pairs[:: max(1, len(val_pairs) // cfg.eval_frames)][: cfg.eval_frames] if val_pairs is not None \
        else val_frames[: cfg.eval_frames]

    def validate(subset) -> dict:
        metrics = (evaluate_frame_tokenizer(model, val_frames, pairs=subset) if val_pairs is not None
                   else evaluate_frame_tokenizer(model, subset))
        log.log(step, metrics, split="val")
        bar.set_postfix(val_psnr=f"{metrics['psnr']:.2f}", usage=f"{metrics['code_usage']:.2f}")
        return metrics

    bar = tqdm(total=cfg.steps, initial=step, desc=f"frame tokenizer {out_dir.name}", disable=not progress)
    window_frames, window_start = 0, time.perf_counter()
    while step < cfg.steps and not out_of_time():
        t0 = time.perf_counter()
        if train_pairs is None:
            idx = step_rng(seed, step).integers(0, len(train_t), size=min(cfg.batch_size, len(train_t)))
            reference = None
        else:
            rows = train_pairs[step_rng(seed, step).integers(0, len(train_pairs), size=cfg.batch_size)]
            idx = rows[:, 0]
            reference = frames_to_tensor(train_t[torch.from_numpy(rows[:, 1])]).to(device)
        target = frames_to_tensor(train_t[torch.from_numpy(idx)]).to(device)
        lr = cfg.lr * lr_factor(step, elapsed, steps=cfg.steps, max_seconds=cfg.max_seconds,
                                warmup_steps=cfg.warmup, min_ratio=cfg.min_lr_ratio)
        set_lr(optimizer, lr)
        recon, _ = model(target)
        err = (recon - target).abs()
        l1 = err.mean()
        if mean_frame is not None:  # weighted L1, normalised so the weights average to 1
            w = 1 + cfg.motion_weight * ((target - mean_frame).abs().amax(1, keepdim=True) > MOTION_THRESHOLD).float()
            l1 = (err * w).mean() / w.mean()
        loss = l1
        perc = None
        if use_perceptual:
            perc = perceptual(recon.clamp(0, 1), target).mean()
            loss = loss + cfg.perceptual_weight * perc
        if reference is not None:  # the copy gate learns on the decoder's frames, their gradient stopped (`_CopyGate`)
            loss = loss + model.gate_loss(recon, reference, target)
        grad_norm = float("nan")
        if guard.ok(loss):
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
            optimizer.step()
        else:
            log.log(step + 1, {"nonfinite_loss": 1, "nonfinite_total": guard.total})
        optimizer.zero_grad(set_to_none=True)
        step += 1
        frames_seen += len(idx)
        window_frames += len(idx)
        elapsed += time.perf_counter() - t0
        bar.update(1)
        if step % cfg.log_every == 0:
            now = time.perf_counter()
            row = {"loss": loss.item(), "l1": l1.item(), "lr": lr, "grad_norm": grad_norm,
                   "frames_per_s": window_frames / max(now - window_start, 1e-9), "elapsed_s": elapsed}
            if perc is not None:
                row["perceptual"] = perc.item()
            if reference is not None:  # the error of the frames `decode` gives, reference copied in
                with torch.no_grad():
                    row["l1_gated"] = float((model.copy_reference(recon, reference) - target).abs().mean())
            log.log(step, row)
            window_frames, window_start = 0, now
            bar.set_postfix(l1=f"{l1.item():.4f}")
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps and not out_of_time():
            validate(eval_subset)  # (the last step is validated on all val frames below)
        if cfg.save_every and step % cfg.save_every == 0 and parameters_finite(model):  # never save broken weights
            save_checkpoint(out_dir, step, model, _NoTokenizer(), optimizer, state())
    bar.close()
    metrics = {**validate(val_pairs if val_pairs is not None else val_frames), "frames_per_s": throughput()}
    if parameters_finite(model):
        save_checkpoint(out_dir, step, model, _NoTokenizer(), optimizer, state())
    model.save(out_dir)
    log.close()
    model.eval()
    return model, metrics
