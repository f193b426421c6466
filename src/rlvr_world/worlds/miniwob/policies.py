"""Who acts while collecting: random exploration, and scripted solvers for a few tasks.

Random exploration picks uniformly among `browser.candidate_actions` (clicks on clickable
elements, the task's field values typed into text inputs). Random play rarely finishes a
task, so a few tasks also have a short scripted solver; with noise, a solver takes a random
action instead at some steps, which gives near-misses as well as successes.

A solver sees what an agent sees (the element list and the task's fields) and returns the
next action, or None when it has nothing left to do.
"""

from __future__ import annotations

import random
from typing import Callable, Optional

from rlvr_world.worlds.miniwob.page import ROLES

Solver = Callable[[dict, dict, list], Optional[str]]  # (elements, fields, actions so far) -> action


def _role(e) -> str:
    return ROLES.get(str(e["tag"]), str(e["tag"]))


def _text(e) -> str:
    return " ".join(str(e.get("text") or e.get("inner_text") or "").split())


def _find(elements: dict, text: str, roles=None) -> Optional[int]:
    """Ref of the first element whose text equals `text` (case-insensitive)."""
    want = text.strip().casefold()
    for ref, e in elements.items():
        if _text(e).casefold() == want and (roles is None or _role(e) in roles):
            return ref
    return None


def _by_role(elements: dict, role: str) -> list[int]:
    return [ref for ref, e in elements.items() if _role(e) == role]


def _submit(elements: dict) -> Optional[int]:
    for word in ("submit", "login", "search"):
        ref = _find(elements, word, {"button"})
        if ref is not None:
            return ref
    buttons = _by_role(elements, "button")
    return buttons[-1] if buttons else None


def _next_unused(plan: list[str], done: list) -> Optional[str]:
    for action in plan:
        if action not in done:
            return action
    return None


def _click_target(elements, fields, done):
    ref = _find(elements, fields.get("target", fields.get("button", "")))
    return None if ref is None else _next_unused([f"click [{ref}]"], done)


def _click_only_button(elements, fields, done):
    buttons = _by_role(elements, "button")
    return _next_unused([f"click [{buttons[0]}]"], done) if buttons else None


def _close_dialog(elements, fields, done):
    for ref, e in elements.items():
        if "close" in str(e.get("classes", "")) and _role(e) == "button":
            return _next_unused([f"click [{ref}]"], done)
    return None


def _focus_nth(elements, fields, done):
    boxes = _by_role(elements, "textbox")
    n = int(fields.get("target", "1")) - 1 if fields.get("target", "1").isdigit() else 0
    return _next_unused([f"click [{boxes[min(n, len(boxes) - 1)]}]"], done) if boxes else None


def _fill_and_submit(keys: tuple[str, ...]) -> Solver:
    """Type field values into the text inputs in order (one value repeated when one key), submit."""
    def solver(elements, fields, done):
        boxes = _by_role(elements, "textbox")
        values = [fields.get(k, "") for k in keys]
        if len(values) == 1:
            values = values * len(boxes)
        plan = [f"type [{ref}] '{v}'" for ref, v in zip(boxes, values) if v]
        submit = _submit(elements)
        if submit is not None:
            plan.append(f"click [{submit}]")
        return _next_unused(plan, done)
    return solver


def _select_and_submit(elements, fields, done):
    """Click the checkbox / radio whose label reads each target, then submit."""
    targets = [v for k, v in fields.items() if k.startswith("target")]
    plan = []
    for target in targets:
        for ref, e in elements.items():
            if _role(e) in ("checkbox", "radio"):
                # the label is the enclosing <label>: its own text or its text nodes' (inner_text)
                parent = elements.get(int(e["parent"]))
                label = _text(parent) if parent is not None else ""
                if label.casefold() == target.casefold():
                    plan.append(f"click [{ref}]")
    submit = _submit(elements)
    if submit is not None:
        plan.append(f"click [{submit}]")
    return _next_unused(plan, done)


def _expand_and_submit(elements, fields, done):
    headings = _by_role(elements, "heading")
    submit = _submit(elements)
    plan = [f"click [{headings[0]}]"] if headings else []
    if submit is not None:
        plan.append(f"click [{submit}]")
    return _next_unused(plan, done)


SOLVERS: dict[str, Solver] = {
    "click-test": _click_only_button,
    "click-test-2": _click_target,
    "click-button": _click_target,
    "click-link": _click_target,
    "click-dialog": _close_dialog,
    "click-dialog-2": _click_target,
    "unicode-test": _click_target,
    "focus-text": _focus_nth,
    "focus-text-2": _focus_nth,
    "enter-text": _fill_and_submit(("target",)),
    "enter-text-dynamic": _fill_and_submit(("target",)),
    "enter-password": _fill_and_submit(("target",)),
    "login-user": _fill_and_submit(("username", "password")),
    "click-checkboxes": _select_and_submit,
    "click-option": _select_and_submit,
    "click-collapsible": _expand_and_submit,
}


def choose_action(task: str, policy: str, elements: dict, fields: tuple, candidates: list[str],
                  done: list[str], rng: random.Random, noise: float) -> Optional[str]:
    """The next action of `policy` ("random" or "scripted"); None when there is nothing to do."""
    if policy == "scripted" and task in SOLVERS and rng.random() >= noise:
        action = SOLVERS[task](elements, dict(fields), done)
        if action is not None:
            return action
    return rng.choice(candidates) if candidates else None
