"""TextWorld states and differences as text, and back.

A state is a set of TextWorld facts, each printed the way TextWorld prints a `Proposition`:
``at(P, red room: r)``, ``in(napkin: o, I)``, ``link(attic: r, wooden door: d, pantry: r)``.
The model reads the facts it can see plus the command, and writes what changes:

    prompt                         target
    at(P, attic: r)                - closed(wooden door: d)
    closed(wooden door: d)         + open(wooden door: d)
    ...
    > open wooden door
    diff:

or the literal ``no change``. The word tokenizer drops line breaks (and a tokenizer that
splits punctuation decodes ``at(P, red room: r)`` as ``at ( P , red room : r )``), so
`parse_diff` reads a stream of words and punctuation marks and re-canonicalises every fact
exactly to TextWorld's spelling. Entity names are words
joined by spaces, except ``'`` and ``-`` which join their neighbours ("Henderson's safe",
"dish-pit") — the only punctuation TextWorld's house grammar puts in names.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional

NO_CHANGE = "no change"
ACTION_MARKER = ">"
END_MARKER = "diff:"

_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"\w+")
_GLUE = frozenset("'-")  # punctuation written without spaces around it inside a name
_STRUCTURE = frozenset("(),:")


def render_prompt(view_facts: Iterable[str], command: str) -> str:
    """The visible facts one per line (sorted), the command after `>`, then `diff:`."""
    lines = sorted(view_facts)
    lines.append(f"{ACTION_MARKER} {command}")
    lines.append(END_MARKER)
    return "\n".join(lines)


def render_diff(added: Iterable[str], removed: Iterable[str]) -> str:
    """`- fact` lines (sorted), then `+ fact` lines (sorted), or ``no change``."""
    lines = [f"- {f}" for f in sorted(removed)] + [f"+ {f}" for f in sorted(added)]
    return "\n".join(lines) if lines else NO_CHANGE


def _join_name(words: list[str]) -> str:
    """Join name tokens: spaces between words, none around `'` or `-`."""
    out = words[0]
    for prev, word in zip(words, words[1:]):
        out += word if (prev in _GLUE or word in _GLUE) else " " + word
    return out


def _parse_fact_tokens(tokens: list[str], i: int) -> tuple[Optional[tuple[str, tuple[str, ...]]], int]:
    """Parse `pred ( arg , arg ... )` starting at tokens[i].

    Returns ((predicate, canonical argument strings), index after `)`), or (None, i) when the
    tokens there are not a well-formed fact. An argument is name words, optionally followed
    by `:` and a one-word type; a name without a type must be one word (TextWorld prints
    `P` and `I` that way).
    """
    n = len(tokens)
    if i + 1 >= n or not _WORD.fullmatch(tokens[i]) or tokens[i + 1] != "(":
        return None, i
    pred, j, args = tokens[i], i + 2, []
    while True:
        words = []
        while j < n and tokens[j] not in _STRUCTURE:
            words.append(tokens[j])
            j += 1
        if j >= n or not words or words[0] in _GLUE or words[-1] in _GLUE:
            return None, i
        if not all(w in _GLUE or _WORD.fullmatch(w) for w in words):
            return None, i
        if tokens[j] == ":":
            if j + 2 >= n or not _WORD.fullmatch(tokens[j + 1]):
                return None, i
            args.append(f"{_join_name(words)}: {tokens[j + 1]}")
            j += 2
        elif len(words) == 1 and _WORD.fullmatch(words[0]):
            args.append(words[0])
        else:
            return None, i
        if tokens[j] == ")":
            return (pred, tuple(args)), j + 1
        if tokens[j] != ",":
            return None, i
        j += 1


def parse_fact(text: str) -> Optional[tuple[str, tuple[str, ...]]]:
    """``"in(napkin: o, I)"`` -> ``("in", ("napkin: o", "I"))``; None when not one fact."""
    tokens = _TOKEN.findall(text)
    fact, end = _parse_fact_tokens(tokens, 0)
    return fact if fact is not None and end == len(tokens) else None


def format_fact(pred: str, args: Iterable[str]) -> str:
    """Inverse of `parse_fact`: TextWorld's canonical spelling."""
    return f"{pred}({', '.join(args)})"


def parse_diff(text: str) -> Optional[dict]:
    """Read a difference back: ``{"added": frozenset, "removed": frozenset}``, or None for junk.

    Accepts any spacing and line breaks (the tokenizer's decoded text), any order of the
    `+`/`-` items, and ``no change``. Anything else — empty text, stray words, a truncated
    or unbalanced fact, ``no change`` followed by more text — is junk. Never raises.
    """
    try:
        tokens = _TOKEN.findall(text)
        if tokens == ["no", "change"]:
            return {"added": frozenset(), "removed": frozenset()}
        if not tokens:
            return None
        added, removed, i = set(), set(), 0
        while i < len(tokens):
            sign = tokens[i]
            if sign not in ("+", "-"):
                return None
            fact, i = _parse_fact_tokens(tokens, i + 1)
            if fact is None:
                return None
            (added if sign == "+" else removed).add(format_fact(*fact))
        return {"added": frozenset(added), "removed": frozenset(removed)}
    except Exception:  # a malformed response must never crash training
        return None
