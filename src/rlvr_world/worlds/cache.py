"""What every world's transition cache shares: atomic writes, JSONL reading with errors that
name the file and line, and the versions in a manifest."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Iterable


def open_cache(data_dir: Path) -> Path:
    """Create the cache folder and drop its manifest: the cache counts as incomplete until a
    collection writes a new one (a killed collection never looks finished)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "manifest.json").unlink(missing_ok=True)
    return data_dir


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


def read_jsonl(path: Path, required_keys: Iterable[str], error: type[Exception], hint: str) -> list[dict]:
    """Rows of a JSONL cache file; `error` naming the file and line of a malformed row."""
    required_keys = tuple(required_keys)
    if not path.is_file():
        raise error(f"{path} is missing; {hint}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{path}:{lineno}: bad JSON ({e}); {hint}") from None
            if not isinstance(row, dict):
                raise error(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}; {hint}")
            missing = [k for k in required_keys if k not in row]
            if missing:
                raise error(f"{path}:{lineno}: missing key(s) {', '.join(missing)}; {hint}")
            rows.append(row)
    return rows


def read_manifest(data_dir: Path, what: str, hint: str, error: type[Exception] | None = None) -> dict:
    """`data_dir/manifest.json`, written last by a finished collection.

    Missing: `error` (default FileNotFoundError) saying the `what` cache is incomplete; bad
    JSON: `error` (default ValueError) naming the file. Both end with `hint` (how to regenerate).
    """
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise (error or FileNotFoundError)(f"no complete {what} cache in {data_dir} ({path.name} is missing); {hint}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise (error or ValueError)(f"{path}: bad JSON ({e}); {hint}") from None
