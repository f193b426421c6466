"""Decode a world model's predictions on held-out examples and score them with the world's metrics."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from tqdm.auto import tqdm

from rlvr_world.rl.rollout import sample
from rlvr_world.sequence import Example


def evenly_spaced(items: list, k: int) -> list:
    """`k` of `items`, spread evenly over them in order (all of them when k <= 0 or k >= len).

    Splits are stored task by task, so their first k items would cover only the first tasks;
    the middle item of each of k equal stretches covers every part of the split in proportion.
    """
    n = len(items)
    if k <= 0 or k >= n:
        return list(items)
    return [items[(2 * i + 1) * n // (2 * k)] for i in range(k)]


def paired_mean_difference(a: list[float], b: list[float], z: float = 1.96) -> dict:
    """Mean of `a` minus mean of `b` over the same examples, with a 95% interval.

    Two models scored on the same held-out examples are paired, so the interval is that of the
    mean per-example difference: d +- z * s_d / sqrt(n), s_d the differences' sample std.
    `a_better` / `b_better` count the examples where one scores higher.
    """
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same examples, got {len(a)} and {len(b)}")
    n = len(a)
    diffs = [x - y for x, y in zip(a, b)]
    d = sum(diffs) / n if n else math.nan
    sd = math.sqrt(sum((x - d) ** 2 for x in diffs) / (n - 1)) if n > 1 else math.nan
    half = z * sd / math.sqrt(n) if n > 1 else math.nan
    return {"difference": d, "ci95": [d - half, d + half], "a_better": sum(x > 0 for x in diffs),
            "b_better": sum(x < 0 for x in diffs), "n": n}


def paired_evaluations(evals: dict[str, dict], pairs: list[tuple[str, str]]) -> dict:
    """For each (a, b): `paired_mean_difference` of the two evaluations' per-example rewards,
    greedy and sampled; pairs whose files lack per-example scores or differ in examples are left out."""
    out = {}
    for a, b in pairs:
        ea, eb = evals.get(a, {}), evals.get(b, {})
        pa, pb = ea.get("per_example"), eb.get("per_example")
        if not pa or not pb or pa["reward"] != pb["reward"] or ea.get("split") != eb.get("split"):
            continue
        if len(pa["greedy"]) != len(pb["greedy"]):
            continue
        out[f"{a} - {b}"] = {"reward": pa["reward"],
                             **{mode: paired_mean_difference(pa[mode], pb[mode]) for mode in ("greedy", "sampled")}}
    return out


def predict(
    model, tokenizer, world, examples: list[Example], *, batch_size: int = 64, temperature: float = 0.0,
    top_k: int = 0, seed: int = 0, progress: bool = False,
) -> tuple[list[Any], list[list[int]], dict]:
    """One response per example (greedy when temperature is 0; `top_k` > 0 samples from the k
    most likely tokens only).

    Returns (predictions, response token ids, stats). A response cut at its length limit
    without EOS is scored as wrong: its prediction is None.
    """
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].prompt_ids))  # less padding
    predictions: list[Any] = [None] * len(examples)
    responses: list[list[int]] = [[] for _ in examples]
    generator = torch.Generator().manual_seed(seed)
    truncated = tokens = 0
    start = time.perf_counter()
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="predict", disable=not progress, leave=False):
        rollout = sample(
            model, [examples[i].prompt_ids for i in batch], [examples[i].plan for i in batch],
            eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
            temperature=temperature, top_k=top_k, generator=generator,
        )
        tokens += rollout.num_generated_tokens
        kept = []
        for row, (i, ids) in enumerate(zip(batch, rollout.responses())):
            responses[i] = ids
            if rollout.truncated[row]:
                truncated += 1
            else:
                kept.append(i)
        for i, pred in zip(kept, world.decode_batch([responses[i] for i in kept], tokenizer, [examples[i] for i in kept])):
            predictions[i] = pred
    seconds = time.perf_counter() - start
    stats = {"truncated_rate": truncated / max(1, len(examples)), "generated_tokens": tokens,
             "tokens_per_s": tokens / max(seconds, 1e-9)}
    return predictions, responses, stats


def evaluate(model, tokenizer, world, examples: list[Example], **kwargs) -> dict:
    """World metrics of one decoding pass, plus truncation rate and sampler speed."""
    predictions, _, stats = predict(model, tokenizer, world, examples, **kwargs)
    return {**world.metrics(predictions, examples), **stats, **world.stats()}


def logit_batches(examples: list[Example], vocab_size: int, max_logits: int) -> list[list[Example]]:
    """Consecutive examples grouped so that each batch's logits (rows x longest x vocab) stay
    within `max_logits` floats; an example longer than that is a batch of its own."""
    batches, rows, longest = [], [], 0
    for ex in examples:
        n = len(ex.prompt_ids) + len(ex.target_ids)
        if rows and (len(rows) + 1) * max(longest, n) * vocab_size > max_logits:
            batches.append(rows)
            rows, longest = [], 0
        rows.append(ex)
        longest = max(longest, n)
    return batches + [rows] if rows else batches


@torch.no_grad()
def teacher_forced_loss(model, examples: list[Example], pad_id: int, max_logits: int = 2**27) -> float:
    """Mean cross-entropy per response token under teacher forcing.

    Batches are sized by their logits, not rows: with a 49k vocabulary (SmolLM2) 64 rows of 640
    tokens are 8 GB of logits, and the loss makes two more copies. 2**27 floats is 512 MB."""
    from rlvr_world.mle import collate
    from rlvr_world.models.lm import model_device

    was_training = model.training
    model.eval()
    device = model_device(model)
    total = count = 0.0
    for rows in logit_batches(examples, model.config.vocab_size, max_logits):
        batch = collate(rows, pad_id)
        n = int((batch["labels"][:, 1:] != -100).sum())
        total += float(model(**{k: v.to(device) for k, v in batch.items()}).loss) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)
