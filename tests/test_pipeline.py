"""End-to-end runs on a tiny real TextWorld collection: resume after a kill, NaN handling, the demo."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlvr_world.checkpoint import latest_checkpoint
from rlvr_world.config import load_config
from rlvr_world.runlog import read_metrics

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "rlvr_world.cli"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Three train games and one val/test game, collected once with the real TextWorld."""
    out = tmp_path_factory.mktemp("tw") / "data"
    args = ["collect", "--config", "textworld_tiny", f"data_dir={out}", "collect.n_train_games=3",
            "collect.steps_per_episode=25"]
    subprocess.run(CLI + args, check=True, capture_output=True)
    assert (out / "manifest.json").exists()
    return out


def _overrides(run_dir, data_dir, *extra):
    return ["--config", "textworld_tiny", f"run_dir={run_dir}", f"data_dir={data_dir}", *extra]


def _kill_after_checkpoint(cmd, stage_dir: Path, timeout=120):
    """Start `cmd`, SIGKILL it as soon as its first checkpoint exists; returns that checkpoint's step."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    start = time.time()
    try:
        while latest_checkpoint(stage_dir) is None:
            assert proc.poll() is None, "the run ended before writing a checkpoint"
            assert time.time() - start < timeout
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return int(latest_checkpoint(stage_dir).name.split("_")[1])


def _train_steps(stage_dir):
    return [r["step"] for r in read_metrics(stage_dir) if r["split"] == "train"]


def test_mle_killed_midway_resumes_to_the_same_end_without_gaps(tmp_path, data_dir):
    run = tmp_path / "run"
    cmd = CLI + ["pretrain"] + _overrides(run, data_dir, "mle.steps=30", "mle.save_every=5", "mle.log_every=1",
                                         "mle.eval_every=0")
    killed_at = _kill_after_checkpoint(cmd, run / "mle")
    assert 5 <= killed_at < 30
    assert not (run / "mle" / "final").exists()
    subprocess.run(cmd, check=True, capture_output=True)
    assert _train_steps(run / "mle") == list(range(1, 31))  # each step logged once, none missing
    assert latest_checkpoint(run / "mle").name == "step_0000030"
    assert (run / "mle" / "final" / "model.safetensors").exists()
    assert not list((run / "mle" / "checkpoints").glob(".*.tmp"))


def test_rlvr_killed_midway_resumes_to_the_same_end_without_gaps(tmp_path, data_dir):
    run = tmp_path / "run"
    subprocess.run(CLI + ["pretrain"] + _overrides(run, data_dir, "mle.steps=10", "mle.eval_every=0"),
                   check=True, capture_output=True)
    cmd = CLI + ["rlvr"] + _overrides(run, data_dir, "rlvr.steps=8", "rlvr.save_every=2", "rlvr.eval_every=0",
                                      "rlvr.log_every=1")
    killed_at = _kill_after_checkpoint(cmd, run / "rlvr")
    assert 2 <= killed_at < 8
    subprocess.run(cmd, check=True, capture_output=True)
    rows = [r for r in read_metrics(run / "rlvr") if r["split"] == "train"]
    assert [r["step"] for r in rows] == list(range(1, 9))
    for key in ("reward_mean", "reward_std", "zero_variance_frac", "kl", "clip_fraction", "entropy",
                "response_len", "tokens_per_s"):
        assert all(key in r for r in rows if not r.get("skipped")), key
    state = json.loads((latest_checkpoint(run / "rlvr") / "trainer_state.json").read_text())
    assert state["step"] == 8
    # Each stage keeps the config it ran with; the run's own config is the first stage's, not
    # overwritten by the later stage's overrides.
    preset = load_config("textworld_tiny")
    assert load_config(str(run / "mle" / "config.yaml")).mle.steps == 10
    assert load_config(str(run / "rlvr" / "config.yaml")).rlvr.steps == 8
    run_cfg = load_config(str(run / "config.yaml"))
    assert (run_cfg.mle.steps, run_cfg.rlvr.steps) == (10, preset.rlvr.steps) != (10, 8)


def test_nonfinite_losses_stop_the_run_with_a_finite_last_checkpoint(tmp_path, data_dir):
    run = tmp_path / "run"
    # A learning rate this large really does blow the weights up within a few steps.
    cmd = CLI + ["pretrain"] + _overrides(run, data_dir, "mle.steps=60", "mle.lr=1e12", "mle.warmup_steps=0",
                                          "mle.save_every=1", "mle.log_every=1", "mle.eval_every=0",
                                          "mle.max_consecutive_nan=3", "mle.grad_clip=1e30")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "non-finite losses in a row" in proc.stderr
    rows = read_metrics(run / "mle")
    assert any(r.get("nonfinite_loss") for r in rows)
    ckpt = latest_checkpoint(run / "mle")
    assert ckpt is not None
    from safetensors.torch import load_file

    weights = load_file(str(ckpt / "model" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_demo_writes_results_and_report(tmp_path, data_dir):
    from rlvr_world import pipeline

    cfg = load_config("textworld_tiny", [f"run_dir={tmp_path / 'run'}", f"data_dir={data_dir}", "mle.steps=20",
                                         "rlvr.steps=2", "eval.max_examples=16"])
    results = pipeline.demo(cfg, "pytest demo")
    for block in ("mle", "mle_longer", "rlvr", "rlvr_task_specific"):
        for mode in ("greedy", "sampled"):
            m = results[block][mode]
            for key in ("accuracy", "accuracy_changed", "accuracy_unchanged", "precision", "recall", "f1",
                        "reward_binary", "reward_task_specific"):
                assert key in m, (block, mode, key)
            assert 0.0 <= m["accuracy"] <= 1.0
    assert results["train_seconds"]["mle_longer"] >= 0.9 * results["train_seconds"]["rlvr"]
    # Each stage's config.yaml is what it ran with: MLE-longer's time budget is RLVR's training time.
    longer = load_config(str(tmp_path / "run" / "mle_longer" / "config.yaml")).mle
    assert longer.max_seconds == pytest.approx(results["train_seconds"]["rlvr"], abs=0.05)
    assert (longer.lr, longer.warmup_steps) == (cfg.mle.lr * cfg.mle.min_lr_ratio, 0)
    # Per-example rewards in split order, whose mean is the reported reward; paired differences from them.
    per_example = {s: json.loads((tmp_path / "run" / "eval" / f"{s}.json").read_text())["per_example"]
                   for s in ("mle", "mle_longer", "rlvr")}
    for s, pe in per_example.items():
        assert pe["reward"] == "binary" and len(pe["greedy"]) == len(pe["sampled"]) == 16
        assert sum(pe["greedy"]) / 16 == pytest.approx(results[s]["greedy"]["reward_binary"])
        assert sum(pe["sampled"]) / 16 == pytest.approx(results[s]["sampled"]["reward_binary"])
    paired = results["state_prediction_paired"]
    assert {"rlvr - mle", "rlvr - mle_longer", "rlvr_task_specific - mle"} <= set(paired)
    for base in ("mle", "mle_longer"):
        diff = results["rlvr"]["greedy"]["reward_binary"] - results[base]["greedy"]["reward_binary"]
        assert paired[f"rlvr - {base}"]["greedy"]["difference"] == pytest.approx(diff)
    script = Path(__file__).parents[1] / "scripts" / "compare_evals.py"
    evals = tmp_path / "run" / "eval"
    out = subprocess.run([sys.executable, str(script), str(evals / "rlvr.json"), str(evals / "mle.json"), "--json",
                          str(tmp_path / "paired.json")], capture_output=True, text=True, check=True).stdout
    assert f"greedy   {paired['rlvr - mle']['greedy']['difference']:+.4f}" in out
    assert json.loads((tmp_path / "paired.json").read_text())[f"{evals / 'rlvr.json'} - {evals / 'mle.json'}"] == \
        json.loads(json.dumps(paired["rlvr - mle"]))
    run = tmp_path / "run"
    saved = json.loads((run / "results.json").read_text())
    assert saved["command"] == "pytest demo" and saved["seed"] == 0
    report = (run / "report.md").read_text()
    assert "Held-out results" in report and "| rlvr - mle_longer | `binary` | greedy |" in report
    for png in ("accuracy.png", "mle_curves.png", "rl_curves.png"):
        assert (run / png).stat().st_size > 5000
    assert (run / "mle" / "tb").is_dir()
    # Run again: every stage has finished, so no model is trained or evaluated a second time...
    evaluations = [run / "eval" / f"{stage}.json" for stage in ("mle", "mle_longer", "rlvr", "rlvr_task_specific")]
    written = [e.stat().st_mtime_ns for e in evaluations]
    again = pipeline.demo(cfg, "pytest demo")
    assert [e.stat().st_mtime_ns for e in evaluations] == written
    assert again["rlvr"] == results["rlvr"] and again["train_seconds"] == results["train_seconds"]
    # ...unless the evaluation settings changed: then every model is evaluated again.
    fewer = load_config("textworld_tiny", [f"run_dir={run}", f"data_dir={data_dir}", "mle.steps=20", "rlvr.steps=2",
                                           "eval.max_examples=8"])
    pipeline.demo(fewer, "pytest demo")
    assert all(json.loads(e.read_text())["n"] == 8 for e in evaluations)


def test_rlvr_sweep_runs_each_variant_from_the_start_model_and_resumes(tmp_path, data_dir):
    from rlvr_world import pipeline

    run = tmp_path / "run"
    cfg = load_config("textworld_tiny", [f"run_dir={run}", f"data_dir={data_dir}", "mle.steps=20", "eval.max_examples=16"])
    pipeline.evaluate_model(cfg, pipeline.pretrain(cfg, "mle"), run / "eval" / "mle.json")
    grid = tmp_path / "grid.yaml"
    grid.write_text("default: {}\nfrozen: {rlvr.lr: 0.0}\n")
    out = tmp_path / "sweep.json"
    cmd = [sys.executable, "scripts/sweep_rlvr.py", "--config", "textworld_tiny", "--grid", str(grid),
           "--out", str(out), "--steps", "2", f"run_dir={run}", f"data_dir={data_dir}", "eval.max_examples=16"]
    root = Path(__file__).resolve().parents[1]
    subprocess.run(cmd, check=True, capture_output=True, cwd=root)
    result = json.loads(out.read_text())
    assert list(result["variants"]) == ["default", "frozen"] and result["init"] == str(run / "mle" / "final")
    assert result["budget_per_variant"] == "2 GRPO steps"
    for name, variant in result["variants"].items():
        assert variant["steps"] == 2 and "accuracy" in variant["validation"], name
    assert result["variants"]["frozen"]["overrides"] == {"rlvr.lr": 0.0}
    validation = {n: v["validation"]["accuracy"] for n, v in result["variants"].items()}
    assert result["best_on_validation"] == max(validation, key=validation.get)
    # lr 0 leaves the start model as it was: its held-out figures are the start's, exactly.
    assert result["variants"]["frozen"]["test"] == result["references"]["mle"]
    assert out.with_suffix(".png").stat().st_size > 5000
    assert set(result["references"]) == {"mle"}
    # A finished variant is not rerun: its evaluation file is left as it was. The preset's GRPO
    # ("default") stands in for a demo's RLVR stage, which then enters the table as a reference.
    evaluation = run / "eval" / "sweep_default.json"
    (run / "eval" / "rlvr.json").write_text(evaluation.read_text())
    before = evaluation.stat().st_mtime_ns
    subprocess.run(cmd, check=True, capture_output=True, cwd=root)
    assert evaluation.stat().st_mtime_ns == before
    rerun = json.loads(out.read_text())
    assert rerun["variants"] == result["variants"]
    assert rerun["references"]["rlvr"] == result["variants"]["default"]["test"]
    # --only trains just the named variants, and the overrides written after it still apply.
    evaluation.unlink()
    frozen = run / "eval" / "sweep_frozen.json"
    frozen_before = frozen.stat().st_mtime_ns
    subprocess.run(cmd[:-3] + ["--only", "default"] + cmd[-3:], check=True, capture_output=True, cwd=root)
    assert evaluation.exists() and frozen.stat().st_mtime_ns == frozen_before
    # Other eval.* settings evaluate every finished variant and every reference again, training none.
    weights = run / "sweep" / "frozen" / "final" / "model.safetensors"
    trained = weights.stat().st_mtime_ns
    subprocess.run(cmd[:-1] + ["eval.max_examples=8"], check=True, capture_output=True, cwd=root)
    assert weights.stat().st_mtime_ns == trained
    for path in (evaluation, frozen, run / "eval" / "mle.json", run / "eval" / "rlvr.json"):
        assert json.loads(path.read_text())["n"] == 8, path


class NeverStops(torch.nn.Module):
    """A real model whose EOS logit is pushed to -inf, so no response ever ends (test rig)."""

    def __init__(self, model, eos_id):
        super().__init__()
        self.model, self.eos_id = model, eos_id

    def forward(self, **kw):
        out = self.model(**kw)
        out.logits[..., self.eos_id] = float("-inf")
        return out


def test_a_response_that_never_emits_eos_is_cut_and_scored_wrong(tmp_path, data_dir):
    from rlvr_world import pipeline
    from rlvr_world.eval.evaluate import predict
    from rlvr_world.models.lm import build_model
    from rlvr_world.rewards import WeightedReward

    cfg = load_config("textworld_tiny", [f"run_dir={tmp_path}", f"data_dir={data_dir}", "world_options.max_new_tokens=12"])
    world = pipeline.world_of(cfg)
    tokenizer = pipeline.tokenizer_for(cfg, world)
    exs = pipeline.examples(cfg, world, tokenizer, "val")[:6]
    model = NeverStops(build_model("tiny", tokenizer), tokenizer.eos_token_id)
    preds, responses, stats = predict(model, tokenizer, world, exs, temperature=1.0)
    assert all(len(r) == 12 for r in responses)  # cut at the limit
    assert preds == [None] * 6 and stats["truncated_rate"] == 1.0
    assert world.metrics(preds, exs)["accuracy"] == 0.0
    assert WeightedReward.parse("task_specific").score(preds, [e.target for e in exs])[0] == [0.0] * 6


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """(config, model folder): 150 MLE steps, enough for rewards that differ between samples."""
    from rlvr_world import pipeline

    run = tmp_path_factory.mktemp("trained")
    cfg = load_config("textworld_tiny", [f"run_dir={run}", f"data_dir={data_dir}", "mle.steps=150",
                                         "mle.eval_every=0"])
    return cfg, pipeline.pretrain(cfg)


def test_evaluation_keeps_each_examples_reward_in_split_order(trained, tmp_path):
    from rlvr_world import pipeline
    from rlvr_world.eval.evaluate import predict
    from rlvr_world.models.lm import load_model
    from rlvr_world.rewards import get_reward

    cfg, start = trained
    cfg = load_config("textworld_tiny", [f"run_dir={cfg.run_dir}", f"data_dir={cfg.data_dir}", "eval.max_examples=32",
                                         "eval.extra_splits=[]"])
    ev = pipeline.evaluate_model(cfg, start, tmp_path / "eval.json")
    pe = ev["per_example"]
    assert pe["reward"] == "binary" and json.loads((tmp_path / "eval.json").read_text())["per_example"] == pe
    # The same decoding again, scored example by example in split order.
    model, tokenizer = load_model(start)
    world = pipeline.world_of(cfg)
    exs = pipeline.eval_examples(cfg, world, tokenizer, "test")
    binary = get_reward("binary")
    mixed = False
    for mode, temperature in (("greedy", 0.0), ("sampled", cfg.eval.sampled_temperature)):
        preds, _, _ = predict(model, tokenizer, world, exs, batch_size=cfg.eval.batch_size, temperature=temperature,
                              seed=cfg.seed)
        expected = [binary(p, ex.target) for p, ex in zip(preds, exs)]
        assert pe[mode] == expected, mode
        assert sum(pe[mode]) / len(exs) == pytest.approx(ev[mode]["reward_binary"])
        mixed |= 0 < sum(expected) < len(expected)
    assert mixed  # some rewards differ, so a wrong order would show


def test_dynamic_sampling_draws_rounds_until_enough_groups_differ_and_trains_on_all_of_them(trained, tmp_path):
    """DAPO's dynamic sampling on a briefly trained TextWorld model, whose groups often tie."""
    import dataclasses

    from rlvr_world import pipeline
    from rlvr_world.models.lm import load_model
    from rlvr_world.rl.trainer import GRPOTrainer

    cfg, start = trained
    world = pipeline.world_of(cfg)

    def trainer(stage, **rl):
        model, tokenizer = load_model(start)
        train = pipeline.examples(cfg, world, tokenizer, "train")
        rl_cfg = dataclasses.replace(cfg.rlvr, steps=2, eval_every=0, save_every=0, drop_zero_variance=True, reward="f1", **rl)
        t = GRPOTrainer(model, tokenizer, world, train, train[:2], rl_cfg, tmp_path / stage, progress=False)
        rounds = []  # (step, round, informative groups) of every round sampled
        sample_round = t._sample_round

        def spy(r):
            out = sample_round(r)
            groups = out.rewards.view(-1, 4)  # G = 4: a group is informative when its rewards differ
            rounds.append((t.step, r, int((groups.max(1).values > groups.min(1).values).sum()), out.rewards))
            return out

        t._sample_round = spy
        return t, rounds

    plain, plain_rounds = trainer("plain")
    plain.train()
    dynamic, dyn_rounds = trainer("dynamic", sampling_rounds=4)
    dynamic.train()
    per_step = {s: [r for r in dyn_rounds if r[0] == s] for s in (0, 1)}
    rows = [r for r in read_metrics(tmp_path / "dynamic") if r["split"] == "train"]
    for (step, rounds), row in zip(per_step.items(), rows):
        informative = [n for _, _, n, _ in rounds]
        # Stops at the first round that brings the count to prompts_per_step (4), or after 4 rounds.
        assert len(rounds) == 4 or sum(informative) >= 4 > sum(informative[:-1]), informative
        assert row["sampling_rounds"] == len(rounds)
        assert row["prompts_updated"] == sum(informative)  # every informative group drawn is trained on
        assert row["zero_variance_frac"] == pytest.approx(1 - sum(informative) / (4 * len(rounds)))
    assert any(len(r) > 1 for r in per_step.values()), "no step needed a second round: the test shows nothing"
    # Round 0 is the plain step's draw: same prompts and noise from the same weights at step 0.
    assert torch.equal(dyn_rounds[0][3], plain_rounds[0][3])
    assert [r[1] for r in plain_rounds] == [0, 0]
    with pytest.raises(ValueError, match="sampling_rounds"):
        trainer("bad", sampling_rounds=0)


def test_the_ground_truth_in_each_group_gives_signal_where_every_sample_misses(tmp_path, data_dir):
    """Off-policy guidance on an untrained model, whose samples all score 0: plain GRPO has no
    group to learn from, while with the target in each group the update raises its likelihood."""
    import dataclasses

    from rlvr_world import pipeline
    from rlvr_world.models.lm import build_model
    from rlvr_world.rl.rollout import response_logprobs, target_rows
    from rlvr_world.rl.trainer import GRPOTrainer
    from rlvr_world.sequence import plan_length

    def load(*overrides):
        cfg = load_config("textworld_tiny", [f"run_dir={tmp_path}", f"data_dir={data_dir}", *overrides])
        world = pipeline.world_of(cfg)
        tokenizer = pipeline.tokenizer_for(cfg, world)
        return cfg, world, tokenizer, pipeline.examples(cfg, world, tokenizer, "train")

    # Four examples with targets of different lengths, and a plan one token too short for the longest.
    *_, every = load()
    by_length = {len(ex.target_ids): i for i, ex in enumerate(every)}
    picks = [by_length[n] for n in sorted(by_length)[-4:]]
    cfg, world, tokenizer, every = load(f"world_options.max_new_tokens={len(every[picks[-1]].target_ids) - 1}")
    train = [every[i] for i in picks]
    fits = sum(len(ex.target_ids) <= plan_length(ex.plan) for ex in train)
    assert fits == 3
    targets = target_rows([ex.prompt_ids for ex in train], [ex.target_ids for ex in train],
                          [ex.plan for ex in train], tokenizer.pad_token_id)

    def target_logprob(model):
        model.eval()
        with torch.no_grad():
            return float((response_logprobs(model, targets)[0] * targets.loss_mask).sum())

    def run(stage, **rl):
        model = build_model("tiny", tokenizer, seed=0)
        rl_cfg = dataclasses.replace(cfg.rlvr, steps=3, prompts_per_step=4, group_size=4, lr=1e-3, warmup_steps=0,
                                     kl_coef=0.0, eval_every=0, save_every=0, drop_zero_variance=True,
                                     reward="binary", **rl)
        trainer = GRPOTrainer(model, tokenizer, world, train, train[:1], rl_cfg, tmp_path / stage, progress=False)
        before = target_logprob(trainer.model)
        trainer.train()
        return [r for r in read_metrics(tmp_path / stage) if r["split"] == "train"], before, target_logprob(trainer.model)

    plain, before, after = run("plain")
    assert all(r["reward_mean"] == 0 and r["prompts_updated"] == 0 for r in plain) and after == before
    guided, before, after = run("guided", target_in_group=True)
    for row in guided:
        assert row["reward_mean"] == 0 and row["target_reward"] == 1.0  # the target decodes to itself
        assert row["guided_frac"] == fits / 16 and row["prompts_updated"] == fits
        assert row["response_len"] > 0 and "time_update_s" in row
    assert after > before + 1.0


def test_targets_longer_than_the_response_plan_are_reported(tmp_path, data_dir, capsys):
    from rlvr_world import pipeline

    def load(max_new_tokens):
        cfg = load_config("textworld_tiny", [f"run_dir={tmp_path}", f"data_dir={data_dir}",
                                             f"world_options.max_new_tokens={max_new_tokens}"])
        world = pipeline.world_of(cfg)
        capsys.readouterr()
        exs = pipeline.examples(cfg, world, pipeline.tokenizer_for(cfg, world), "train")
        return exs, capsys.readouterr().err

    exs, err = load(1000)
    assert "longer than the response plan" not in err
    lengths = sorted(len(ex.target_ids) for ex in exs)
    limit = lengths[len(lengths) // 2]
    long = sum(n > limit for n in lengths)
    assert 0 < long < len(exs)
    _, err = load(limit)
    assert f"{long} of {len(exs)} train examples ({long / len(exs):.1%}) have a target longer" in err
    assert f"({limit} tokens)" in err


def test_a_stage_trains_on_another_caches_train_split_when_told_and_the_fair_baseline_follows(trained, tmp_path):
    """`rlvr.train_data` / `mle.train_data`: the stage reads that cache's train split (a broken
    line there is what fails, named), and demo's MLE-longer continues on RLVR's data."""
    import dataclasses
    import re
    import shutil

    from rlvr_world import pipeline
    from rlvr_world.worlds.textworld.collect import CacheError

    cfg, start = trained
    pool = tmp_path / "pool"
    shutil.copytree(cfg.data_path, pool)
    rows = (pool / "train.jsonl").read_text().splitlines(keepends=True)
    (pool / "train.jsonl").write_text(rows[0] + "{not json\n" + "".join(rows[1:]))
    run = tmp_path / "run"
    rl = dataclasses.replace(cfg, run_dir=str(run), rlvr=dataclasses.replace(cfg.rlvr, steps=1, train_data=str(pool)))
    with pytest.raises(CacheError, match=re.escape(f"{pool / 'train.jsonl'}:2: bad JSON")):
        pipeline.rlvr(rl, init=start)
    assert load_config(str(run / "rlvr" / "config.yaml")).rlvr.train_data == str(pool)  # the stage says what it ran on
    mle = dataclasses.replace(cfg, run_dir=str(run), mle=dataclasses.replace(cfg.mle, steps=1, train_data=str(pool)))
    with pytest.raises(CacheError, match=re.escape(f"{pool / 'train.jsonl'}:2: bad JSON")):
        pipeline.pretrain(mle)
    longer = pipeline.mle_longer_config(rl, 12.5)
    assert (longer.train_data, longer.max_seconds, longer.lr, longer.min_lr_ratio, longer.warmup_steps) == \
        (str(pool), 12.5, cfg.mle.lr * cfg.mle.min_lr_ratio, 1.0, 0)
    assert pipeline.mle_longer_config(cfg, 3.0).train_data == ""  # by default every stage reads the run's cache
