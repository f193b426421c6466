"""Pieces every training loop shares: seeding, optimizer, LR schedule, non-finite-loss guard,
progress bar."""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from tqdm.auto import tqdm


class TrainingError(RuntimeError):
    """A run that cannot continue (e.g. several non-finite losses in a row)."""


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """A generator that depends only on (seed, step, stream): batches are reproducible after resume."""
    return np.random.default_rng([seed, step, stream])


def step_torch_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(int(step_rng(seed, step, stream).integers(2**62)))


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on norms and biases)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=False)


def lr_factor(step: int, elapsed: float, *, steps: int, max_seconds: float, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to `min_ratio` over steps or wall-clock, whichever runs out first."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = step / max(1, steps)
    if max_seconds > 0:
        progress = max(progress, elapsed / max_seconds)
    progress = min(1.0, progress)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class NonFiniteGuard:
    """Counts non-finite losses; the step is skipped, and too many in a row stop the run."""

    def __init__(self, max_consecutive: int):
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.total = 0

    def ok(self, loss: torch.Tensor) -> bool:
        if torch.isfinite(loss).all():
            self.consecutive = 0
            return True
        self.consecutive += 1
        self.total += 1
        if self.consecutive >= self.max_consecutive:
            raise TrainingError(
                f"{self.consecutive} non-finite losses in a row; stopping. The last checkpoint holds "
                "finite weights: lower the learning rate and resume from it."
            )
        return False


def parameters_finite(model: torch.nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


def stage_bar(desc: str, steps: int, max_seconds: float, initial: int, disable: bool = False):
    """A stage's progress bar over steps. A stage with a wall-clock budget ends at whichever
    comes first, and its step limit is often a placeholder (MLE-longer's 1e9, a sweep's 1e6):
    its bar counts steps without a total, so it shows no ETA of days, and names the budget."""
    if max_seconds > 0:
        return tqdm(total=None, initial=initial, desc=f"{desc} ({max_seconds:.0f} s budget)", disable=disable)
    return tqdm(total=steps, initial=initial, desc=desc, disable=disable)
