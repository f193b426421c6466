"""What every benchmark script shares: the machine description, timing, tables, JSON.

A benchmark script imports `rlvr_world` before torch: it sets OMP_WAIT_POLICY=PASSIVE, which
must be in place before torch starts its thread pool and changes small-op timings 5-10x on
small CPU machines. This module imports torch only inside the functions that need it, so
`write_results.py` can use the table helpers without loading torch at all.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def set_threads(threads: int) -> None:
    """torch intra-op threads; 0 keeps torch's default (one per core)."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def machine() -> dict:
    """The facts a reader needs to compare two benchmark runs."""
    import torch
    import transformers

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    gpu = {"gpu": torch.cuda.get_device_name()} if torch.cuda.is_available() else {}
    return {
        "cpu": cpu_model(),
        **gpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        # Load from other processes at the start: a busy machine makes every number noisy.
        "loadavg_1m_at_start": round(load[0], 2),
    }


def describe(m: dict) -> str:
    gpu = f", {m['gpu']}" if m.get("gpu") else ""
    return (f"{m['cpu']}, {m['cores']} cores{gpu}, torch {m['torch']} ({m['threads']} threads), "
            f"transformers {m['transformers']}, OMP_WAIT_POLICY={m['omp_wait_policy']}, "
            f"load average at start {m['loadavg_1m_at_start']}")


def command_line() -> str:
    """The command that produced these numbers, as one would type it from the repository root."""
    return shlex.join(["python", os.path.relpath(sys.argv[0])] + sys.argv[1:])


def today() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _sync_gpu() -> None:
    """Wait for queued CUDA work, so that a timing covers it (GPU kernels run asynchronously)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one call, including its GPU work when there is any."""
    _sync_gpu()
    t = time.perf_counter()
    out = fn()
    _sync_gpu()
    return time.perf_counter() - t, out


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """rows: dicts; columns: (key, header, format spec such as ".1f" or "")."""
    def cell(row, key, fmt):
        value = row.get(key)
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "NO"
        try:
            return format(value, fmt) if fmt else str(value)
        except (TypeError, ValueError):  # e.g. a "d" column holding a float in another script's JSON
            return str(value)

    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
             "|" + "|".join("---:" if fmt else "---" for _, _, fmt in columns) + "|"]
    lines += ["| " + " | ".join(cell(r, k, f) for k, _, f in columns) + " |" for r in rows]
    return "\n".join(lines)


def run_config(parser, run_dir: Path, config: str | None, overrides: Sequence[str] = (), need_tokenizer: bool = False):
    """(config name, Config) of the run a benchmark reads: RUN/config.yaml if it exists, else the
    textworld preset, with `overrides`. A bad key or a missing piece of the run is a usage
    error that names the command that makes it."""
    from rlvr_world.config import ConfigError, load_config

    config = config or (str(run_dir / "config.yaml") if (run_dir / "config.yaml").exists() else "textworld")
    try:
        cfg = load_config(config, list(overrides) + [f"run_dir={run_dir}"])
    except ConfigError as e:
        parser.error(str(e))
    if not (cfg.data_path / "train.jsonl").exists():
        parser.error(f"{cfg.data_path}: no train.jsonl; run `rlvr-world collect` for that run first")
    if need_tokenizer and not (run_dir / "tokenizer" / "tokenizer.json").exists():
        parser.error(f"{run_dir}/tokenizer: no tokenizer; run `rlvr-world pretrain` for that run first")
    return config, cfg


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (imports and loaded data included)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def write_json(path: str | Path, result: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
