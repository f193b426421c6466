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
        return sum(w * get_reward(name)(prediction, target) for name, w in self.terms)

    def score(self, predictions: list, targets: list) -> tuple[list[float], int]:
        """Score a batch; returns (rewards, number of predictions whose reward raised or was not finite)."""
        if len(predictions) != len(targets):
            raise ValueError(f"{len(predictions)} predictions but {len(targets)} targets")
        batched = self._score_batched(predictions, targets)
        if batched is not None:
            return batched
        rewards, errors = [], 0
        for p, t in zip(predictions, targets):
            try:
                r = float(self(p, t))
                if not math.isfinite(r):
                    raise ValueError("non-finite reward")
            except Exception:  # a reward bug must not kill training: score 0 and count it
                r, errors = 0.0, errors + 1
            rewards.append(r)
        return rewards, errors

    def _score_batched(self, predictions: list, targets: list) -> tuple[list[float], int] | None:
        """`score` through the terms' `.batch` forms (one pass over the batch, e.g. frame
        metrics on a GPU); None when a term has no batch form or a batch call raised, so
        the caller scores item by item and counts exactly the items that fail."""
        fns = [get_reward(name) for name, _ in self.terms]
        if not all(callable(getattr(fn, "batch", None)) for fn in fns):
            return None
        try:
            columns = [fn.batch(predictions, targets) for fn in fns]
            if any(len(col) != len(predictions) for col in columns):
                raise ValueError("a batch reward returned the wrong number of scores")
            totals = [sum(w * float(col[i]) for (_, w), col in zip(self.terms, columns)) for i in range(len(predictions))]
        except Exception as e:
            warnings.warn(f"batched reward failed ({type(e).__name__}: {e}); scoring item by item", RuntimeWarning)
            return None
        rewards, errors = [], 0
        for r in totals:
            if not math.isfinite(r):  # as in the per-item loop: score 0 and count it
                r, errors = 0.0, errors + 1
            rewards.append(r)
        return rewards, errors


# Register the built-in rewards (frames loads its ST-LPIPS weights on first use, not here).
from rlvr_world.rewards import bytesized32, frames, set_diff  # noqa: E402,F401
