"""Typed values renamed at random, so that copying them is what a world model is paid for.

A MiniWoB++ task draws the values to type from a small list (first names, short passwords),
so a small model trained on the recorded transitions learns to write a value it has seen in
training, not the one the action types (docs/results_miniwob.md: typing F1 0.2). Renaming
takes that shortcut away: in a training transition ``type [5] 'Macie'`` becomes, say,
``type [5] 'Wotbe'``, and ``Macie`` becomes ``Wotbe`` wherever the transition shows it: in
the instruction (as a whole word), in quoted page text and values (``value='MacieMacie'``
after two typings too) and in the page difference. The transition stays true to the task:
the asked-for value, the typed one and the one the page shows are still the same string. The
replacement keeps the value's shape (each letter a random letter, each digit a random digit,
the rest as is) and each occurrence's letter case, so ``MACIE`` and ``macie`` in one
instruction stay upper and lower case. (At the demo's scale the model learned the values'
shape from it, not the copy: see the web results.)

Only values with a letter, at least two characters and no quote are renamed: a lone digit or
a date is also a page's ordinal, an answer's digits or a calendar, and renaming it inside
other numbers would change what the page says.
"""

from __future__ import annotations

import random
import re
import string

from rlvr_world.worlds.miniwob.browser import ACTION

QUOTED = re.compile(r"'([^']*)'")


def renamable(value: str) -> bool:
    return len(value) >= 2 and any(c.isalpha() for c in value) and "'" not in value


def same_shape(value: str, rng: random.Random) -> str:
    """A random string shaped like `value`: letters → random lowercase letters, digits → random
    digits, anything else kept (case is applied per occurrence by `replace_all`)."""
    return "".join(rng.choice(string.ascii_lowercase) if c.isalpha() else rng.choice(string.digits) if c.isdigit()
                   else c for c in value)


def _cased(replacement: str, occurrence: str) -> str:
    return "".join(r.upper() if o.isupper() else r for r, o in zip(replacement, occurrence))


def replace_all(text: str, value: str, replacement: str, whole_words: bool = False) -> str:
    """Every occurrence of `value` in `text`, in any letter case, replaced by `replacement` in
    that occurrence's case; with `whole_words`, only where no letter or digit touches it."""
    pattern = re.escape(value)
    if whole_words:
        pattern = rf"(?<![^\W_]){pattern}(?![^\W_])"
    return re.sub(pattern, lambda m: _cased(replacement, m.group(0)), text, flags=re.IGNORECASE)


def _in_quotes(line: str, value: str, replacement: str) -> str:
    """Rename inside the line's quoted text only: roles, ids and attribute names stay."""
    return QUOTED.sub(lambda m: "'" + replace_all(m.group(1), value, replacement) + "'", line)


def typed_value(action: str) -> str | None:
    m = ACTION.match(action)
    return m.group(3) if m is not None and m.group(1) == "type" else None


def rename_typed(transition: dict, rng: random.Random) -> dict:
    """The transition with its typed value renamed everywhere it shows (a new dict; the same
    one when the action types nothing renamable)."""
    value = typed_value(transition["action"])
    if value is None or not renamable(value):
        return transition
    new = same_shape(value, rng)
    return {
        **transition,
        "utterance": replace_all(transition["utterance"], value, new, whole_words=True),
        "fields": [[key, replace_all(v, value, new, whole_words=True)] for key, v in transition["fields"]],
        "page": [[ref, _in_quotes(line, value, new)] for ref, line in transition["page"]],
        "next_page": [[ref, _in_quotes(line, value, new)] for ref, line in transition["next_page"]],
        "action": _in_quotes(transition["action"], value, new),
        "diff": {section: [_in_quotes(line, value, new) for line in lines]
                 for section, lines in transition["diff"].items()},
        "renamed": [value, new],
    }


def rename_share(transitions: list[dict], share: float, seed: int) -> list[dict]:
    """`share` of the typing transitions renamed (`rename_typed`), each drawn and renamed with
    its own generator keyed by the run's seed and the transition, so a transition gets the same
    new value in every stage of a run, whatever the order the transitions come in."""
    if share <= 0:
        return transitions
    out = []
    for t in transitions:
        rng = random.Random(f"{seed}/{t['task']}/{t['seed']}/{t['episode']}/{t['step']}")
        out.append(rename_typed(t, rng) if rng.random() < share else t)
    return out
