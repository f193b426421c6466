"""Reading the ByteSized32-State-Prediction files (Wang et al., ACL 2024) and their rules.

Users bring these files (the published ``train.jsonl`` / ``test.jsonl`` of the dataset, or
their own in the same format); a small sample written for this project ships in
``sample/``. A real file loads unchanged.

The JSONL file: one transition per line
---------------------------------------

Every line is a JSON object with these fields (all required; others are ignored)::

    game                 str   the game's name, e.g. "mix-paint"; keys the rules files
    state_id             int   the transition's id within its game (str accepted too)
    current_state        state the game before the action
    action_state         state after the action, before the game tick (read and checked,
                               not used: the world predicts action *and* tick together)
    tick_state           state after the action and one game tick: the target
    current_score_state  score the score before the action
    next_score_state     score the score after the action and the tick: the target score

A *state* is a JSON object with:

    objects     list  required; every object of the game (below), uuids unique
    lastAction  str   required in ``tick_state``: the action taken, e.g.
                      "put cup (ID: 4) in dishwasher (ID: 2)" (the dataset records the
                      action that led to a state in that state)
    taskDesc    str   optional, read from ``current_state``: the task, shown in the prompt
    max_UUID    int   optional, read from ``current_state``: the uuid base, the first uuid a
                      newly created object gets; shown in the prompt
    observation, look, inventory   str  optional, ignored (the prompt shows the objects)

An *object* is a JSON object with:

    name        str        e.g. "cup (ID: 4)"
    uuid        int | str  unique within a state; how objects are matched across states
    type        str        the object's class, e.g. "Dish"
    properties  object     property name -> JSON value, e.g. {"isDirty": true, "temp": 20}
    contains    list       what the object holds, as the held objects' names (order is ignored)

A *score* is a JSON object with ``score`` (number), ``gameOver`` (bool) and ``gameWon``
(bool); other keys are ignored.

The rules files (optional)
--------------------------

A folder holding any of ``object_rules.json``, ``action_rules.json`` and
``score_rules.json`` (the names of the published rules, e.g. ``rules/human_written_rules``
of the paper's code). Each is one JSON object mapping a game name to that game's rules as
text: how its objects behave (object rules; the published ones separate objects with
``==========`` lines), what its actions do (action rules), how it scores (score rules).

Errors
------

A malformed line raises `FormatError` (a ValueError) naming the file, the line and the
field, e.g. ``train.jsonl:12: missing field 'tick_state.lastAction'``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator

LINE_FIELDS = ("game", "state_id", "current_state", "action_state", "tick_state",
               "current_score_state", "next_score_state")
STATE_FIELDS = ("current_state", "action_state", "tick_state")
OBJECT_FIELDS = ("name", "uuid", "type", "properties", "contains")
SCORE_FIELDS = ("score", "gameOver", "gameWon")
RULE_FILES = {"object": "object_rules.json", "action": "action_rules.json", "score": "score_rules.json"}


class FormatError(ValueError):
    """A ByteSized32 data or rules file does not follow the published format."""


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a bool", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _check_object(obj: Any, where: str, field: str) -> None:
    if not isinstance(obj, dict):
        raise FormatError(f"{where}: field '{field}' must be an object, got {_type_name(obj)}")
    for key in OBJECT_FIELDS:
        if key not in obj:
            raise FormatError(f"{where}: missing field '{field}.{key}'")
    uuid = obj["uuid"]
    if isinstance(uuid, bool) or not isinstance(uuid, (int, str)):
        raise FormatError(f"{where}: field '{field}.uuid' must be an integer or a string, got {_type_name(uuid)}")
    if not isinstance(obj["properties"], dict):
        raise FormatError(f"{where}: field '{field}.properties' must be an object, got {_type_name(obj['properties'])}")
    if not isinstance(obj["contains"], list):
        raise FormatError(f"{where}: field '{field}.contains' must be a list, got {_type_name(obj['contains'])}")


def _check_state(state: Any, where: str, field: str) -> None:
    if not isinstance(state, dict):
        raise FormatError(f"{where}: field '{field}' must be an object, got {_type_name(state)}")
    if "objects" not in state:
        raise FormatError(f"{where}: missing field '{field}.objects'")
    objects = state["objects"]
    if not isinstance(objects, list):
        raise FormatError(f"{where}: field '{field}.objects' must be a list, got {_type_name(objects)}")
    seen = {}
    for i, obj in enumerate(objects):
        _check_object(obj, where, f"{field}.objects[{i}]")
        key = str(obj["uuid"])
        if key in seen:
            raise FormatError(f"{where}: field '{field}.objects[{i}].uuid': uuid {obj['uuid']!r} "
                              f"is also the uuid of '{field}.objects[{seen[key]}]'")
        seen[key] = i


def _check_score(score: Any, where: str, field: str) -> None:
    if not isinstance(score, dict):
        raise FormatError(f"{where}: field '{field}' must be an object, got {_type_name(score)}")
    for key in SCORE_FIELDS:
        if key not in score:
            raise FormatError(f"{where}: missing field '{field}.{key}'")
    value = score["score"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FormatError(f"{where}: field '{field}.score' must be a finite number, got {value!r}")
    for key in ("gameOver", "gameWon"):
        if not isinstance(score[key], bool):
            raise FormatError(f"{where}: field '{field}.{key}' must be true or false, got {score[key]!r}")


def check_line(row: Any, where: str) -> dict:
    """Validate one parsed line; returns it. `where` is "file:line" for the error message."""
    if not isinstance(row, dict):
        raise FormatError(f"{where}: expected a JSON object, got {_type_name(row)}")
    missing = [f for f in LINE_FIELDS if f not in row]
    if missing:
        raise FormatError(f"{where}: missing field{'s' if len(missing) > 1 else ''} "
                          + ", ".join(f"'{f}'" for f in missing))
    if not isinstance(row["game"], str) or not row["game"]:
        raise FormatError(f"{where}: field 'game' must be a non-empty string, got {row['game']!r}")
    if isinstance(row["state_id"], bool) or not isinstance(row["state_id"], (int, str)):
        raise FormatError(f"{where}: field 'state_id' must be an integer or a string, got {row['state_id']!r}")
    for field in STATE_FIELDS:
        _check_state(row[field], where, field)
    if "lastAction" not in row["tick_state"]:
        raise FormatError(f"{where}: missing field 'tick_state.lastAction'")
    if not isinstance(row["tick_state"]["lastAction"], str):
        raise FormatError(f"{where}: field 'tick_state.lastAction' must be a string")
    for field in ("current_score_state", "next_score_state"):
        _check_score(row[field], where, field)
    return row


def iter_lines(path: Path) -> Iterator[tuple[str, dict]]:
    """("file:line", validated row) for every non-blank line of a ByteSized32 JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ByteSized32 state-prediction file")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise FormatError(f"{where}: bad JSON ({e})") from None
            yield where, check_line(row, where)


def read_rules(folder: Path) -> dict[str, dict[str, str]]:
    """game -> {"object": text, "action": text, "score": text} (kinds whose file is absent are left out).

    A folder with none of the three files is an error (most likely a wrong path).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such rules folder (expected {', '.join(RULE_FILES.values())})")
    rules: dict[str, dict[str, str]] = {}
    found = False
    for kind, name in RULE_FILES.items():
        path = folder / name
        if not path.is_file():
            continue
        found = True
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise FormatError(f"{path}: bad JSON ({e})") from None
        if not isinstance(table, dict):
            raise FormatError(f"{path}: expected an object mapping game names to rules text, got {_type_name(table)}")
        for game, text in table.items():
            if not isinstance(text, str):
                raise FormatError(f"{path}: rules of game '{game}' must be a string, got {_type_name(text)}")
            rules.setdefault(game, {})[kind] = text
    if not found:
        raise FileNotFoundError(f"{folder}: none of {', '.join(RULE_FILES.values())} is there")
    return rules
