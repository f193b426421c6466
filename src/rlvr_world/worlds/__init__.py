"""Worlds: an environment, a codec between its states and tokens, and a reward choice.

Each world is a folder. The trainers only ever see `Example`s and call the world's
`decode` and `metrics`; they never know which modality they train.
"""

from __future__ import annotations

import importlib

from rlvr_world.registry import lookup
from rlvr_world.worlds.base import World

# name -> "module:Class", imported lazily so a world's heavy dependencies load only when used.
WORLDS = {
    "textworld": "rlvr_world.worlds.textworld.world:TextWorldWorld",
    "metaworld": "rlvr_world.worlds.metaworld.world:MetaWorldWorld",
    "miniwob": "rlvr_world.worlds.miniwob.world:MiniWoBWorld",
    "bytesized32": "rlvr_world.worlds.bytesized32.world:ByteSized32World",
}


def get_world(name: str, **kwargs) -> World:
    module, cls = lookup(WORLDS, name, "world").split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)
