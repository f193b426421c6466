"""Rewards for ByteSized32 state-difference predictions (RLVR-World's text-game rewards).

A prediction is a normalised difference ``{"modified", "removed", "score"}``
(`worlds.bytesized32.codec.normalize_diff`) or None. The target is

    {"current": {"objects": [...], "score": {...}}, "next": {"objects": [...], "score": {...}}}

Both rewards first rebuild the full next state from the current state and the predicted
difference (`codec.apply_diff`), then compare it with the true next state:

* object accuracy: share of the true next state's objects that are equal in the rebuilt
  state (same properties and contents; objects the prediction adds beyond the true ones
  are not penalised);
* score accuracy: share of the three score fields (score, gameOver, gameWon) right;
* exact: 1 when every object and every score field is right and every object that is gone
  in the true next state is gone in the rebuilt one too, else 0 (objects the prediction
  invents are still not penalised);
* changed accuracy: share of the fields that differ between the current and the true next
  state (`codec.changed_fields`: changed properties, every property of a new object,
  changed contents, removed objects, changed score fields) that the rebuilt state gets right.

``bytesized32_binary`` = exact.
``bytesized32_task_specific`` = 0.09 object accuracy + 0.01 score accuracy + 0.2 exact
+ changed accuracy; the last term is dropped when nothing changed. Range [0, 1.3]; a
perfect answer scores 1.3 when something changed and 0.3 when nothing did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from rlvr_world.rewards import register
from rlvr_world.worlds.bytesized32.codec import (
    SCORE_FIELDS, apply_diff, by_uuid, changed_fields, field_right, normalize_diff, objects_equal, same,
)

OBJECT_WEIGHT, SCORE_WEIGHT, EXACT_WEIGHT = 0.09, 0.01, 0.2


@dataclass(frozen=True)
class Scores:
    """How a predicted difference does against one transition; each share is in [0, 1].

    changed: None when nothing changed (the term is left out of the task-specific reward).
    """

    objects: float
    score: float
    exact: float
    changed: Optional[float]


def score_prediction(prediction: Any, target: dict) -> Optional[Scores]:
    """The four shares of a prediction, or None when it is not a difference."""
    prediction = normalize_diff(prediction)  # idempotent; also reads a raw parsed answer
    if prediction is None:
        return None
    current, true = target["current"], target["next"]
    objects, score = apply_diff(current["objects"], current["score"], prediction)
    rebuilt, true_objects = by_uuid(objects), by_uuid(true["objects"])
    object_hits = [objects_equal(rebuilt.get(key), obj) for key, obj in true_objects.items()]
    score_hits = [same(score.get(k), true["score"][k]) for k in SCORE_FIELDS]
    object_acc = sum(object_hits) / len(object_hits) if object_hits else 1.0
    score_acc = sum(score_hits) / len(score_hits)
    fields = changed_fields(current["objects"], current["score"], true["objects"], true["score"])
    changed = (sum(field_right(f, rebuilt, score, true_objects, true["score"]) for f in fields) / len(fields)
               if fields else None)
    gone = [key for key in by_uuid(current["objects"]) if key not in true_objects]
    removals_done = all(key not in rebuilt for key in gone)
    return Scores(objects=object_acc, score=score_acc,
                  exact=float(all(object_hits) and all(score_hits) and removals_done), changed=changed)


def task_specific_value(s: Scores) -> float:
    return (OBJECT_WEIGHT * s.objects + SCORE_WEIGHT * s.score + EXACT_WEIGHT * s.exact
            + (s.changed if s.changed is not None else 0.0))


def max_task_specific(target: dict) -> float:
    """The task-specific reward of a perfect answer: 1.3 when something changed, else 0.3."""
    cur, nxt = target["current"], target["next"]
    changed = bool(changed_fields(cur["objects"], cur["score"], nxt["objects"], nxt["score"]))
    return OBJECT_WEIGHT + SCORE_WEIGHT + EXACT_WEIGHT + (1.0 if changed else 0.0)


@register("bytesized32_binary")
def bytesized32_binary(prediction: Any, target: dict) -> float:
    """1.0 when the next state rebuilt from the predicted difference matches the true one on
    every object and score field, else 0.0."""
    s = score_prediction(prediction, target)
    return 0.0 if s is None else s.exact


@register("bytesized32_task_specific")
def bytesized32_task_specific(prediction: Any, target: dict) -> float:
    """0.09 object accuracy + 0.01 score accuracy + 0.2 exact + accuracy on what changed."""
    s = score_prediction(prediction, target)
    return 0.0 if s is None else task_specific_value(s)
