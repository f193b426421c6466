"""Per-stage metrics: one JSONL file and TensorBoard events, both resumable without gaps."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional


class RunLog:
    """Append metric rows `{"step", "split", ...}` to `metrics.jsonl` and TensorBoard.

    On resume from step k, rows after step k (written after the last checkpoint by the
    killed run) are dropped, so the log continues with neither gaps nor duplicates.
    """

    def __init__(self, stage_dir: Path, resume_step: Optional[int] = None, tensorboard: bool = True):
        self.path = Path(stage_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            kept = [l for l in self.path.read_text().splitlines() if l.strip() and json.loads(l)["step"] <= resume_step]
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(l + "\n" for l in kept))
            tmp.replace(self.path)
        self._file = self.path.open("a")
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None
            self.tb = SummaryWriter(str(Path(stage_dir) / "tb"), purge_step=purge)

    def log(self, step: int, metrics: dict, split: str = "train") -> None:
        row = {"step": step, "split": split, "time": round(time.time(), 3)}
        row.update({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()})
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self.tb.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        self._file.close()
        if self.tb is not None:
            self.tb.close()


def read_metrics(stage_dir: Path) -> list[dict]:
    path = Path(stage_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
