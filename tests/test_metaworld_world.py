"""The Meta-World video world end to end on a tiny real collection: tokenizer training, token
layout of real windows, decoding, metrics and baselines, and the demo's results file."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rlvr_world import pipeline
from rlvr_world.config import load_config
from rlvr_world.eval.evaluate import evenly_spaced
from rlvr_world.models.lm import load_model
from rlvr_world.rewards import WeightedReward
from rlvr_world.rewards.frames import mae
from rlvr_world.rl.rollout import sample
from rlvr_world.runlog import read_metrics
from rlvr_world.worlds.metaworld.world import predicted_frames

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "rlvr_world.cli"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The tiny Meta-World demo, run once through the CLI (collect included)."""
    run = tmp_path_factory.mktemp("mw") / "run"
    subprocess.run(CLI + ["demo", "--world", "metaworld", "--config", "metaworld_tiny", f"run_dir={run}"],
                   check=True, capture_output=True)
    return run


def _world_and_examples(run, split="test"):
    cfg = load_config("metaworld_tiny", [f"run_dir={run}"])
    world = pipeline.world_of(cfg)
    tokenizer = pipeline.tokenizer_for(cfg, world)
    return cfg, world, tokenizer, pipeline.examples(cfg, world, tokenizer, split)


def test_real_windows_become_frames_and_forced_actions(demo_run):
    cfg, world, tokenizer, exs = _world_and_examples(demo_run)
    assert (demo_run / "tokenizer" / "frame_tokenizer" / "frame_tokenizer.json").exists()
    layout = world.layout
    C, T, hw = world.context_frames, world.horizon, layout.tokens_per_frame
    assert exs and len(tokenizer) == layout.vocab_size
    for ex in exs:
        assert len(ex.prompt_ids) == 1 + C * (hw + layout.action_dims)
        assert len(ex.target_ids) == T * hw + (T - 1) * layout.action_dims
        assert ex.target.shape == (T, 64, 64, 3) and ex.target.dtype == np.uint8
        codes = layout.frame_codes(ex.target_ids)
        assert codes is not None and codes.shape == (T, hw)
    # Decoding the ground-truth codes gives the tokenizer's reconstruction of the true frames.
    decoded = world.decode_batch([ex.target_ids for ex in exs], tokenizer, exs)
    oracle = world.baselines(exs)["tokenizer_reconstruction"]
    for d, o in zip(decoded, oracle):
        assert np.array_equal(np.asarray(d), np.asarray(o))


def test_predicted_frames_are_drawn_against_the_examples_last_frame(demo_run):
    """The tiny preset's frame tokenizer decodes against a reference: the last frame the prompt
    observed. Without the examples decoding is refused; with them, the same codes drawn against
    another window's last frame give other pixels, and `decode` of one response agrees."""
    _, world, tokenizer, exs = _world_and_examples(demo_run)
    assert world.frame_tokenizer.config.reference
    a, b = exs[0], next(ex for ex in exs if not np.array_equal(ex.meta["last_frame"], exs[0].meta["last_frame"]))
    with pytest.raises(ValueError, match="examples"):
        world.decode_batch([a.target_ids], tokenizer)
    with pytest.raises(ValueError, match="1 responses but 2 examples"):
        world.decode_batch([a.target_ids], tokenizer, [a, b])
    on_a, on_b = world.decode_batch([a.target_ids, a.target_ids], tokenizer, [a, b])
    assert np.array_equal(on_a.codes, on_b.codes) and not np.array_equal(on_a, on_b)
    assert np.array_equal(world.decode(a.target_ids, tokenizer, a), on_a)


def test_metrics_of_perfect_copy_and_undecodable_predictions(demo_run):
    _, world, _, exs = _world_and_examples(demo_run)
    fake_codes = np.broadcast_to(-1 - np.arange(world.horizon)[:, None], (world.horizon, world.layout.tokens_per_frame))
    perfect = [predicted_frames(ex.target, fake_codes) for ex in exs]  # codes unlike each other and the context
    m = world.metrics(perfect, exs)
    assert m["mae"] == 0 and m["mse"] == 0 and m["lpips"] < 1e-6 and m["ssim"] > 0.999
    assert m["repetition_rate"] == 0 and m["decode_failure_rate"] == 0
    copy = world.metrics(world.baselines(exs)["copy_last_frame"], exs)
    assert copy["repetition_rate"] == 1.0
    # On the pixels that really change, copying the last frame must be wrong by at least the threshold.
    assert copy["mae_changed"] > world.change_threshold / 3
    junk = world.metrics([None] * len(exs), exs)
    assert junk["decode_failure_rate"] == 1.0 and junk["mae"] > copy["mae"]


def test_demo_writes_the_results_file_the_issue_asks_for(demo_run):
    results = json.loads((demo_run / "results.json").read_text())
    assert results["world"] == "metaworld" and "--world metaworld" in results["command"]
    for horizon in ("single_step", "multi_step"):
        assert set(results[horizon]) == {"mle", "mle_longer", "rlvr"}
        for metric in ("mae", "mse", "psnr", "ssim", "lpips", "repetition_rate", "mae_changed"):
            assert metric in results[horizon]["rlvr"]["greedy"]
        assert metric in results["copy_last_frame"][horizon]
        assert set(results["heldout_task"][horizon]) == {"mle", "mle_longer", "rlvr"}
    assert len(results["multi_step"]["rlvr"]["greedy"]["per_horizon"]["lpips"]) == results["horizon"]
    assert results["copy_last_frame"]["single_step"]["repetition_rate"] == 1.0
    for name in ("report.md", "rollout.gif", "frames_0.png", "horizon_metrics.png"):
        assert (demo_run / name).stat().st_size > 0
    rows = [json.loads(line) for line in (demo_run / "rlvr" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert len(train) == 4 and all("decoder_nonfinite" in r for r in train)
    # -(MAE + LPIPS) has two terms: each one's mean is logged, and the total is their weighted sum.
    for r in train:
        assert abs(r["reward_mean"] + r["reward_mae"] + r["reward_lpips"]) < 1e-5


def test_eval_subset_spreads_over_every_test_task(demo_run):
    cfg, world, tokenizer, exs = _world_and_examples(demo_run)
    tasks = [ex.meta["task"] for ex in exs]
    k = cfg.eval.max_examples
    assert len(set(tasks)) == 2 and 0 < k < len(exs)
    spread = pipeline.eval_examples(cfg, world, tokenizer, "test")
    window = lambda ex: (ex.meta["episode"], ex.meta["start"])  # noqa: E731
    assert [window(ex) for ex in spread] == [window(ex) for ex in evenly_spaced(exs, k)]
    assert {ex.meta["task"] for ex in spread} == set(tasks)
    cfg.eval.subset = "first"
    assert [ex.meta["task"] for ex in pipeline.eval_examples(cfg, world, tokenizer, "test")] == tasks[:k]
    cfg.eval.subset = "last"
    with pytest.raises(ValueError, match="eval.subset"):
        pipeline.eval_examples(cfg, world, tokenizer, "test")


def test_sampled_top_k_one_decodes_like_greedy(demo_run):
    cfg = load_config("metaworld_tiny", [f"run_dir={demo_run}", "eval.sampled_top_k=1", "eval.extra_splits=[]"])
    result = pipeline.evaluate_model(cfg, demo_run / "mle" / "final")
    assert result["sampled_decoding"] == "temperature 1, top-k 1"
    for key in ("mae", "lpips", "mae_h1", "repetition_rate"):
        assert result["sampled"][key] == result["greedy"][key], key


def test_pass_at_k_scores_a_negated_cost_greedy_at_temperature_zero(demo_run):
    """scripts/pass_at_k.py on the video world: --reward mae:-1 scores minus the pixel error,
    and samples drawn at temperature 0 are the greedy prediction, at T=1 they vary."""
    spec = importlib.util.spec_from_file_location("pass_at_k", Path(__file__).resolve().parents[1] / "scripts" / "pass_at_k.py")
    pass_at_k = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pass_at_k)
    _, world, _, examples = _world_and_examples(demo_run)
    model, tokenizer = load_model(demo_run / "mle" / "final")
    examples = examples[:4]
    reward = WeightedReward.parse("mae:-1")
    cold = pass_at_k.scores(model, tokenizer, world, examples, reward, k=3, seed=0, temperature=0.0)
    for samples, greedy in cold:
        assert -1.0 < greedy < 0.0
        assert samples == [greedy] * 3
    hot = pass_at_k.scores(model, tokenizer, world, examples, reward, k=3, seed=0, temperature=1.0)
    assert [g for _, g in hot] == [g for _, g in cold]
    assert any(len(set(samples)) > 1 for samples, _ in hot)
    # the greedy score is minus the MAE of the greedy prediction, decoded independently
    rollout = sample(model, [examples[0].prompt_ids], [examples[0].plan], temperature=0.0,
                     eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id)
    prediction = world.decode(rollout.responses()[0], tokenizer, examples[0])
    assert cold[0][1] == pytest.approx(-mae(prediction, examples[0].target), abs=1e-6)


def test_token_scores_give_each_frame_code_its_patch_error(demo_run):
    """Dense credit for the video world: a response's code positions score the MAE of the patch
    each code draws (they average to the frame's MAE), forced action tokens score 0."""
    _, world, tokenizer, examples = _world_and_examples(demo_run)
    model, _ = load_model(demo_run / "mle" / "final")
    examples = examples[:2]
    rollout = sample(model, [ex.prompt_ids for ex in examples], [ex.plan for ex in examples], temperature=1.0,
                     eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id)
    predictions = world.decode_batch(rollout.responses(), tokenizer, examples)
    targets = [ex.target for ex in examples]
    width = rollout.response_ids.size(1)
    responses = rollout.responses()
    scores = world.token_scores("mae", responses + responses[:1], predictions + [None], targets + targets[:1], width,
                                tokenizer)
    assert scores.shape == (3, width)
    layout = world.layout
    stride, per_frame = layout.tokens_per_frame + layout.action_dims, layout.tokens_per_frame
    generated = rollout.loss_mask.bool().numpy()
    for i, (p, t) in enumerate(zip(predictions, targets)):
        for j in range(world.horizon):
            codes = scores[i, j * stride : j * stride + per_frame]
            assert codes.mean() == pytest.approx(mae(p[j], t[j]), rel=1e-9)
            assert generated[i, j * stride : j * stride + per_frame].all()
        assert (scores[i][~generated[i]] == 0).all()  # the forced actions
        assert (~generated[i]).sum() == layout.action_dims * (world.horizon - 1)
    assert (scores[2][generated[0]] == 1.0).all()  # undecodable: the worst MAE on every code


def test_grpo_with_dense_mae_trains_from_the_demo_start(demo_run, tmp_path):
    """Two GRPO steps with MAE credited per frame code (rlvr.dense_rewards) from the tiny demo's
    MLE model: the run finishes, logs both reward terms and moves the weights, and not as the
    same run with one MAE score per response does (both sample the same responses)."""
    finals = {}
    for name, dense in (("dense", "[mae]"), ("per_response", "[]")):
        cfg = load_config("metaworld_tiny", [f"run_dir={demo_run}", "rlvr.steps=2", "rlvr.eval_every=0",
                                             "rlvr.advantage=gdpo", f"rlvr.dense_rewards={dense}", "rlvr.kl_coef=0"])
        finals[name] = pipeline.rlvr(cfg, stage=str(tmp_path / name), init=demo_run / "mle" / "final")
    rows = [r for r in read_metrics(tmp_path / "dense") if r["split"] == "train"]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(0 < r["reward_mae"] < 1 and r["updates"] == 1 for r in rows)
    first = lambda stage: next(r for r in read_metrics(tmp_path / stage) if r["split"] == "train")  # noqa: E731
    assert first("dense")["reward_mae"] == first("per_response")["reward_mae"]  # the same first rollouts
    start, dense, per_response = (load_model(p)[0] for p in (demo_run / "mle" / "final", finals["dense"],
                                                              finals["per_response"]))
    assert any(not torch.equal(a, b) for a, b in zip(start.parameters(), dense.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(dense.parameters(), per_response.parameters()))
    for bad in (["rlvr.dense_rewards=[psnr]"], ["rlvr.advantage=grpo"]):  # not a reward term; not GDPO
        cfg = load_config("metaworld_tiny", [f"run_dir={demo_run}", "rlvr.advantage=gdpo",
                                             "rlvr.dense_rewards=[mae]", *bad])
        with pytest.raises(ValueError, match="dense_rewards"):
            pipeline.rlvr(cfg, stage=str(tmp_path / "bad"), init=demo_run / "mle" / "final")


def test_compare_frame_tokenizers_trains_both_variants_and_scores_copying(demo_run, tmp_path):
    """scripts/compare_frame_tokenizers.py on the tiny run's data: one plain and one reference
    tokenizer, each trained by the world in its own folder, and the copy-the-reference row equal
    to the MAE of the test frames against the frames 1..horizon steps before them."""
    from rlvr_world.models.frame_tokenizer import FrameTokenizer
    from rlvr_world.worlds.metaworld.collect import load_episodes

    spec = importlib.util.spec_from_file_location(
        "compare_frame_tokenizers", Path(__file__).resolve().parents[1] / "scripts" / "compare_frame_tokenizers.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    run, out = tmp_path / "run", tmp_path / "table.json"
    assert compare.main(["--config", "metaworld_tiny", "--seconds", "2", "--pairs", "1000", "--json", str(out),
                         "--variants", "plain,reference,reference_perceptual", "--perceptual-weight", "0.5",
                         f"run_dir={run}", f"data_dir={demo_run / 'data'}",
                         "world_options.frame_tokenizer_train.log_every=1"]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert set(rows) == {"copy_reference", "plain", "reference", "reference_perceptual"}
    for name, reference in (("plain", False), ("reference", True), ("reference_perceptual", True)):
        ft_dir = run / "frame_tokenizers" / name / "tokenizer" / "frame_tokenizer"
        ft = FrameTokenizer.load(ft_dir)
        assert ft.config.reference is reference
        assert 0 < rows[name]["training_steps"] <= 60 and 0 < rows[name]["mae"] < 1 and 0 < rows[name]["ssim"] <= 1
        # only the perceptual variant trains with (and logs) the ST-LPIPS term
        logged = [json.loads(line) for line in (ft_dir / "metrics.jsonl").open()]
        assert any("perceptual" in r for r in logged) is name.endswith("_perceptual")
    assert rows["copy_reference"]["ssim"] < 1 and result["perceptual_weight"] == 0.5
    episodes = load_episodes(demo_run / "data", "test")
    horizon = result["max_offset"]
    diffs = [np.abs(ep["frames"][k:].astype(float) - ep["frames"][:-k]) / 255 for ep in episodes
             for k in range(1, horizon + 1) if len(ep["frames"]) > k]
    assert result["test_pairs"] == sum(len(d) for d in diffs)  # every pair: fewer than --pairs exist
    assert rows["copy_reference"]["mae"] == pytest.approx(float(np.concatenate(diffs).mean()), rel=1e-5)
