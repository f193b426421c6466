"""Worlds: an environment, a codec between its states and tokens, and a reward choice.

Each world is a folder. The trainers only ever see `Example`s and call the world's
`decode` and `metrics`; they never know which modality they train.
"""

from __future__ import annotations

import difflib
import importlib

from rlvr_world.worlds.base import World

# name -> "module:Class", imported lazily so a world's heavy dependencies load only when used.
WORLDS = {
    "textworld": "rlvr_world.worlds.textworld.world:TextWorldWorld",
}


def get_world(name: str, **kwargs) -> World:
    if name not in WORLDS:
        close = difflib.get_close_matches(name, WORLDS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown world {name!r}{hint} (known: {', '.join(sorted(WORLDS))})")
    module, cls = WORLDS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)
