"""Data-parallel training under `torchrun`: one process per rank, each holding the whole model.

Launch (on CPU the ranks talk over gloo; with CUDA over NCCL, rank r on cuda:LOCAL_RANK):

    torchrun --nproc_per_node 2 -m rlvr_world.cli rlvr --config textworld_tiny threads=1
    torchrun --nproc_per_node 2 -m rlvr_world.cli pretrain --config textworld_tiny threads=1

Give each rank its share of the cores with `threads` (ranks x threads <= cores). Only the
`pretrain` and `rlvr` commands are data-parallel; collect, eval and report run in one process.

One GRPO step over R ranks (MLE splits its batch the same way):
  * every rank draws the same global prompt list (it depends only on (seed, step)) and keeps
    a contiguous slice of it (`shard_range`), so the G responses of a prompt share one rank;
  * each rank samples its slice with its own noise (`shard_generator`, seeded by
    (seed, step, rank)): ranks sample different responses, reproducibly;
  * the rewards are put together into the global reward vector on every rank (`assemble`), so
    advantages, the groups kept and the reward metrics are those of one process;
  * the loss of an update is a mean over the global minibatch's units (tokens for token-mean,
    sequences, rows). Rank r's loss is the mean over its own u_r units; scaled by u_r / U,
    its share of all U units, the ranks' losses sum to the global mean, and their gradients
    to its gradient (`global_mean`, then `all_reduce_gradients` sums). Every rank then makes
    the same optimizer step on the same gradient, so the replicas stay identical without
    ever broadcasting weights again after the start (`broadcast_parameters`).
  * rank 0 alone validates and writes logs, checkpoints and `final`; resuming, every rank
    loads the same checkpoint.

Gradients are summed by hand after backward rather than by wrapping the model in
DistributedDataParallel: the sampler and the reference pass call the plain model (cached
decoding, not one forward per update), a rank may hold no group of a minibatch (DDP wants a
forward on every rank), and the loss weights above are needed either way. The all-reduce
moves the same bytes as DDP's; it gives up overlapping them with the backward pass, which
is little at the model sizes trained here.

Without torchrun's environment (WORLD_SIZE unset or 1) nothing is initialised and every
helper returns its input unchanged: one process runs exactly the code it ran before.
"""

from __future__ import annotations

import atexit
import math
import os
from typing import Iterable, Optional

import numpy as np
import torch
import torch.distributed as dist

from rlvr_world.training import step_torch_generator

_BUCKET_ELEMENTS = 1 << 25  # gradients are summed in flat buckets of at most this many elements


# --------------------------------------------------------------------------- process group


def launched() -> bool:
    """True in a process that torchrun started as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init() -> None:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Does nothing in a single process or when already initialised, so every entry point may call it.
    """
    if not launched() or not dist.is_available() or dist.is_initialized():
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend)
    atexit.register(cleanup)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def enabled() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if enabled() else 0


def world_size() -> int:
    return dist.get_world_size() if enabled() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0, the one that logs, validates and saves (always true in a single process)."""
    return rank() == 0


def device() -> torch.device:
    """Where this rank's collectives run: cuda:LOCAL_RANK under NCCL, else the CPU."""
    if enabled() and dist.get_backend() == "nccl":
        return torch.device("cuda", local_rank())
    return torch.device("cpu")


def barrier() -> None:
    if enabled():
        dist.barrier()


# --------------------------------------------------------------------------- splitting the work


def shard_range(n: int, shard: Optional[int] = None, shards: Optional[int] = None) -> tuple[int, int]:
    """[start, stop) of a contiguous share of `n` items (default: this rank's among all ranks).

    The first n % shards shares hold one item more. Items are prompts, so all responses of a
    prompt land on one rank.
    """
    shard = rank() if shard is None else shard
    shards = world_size() if shards is None else shards
    base, extra = divmod(n, shards)
    start = shard * base + min(shard, extra)
    return start, start + base + (shard < extra)


def shard_generator(seed: int, step: int, stream: int, shard: Optional[int] = None,
                    shards: Optional[int] = None) -> torch.Generator:
    """Sampling noise of one step for one share of the prompts (default: this rank's).

    With one share it is the single-process generator `step_torch_generator(seed, step, stream)`.
    Otherwise it depends on (seed, step, stream, shard), not on which process runs the share,
    so one process sampling the shares in turn draws what the ranks draw.
    """
    shard = rank() if shard is None else shard
    shards = world_size() if shards is None else shards
    if shards == 1:
        return step_torch_generator(seed, step, stream)
    return torch.Generator().manual_seed(int(np.random.default_rng([seed, step, stream, shard]).integers(2**62)))


# --------------------------------------------------------------------------- reductions


def _all_reduce(t: torch.Tensor, op=None) -> torch.Tensor:
    """In-place all-reduce (sum by default), through this rank's device when NCCL needs one."""
    op = dist.ReduceOp.SUM if op is None else op
    where = device()
    if t.device == where:
        dist.all_reduce(t, op=op)
    else:
        moved = t.to(where)
        dist.all_reduce(moved, op=op)
        t.copy_(moved)
    return t


def assemble(local: torch.Tensor, start: int, total: int) -> torch.Tensor:
    """The global tensor [total, ...] on every rank, from each rank's slice global[start : start + len(local)].

    Each position is non-zero on one rank only and x + 0 is exact, so the sum is the
    concatenation, bit for bit.
    """
    if not enabled():
        return local
    out = local.new_zeros((total, *local.shape[1:]))
    out[start : start + len(local)] = local
    return _all_reduce(out)


def sum_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each value summed over ranks (every rank must pass the same keys in the same order)."""
    if not enabled():
        return values
    total = _all_reduce(torch.tensor([float(v) for v in values.values()], dtype=torch.float64))
    return dict(zip(values, total.tolist()))


def max_over_ranks(value: float) -> float:
    if not enabled():
        return value
    return float(_all_reduce(torch.tensor([value], dtype=torch.float64), dist.ReduceOp.MAX))


def global_mean(loss: torch.Tensor, stats: dict[str, float], units: float,
                stat_units: Optional[dict[str, float]] = None) -> tuple[torch.Tensor, dict[str, float]]:
    """This rank's share of a loss that is a mean over all ranks' items, and the global stats.

    loss: scalar, the mean over this rank's `units` items (ignored when it holds none).
    stats: floats, each a mean over the same items, or over `stat_units[key]` others (e.g. a
    per-token diagnostic under a per-sequence loss).
    Returns (loss * units / U, stats averaged over all ranks' items), U the units of all ranks.
    Summed over ranks the returned losses are the global mean loss, and so are their gradients.
    If any rank's loss is not finite, every rank gets a NaN loss and skips the update with the others.
    """
    if not enabled():
        return loss, stats
    if not units:  # a rank holding no items adds nothing, whatever its mean of nothing (0/0) came out as
        loss = torch.zeros((), device=loss.device, requires_grad=True)
    counts = {k: float((stat_units or {}).get(k, units)) for k in stats}
    packed = {"units": float(units), "nonfinite": float(not math.isfinite(loss.item()))}
    for k, v in stats.items():
        packed[f"sum.{k}"] = v * counts[k] if counts[k] else 0.0
        packed[f"count.{k}"] = counts[k]
    total = sum_over_ranks(packed)
    glob = {k: total[f"sum.{k}"] / max(total[f"count.{k}"], 1.0) for k in stats}
    share = loss * (float(units) / max(total["units"], 1.0))
    if total["nonfinite"]:
        share = share * float("nan")
        glob["loss"] = float("nan")
    return share, glob


def all_reduce_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Sum each trainable parameter's gradient over ranks, in place.

    A rank that did not touch a parameter (no gradient) contributes zeros; a parameter no
    rank touched keeps no gradient, as in one process (AdamW then leaves it alone).
    """
    if not enabled():
        return
    params = [p for p in parameters if p.requires_grad]
    touched = _all_reduce(torch.tensor([p.grad is not None for p in params], dtype=torch.float32))
    params = [p for p, t in zip(params, touched.tolist()) if t]
    # Flat buckets of one dtype each: one collective per bucket instead of one per tensor.
    bucket: list[torch.nn.Parameter] = []
    for p in params:
        if bucket and (p.dtype != bucket[0].dtype or p.device != bucket[0].device
                       or sum(q.numel() for q in bucket) + p.numel() > _BUCKET_ELEMENTS):
            _sum_bucket(bucket)
            bucket = []
        bucket.append(p)
    if bucket:
        _sum_bucket(bucket)


def _sum_bucket(params: list[torch.nn.Parameter]) -> None:
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    _all_reduce(flat)
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad = g.view_as(p)


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (the replicas start identical)."""
    if not enabled():
        return
    where = device()
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            moved = t.data if t.device == where else t.data.to(where)
            dist.broadcast(moved, src=0)
            if moved is not t.data:
                t.data.copy_(moved)


class NullLog:
    """`RunLog`'s interface for ranks other than 0, which write no logs."""

    def log(self, step: int, metrics: dict, split: str = "train") -> None:
        pass

    def close(self) -> None:
        pass
