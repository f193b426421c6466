"""The GRPO loop: sample a group per prompt, score with a verifiable reward, update.

One step:
  1. draw `prompts_per_step` training prompts (reproducibly from (seed, step));
  2. sample `group_size` responses each (`rollout.sample`, KV cache shared per prompt);
  3. decode every response with the world's codec and score it against the ground truth;
     a response cut at its length limit without EOS scores as a wrong (None) prediction;
  4. group-normalised advantages (`grpo.compute_advantages`), optionally dropping groups
     whose rewards have (near) zero variance; with `sampling_rounds` > 1, steps 1-4 repeat on
     fresh prompts until `prompts_per_step` groups have differing rewards (DAPO's dynamic
     sampling); with `target_in_group`, each group's last response is the ground truth
     (off-policy guidance), scored and trained on like a sample;
  5. reference log-probs of the frozen start model in one no-grad pass (if kl_coef > 0);
  6. `ppo_epochs` x `minibatches` clipped-ratio updates. The sampler's own log-probs serve
     as the "old" log-probs: they come from the same weights before any update.

The loop knows nothing about the modality: prompts, plans and targets come from `Example`s,
predictions from `world.decode`, scores from the reward spec.

Under torchrun the step is data-parallel: each rank samples and trains on a share of the
prompts and the update is the one-process update on the global batch (`rlvr_world.distributed`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rlvr_world import distributed as dist
from rlvr_world.checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint, save_final
from rlvr_world.config import RLConfig
from rlvr_world.eval.evaluate import evaluate, evenly_spaced
from rlvr_world.models.lm import load_model, model_device
from rlvr_world.rewards import WeightedReward
from rlvr_world.rl import grpo
from rlvr_world.rl.rollout import (Rollout, concat_rollouts, replace_last_in_groups, response_logprobs, sample,
                                  target_rows)
from rlvr_world.runlog import RunLog
from rlvr_world.sequence import Example, plan_length
from rlvr_world.training import NonFiniteGuard, make_optimizer, parameters_finite, set_lr, stage_bar, step_rng


def draw_prompts(examples: list[Example], n: int, rng: np.random.Generator, key: str, fraction: float) -> list[int]:
    """Indices of `n` prompts; with `fraction` > 0, that share has `meta[key]` true."""
    if not key or fraction <= 0:
        return rng.choice(len(examples), size=min(n, len(examples)), replace=False).tolist()
    flagged = [i for i, ex in enumerate(examples) if ex.meta.get(key)]
    other = [i for i, ex in enumerate(examples) if not ex.meta.get(key)]
    n_flagged = min(len(flagged), round(n * fraction))
    picks = rng.choice(flagged, size=n_flagged, replace=False).tolist() if n_flagged else []
    rest = min(len(other), n - n_flagged)
    return picks + (rng.choice(other, size=rest, replace=False).tolist() if rest else [])


class GRPOTrainer:
    """Holds the policy, the frozen reference and the optimizer; `train()` runs the loop."""

    def __init__(self, model, tokenizer, world, train: list[Example], val: list[Example], cfg: RLConfig,
                 stage_dir: Path, seed: int = 0, progress: bool = True):
        self.stage_dir = Path(stage_dir)
        self.cfg, self.world, self.tokenizer, self.seed = cfg, world, tokenizer, seed
        self.train_examples, self.val_examples = train, evenly_spaced(val, cfg.eval_examples)
        self.reward = WeightedReward.parse(cfg.reward or world.default_reward)
        names = [name for name, _ in self.reward.terms]
        unknown = [name for name in cfg.dense_rewards if name not in names]
        if unknown or (cfg.dense_rewards and cfg.advantage != "gdpo"):
            raise ValueError(f"rlvr.dense_rewards {list(cfg.dense_rewards)} must name terms of the reward "
                             f"{cfg.reward or world.default_reward!r} and needs rlvr.advantage gdpo "
                             f"(got {cfg.advantage!r})")
        self.dense_terms = {names.index(name): name for name in cfg.dense_rewards}
        if cfg.sampling_rounds < 1:
            raise ValueError(f"rlvr.sampling_rounds must be at least 1 (1 = no dynamic sampling), got {cfg.sampling_rounds}")
        self.reward_weights = torch.tensor(self.reward.weights, dtype=torch.float32)
        self.progress = progress
        self.step, self.elapsed = 0, 0.0
        dist.init()  # under torchrun: join the process group (nothing in one process)
        if min(cfg.prompts_per_step, len(train)) < dist.world_size():
            raise ValueError(f"{dist.world_size()} ranks need at least as many prompts per step, "
                             f"got {min(cfg.prompts_per_step, len(train))}")
        dist.broadcast_parameters(model)  # the replicas start from rank 0's weights
        ckpt = latest_checkpoint(self.stage_dir)
        # The reference is the start model, frozen; on resume it is reloaded from the start folder.
        self.reference = None
        if cfg.kl_coef > 0:
            self.reference = _frozen_copy(model)
        if ckpt is not None:
            model = load_model(ckpt / "model")[0].to(model_device(model))
        self.model = model
        self.optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
        self.resumed = ckpt is not None
        if ckpt is not None:
            state = load_trainer_state(ckpt, self.optimizer)
            self.step, self.elapsed = state["step"], state["elapsed"]
        self.log = RunLog(self.stage_dir, resume_step=self.step if self.resumed else None) if dist.is_main() else dist.NullLog()
        self.guard = NonFiniteGuard(cfg.max_consecutive_nan)

    def done(self) -> bool:
        return self.step >= self.cfg.steps or (self.cfg.max_seconds > 0 and self.elapsed >= self.cfg.max_seconds)

    def train(self):
        cfg = self.cfg
        if self.resumed and self.done() and (self.stage_dir / "final").exists():
            return self.model
        bar = stage_bar(f"rlvr {self.stage_dir.name}", cfg.steps, cfg.max_seconds, self.step,
                        disable=not self.progress or not dist.is_main())
        if self.step == 0:
            self.validate()
        while not self.done():
            t0 = time.perf_counter()
            metrics = self.train_step()
            self.step += 1
            # Ranks must agree on the clock, or on max_seconds one would stop while the others wait for it.
            self.elapsed += dist.max_over_ranks(time.perf_counter() - t0)
            metrics["elapsed_s"] = self.elapsed
            bar.update(1)
            bar.set_postfix(reward=f"{metrics['reward_mean']:.3f}", kl=f"{metrics.get('kl', 0):.4f}")
            if self.step % cfg.log_every == 0:
                self.log.log(self.step, metrics)
            if cfg.eval_every and self.step % cfg.eval_every == 0:
                self.validate()
            if cfg.save_every and self.step % cfg.save_every == 0:
                self.save()
        bar.close()
        if not cfg.eval_every or self.step % cfg.eval_every:
            self.validate()
        self.save()
        if dist.is_main():
            save_final(self.stage_dir, self.model, self.tokenizer)
        dist.barrier()  # every rank returns once `final` exists
        self.log.close()
        return self.model

    def validate(self) -> None:
        if not dist.is_main():  # rank 0 validates; the others wait for it at the next step's reduction
            return
        metrics = evaluate(self.model, self.tokenizer, self.world, self.val_examples, temperature=0.0)
        self.log.log(self.step, metrics, split="val")

    def save(self) -> None:
        # Only rank 0 writes (the replicas are identical); the others wait until the checkpoint is complete.
        if dist.is_main() and parameters_finite(self.model):  # never overwrite a usable checkpoint with broken weights
            save_checkpoint(self.stage_dir, self.step, self.model, self.tokenizer, self.optimizer,
                            {"elapsed": self.elapsed, "seed": self.seed})
        dist.barrier()

    def _dense_advantages(self, rollout, responses, predictions, targets, terms, weights, start: int,
                          total: int) -> torch.Tensor:
        """GDPO advantages [total, R] with `dense_terms` scored per response token by the world;
        this rank's rows are start .. start + len(predictions)."""
        width = rollout.response_ids.size(1)
        global_width = int(dist.max_over_ranks(width))  # the ranks' rollouts may differ in width

        def assembled(x: torch.Tensor) -> torch.Tensor:
            return dist.assemble(F.pad(x.float(), (0, global_width - width)), start, total)

        dense = {k: assembled(torch.from_numpy(self.world.token_scores(name, responses, predictions, targets, width,
                                                                       self.tokenizer)))
                 for k, name in self.dense_terms.items()}
        return grpo.dense_gdpo_advantages(terms, weights, self.cfg.group_size, dense, assembled(rollout.loss_mask),
                                          self.cfg.zero_variance_eps, aligned=self.world.aligned_responses)

    def _sample_round(self, round_: int) -> "_Round":
        """Draw `prompts_per_step` prompts, sample a group for each prompt of this rank's share and score it.

        Round 0 draws with the plain step's streams; the extra rounds of dynamic sampling with
        streams of their own, so a run with `sampling_rounds` 1 is unchanged by the option.
        """
        cfg, G = self.cfg, self.cfg.group_size
        t0 = time.perf_counter()
        prompt_stream, noise_stream = (0, 1) if round_ == 0 else (1000 + 2 * round_, 1001 + 2 * round_)
        rng = step_rng(self.seed, self.step, prompt_stream)
        idx = draw_prompts(self.train_examples, cfg.prompts_per_step, rng, cfg.oversample_key, cfg.oversample_fraction)
        # Under torchrun every rank draws the same prompts and samples its contiguous share [lo, hi).
        lo, hi = dist.shard_range(len(idx))
        examples = [self.train_examples[i] for i in idx[lo:hi]]
        rollout = sample(
            self.model, [ex.prompt_ids for ex in examples], [ex.plan for ex in examples],
            eos_id=self.tokenizer.eos_token_id, pad_id=self.tokenizer.pad_token_id, group_size=G,
            temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
            generator=dist.shard_generator(self.seed, self.step, stream=noise_stream),
        )
        guided = torch.zeros(len(examples) * G, dtype=torch.bool)  # this rank's rows that are ground truth
        if cfg.target_in_group:
            rollout, guided = self._with_targets(rollout, examples)
        rollout_s, t = time.perf_counter() - t0, time.perf_counter()
        responses = rollout.responses()
        truncated = rollout.truncated.tolist()
        answered = [ex for ex in examples for _ in range(G)]  # the example each response answers
        decoded = iter(self.world.decode_batch([r for r, cut in zip(responses, truncated) if not cut], self.tokenizer,
                                               [ex for ex, cut in zip(answered, truncated) if not cut]))
        predictions = [None if cut else next(decoded) for cut in truncated]
        targets = [ex.target for ex in answered]
        term_rows, reward_errors = self.reward.score_terms(predictions, targets)
        # Every rank holds the global reward vector: advantages and kept groups are those of one process.
        rewards = dist.assemble(torch.tensor([self.reward.combine(r) for r in term_rows], dtype=torch.float32),
                                lo * G, len(idx) * G)
        terms = dist.assemble(torch.tensor(term_rows, dtype=torch.float32), lo * G, len(idx) * G)
        if self.dense_terms:  # [N*G, R]: one advantage per response token
            advantages = self._dense_advantages(rollout, responses, predictions, targets, terms, self.reward_weights,
                                                lo * G, len(idx) * G)
        else:
            advantages = grpo.compute_advantages(cfg.advantage, rewards, G, cfg.zero_variance_eps, terms=terms,
                                                 weights=self.reward_weights)
        # The global mask; without guidance it is all False and needs no exchange between ranks.
        guided = (dist.assemble(guided.float(), lo * G, len(idx) * G).bool() if cfg.target_in_group
                  else torch.zeros(len(idx) * G, dtype=torch.bool))
        return _Round(len(idx), rollout, rewards, terms, advantages, reward_errors, rollout_s,
                      time.perf_counter() - t, guided)

    def _with_targets(self, rollout: Rollout, examples: list[Example]) -> tuple[Rollout, torch.Tensor]:
        """Off-policy guidance: each group's last sample gives way to its ground-truth response
        (where that fits the plan). Its "old" log-probs are the current policy's, as a sample's
        are, so the first update's ratio is 1. Returns the rollout and which rows are targets.

        The sampler still draws G per group, one of them to be replaced: a group whose target is
        too long for the plan keeps its G-th sample, with no second sampling pass for it."""
        G = self.cfg.group_size
        fits = torch.tensor([len(ex.target_ids) <= plan_length(ex.plan) for ex in examples])
        if not fits.any():
            return rollout, torch.zeros(len(examples) * G, dtype=torch.bool)
        # A target too long for the plan stays an empty row: it is not used, so not scored either.
        targets = target_rows([ex.prompt_ids for ex in examples],
                              [ex.target_ids if fit else [] for ex, fit in zip(examples, fits.tolist())],
                              [ex.plan for ex in examples], self.tokenizer.pad_token_id, rollout.vocab_range,
                              device=rollout.response_ids.device)
        was_training = self.model.training
        self.model.eval()  # as the sampler scored its samples
        with torch.no_grad():
            targets.logprobs = response_logprobs(self.model, targets, self.cfg.temperature)[0] * targets.loss_mask
        self.model.train(was_training)
        guided = torch.zeros(len(examples), G, dtype=torch.bool)
        guided[:, -1] = fits
        return replace_last_in_groups(rollout, targets, fits, self.tokenizer.pad_token_id), guided.flatten()

    def train_step(self) -> dict:
        cfg, G = self.cfg, self.cfg.group_size
        timings = {"time_rollout_s": 0.0, "time_reward_s": 0.0}
        rounds: list[_Round] = []
        informative = 0
        # Dynamic sampling (DAPO): while fewer than prompts_per_step groups have reward variance,
        # draw another batch of prompts; tied groups carry no GRPO signal.
        while len(rounds) < cfg.sampling_rounds and (not rounds or informative < cfg.prompts_per_step):
            rounds.append(self._sample_round(len(rounds)))
            timings["time_rollout_s"] += rounds[-1].rollout_s
            timings["time_reward_s"] += rounds[-1].reward_s
            tied = grpo.zero_variance_groups(rounds[-1].rewards, G, cfg.zero_variance_eps).view(-1, G)[:, 0]
            informative += int((~tied).sum())
        t = time.perf_counter()
        rollout, rewards, terms, advantages, guided, lo = _joined(rounds, self.tokenizer.pad_token_id, G)
        hi = lo + rollout.prompt_ids.size(0) // G
        reward_errors = sum(r.reward_errors for r in rounds)
        zero_var = grpo.zero_variance_groups(rewards, G, cfg.zero_variance_eps)
        keep = ~zero_var if cfg.drop_zero_variance else torch.ones_like(zero_var)
        # `keep` is constant within a group, so whole groups survive and their prompts can be
        # encoded once per group in the reference and policy passes.
        groups = keep.view(-1, G)[:, 0].nonzero().squeeze(-1)
        mine = groups[(groups >= lo) & (groups < hi)]  # the kept groups this rank sampled
        timings["time_reward_s"] += time.perf_counter() - t

        own = ~guided[lo * G: hi * G].to(rollout.truncated.device)  # this rank's sampled rows
        counts = dist.sum_over_ranks({"reward_errors": reward_errors, "truncated": int(rollout.truncated[own].sum()),
                                      "generated": int(rollout.loss_mask[own].sum())})
        sampled = rewards[~guided]  # the policy's own responses; the ground truth's scores apart
        metrics = {
            "reward_mean": float(sampled.mean()), "reward_std": float(sampled.std()) if len(sampled) > 1 else 0.0,
            "zero_variance_frac": float(zero_var.float().mean()), "reward_errors": int(counts["reward_errors"]),
            "truncated_frac": counts["truncated"] / len(sampled), "response_len": counts["generated"] / len(sampled),
            "prompts_updated": len(groups), "sampling_rounds": len(rounds), **self.world.stats(),  # world counters: rank 0's
        }
        if guided.any():
            metrics.update(target_reward=float(rewards[guided].mean()), guided_frac=float(guided.float().mean()))
        if terms.size(1) > 1:  # each term's mean, unweighted: which one the update is moving
            metrics.update({f"reward_{name}": float(terms[:, k].mean()) for k, (name, _) in enumerate(self.reward.terms)})
        if len(groups) == 0:  # every group tied: no learning signal this step
            metrics.update(timings, skipped=1)
            return metrics
        offsets = torch.arange(G)
        batch = rollout.select(((mine - lo)[:, None] * G + offsets).flatten(), group_size=G).trimmed()
        adv = advantages.view(-1, G, *advantages.shape[1:])[mine].flatten(0, 1)  # [rows] or [rows, R]
        adv = (adv[:, : batch.response_ids.size(1)] if adv.dim() == 2 else adv).to(model_device(self.model))
        first = int((groups < lo).sum())  # position of this rank's first kept group in `groups`
        max_len = int(dist.max_over_ranks(batch.response_ids.size(1)))  # Dr. GRPO's length: the global batch's width

        t = time.perf_counter()
        ref_logprobs = None
        if self.reference is not None:
            with torch.no_grad():
                ref_logprobs, _ = _response_logprobs(self.reference, batch, cfg.temperature, group_size=G)
        timings["time_reference_s"] = time.perf_counter() - t

        t = time.perf_counter()
        stats_sum: dict[str, float] = {}
        updates = 0
        lr = cfg.lr * min(1.0, (self.step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
        set_lr(self.optimizer, lr)
        self.model.train()
        for epoch in range(cfg.ppo_epochs):
            order = torch.from_numpy(step_rng(self.seed, self.step, stream=2 + epoch).permutation(len(groups)))
            for mb_groups in order.chunk(cfg.minibatches):
                # Positions in `groups`; this rank trains on those it holds, at their positions in `batch`.
                mb_groups = mb_groups[(mb_groups >= first) & (mb_groups < first + len(mine))] - first
                mb = (mb_groups[:, None] * G + offsets).flatten()
                part = batch.select(mb, group_size=G)
                logprobs, entropy = _response_logprobs(self.model, part, cfg.temperature, with_entropy=True,
                                                       group_size=G, entropy_grad=cfg.entropy_coef != 0)
                loss, stats = grpo.grpo_loss(
                    logprobs, part.logprobs, None if ref_logprobs is None else ref_logprobs[mb], adv[mb],
                    part.loss_mask, clip_low=cfg.clip_low, clip_high=cfg.clip_high, kl_coef=cfg.kl_coef,
                    kl_estimator=cfg.kl_estimator, entropy=entropy, entropy_coef=cfg.entropy_coef, agg=cfg.loss_agg,
                    max_len=max_len,
                )
                if dist.enabled():  # this rank's share of the global minibatch's loss, and the global stats
                    tokens = grpo.aggregation_units(part.loss_mask, "token-mean")
                    loss, stats = dist.global_mean(loss, stats, grpo.aggregation_units(part.loss_mask, cfg.loss_agg),
                                                   {"clip_fraction": tokens, "ratio_mean": tokens})
                if not self.guard.ok(loss):
                    metrics["nonfinite_loss"] = metrics.get("nonfinite_loss", 0) + 1
                    self.optimizer.zero_grad(set_to_none=True)
                    continue
                loss.backward()
                dist.all_reduce_gradients(self.model.parameters())  # summed: the global loss's gradient
                stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                updates += 1
                for k, v in stats.items():
                    stats_sum[k] = stats_sum.get(k, 0.0) + float(v)
        timings["time_update_s"] = time.perf_counter() - t
        metrics.update({k: v / max(updates, 1) for k, v in stats_sum.items()})
        total = sum(timings.values())
        metrics.update(timings, lr=lr, updates=updates,
                       tokens_per_s=counts["generated"] / max(total, 1e-9),
                       samples_per_s=len(sampled) / max(total, 1e-9))
        return metrics


@dataclass
class _Round:
    """One draw of prompts: this rank's rollout, and the global rewards and advantages (prompt order)."""

    prompts: int
    rollout: Rollout
    rewards: torch.Tensor  # [prompts * G]
    terms: torch.Tensor  # [prompts * G, reward terms]
    advantages: torch.Tensor  # [prompts * G] or [prompts * G, R] (dense)
    reward_errors: int
    rollout_s: float
    reward_s: float
    guided: torch.Tensor  # [prompts * G] bool: the row is the ground truth, not a sample (target_in_group)


def _joined(rounds: list[_Round], pad_id: int, G: int):
    """The rounds of a step as one batch: (this rank's rollout, global rewards, terms, advantages,
    guided rows, this rank's first group).

    Global rows are ordered rank-major (rank 0's share of every round, then rank 1's, ...), so
    each rank's groups stay one contiguous range, as the update expects. In one process that is
    the rounds in order.
    """
    if len(rounds) == 1:
        r = rounds[0]
        return r.rollout, r.rewards, r.terms, r.advantages, r.guided, dist.shard_range(r.prompts)[0]
    rows, first = [], 0
    for k in range(dist.world_size()):
        offset = 0
        for r in rounds:
            lo, hi = dist.shard_range(r.prompts, k)
            rows.append(torch.arange(offset + lo * G, offset + hi * G))
            offset += r.prompts * G
            first += (hi - lo) if k < dist.rank() else 0
    order = torch.cat(rows)
    width = max(r.advantages.size(1) for r in rounds) if rounds[0].advantages.dim() == 2 else 0
    padded = [F.pad(r.advantages, (0, width - r.advantages.size(1))) if width else r.advantages for r in rounds]
    return (concat_rollouts([r.rollout for r in rounds], pad_id), torch.cat([r.rewards for r in rounds])[order],
            torch.cat([r.terms for r in rounds])[order], torch.cat(padded)[order],
            torch.cat([r.guided for r in rounds])[order], first)


def _response_logprobs(model, part, temperature: float, **kwargs):
    """`response_logprobs`, also for a rank that holds no row of `part`: empty [0, R] tensors
    that still enter the loss and the reductions with the other ranks."""
    if len(part.response_ids) == 0:
        empty = part.logprobs.clone().requires_grad_()
        return empty, empty if kwargs.get("with_entropy") else None
    return response_logprobs(model, part, temperature, **kwargs)


def _frozen_copy(model):
    import copy

    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref
