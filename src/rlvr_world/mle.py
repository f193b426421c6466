"""Maximum-likelihood training of a world model, shared by every world.

Teacher-forced cross-entropy on the response tokens only (the prompt is context), AdamW,
linear warm-up then cosine decay, gradient clipping, periodic validation, atomic
checkpoints and exact resume: the batch of step s depends only on (seed, s).
Under torchrun each rank trains on a contiguous share of that batch, and the update is the
one-process update on the whole batch (`rlvr_world.distributed`).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from rlvr_world import distributed as dist
from rlvr_world.checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint, save_final
from rlvr_world.config import MLEConfig
from rlvr_world.eval.evaluate import evaluate, evenly_spaced, teacher_forced_loss
from rlvr_world.models.lm import load_model, model_device
from rlvr_world.runlog import RunLog
from rlvr_world.sequence import Example, forced_positions
from rlvr_world.training import (NonFiniteGuard, lr_factor, make_optimizer, parameters_finite, set_lr, stage_bar,
                                 step_rng)


UNBOUNDED_STEPS = 10**9  # a step limit that means "until max_seconds"


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded prompt+target sequences; labels are -100 on the prompt, padding and forced tokens.

    Returns input_ids, attention_mask and labels, each [B, L].
    """
    seqs = [ex.prompt_ids + ex.target_ids for ex in examples]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for i, (ex, s) in enumerate(zip(examples, seqs)):
        ids[i, : len(s)] = torch.as_tensor(s)
        mask[i, : len(s)] = 1
        start = len(ex.prompt_ids)
        labels[i, start : len(s)] = torch.as_tensor(ex.target_ids)
        forced = [start + j for j in forced_positions(ex.plan) if j < len(ex.target_ids)]
        if forced:  # given tokens (e.g. actions between video frames) are context, not targets
            labels[i, forced] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def length_bucketed_batch(lengths_order: list[int], batch_size: int, rng, window: int = 4) -> list[int]:
    """A batch of similar-length examples: `batch_size` drawn from a random window of the
    length-sorted order `window` batches wide. Less padding, still a random batch per step."""
    n = len(lengths_order)
    size = min(n, batch_size * window)
    start = int(rng.integers(0, n - size + 1))
    picks = rng.choice(size, size=min(batch_size, n), replace=False)
    return [lengths_order[start + int(i)] for i in picks]


def mle_batch(train: list[Example], by_length: list[int], batch_size: int, seed: int, step: int, pad_id: int) -> dict:
    """The batch of training step `step`: length-bucketed, the same after a resume (under
    torchrun, this rank's contiguous share of it)."""
    idx = length_bucketed_batch(by_length, batch_size, step_rng(seed, step))
    lo, hi = dist.shard_range(len(idx))
    return collate([train[i] for i in idx[lo:hi]], pad_id)


def mle_step(model, optimizer, guard: NonFiniteGuard, batch: dict, grad_clip: float,
             timings: dict | None = None) -> tuple[torch.Tensor, float, bool]:
    """Forward, backward, clipping and one AdamW step; a non-finite loss skips the update.

    Returns (loss, gradient norm before clipping, whether the update was made); the norm is
    NaN when it was skipped. Under torchrun the loss is this rank's share of the mean over the
    global batch's label tokens: summed over ranks it is that mean.
    `timings`, if given, receives the seconds of forward_s, backward_s and optimizer_s.
    """
    t0 = time.perf_counter()
    device = model_device(model)
    loss = model(**{k: v.to(device, non_blocking=True) for k, v in batch.items()}).loss
    if dist.enabled():  # the causal-LM loss averages over the label tokens after the shift by one
        loss, _ = dist.global_mean(loss, {}, int((batch["labels"][:, 1:] != -100).sum()))
    t1 = time.perf_counter()
    grad_norm = float("nan")
    ok = guard.ok(loss)
    if ok:
        loss.backward()
        dist.all_reduce_gradients(model.parameters())
    t2 = time.perf_counter()
    if ok:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip))
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if timings is not None:
        timings.update(forward_s=t1 - t0, backward_s=t2 - t1, optimizer_s=time.perf_counter() - t2)
    return loss, grad_norm, ok


def train_mle(
    model, tokenizer, world, train: list[Example], val: list[Example], cfg: MLEConfig,
    stage_dir: Path, seed: int = 0, progress: bool = True,
):
    """Train `model` in place (or resume it from `stage_dir`'s last checkpoint); returns the model.

    The finished model and tokenizer are saved to `stage_dir/final`.
    """
    stage_dir = Path(stage_dir)
    step, elapsed = 0, 0.0
    dist.init()  # under torchrun: join the process group (nothing in one process)
    if min(cfg.batch_size, len(train)) < dist.world_size():
        raise ValueError(f"{dist.world_size()} ranks need a batch of at least as many sequences, got {cfg.batch_size}")
    ckpt = latest_checkpoint(stage_dir)
    if ckpt is not None:
        model = load_model(ckpt / "model")[0].to(model_device(model))
    dist.broadcast_parameters(model)  # the replicas start from rank 0's weights
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    if ckpt is not None:
        state = load_trainer_state(ckpt, optimizer)
        step, elapsed = state["step"], state["elapsed"]
        if (stage_dir / "final").exists() and (step >= cfg.steps or 0 < cfg.max_seconds <= elapsed):
            return model  # already finished
    log = RunLog(stage_dir, resume_step=step if ckpt is not None else None) if dist.is_main() else dist.NullLog()
    guard = NonFiniteGuard(cfg.max_consecutive_nan)
    val_subset = evenly_spaced(val, cfg.eval_examples)
    by_length = sorted(range(len(train)), key=lambda i: len(train[i].prompt_ids) + len(train[i].target_ids))
    pad_id = tokenizer.pad_token_id

    def validate() -> None:
        if not dist.is_main():  # rank 0 validates; the others wait for it at the next reduction
            return
        metrics = evaluate(model, tokenizer, world, val_subset, temperature=0.0)
        metrics["loss"] = teacher_forced_loss(model, val_subset, pad_id)
        log.log(step, metrics, split="val")
        bar.set_postfix(val_loss=f"{metrics['loss']:.3f}", val_acc=f"{metrics.get('accuracy', float('nan')):.3f}")

    def out_of_time() -> bool:
        return cfg.max_seconds > 0 and elapsed >= cfg.max_seconds

    model.train()
    bar = stage_bar(f"mle {stage_dir.name}", cfg.steps, cfg.max_seconds, step,
                    disable=not progress or not dist.is_main())
    window_tokens, window_start = 0, time.perf_counter()
    while step < cfg.steps and not out_of_time():
        t0 = time.perf_counter()
        batch = mle_batch(train, by_length, cfg.batch_size, seed, step, pad_id)
        lr = cfg.lr * lr_factor(step, elapsed, steps=cfg.steps, max_seconds=cfg.max_seconds,
                                warmup_steps=cfg.warmup_steps, min_ratio=cfg.min_lr_ratio)
        set_lr(optimizer, lr)
        loss, grad_norm, updated = mle_step(model, optimizer, guard, batch, cfg.grad_clip)
        if not updated:  # the loss was not finite
            log.log(step + 1, {"nonfinite_loss": 1, "nonfinite_total": guard.total})
        step += 1
        # Ranks must agree on the clock: it sets the LR schedule and, with max_seconds, the end.
        elapsed += dist.max_over_ranks(time.perf_counter() - t0)
        window_tokens += int(batch["attention_mask"].sum())  # real tokens only, not padding
        bar.update(1)
        if step % cfg.log_every == 0:
            now = time.perf_counter()
            # Under torchrun: the global batch's loss and every rank's tokens.
            sums = dist.sum_over_ranks({"loss": loss.item(), "tokens": window_tokens})
            log.log(step, {"loss": sums["loss"], "lr": lr, "grad_norm": grad_norm,
                           "tokens_per_s": sums["tokens"] / max(now - window_start, 1e-9), "elapsed_s": elapsed})
            window_tokens, window_start = 0, now
            bar.set_postfix(loss=f"{sums['loss']:.3f}")
        if cfg.eval_every and step % cfg.eval_every == 0:
            validate()
        if cfg.save_every and step % cfg.save_every == 0:
            _save(stage_dir, step, model, tokenizer, optimizer, {"elapsed": elapsed, "seed": seed})
    bar.close()
    if not cfg.eval_every or step % cfg.eval_every:
        validate()
    _save(stage_dir, step, model, tokenizer, optimizer, {"elapsed": elapsed, "seed": seed})
    if dist.is_main():
        save_final(stage_dir, model, tokenizer)
    dist.barrier()  # every rank returns once `final` exists
    log.close()
    return model


def _save(stage_dir: Path, step: int, model, tokenizer, optimizer, state: dict) -> None:
    """A checkpoint written by rank 0 alone (the replicas are identical), never of broken weights."""
    if dist.is_main() and parameters_finite(model):
        save_checkpoint(stage_dir, step, model, tokenizer, optimizer, state)
    dist.barrier()
