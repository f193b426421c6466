"""Our GRPO step against TRL's `GRPOTrainer`, side by side on the same work.

Both sides train the same model from the same weights on the same real TextWorld training
prompts (identical token ids), with the same group size, prompts per step, response length,
KL coefficient, clip range, learning rate and optimizer, in fp32 on CPU, with one policy
update per rollout batch:

  * ours: `rlvr_world.rl.trainer.GRPOTrainer.train_step`, exactly as `rlvr-world rlvr` runs
    it (reference = deep copy of the start model), timed as `benchmarks/bench_grpo.py` does;
  * TRL: `trl.GRPOTrainer.train()` with num_iterations=1, steps_per_generation=1,
    gradient_accumulation_steps=1 and per_device_train_batch_size = prompts x group_size,
    so one optimizer step consumes exactly one generation batch (TRL then skips its "old
    log-probs" pass, as we do: both take the ratio against the sampling policy).

Every completion has exactly `--response-len` L tokens on both sides, so the work does not
depend on sampling luck: ours samples with the plan `(Generate(L, stop_at_eos=False),)`;
TRL generates with max_completion_length=L and min_new_tokens=L (EOS is masked until L
tokens exist; checked every step). Both score a completion with the world's default reward
(binary exact match of the decoded state difference, decoding stops at the first EOS), and
ours keeps zero-variance groups (drop_zero_variance=false) because TRL always updates on
every row.

Phases. Ours reports them itself (rollout, reward, reference, update). TRL is timed by a
subclass of its trainer that wraps its own methods and calls them unchanged:

    rollout    `_generate` (prompt tokenisation + `model.generate` + decoding);
               `model.generate` alone is recorded too (generate_s in the JSON steps)
    reward     `_calculate_rewards` (our reward function inside TRL's plumbing)
    reference  `_get_per_token_logps_and_entropies` called with the reference model under no_grad
    update     `compute_loss` (policy forward + loss) + `accelerator.backward`
               + from `_clip_grad_norm` to on_step_end (clip, optimizer.step, scheduler, zero_grad)
    step       on_step_begin -> on_step_end of a TrainerCallback; "other" = step - phases
               (padding, advantages, batch shuffling, metric bookkeeping)

Each block of `--warmup` + `--steps` steps runs in its own fresh process (this script with
--worker), ours and TRL alternating pair by pair; only the time inside the block counts, not
process start-up or trainer construction. The two sides of a pair see the same prompts;
different pairs see different prompts. Per side, medians are over all timed steps of all
pairs; the ratio ours/TRL of prompts/s is the median of the per-pair ratios. Peak RSS is the
worker's `ru_maxrss`.

    pip install -e '.[bench]'
    python benchmarks/bench_vs_trl.py --models trained --json benchmarks/results/grpo_vs_trl.json
    python benchmarks/bench_vs_trl.py --models tiny --prompts 2 --group-size 2 --response-len 4 --pairs 1 --steps 1
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import rlvr_world  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before anything imports torch)

from common import command_line, describe, machine, markdown_table, median, peak_rss_mb, set_threads, today, write_json

PHASES = ("time_rollout_s", "time_reward_s", "time_reference_s", "time_update_s")
BENCH_DEPS = ("trl", "accelerate", "datasets")

COLUMNS = [
    ("model", "model", ""),
    ("parameters_m", "params M", ".1f"),
    ("batch", "prompts x G x L", ""),
    ("ours_prompts_per_s", "ours prompts/s", ".2f"),
    ("trl_prompts_per_s", "TRL prompts/s", ".2f"),
    ("ratio_prompts_per_s", "ours/TRL", ".2f"),
    ("ours_tokens_per_s", "ours gen tok/s", ".0f"),
    ("trl_tokens_per_s", "TRL gen tok/s", ".0f"),
    ("ours_step_s", "ours step s", ".2f"),
    ("trl_step_s", "TRL step s", ".2f"),
    ("ours_time_rollout_s", "ours rollout s", ".2f"),
    ("trl_time_rollout_s", "TRL rollout s", ".2f"),
    ("ours_time_reward_s", "ours reward s", ".3f"),
    ("trl_time_reward_s", "TRL reward s", ".3f"),
    ("ours_time_reference_s", "ours reference s", ".2f"),
    ("trl_time_reference_s", "TRL reference s", ".2f"),
    ("ours_time_update_s", "ours update s", ".2f"),
    ("trl_time_update_s", "TRL update s", ".2f"),
    ("trl_time_other_s", "TRL other s", ".2f"),
    ("ours_peak_rss_mb", "ours peak RSS MB", ".0f"),
    ("trl_peak_rss_mb", "TRL peak RSS MB", ".0f"),
]

DESCRIPTION = (
    "One GRPO step of this project's trainer (`GRPOTrainer.train_step`) against TRL's `GRPOTrainer` "
    "on identical work: the same model and start weights, the same real TextWorld training prompts "
    "(identical token ids), prompts x G completions of exactly L tokens each (EOS does not stop "
    "generation on either side), the same binary reward, KL coefficient, clip range, learning rate, "
    "AdamW settings, fp32 on CPU, and one optimizer step per rollout batch (TRL: num_iterations=1, "
    "steps_per_generation=1). Each side runs blocks of warm-up + timed steps in its own fresh process, "
    "ours and TRL alternating pair by pair. prompts/s = prompts per step / median step time; gen tok/s "
    "= generated tokens / step time; the phase columns are medians of seconds per step: rollout "
    "(sampling; TRL's includes prompt tokenisation and completion decoding), reward (decode + score), "
    "reference (no-grad log-probs of the frozen start model), update (policy forward with grad, loss, "
    "backward, clipping, optimizer step); TRL other = step time not in those phases (padding, "
    "advantages, batch shuffling, metric bookkeeping). ours/TRL is the median over pairs of the "
    "per-pair ratio of prompts/s (> 1: ours is faster). Peak RSS is each worker process's maximum "
    "resident memory (ru_maxrss), imports included."
)

NOTES = [
    "Both sides generate exactly L tokens per completion. Ours samples freely and keeps going after "
    "an EOS (plan Generate(L, stop_at_eos=False)); TRL is given min_new_tokens=L, which masks EOS "
    "until L tokens exist, so its completions never contain EOS and its rewards are mostly 0 while "
    "ours are the model's real rewards. The reward values therefore differ; the work does not (ours "
    "keeps zero-variance groups, TRL always updates on every row).",
    "TRL encodes each prompt G times (in generate and in the reference and policy passes); ours "
    "encodes it once per group and shares its KV cache. That difference is part of what is measured.",
    "Neither side runs a separate pass for the 'old' log-probs: ours uses the sampler's log-probs, "
    "TRL (num_iterations=1, steps_per_generation=1) uses the detached current log-probs.",
    "TRL defaults changed to match ours: activation (gradient) checkpointing off, bf16=False, "
    "optim=adamw_torch (unfused) with betas (0.9, 0.95), loss_type=dapo (= our token-mean), "
    "scale_rewards=group (= our grpo advantage), constant learning rate, logging and saving off.",
    "TRL's rollout phase is its `_generate` (tokenising the prompt text, `model.generate`, decoding); "
    "`model.generate` alone is in the JSON steps as time_generate_s. TRL's update phase is "
    "compute_loss + accelerator.backward + clip/optimizer.step/scheduler/zero_grad; TRL other is the "
    "rest of the step (padding, advantages, shuffling and splitting the batch, metrics).",
    "Peak RSS includes everything each worker imported (TRL's worker also loads trl, accelerate, "
    "datasets, pandas and pyarrow) and both the policy and the reference model on each side.",
    "CPU wall-clock on a possibly shared machine (the load average at the start is in the machine line); "
    "alternating the blocks spreads outside load over both sides, the per-pair ratios show how much it moved.",
]


# ----------------------------------------------------------------------------- shared setup


def load_world(run_dir: Path, config: str):
    from rlvr_world import pipeline
    from rlvr_world.config import load_config

    cfg = load_config(config, [f"run_dir={run_dir}"])
    return cfg, pipeline.world_of(cfg)


def fixed_length_examples(cfg, world, tokenizer, response_len: int):
    """Training examples whose plan samples exactly `response_len` tokens (EOS does not stop it)."""
    from rlvr_world import pipeline
    from rlvr_world.sequence import Generate

    plan = (Generate(response_len, stop_at_eos=False),)
    return [dataclasses.replace(ex, plan=plan) for ex in pipeline.examples(cfg, world, tokenizer, "train")]


def prompts_of_step(examples, rl, seed: int, step: int) -> list[int]:
    """The example indices our trainer draws at `step`; TRL is fed the same ones in the same order."""
    from rlvr_world.rl.trainer import draw_prompts
    from rlvr_world.training import step_rng

    return draw_prompts(examples, rl.prompts_per_step, step_rng(seed, step), rl.oversample_key, rl.oversample_fraction)


def rl_config(cfg, spec: dict):
    """Our RL settings for the benchmark: the run's, with the batch shape and the matched options."""
    return dataclasses.replace(
        cfg.rlvr, prompts_per_step=spec["prompts"], group_size=spec["group_size"], kl_coef=spec["kl_coef"],
        drop_zero_variance=False,  # TRL updates on every row; skipping tied groups would be less work
        temperature=1.0, top_k=0, top_p=1.0, ppo_epochs=1, minibatches=1, warmup_steps=0,
        advantage="grpo", loss_agg="token-mean", kl_estimator="k3", entropy_coef=0.0,
    )


def quiet_progress_bars() -> None:
    import transformers

    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars would bury the step lines



def progress_line(label: str, i: int, warmup: int, s: dict) -> str:
    tag = "warm-up" if i < warmup else "timed"
    phases = ", ".join(f"{k[5:-2]} {s[k]:.2f} s" for k in PHASES)
    return (f"  [{label}] step {i} ({tag}): {s['step_s']:.2f} s, {s['generated_tokens']} tokens, {phases}, "
            f"mean reward {s['reward_mean']:.3f}")


# ----------------------------------------------------------------------------- our side


def run_ours(spec: dict) -> dict:
    from bench_grpo import timed_step

    from rlvr_world.models.lm import count_parameters, load_model
    from rlvr_world.rl.trainer import GRPOTrainer
    from rlvr_world.training import set_seed

    cfg, world = load_world(Path(spec["run_dir"]), spec["config"])
    set_seed(cfg.seed)
    model, tokenizer = load_model(spec["model_dir"])
    train = fixed_length_examples(cfg, world, tokenizer, spec["response_len"])
    rl = rl_config(cfg, spec)
    n = spec["warmup"] + spec["steps"]
    steps = []
    with tempfile.TemporaryDirectory(prefix="bench_vs_trl_ours_") as stage_dir:
        trainer = GRPOTrainer(model, tokenizer, world, train, [], rl, Path(stage_dir), seed=cfg.seed, progress=False)
        trainer.step = spec["step_offset"]  # this pair's prompts (the batch of step s depends only on seed and s)
        for i in range(n):
            s = timed_step(trainer)
            s["time_other_s"] = s["step_s"] - sum(s[k] for k in PHASES)
            print(progress_line(spec["label"], i, spec["warmup"], s), flush=True)
            steps.append(s)
        trainer.log.close()
    expected = rl.prompts_per_step * rl.group_size * spec["response_len"]
    assert all(s["generated_tokens"] == expected for s in steps), "ours: a completion was not exactly L tokens"
    return {"steps": steps[spec["warmup"]:], "parameters": count_parameters(model)}


# ----------------------------------------------------------------------------- TRL side




def timed_call(record: dict, key: str, fn, *args, **kwargs):
    """fn(*args, **kwargs), adding its wall time to record[key]."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    record[key] = record.get(key, 0.0) + time.perf_counter() - t
    return out


def make_timed_trl_trainer():
    """A `trl.GRPOTrainer` subclass that times TRL's own methods and otherwise changes nothing."""
    import torch
    from trl import GRPOTrainer

    class TimedGRPOTrainer(GRPOTrainer):
        def __init__(self, *args, record: dict, expected_prompt_ids: dict, response_len: int, **kwargs):
            super().__init__(*args, **kwargs)
            self.record, self.expected_prompt_ids, self.response_len = record, expected_prompt_ids, response_len
            generate, backward = self.model.generate, self.accelerator.backward
            self.model.generate = lambda *a, **k: timed_call(record, "time_generate_s", generate, *a, **k)
            self.accelerator.backward = lambda *a, **k: timed_call(record, "time_backward_s", backward, *a, **k)

        def _generate(self, prompts):
            out = timed_call(self.record, "time_rollout_s", super()._generate, prompts)
            self._check_rollout(prompts, prompt_ids=out[0], completion_ids=out[1])
            return out

        def _check_rollout(self, prompts, prompt_ids, completion_ids) -> None:
            """Outside the timed call: TRL saw exactly our prompt ids and produced L tokens per completion."""
            for text, ids in zip(prompts, prompt_ids, strict=True):
                if list(ids) != self.expected_prompt_ids[text]:
                    raise AssertionError("TRL tokenised a prompt into other ids than ours")
            lengths = {len(c) for c in completion_ids}
            if lengths != {self.response_len}:
                raise AssertionError(f"TRL completion lengths {sorted(lengths)}, expected all {self.response_len}")
            self.record["generated_tokens"] = sum(len(c) for c in completion_ids)

        def _calculate_rewards(self, *args, **kwargs):
            return timed_call(self.record, "time_reward_s", super()._calculate_rewards, *args, **kwargs)

        def _get_per_token_logps_and_entropies(self, model, *args, **kwargs):
            if torch.is_grad_enabled():
                key = "time_policy_forward_s"  # inside compute_loss, so already part of the update
            elif model is self.ref_model:
                key = "time_reference_s"
            else:
                key = "time_old_logps_s"  # TRL skips this pass with num_iterations=1, steps_per_generation=1
            return timed_call(self.record, key, super()._get_per_token_logps_and_entropies, model, *args, **kwargs)

        def compute_loss(self, *args, **kwargs):
            return timed_call(self.record, "time_loss_s", super().compute_loss, *args, **kwargs)

        def _clip_grad_norm(self, model):
            # The optimizer part of the update runs from here (clip, step, scheduler, zero_grad) to on_step_end.
            self.record["optimizer_start"] = time.perf_counter()
            return super()._clip_grad_norm(model)

    return TimedGRPOTrainer


TRL_STEP_KEYS = ("time_rollout_s", "time_generate_s", "time_reward_s", "time_reference_s", "time_old_logps_s",
                 "time_loss_s", "time_policy_forward_s", "time_backward_s")


def make_step_timer(record: dict, label: str, warmup: int):
    """A TrainerCallback that turns the record of one optimizer step into a step dict like ours."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.steps, self.t0 = [], 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            record.clear()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            s = {"step_s": now - self.t0, "generated_tokens": record.get("generated_tokens", 0),
                 "reward_mean": record.get("reward_mean", float("nan")),
                 **{k: record.get(k, 0.0) for k in TRL_STEP_KEYS}}
            s["time_optimizer_s"] = now - record["optimizer_start"]
            s["time_update_s"] = s["time_loss_s"] + s["time_backward_s"] + s["time_optimizer_s"]
            s["time_other_s"] = s["step_s"] - sum(s[k] for k in PHASES) - s["time_old_logps_s"]
            print(progress_line(label, len(self.steps), warmup, s), flush=True)
            self.steps.append(s)

    return StepTimer()


def make_trl_reward(world, tokenizer, examples, reward_spec: str, record: dict, order: list[int], group_size: int):
    """Our trainer's reward, called by TRL: decode each completion's ids, score it against its example's target.

    It also checks that step k's rows are our step k's prompts, each repeated group_size times in a row.
    """
    from rlvr_world.rewards import WeightedReward

    reward = WeightedReward.parse(reward_spec)

    def textworld_reward(prompts, completions, completion_ids, example_index, trainer_state, **kwargs):
        rows = len(example_index)
        k = trainer_state.global_step
        step_prompts = order[k * rows // group_size:(k + 1) * rows // group_size]
        if list(example_index) != [i for i in step_prompts for _ in range(group_size)]:
            raise AssertionError(f"TRL step {k} got other prompts than ours")
        predictions = [world.decode(ids, tokenizer) for ids in completion_ids]
        rewards, _ = reward.score(predictions, [examples[i].target for i in example_index])
        record["reward_mean"] = sum(rewards) / len(rewards)
        return rewards

    return textworld_reward


def trl_args(rl, response_len: int, seed: int, output_dir: str, n_steps: int):
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=output_dir, use_cpu=True, report_to=[], bf16=False, fp16=False, seed=seed,
        # one optimizer step per generation batch of prompts x G completions, used once, prompts in our order
        per_device_train_batch_size=rl.prompts_per_step * rl.group_size, gradient_accumulation_steps=1,
        steps_per_generation=1, num_iterations=1, num_generations=rl.group_size, max_steps=n_steps,
        shuffle_dataset=False,
        # exactly L tokens per completion, plain sampling at temperature 1
        max_completion_length=response_len, generation_kwargs={"min_new_tokens": response_len},
        temperature=1.0, top_k=0, top_p=1.0,
        # our loss and optimizer
        beta=rl.kl_coef, epsilon=rl.clip_low, epsilon_high=rl.clip_high, loss_type="dapo", scale_rewards="group",
        learning_rate=rl.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=rl.weight_decay,
        adam_beta1=0.9, adam_beta2=0.95, optim="adamw_torch", max_grad_norm=rl.grad_clip,
        # TRL defaults the deprecated alias gradient_checkpointing to True (recomputing activations); ours does not
        activation_checkpointing=False,
        logging_strategy="no", save_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
    )


def run_trl(spec: dict) -> dict:
    import datasets
    import transformers

    from rlvr_world.models.lm import count_parameters, load_model
    from rlvr_world.training import set_seed
    from rlvr_world.worlds.textworld.world import prompt_text

    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # raised inside TRL, not by us
    cfg, world = load_world(Path(spec["run_dir"]), spec["config"])
    set_seed(cfg.seed)
    model, tokenizer = load_model(spec["model_dir"])  # TRL loads its reference from the same folder
    train = fixed_length_examples(cfg, world, tokenizer, spec["response_len"])
    transitions = world.load_transitions(cfg.data_path, "train")  # same order as `train`
    rl = rl_config(cfg, spec)
    n = spec["warmup"] + spec["steps"]
    order = [i for s in range(spec["step_offset"], spec["step_offset"] + n) for i in prompts_of_step(train, rl, cfg.seed, s)]
    # Ours feeds [bos] + encode(text); TRL tokenises text without adding BOS, so it gets the BOS token's text in front.
    texts = [tokenizer.bos_token + prompt_text(transitions[i]) for i in order]
    dataset = datasets.Dataset.from_dict({"prompt": texts, "example_index": order})

    record: dict = {}
    timer = make_step_timer(record, spec["label"], spec["warmup"])
    reward = make_trl_reward(world, tokenizer, train, cfg.rlvr.reward or world.default_reward, record, order,
                             rl.group_size)
    with tempfile.TemporaryDirectory(prefix="bench_vs_trl_") as out_dir:
        trainer = make_timed_trl_trainer()(
            model=model, reward_funcs=reward, args=trl_args(rl, spec["response_len"], cfg.seed, out_dir, n),
            train_dataset=dataset, processing_class=tokenizer, callbacks=[timer], record=record,
            expected_prompt_ids={t: train[i].prompt_ids for t, i in zip(texts, order)},
            response_len=spec["response_len"],
        )
        trainer.remove_callback(transformers.PrinterCallback)  # it prints TRL's end-of-training metrics dict
        if getattr(trainer.model, "is_activation_checkpointing", False):
            raise AssertionError("TRL's model recomputes activations; the comparison needs it off")
        trainer.train()
    if len(timer.steps) != n:
        raise RuntimeError(f"TRL ran {len(timer.steps)} optimizer steps, expected {n}")
    if any(s["time_old_logps_s"] > 0 for s in timer.steps):
        print("  note: TRL computed separate old log-probs (counted in no phase column)", flush=True)
    return {"steps": timer.steps[spec["warmup"]:], "parameters": count_parameters(model)}


# ----------------------------------------------------------------------------- worker process


def worker(spec_path: Path, out_path: Path) -> int:
    """Run one block (one side, one model, warm-up + timed steps) in this fresh process."""
    import torch

    quiet_progress_bars()
    spec = json.loads(spec_path.read_text())
    set_threads(spec["threads"])
    result = (run_ours if spec["side"] == "ours" else run_trl)(spec)
    result.update(peak_rss_mb=peak_rss_mb(), threads=torch.get_num_threads())
    write_json(out_path, result)
    return 0


def run_block(spec: dict, tmp: Path) -> dict:
    """One block in a fresh process: this script with --worker; only the time inside the block counts."""
    name = f"{spec['model']}_{spec['side']}_{spec['pair']}"
    spec_path, out_path = tmp / f"{name}.spec.json", tmp / f"{name}.result.json"
    write_json(spec_path, spec)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path), "--worker-out", str(out_path)]
    subprocess.run(cmd, check=True)
    return json.loads(out_path.read_text())


# ----------------------------------------------------------------------------- models and summaries


def prepare_model(name: str, run_dir: Path, cfg, tmp: Path) -> tuple[Path, str]:
    """(folder, description): `trained` is the run's MLE model; a preset name is a fresh model, saved once so
    both sides (and TRL's reference) load the same initial weights."""
    from transformers import AutoTokenizer

    from rlvr_world.models.lm import PRESETS, build_model

    trained = run_dir / "mle" / "final"
    if name == "trained":
        if not (trained / "config.json").exists():
            raise FileNotFoundError(f"{trained}: no trained model; run `rlvr-world pretrain` first or pick a preset")
        return trained, f"{trained} (trained `{cfg.model.preset}` Llama)"
    if name not in PRESETS:
        raise ValueError(f"unknown model {name!r}: use `trained` or a preset ({', '.join(PRESETS)})")
    tok_dir = trained if (trained / "tokenizer.json").exists() else run_dir / "tokenizer"
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    folder = tmp / f"fresh_{name}"
    build_model(name, tokenizer, cfg.model.max_positions, seed=cfg.seed).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, f"fresh `{name}` Llama (seed {cfg.seed}, tokenizer of {tok_dir})"


def block_prompts_per_s(block: dict, prompts: int) -> float:
    return prompts / median([s["step_s"] for s in block["steps"]])


def side_summary(blocks: list[dict], prompts: int) -> dict:
    """Medians over every timed step of every block of one side."""
    steps = [s for b in blocks for s in b["steps"]]
    med = lambda key: median([s[key] for s in steps])  # noqa: E731
    return {
        "prompts_per_s": prompts / med("step_s"),
        "tokens_per_s": median([s["generated_tokens"] / s["step_s"] for s in steps]),
        "step_s": med("step_s"),
        **{k: med(k) for k in PHASES + ("time_other_s",)},
        "peak_rss_mb": max(b["peak_rss_mb"] for b in blocks),
    }


def model_row(name: str, params: int, batch: str, ours: list[dict], trl: list[dict], prompts: int) -> tuple[dict, list]:
    """The table row of one model and the per-pair ratios of prompts/s."""
    ratios = [block_prompts_per_s(o, prompts) / block_prompts_per_s(t, prompts) for o, t in zip(ours, trl)]
    row = {"model": name, "parameters_m": params / 1e6, "batch": batch, "ratio_prompts_per_s": median(ratios)}
    for side, blocks in (("ours", ours), ("trl", trl)):
        row.update({f"{side}_{k}": v for k, v in side_summary(blocks, prompts).items()})
    return row, ratios


def model_figures(name: str, row: dict, ours: list[dict], trl: list[dict], ratios: list, prompts: int) -> dict:
    """Headline figures; the default (trained) model's keys carry no suffix, others end in _<name>."""
    sfx = "" if name == "trained" else f"_{name}"
    figures = {f"ratio_prompts_per_s{sfx}": row["ratio_prompts_per_s"]}
    for side in ("ours", "trl"):
        for key in ("prompts_per_s", "tokens_per_s", "step_s", "peak_rss_mb"):
            figures[f"{side}_{key}{sfx}"] = row[f"{side}_{key}"]
    for k, (o, t, r) in enumerate(zip(ours, trl, ratios), start=1):
        figures[f"ours_prompts_per_s{sfx}_pair{k}"] = block_prompts_per_s(o, prompts)
        figures[f"trl_prompts_per_s{sfx}_pair{k}"] = block_prompts_per_s(t, prompts)
        figures[f"ratio_prompts_per_s{sfx}_pair{k}"] = r
    return figures


def block_line(side: str, block: dict, prompts: int) -> str:
    return (f"  -> {side}: {block_prompts_per_s(block, prompts):.2f} prompts/s (median of {len(block['steps'])} timed "
            f"steps), peak RSS {block['peak_rss_mb']:.0f} MB, {block['threads']} threads")


# ----------------------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, default=Path("runs/textworld"),
                   help="run with data/train.jsonl and mle/final (default: runs/textworld)")
    p.add_argument("--config", default=None,
                   help="YAML file or preset for the rlvr settings (default: RUN/config.yaml if it exists, else the "
                        "textworld preset); run_dir is always --run-dir")
    p.add_argument("--models", default="trained,base",
                   help="comma-separated models: `trained` = RUN/mle/final (the default preset's trained model), or "
                        "a preset name (tiny, small, base) = a fresh model of that size with the run's tokenizer "
                        "(default: trained,base)")
    p.add_argument("--prompts", type=int, default=None, help="prompts per step (default: the config's rlvr.prompts_per_step)")
    p.add_argument("--group-size", type=int, default=None,
                   help="completions per prompt, TRL's num_generations (default: the config's rlvr.group_size)")
    p.add_argument("--response-len", type=int, default=16,
                   help="tokens generated per completion on both sides, EOS not stopping (default: 16; "
                        "TextWorld targets are ~8 tokens)")
    p.add_argument("--kl-coef", type=float, default=None,
                   help="KL coefficient, TRL's beta; > 0 makes both sides compute reference log-probs "
                        "(default: the config's rlvr.kl_coef)")
    p.add_argument("--pairs", type=int, default=3, help="ours/TRL block pairs, run alternately (default: 3)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per block (default: 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps at the start of each block (default: 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads in each worker (default: 0 = torch's default)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    p.add_argument("--worker", type=Path, default=None,
                   help="internal: run the one block described by this JSON spec (used by the script itself)")
    p.add_argument("--worker-out", type=Path, default=None, help="internal: where --worker writes its result")
    return p, p.parse_args(argv)


def missing_bench_deps() -> list[str]:
    return [name for name in BENCH_DEPS if importlib.util.find_spec(name) is None]


def main(argv=None) -> int:
    p, args = parse_args(argv)
    if args.worker:
        return worker(args.worker, args.worker_out)
    missing = missing_bench_deps()
    if missing:
        print(f"bench_vs_trl needs {', '.join(missing)}: run `pip install -e '.[bench]'` in the project's "
              "virtual environment", file=sys.stderr)
        return 2

    from importlib.metadata import version

    from rlvr_world.config import ConfigError

    set_threads(args.threads)
    quiet_progress_bars()
    config = args.config or (str(args.run_dir / "config.yaml") if (args.run_dir / "config.yaml").exists() else "textworld")
    try:
        cfg, world = load_world(args.run_dir, config)
    except ConfigError as e:
        p.error(str(e))
    if not (cfg.data_path / "train.jsonl").exists():
        p.error(f"{cfg.data_path}: no train.jsonl; run `rlvr-world collect` for that run first")
    prompts = args.prompts or cfg.rlvr.prompts_per_step
    group_size = args.group_size or cfg.rlvr.group_size
    kl_coef = cfg.rlvr.kl_coef if args.kl_coef is None else args.kl_coef
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if group_size < 2 or prompts < 1 or args.response_len < 1 or args.pairs < 1 or args.steps < 1 or args.warmup < 0:
        p.error("need --group-size >= 2, --prompts, --response-len, --pairs, --steps >= 1 and --warmup >= 0")
    block_steps = args.warmup + args.steps
    info = machine()
    settings = {
        "run_dir": str(args.run_dir), "config": config, "models": models, "prompts_per_step": prompts,
        "group_size": group_size, "response_len": args.response_len, "kl_coef": kl_coef, "lr": cfg.rlvr.lr,
        "clip": [cfg.rlvr.clip_low, cfg.rlvr.clip_high], "reward": cfg.rlvr.reward or world.default_reward,
        "temperature": 1.0, "top_k": 0, "top_p": 1.0, "pairs": args.pairs, "warmup": args.warmup,
        "steps": args.steps, "threads": info["threads"],
        **{f"{dep}_version": version(dep) for dep in BENCH_DEPS},
    }
    print(f"# GRPO vs TRL\n\n{today()}\n`{command_line()}`\n\nmachine: {describe(info)}")
    print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), flush=True)

    rows, figures, all_steps = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="bench_vs_trl_models_") as tmp_name:
        tmp = Path(tmp_name)
        for name in models:
            model_dir, desc = prepare_model(name, args.run_dir, cfg, tmp)
            settings[f"model_{name}"] = desc
            blocks = {"ours": [], "trl": []}
            for pair in range(args.pairs):
                for side in ("ours", "trl"):
                    print(f"\n{name}, pair {pair + 1}/{args.pairs}: {side}", flush=True)
                    spec = {"side": side, "model": name, "model_dir": str(model_dir), "pair": pair,
                            "label": f"{side} {name} {pair + 1}", "run_dir": str(args.run_dir), "config": config,
                            "prompts": prompts, "group_size": group_size, "response_len": args.response_len,
                            "kl_coef": kl_coef, "warmup": args.warmup, "steps": args.steps,
                            "step_offset": pair * block_steps, "threads": args.threads}
                    block = run_block(spec, tmp)
                    print(block_line(side, block, prompts), flush=True)
                    blocks[side].append(block)
            params = blocks["ours"][0]["parameters"]
            settings[f"parameters_{name}"] = params
            row, ratios = model_row(name, params, f"{prompts} x {group_size} x {args.response_len}",
                                    blocks["ours"], blocks["trl"], prompts)
            rows.append(row)
            figures.update(model_figures(name, row, blocks["ours"], blocks["trl"], ratios, prompts))
            all_steps[name] = {side: [b["steps"] for b in bl] for side, bl in blocks.items()}

    print("\n" + markdown_table(rows, COLUMNS))
    print(f"\nmedians over {args.pairs} pairs x {args.steps} timed steps per side (after {args.warmup} warm-up per "
          "block); ours/TRL = median over pairs of the per-pair ratio of prompts/s.")
    for note in NOTES:
        print(f"- {note}")
    if args.json:
        write_json(args.json, {
            "benchmark": "grpo_vs_trl", "title": "GRPO vs TRL", "description": DESCRIPTION,
            "command": command_line(), "date": today(), "machine": info, "settings": settings,
            "columns": COLUMNS, "rows": rows, "figures": figures, "notes": NOTES, "steps": all_steps,
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
