"""ST-LPIPS: the shift-tolerant LPIPS perceptual distance (AlexNet trunk), in plain torch.

ST-LPIPS (Ghildyal & Liu, 2022) is LPIPS on an anti-aliased AlexNet: the first convolution
runs at stride 1 and every downsampling is a binomial blur followed by stride 2 ("blur
pool"), so a one-pixel shift of a frame barely changes the distance. The metric compares
unit-normalised ReLU features of five layers, weighs the squared differences per channel
with learned non-negative weights, averages over space and sums over layers.

The weights come from the `stlpips-pytorch` wheel (`weights/vST0.0/alex_shift_tolerant.pth`);
that package itself is not imported (it needs torchvision). Module names here follow the
keys of that file, so any state dict with the same layout can be loaded
(`set_lpips_weights`, the CLI's `--lpips-weights`).
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_RELPATH = Path("weights") / "vST0.0" / "alex_shift_tolerant.pth"
CHANNELS = (64, 192, 384, 256, 256)  # channels of the five tapped ReLU outputs
MIN_SIZE = 21  # smaller frames shrink below the blur pool's reflection padding


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling: reflection-pad 2 on every side, then a depthwise
    3x3 binomial filter ([1, 2, 1] outer [1, 2, 1] / 16) at stride 2.

    The filter is a buffer named `filt` because the weights file stores it.
    """

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(taps, taps) / 16.0
        self.register_buffer("filt", kernel.expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


def _indexed(*layers: tuple[int, nn.Module]) -> nn.Sequential:
    """A Sequential whose children carry the given indices (the weights file's key names)."""
    seq = nn.Sequential()
    for index, layer in layers:
        seq.add_module(str(index), layer)
    return seq


class ShiftTolerantAlexNet(nn.Module):
    """The trunk; `forward` returns the five tapped ReLU outputs."""

    def __init__(self):
        super().__init__()
        self.slice1 = _indexed(
            (0, nn.Conv2d(3, 64, kernel_size=11, stride=1, padding=2)),
            (1, BlurPool(64)),  # blur before the ReLU: the shift-tolerant order
            (2, nn.ReLU()),
        )
        self.slice2 = _indexed(
            (3, nn.MaxPool2d(kernel_size=3, stride=1)),  # max at stride 1, then blur-subsample
            (4, BlurPool(64)),
            (5, nn.Conv2d(64, 192, kernel_size=5, padding=2)),
            (6, nn.ReLU()),
        )
        self.slice3 = _indexed(
            (7, nn.MaxPool2d(kernel_size=3, stride=1)),
            (8, BlurPool(192)),
            (9, nn.Conv2d(192, 384, kernel_size=3, padding=1)),
            (10, nn.ReLU()),
        )
        self.slice4 = _indexed((11, nn.Conv2d(384, 256, kernel_size=3, padding=1)), (12, nn.ReLU()))
        self.slice5 = _indexed((13, nn.Conv2d(256, 256, kernel_size=3, padding=1)), (14, nn.ReLU()))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in (self.slice1, self.slice2, self.slice3, self.slice4, self.slice5):
            x = block(x)
            feats.append(x)
        return feats


class ScalingLayer(nn.Module):
    """Maps [-1, 1] inputs to the trunk's input statistics: (x - shift) / scale."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class LinearHead(nn.Module):
    """Per-channel non-negative weights on squared feature differences (a 1x1 conv, no bias).

    Index 0 held dropout during LPIPS training; it is inert in evaluation, so an Identity.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _unit(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Normalise each spatial position's feature vector to unit length (eps as in LPIPS)."""
    return feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class STLPIPS(nn.Module):
    """ST-LPIPS distance between RGB images in [0, 1]; 0 for identical images.

    forward(x, y): float [B, 3, H, W] each (H, W >= 21) -> distance [B].
    """

    def __init__(self):
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.net = ShiftTolerantAlexNet()
        for k, c in enumerate(CHANNELS):
            self.add_module(f"lin{k}", LinearHead(c))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            shapes = f"{tuple(x.shape)} and {tuple(y.shape)}"
            raise ValueError(f"ST-LPIPS wants two [B, 3, H, W] tensors of one shape, got {shapes}")
        if min(x.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"ST-LPIPS needs frames of at least {MIN_SIZE}x{MIN_SIZE} pixels, got {tuple(x.shape[2:])}")
        b = x.shape[0]
        feats = self.features(torch.cat([x, y]))  # one trunk pass over both images
        return self.distance([f[:b] for f in feats], [f[b:] for f in feats])

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised trunk features of images in [0, 1] ([0, 1] -> [-1, 1] -> input scaling)."""
        return [_unit(f) for f in self.net(self.scaling_layer(x * 2 - 1))]

    def distance(self, fx: list[torch.Tensor], fy: list[torch.Tensor]) -> torch.Tensor:
        """ST-LPIPS [B] from two images' `features` (so a shared target's features are computed once)."""
        total = fx[0].new_zeros(fx[0].shape[0])
        for k, (a, b) in enumerate(zip(fx, fy)):
            total = total + getattr(self, f"lin{k}")((a - b).pow(2)).mean(dim=(1, 2, 3))
        return total


def default_weights_path() -> Path:
    """The ST-LPIPS AlexNet weights shipped in the installed `stlpips-pytorch` wheel."""
    # find_spec of a top-level package does not run its __init__ (which would need torchvision).
    spec = importlib.util.find_spec("stlpips_pytorch")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / WEIGHTS_RELPATH
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"ST-LPIPS weights not found ({WEIGHTS_RELPATH} inside the stlpips_pytorch package): "
        "`pip install stlpips-pytorch`, or pass a weights file (--lpips-weights PATH)"
    )


def load_stlpips(path: str | Path | None = None) -> STLPIPS:
    """An ST-LPIPS network with weights from `path` (default: the installed wheel's), frozen, in eval mode."""
    path = Path(path) if path is not None else default_weights_path()
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS weights file {str(path)!r} does not exist")
    model = STLPIPS()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    model.eval()
    model.requires_grad_(False)
    return model


_weights_path: Path | None = None  # None: the wheel's weights
_models: dict[str, STLPIPS] = {}  # device -> loaded network; filled on first use


def set_lpips_weights(path: str | Path | None) -> STLPIPS | None:
    """Use the LPIPS weights at `path` (same key layout) from now on; None goes back to the default.

    A given file is loaded at once, so a bad `--lpips-weights` fails at startup rather than
    making every reward raise; the default stays lazy.
    """
    global _weights_path
    _models.clear()
    _weights_path = Path(path) if path is not None else None
    return get_lpips() if path is not None else None


def get_lpips(device: str | torch.device = "cpu") -> STLPIPS:
    """The shared ST-LPIPS network on `device`, loaded on first use."""
    key = str(torch.device(device))
    if key not in _models:
        # Loaded outside inference mode whatever the caller's mode: a network first loaded by
        # a reward (under inference_mode) would otherwise hold inference tensors, and a later
        # caller that needs gradients through it (a perceptual training loss) would fail.
        with torch.inference_mode(False):
            if "cpu" not in _models:
                _models["cpu"] = load_stlpips(_weights_path)
            if key != "cpu":
                _models[key] = copy.deepcopy(_models["cpu"]).to(key)
    return _models[key]
