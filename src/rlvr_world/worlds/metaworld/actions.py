"""Continuous Meta-World actions as discrete bins, one integer per action dimension.

`ActionBinner.fit` reads each dimension's range from data; `encode` clips to that range and
cuts it into `bins` equal bins; `decode` returns the bin centres. The round trip is exact to
within half a bin width for values inside the fitted range. How bins become tokens is the
codec's concern, not this module's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# A dimension whose fitted range is narrower than this (e.g. a constant gripper command) is
# widened to it, centred on its value, so encode never divides by zero.
MIN_RANGE = 1e-6


@dataclass(eq=False)
class ActionBinner:
    bins: int = 256
    low: np.ndarray = field(default=None)  # float64 [D], per-dimension lower edge of bin 0
    high: np.ndarray = field(default=None)  # float64 [D], upper edge of bin bins-1

    def __post_init__(self):
        if int(self.bins) < 1:
            raise ValueError(f"bins must be >= 1, got {self.bins}")
        self.bins = int(self.bins)
        if (self.low is None) != (self.high is None):
            raise ValueError("give both low and high, or neither")
        if self.low is not None:
            self.low, self.high = self._guard(np.asarray(self.low, np.float64), np.asarray(self.high, np.float64))

    @staticmethod
    def _guard(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if low.ndim != 1 or low.shape != high.shape:
            raise ValueError(f"low and high must be 1-D of equal length, got {low.shape} and {high.shape}")
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError("action ranges must be finite")
        if (high < low).any():
            raise ValueError(f"high < low in dimensions {np.flatnonzero(high < low).tolist()}")
        narrow = (high - low) < MIN_RANGE
        mid = (low + high) / 2
        low = np.where(narrow, mid - MIN_RANGE / 2, low)
        high = np.where(narrow, mid + MIN_RANGE / 2, high)
        return low, high

    @property
    def fitted(self) -> bool:
        return self.low is not None

    @property
    def dim(self) -> int:
        self._require_fit()
        return len(self.low)

    @property
    def bin_width(self) -> np.ndarray:
        """float64 [D]: the width of one bin in each dimension."""
        self._require_fit()
        return (self.high - self.low) / self.bins

    def _require_fit(self) -> None:
        if not self.fitted:
            raise RuntimeError("ActionBinner is not fitted: call fit(actions) or from_dict(...) first")

    def _check(self, a: np.ndarray, what: str) -> np.ndarray:
        a = np.asarray(a)
        if a.ndim != 2 or a.shape[1] != self.dim:
            raise ValueError(f"{what} must be [N, {self.dim}], got {a.shape}")
        return a

    def fit(self, actions) -> "ActionBinner":
        """Set each dimension's range to the data's min/max (non-finite values ignored); returns self."""
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] == 0:
            raise ValueError(f"fit needs actions [N, D] with N >= 1, got {a.shape}")
        finite = np.isfinite(a)
        if not finite.any(axis=0).all():
            raise ValueError(f"dimensions {np.flatnonzero(~finite.any(axis=0)).tolist()} have no finite value")
        low = np.where(finite, a, np.inf).min(axis=0)
        high = np.where(finite, a, -np.inf).max(axis=0)
        self.low, self.high = self._guard(low, high)
        return self

    def encode(self, actions) -> np.ndarray:
        """float actions [N, D] -> int64 bins [N, D] in [0, bins); values outside the range clip to the edge bins.

        NaN is not a valid action and raises ValueError.
        """
        self._require_fit()
        a = self._check(np.asarray(actions, dtype=np.float64), "actions")
        if np.isnan(a).any():
            raise ValueError("actions contain NaN")
        scaled = (a - self.low) / (self.high - self.low) * self.bins
        return np.clip(np.floor(scaled), 0, self.bins - 1).astype(np.int64)

    def decode(self, bins) -> np.ndarray:
        """int bins [N, D] -> float32 actions [N, D] at the bin centres."""
        self._require_fit()
        b = self._check(np.asarray(bins), "bins")
        if b.size and (b.min() < 0 or b.max() >= self.bins):
            raise ValueError(f"bins must lie in [0, {self.bins}), got [{b.min()}, {b.max()}]")
        return (self.low + (b.astype(np.float64) + 0.5) * self.bin_width).astype(np.float32)

    def to_dict(self) -> dict:
        self._require_fit()
        return {"bins": self.bins, "low": self.low.tolist(), "high": self.high.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "ActionBinner":
        return cls(bins=d["bins"], low=np.asarray(d["low"], np.float64), high=np.asarray(d["high"], np.float64))
