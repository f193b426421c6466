"""Name lookups in the registries (rewards, worlds, presets, GRPO variants) with helpful errors."""

from __future__ import annotations

import difflib
from typing import Mapping, TypeVar

V = TypeVar("V")


def lookup(registry: Mapping[str, V], name: str, kind: str) -> V:
    """registry[name], or a KeyError naming the closest registered names."""
    try:
        return registry[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown {kind} {name!r}{hint} (known: {', '.join(sorted(registry))})") from None
