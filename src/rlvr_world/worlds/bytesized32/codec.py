"""ByteSized32 states and state differences as text, and back (pure functions, no I/O).

A state is a list of objects (``{"name", "uuid", "type", "properties", "contains"}``, see
format.py) plus a score ``{"score", "gameOver", "gameWon"}``. The model predicts the
*difference* the action and the following game tick make, in the paper's JSON form::

    {"modified": [<every new or changed object, in full>],
     "removed": [<uuids of the objects that are gone>],
     "score": {"score": 1, "gameOver": true, "gameWon": true}}

`apply_diff` rebuilds the full next state from the current state and a difference; the
rewards compare that rebuilt state with the true one. Two objects are *equal* when their
properties and their contents are (contents in any order), as in the paper's evaluation.

Reading a response (`parse_diff`) is tolerant: reasoning text before the answer, code
fences, single quotes, trailing commas and Python's True / False / None are all accepted;
the last JSON object in the text that looks like a difference is the answer. Junk gives
None and nothing here raises on any input.
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from typing import Any, Iterable, Iterator, Optional

SCORE_FIELDS = ("score", "gameOver", "gameWon")
DIFF_KEYS = ("modified", "removed", "score")
MAX_TEXT_CHARS = 50_000  # longer responses are cut (from the front: the answer comes last)
MAX_DEPTH = 64  # deeper JSON is junk, not a game state


# ---------------------------------------------------------------------------------------------
# Values and objects


def uuid_key(value: Any) -> Optional[int | str]:
    """The uuid as a dictionary key: integers (also written "4" or 4.0) as int, other strings
    as themselves; None for anything that cannot be a uuid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        return text
    return None


def same(a: Any, b: Any) -> bool:
    """JSON value equality: booleans are not numbers, 1 equals 1.0, NaN equals NaN, lists in order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if type(a) is not type(b):
        return False
    return a == b


def same_multiset(a: Any, b: Any) -> bool:
    """Equal lists up to order (the paper compares `contains` sorted)."""
    if not isinstance(a, list) or not isinstance(b, list) or len(a) != len(b):
        return False
    unmatched = list(b)
    for x in a:
        for i, y in enumerate(unmatched):
            if same(x, y):
                del unmatched[i]
                break
        else:
            return False
    return True


def objects_equal(predicted: Any, true: dict) -> bool:
    """Same properties and the same contents (any order); names and types are not compared."""
    return (isinstance(predicted, dict) and same(predicted.get("properties"), true["properties"])
            and same_multiset(predicted.get("contains"), true["contains"]))


def _identical(a: dict, b: dict) -> bool:
    """Every field of two objects equal (the ground-truth difference lists any such change)."""
    return (objects_equal(a, b) and same(a.get("name"), b.get("name")) and same(a.get("type"), b.get("type")))


def by_uuid(objects: Iterable[dict]) -> dict:
    """uuid key -> object (a later object with the same uuid replaces an earlier one)."""
    return {uuid_key(o.get("uuid")): o for o in objects}


# ---------------------------------------------------------------------------------------------
# Differences


def state_diff(current_objects: list[dict], next_objects: list[dict], next_score: dict) -> dict:
    """The ground-truth difference: new or changed objects in full (in next-state order), the
    uuids of removed objects (in current-state order), and the full next score."""
    before, after = by_uuid(current_objects), by_uuid(next_objects)
    modified = [o for o in next_objects
                if uuid_key(o["uuid"]) not in before or not _identical(before[uuid_key(o["uuid"])], o)]
    removed = [o["uuid"] for o in current_objects if uuid_key(o["uuid"]) not in after]
    return {"modified": modified, "removed": removed, "score": {k: next_score[k] for k in SCORE_FIELDS}}


def apply_diff(current_objects: list[dict], current_score: dict, diff: dict) -> tuple[list[dict], dict]:
    """The next state rebuilt from the current one and a (normalised) difference.

    Removed objects are dropped, modified ones replaced whole, new ones appended; a score
    field the difference leaves out keeps its current value.
    """
    removed = {uuid_key(u) for u in diff["removed"]}
    modified = by_uuid(diff["modified"])
    objects = []
    for o in current_objects:
        key = uuid_key(o["uuid"])
        if key in removed:
            continue
        objects.append(modified.pop(key, o))
    objects.extend(o for key, o in modified.items() if key not in removed)
    score = {k: diff["score"].get(k, current_score.get(k)) for k in SCORE_FIELDS}
    return objects, score


def changed_fields(current_objects: list[dict], current_score: dict,
                   next_objects: list[dict], next_score: dict) -> list[tuple[str, Any, str]]:
    """Every (kind, uuid, field) that differs between the current and the next state:

    ("property", uuid, name) a property that changed, appeared or disappeared, and every
        property of a new object; ("property", uuid, "contains") for changed contents;
    ("removed", uuid, "") an object that is gone;
    ("score", "", field) a score field that changed.
    """
    before = by_uuid(current_objects)
    out: list[tuple[str, Any, str]] = []
    next_keys = set()
    for o in next_objects:
        key = uuid_key(o["uuid"])
        next_keys.add(key)
        old = before.get(key)
        props = o["properties"]
        if old is None:
            out.extend(("property", key, name) for name in props)
            out.append(("property", key, "contains"))
            continue
        old_props = old["properties"]
        for name in list(old_props) + [n for n in props if n not in old_props]:
            if name not in props or name not in old_props or not same(old_props[name], props[name]):
                out.append(("property", key, name))
        if not same_multiset(old["contains"], o["contains"]):
            out.append(("property", key, "contains"))
    out.extend(("removed", uuid_key(o["uuid"]), "") for o in current_objects if uuid_key(o["uuid"]) not in next_keys)
    out.extend(("score", "", k) for k in SCORE_FIELDS if not same(current_score[k], next_score[k]))
    return out


def field_right(field: tuple[str, Any, str], objects: dict, score: dict, true_objects: dict, true_score: dict) -> bool:
    """Does a rebuilt state (`objects` by uuid, `score`) get one changed field right?"""
    kind, key, name = field
    if kind == "removed":
        return key not in objects
    if kind == "score":
        return name in score and same(score[name], true_score[name])
    obj, true = objects.get(key), true_objects[key]
    if not isinstance(obj, dict):
        return False
    if name == "contains":
        return same_multiset(obj.get("contains"), true["contains"])
    props = obj.get("properties")
    if not isinstance(props, dict):
        return False
    if name not in true["properties"]:  # the property disappeared
        return name not in props
    return name in props and same(props[name], true["properties"][name])


# ---------------------------------------------------------------------------------------------
# Text


def compact(value: Any) -> str:
    """One-line JSON with a space after separators (word tokenizers split on the spaces)."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def render_diff(diff: dict) -> str:
    return compact({k: diff[k] for k in DIFF_KEYS})


def rules_text(rules: dict) -> list[str]:
    """Prompt lines for a game's rules (object rules lose the `==========` separators)."""
    lines = []
    for kind, label in (("object", "Object rules"), ("action", "Action rules"), ("score", "Score rules")):
        text = rules.get(kind, "")
        if kind == "object":
            text = "\n".join(part.strip() for part in text.split("==========") if part.strip())
        if text.strip():
            lines.append(f"{label}:\n{text.strip()}")
    return lines


def render_prompt(objects: list[dict], score: dict, action: str, task: str = "", uuid_base: Any = None,
                  rules: dict | None = None) -> str:
    """Instruction, task, rules (when given), one object per line, score, uuid base, action."""
    lines = ["Predict how the game state changes after the action and one game tick. Answer with JSON: "
             '"modified" (new or changed objects, in full), "removed" (uuids), "score" (score, gameOver, gameWon).']
    if task:
        lines.append(f"Task: {task}")
    lines.extend(rules_text(rules or {}))
    lines.append("State:")
    lines.extend(compact(o) for o in objects)
    lines.append(f"Score: {compact({k: score[k] for k in SCORE_FIELDS})}")
    if uuid_base is not None:
        lines.append(f"UUID base: {uuid_base}")
    lines.append(f"Action: {action}")
    lines.append("Difference:")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Reading a response


class _Junk(Exception):
    pass


def _jsonable(value: Any, depth: int = 0) -> Any:
    """A parsed literal as plain JSON values (tuples become lists, keys strings); _Junk otherwise."""
    if depth > MAX_DEPTH:
        raise _Junk
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise _Junk
            out[k if isinstance(k, str) else json.dumps(k)] = _jsonable(v, depth + 1)
        return out
    raise _Junk  # sets, bytes, complex numbers, Ellipsis


_SPECIAL = re.compile(r"[{}\"'\\]")
MAX_STARTS = 64  # brace positions tried one by one when the top-level scan finds no answer


def _span_end(text: str, start: int) -> int:
    """End of the balanced {...} opening at `start` (quotes ' and " respected), or -1."""
    depth, quote, escaped = 0, "", -1
    for m in _SPECIAL.finditer(text, start):
        c, i = m.group(), m.start()
        if i == escaped:
            continue
        if c == "\\":
            escaped = i + 1 if quote else -1
        elif quote:
            if c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def _candidate_spans(text: str) -> Iterator[tuple[int, int]]:
    """Where a JSON object may be, the likeliest answer first.

    First the balanced top-level {...} spans, last first. An apostrophe or a stray brace in
    the reasoning ("the agent's {move") can fool that scan, so then the spans opening at
    each of the last `MAX_STARTS` braces, latest-ending and outermost first (bounded work
    on junk; the answer's inner objects come after the answer).
    """
    top, start = [], text.find("{")
    while start != -1 and len(top) < MAX_STARTS:
        end = _span_end(text, start)
        if end == -1:
            break
        top.append((start, end))
        start = text.find("{", end)
    yield from reversed(top)
    starts = [m.start() for m in re.finditer(r"\{", text)][-MAX_STARTS:]
    spans = [(s, _span_end(text, s)) for s in starts]
    yield from sorted(((s, e) for s, e in spans if e != -1 and (s, e) not in top), key=lambda se: (-se[1], se[0]))


_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_WORDS = {"true": "True", "false": "False", "null": "None"}


def _python_literal(text: str) -> str:
    """JSON's bare true / false / null as Python's, outside string literals."""
    out, i, quote = [], 0, ""
    while i < len(text):
        c = text[i]
        if quote:
            out.append(c)
            if c == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 1
            elif c == quote:
                quote = ""
            i += 1
            continue
        if c in "\"'":
            quote = c
        elif c.isalpha():
            j = i
            while j < len(text) and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            out.append(_WORDS.get(word, word))
            i = j
            continue
        out.append(c)
        i += 1
    return "".join(out)


def loads_lenient(text: str) -> Any:
    """Parse JSON or a near-JSON literal (single quotes, trailing commas, True/False/None);
    None when it is neither. Never raises."""
    try:
        return json.loads(text)
    except Exception:
        pass
    try:
        return json.loads(_TRAILING_COMMA.sub(r"\1", text))
    except Exception:
        pass
    try:
        with warnings.catch_warnings():  # junk such as "\q" makes Python warn about escapes
            warnings.simplefilter("ignore")
            return _jsonable(ast.literal_eval(_python_literal(text)))
    except (Exception, RecursionError, MemoryError):  # literal_eval of junk may raise anything
        return None


def _strip_fences(text: str) -> str:
    return re.sub(r"```[A-Za-z]*", " ", text[-MAX_TEXT_CHARS:])


def extract_json(text: str) -> Optional[dict]:
    """The last JSON object in `text` (after any reasoning, inside or outside code fences)."""
    if not isinstance(text, str):
        return None
    text = _strip_fences(text)
    for start, end in _candidate_spans(text):
        value = loads_lenient(text[start:end])
        if isinstance(value, dict):
            return value
    return None


def normalize_diff(value: Any) -> Optional[dict]:
    """A parsed answer as a difference; None unless it is an object with at least one of
    "modified", "removed", "score".

    Missing keys are empty; "modified" keeps the objects that have a usable uuid; "removed"
    keeps the usable uuids; a "score" that is not an object counts as empty.
    """
    if not isinstance(value, dict) or not any(k in value for k in DIFF_KEYS):
        return None
    if "gameOver" in value or "gameWon" in value:  # a score object, not a difference
        return None
    try:
        value = _jsonable(value)
    except (_Junk, RecursionError):
        return None
    modified = value.get("modified") or []
    removed = value.get("removed") or []
    score = value.get("score")
    if not isinstance(modified, list):
        modified = [modified] if isinstance(modified, dict) else []
    if not isinstance(removed, list):
        removed = [removed]
    return {
        "modified": [o for o in modified if isinstance(o, dict) and uuid_key(o.get("uuid")) is not None],
        "removed": [u for u in removed if uuid_key(u) is not None],
        "score": {k: v for k, v in score.items() if k in SCORE_FIELDS} if isinstance(score, dict) else {},
    }


def parse_diff(text: str) -> Optional[dict]:
    """A response's difference: the last JSON object of the text that reads as one, or None."""
    if not isinstance(text, str):
        return None
    text = _strip_fences(text)
    for start, end in _candidate_spans(text):
        diff = normalize_diff(loads_lenient(text[start:end]))
        if diff is not None:
            return diff
    return None
