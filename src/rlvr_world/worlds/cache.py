"""What every world's transition cache shares: atomic writes and the versions in a manifest."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Iterable


def write_atomic(path: Path, text_chunks: Iterable[str]) -> None:
    """Write text to a temporary name beside `path`, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for chunk in text_chunks:
            f.write(chunk)
    os.replace(tmp, path)


def package_versions(*packages: str) -> dict[str, str]:
    """Python's version and each package's installed version ("not installed" if absent)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in packages:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out
