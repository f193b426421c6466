"""Verifiable rewards: named pure functions `reward(prediction, target) -> float`.

A world decodes a sampled response into a *prediction* (or `None` when the text cannot be
parsed) and compares it with its ground-truth *target*. Rewards are registered by name and
combined with weights from a spec string such as ``"f1:1,exact:0.2"``. A reward that raises
scores 0 and is counted, so a bad prediction can never kill a training run.

A reward may also carry a vectorised form ``fn.batch(predictions, targets) -> list[float]``
(the frame metrics do: one torch pass per batch); `WeightedReward.score` uses it when every
term has one.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from rlvr_world.registry import lookup

RewardFn = Callable[[Any, Any], float]

REWARDS: dict[str, RewardFn] = {}


def register(*names: str) -> Callable[[RewardFn], RewardFn]:
    """Register a reward function under one or more names."""

    def wrap(fn: RewardFn) -> RewardFn:
        for name in names:
            if name in REWARDS:
                raise ValueError(f"reward {name!r} is already registered")
            REWARDS[name] = fn
        return fn

    return wrap


def get_reward(name: str) -> RewardFn:
    return lookup(REWARDS, name, "reward")


@dataclass
class WeightedReward:
    """A weighted sum of registered rewards, parsed from ``"name:weight,name:weight"``."""

    terms: list[tuple[str, float]]

    @classmethod
    def parse(cls, spec: str) -> "WeightedReward":
        terms = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            name, _, weight = part.partition(":")
            try:
                w = float(weight) if weight else 1.0
            except ValueError:
                raise ValueError(f"reward spec {spec!r}: weight {weight!r} of {name!r} is not a number") from None
            if not math.isfinite(w):
                raise ValueError(f"reward spec {spec!r}: weight of {name!r} must be finite")
            get_reward(name.strip())  # fail early on unknown names
            terms.append((name.strip(), w))
        if not terms:
            raise ValueError(f"reward spec {spec!r} names no reward")
        return cls(terms)

    def __call__(self, prediction: Any, target: Any) -> float:
        return self.combine([get_reward(name)(prediction, target) for name, _ in self.terms])

    @property
    def weights(self) -> list[float]:
        return [w for _, w in self.terms]

    def combine(self, term_scores: list[float]) -> float:
        """The weighted sum of one prediction's per-term scores."""
        return sum(w * v for w, v in zip(self.weights, term_scores))

    def score(self, predictions: list, targets: list) -> tuple[list[float], int]:
        """Score a batch; returns (rewards, number of predictions whose reward raised or was not finite)."""
        rows, errors = self.score_terms(predictions, targets)
        return [self.combine(row) for row in rows], errors

    def score_terms(self, predictions: list, targets: list) -> tuple[list[list[float]], int]:
        """Each term's unweighted score per prediction ([B][K], K = len(terms)), and the number
        of predictions whose reward raised or was not finite: a reward bug must not kill
        training, so all their terms score 0 (and so does their weighted sum)."""
        if len(predictions) != len(targets):
            raise ValueError(f"{len(predictions)} predictions but {len(targets)} targets")
        fns = [get_reward(name) for name, _ in self.terms]
        rows = self._terms_batched(fns, predictions, targets)
        if rows is None:
            rows = [self._terms_one(fns, p, t) for p, t in zip(predictions, targets)]
        out, errors = [], 0
        for row in rows:
            if row is None or not all(math.isfinite(v) for v in row) or not math.isfinite(self.combine(row)):
                row, errors = [0.0] * len(fns), errors + 1
            out.append(row)
        return out, errors

    @staticmethod
    def _terms_one(fns: list, prediction: Any, target: Any) -> list[float] | None:
        try:
            return [float(fn(prediction, target)) for fn in fns]
        except Exception:
            return None

    @staticmethod
    def _terms_batched(fns: list, predictions: list, targets: list) -> list[list[float]] | None:
        """Per-term scores through the terms' `.batch` forms (one pass over the batch, e.g. frame
        metrics on a GPU); None when a term has no batch form or a batch call raised, so the
        caller scores item by item and counts exactly the items that fail."""
        if not all(callable(getattr(fn, "batch", None)) for fn in fns):
            return None
        try:
            columns = [fn.batch(predictions, targets) for fn in fns]
            if any(len(col) != len(predictions) for col in columns):
                raise ValueError("a batch reward returned the wrong number of scores")
            return [[float(col[i]) for col in columns] for i in range(len(predictions))]
        except Exception as e:
            warnings.warn(f"batched reward failed ({type(e).__name__}: {e}); scoring item by item", RuntimeWarning)
            return None


# Register the built-in rewards (frames loads its ST-LPIPS weights on first use, not here).
from rlvr_world.rewards import bytesized32, frames, set_diff  # noqa: E402,F401
