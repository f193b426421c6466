"""Rewards for predictions that are sets of lines per section.

Text and web worlds predict a state *difference* as sections of lines, e.g. TextWorld's
``{"added": {...}, "removed": {...}}`` or the web world's ``New / Deleted / Updated items``.
A prediction is a mapping ``section -> frozenset[str]``; ``None`` means the response could
not be parsed and scores 0 everywhere.
"""

from __future__ import annotations

from typing import Mapping, Optional

from rlvr_world.rewards import register

SetDiff = Mapping[str, frozenset]


def match_counts(prediction: SetDiff, target: SetDiff) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) summed over all sections."""
    tp = fp = fn = 0
    for section in set(prediction) | set(target):
        p, t = frozenset(prediction.get(section, ())), frozenset(target.get(section, ()))
        tp += len(p & t)
        fp += len(p - t)
        fn += len(t - p)
    return tp, fp, fn


@register("exact", "binary")
def exact(prediction: Optional[SetDiff], target: SetDiff) -> float:
    """1.0 when every section matches exactly (empty sections equal missing ones), else 0.0."""
    if prediction is None:
        return 0.0
    _, fp, fn = match_counts(prediction, target)
    return float(fp == 0 and fn == 0)


def precision_recall_f1(prediction: Optional[SetDiff], target: SetDiff) -> tuple[float, float, float]:
    """Micro precision, recall and F1 over the items of all sections.

    Both sides empty is a perfect answer (1, 1, 1): "nothing changed" predicted correctly.
    """
    if prediction is None:
        return 0.0, 0.0, 0.0
    tp, fp, fn = match_counts(prediction, target)
    if tp + fp + fn == 0:
        return 1.0, 1.0, 1.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn)
    return precision, recall, f1


@register("f1")
def f1(prediction: Optional[SetDiff], target: SetDiff) -> float:
    """Micro F1 over the items of all sections (the web world's reward in the paper)."""
    return precision_recall_f1(prediction, target)[2]


@register("task_specific")
def task_specific(prediction: Optional[SetDiff], target: SetDiff) -> float:
    """F1 over the changed items plus a 0.2 bonus for an exact match; range [0, 1.2].

    The paper's task-specific reward mixes exact match with accuracy on what changed; here
    the "what changed" term is the F1 over the predicted difference, so a prediction that
    gets two of three changed facts right earns partial credit. When nothing changed, the
    F1 term is 1 only for predicting "no change", so the reward is 1.2 or 0.
    """
    return f1(prediction, target) + 0.2 * exact(prediction, target)
