"""Data-parallel training: two gloo ranks on the CPU against one process on the same global batch.

A tiny real setup: TextWorld transitions collected here, a word-BPE tokenizer, the `tiny`
Llama after 150 MLE steps (so responses end, parse and earn varied rewards). The same GRPO
run, for each loss aggregation (5 prompts per step: shares of 3 and 2; 3 minibatches with
tied groups dropped, so in some minibatches one rank holds no group; the seq-mean-token-mean
run with the ground truth in each group, `target_in_group`), goes once through
`torch.multiprocessing.spawn` with 2 ranks and once in this process. The one process samples
the prompts in the ranks' two shares with the ranks' generators (`distributed.shard_generator`),
so both runs train on the same responses and differ only in float summation order (per-rank
sums then an all-reduce, other padding widths in the forward). The ranks also resume from a
checkpoint, and run a few MLE steps (7 sequences a step: shares of 4 and 3) compared the same way.

Tolerances: at step 1 the two runs' losses and gradient norms differ by ~1e-7 relative
(float32 rounding); Adam's per-entry normalisation amplifies that in entries whose gradient
is near zero, to ~1e-5 relative by step 3. Hence rel 5e-4 on the logged step metrics and
1e-3 of the parameters' total movement on the parameters. A wrong loss weighting is off by
O(1): averaging the ranks' mean losses instead (what plain DDP averaging gives) halves
the step-1 gradient norm here. Sampling at steps 2-3 from weights that differ by ~1e-6 could
in principle pick another token (a uniform draw within ~1e-6 of a CDF boundary); the
exact reward comparison would then fail loudly; with ~400 draws per run that is rare.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from rlvr_world import distributed as dist
from rlvr_world.config import MLEConfig, RLConfig
from rlvr_world.runlog import read_metrics

pytestmark = pytest.mark.slow

WORLD = 2
STEPS = 3
AGGS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def _setup(root: Path):
    """The world, the tokenizer and the examples (every split: a small but varied prompt pool)."""
    from transformers import AutoTokenizer

    from rlvr_world.worlds import get_world

    world = get_world("textworld", max_new_tokens=32)
    tokenizer = AutoTokenizer.from_pretrained(root / "mle" / "final")
    transitions = [t for split in ("train", "val", "test") for t in world.load_transitions(root / "data", split)]
    return world, tokenizer, world.make_examples(transitions, tokenizer)


def _rl_config(agg: str) -> RLConfig:
    # lr 1e-3 so that three steps move the policy (and the KL) visibly; f1 gives partial credit.
    # Dropping tied groups leaves a rank without any group in some minibatches, even whole steps.
    # One run also puts the ground truth in each group, whose rows each rank adds to its own share.
    return RLConfig(steps=STEPS, prompts_per_step=5, group_size=4, lr=1e-3, reward="f1", kl_coef=1e-2,
                    entropy_coef=1e-3, loss_agg=agg, minibatches=3, drop_zero_variance=True, eval_every=0,
                    eval_examples=2, save_every=2, log_every=1, target_in_group=agg == "seq-mean-token-mean")


def _train(root: Path, agg: str, stage: str):
    from rlvr_world.models.lm import load_model
    from rlvr_world.rl.trainer import GRPOTrainer

    world, tokenizer, examples = _setup(root)
    model, _ = load_model(root / "mle" / "final")
    trainer = GRPOTrainer(model, tokenizer, world, examples, examples[:2], _rl_config(agg), root / stage, progress=False)
    return trainer


def _pretrain(root: Path, stage: str):
    """A few MLE steps from a fresh model; 7 sequences a step (shares of 4 and 3)."""
    from rlvr_world.mle import train_mle
    from rlvr_world.models.lm import build_model

    world, tokenizer, examples = _setup(root)
    model = build_model("tiny", tokenizer, seed=1)
    cfg = MLEConfig(steps=STEPS, batch_size=7, lr=3e-3, warmup_steps=0, eval_every=0, eval_examples=2, save_every=0,
                    log_every=1)
    return train_mle(model, tokenizer, world, examples, examples[:2], cfg, root / stage, progress=False)


def _params(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _rank_main(rank: int, root: str, port: int) -> None:
    """One torchrun-like rank: the environment torchrun sets, then the trainer as the CLI runs it."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank), CUDA_VISIBLE_DEVICES="")
    torch.set_num_threads(1)
    root = Path(root)
    for agg in AGGS:
        trainer = _train(root, agg, f"ddp_{agg}")
        assert dist.world_size() == WORLD and dist.rank() == rank
        model = trainer.train()
        save_file(_params(model), str(root / f"params_{agg}_rank{rank}.safetensors"))
    # Resume: both ranks load rank 0's step-2 checkpoint and redo step 3.
    if rank == 0:
        shutil.copytree(root / "ddp_token-mean" / "checkpoints" / "step_0000002",
                        root / "resumed" / "checkpoints" / "step_0000002")
    dist.barrier()
    trainer = _train(root, "token-mean", "resumed")
    assert trainer.step == 2
    save_file(_params(trainer.train()), str(root / f"params_resumed_rank{rank}.safetensors"))
    save_file(_params(_pretrain(root, "ddp_mle")), str(root / f"params_mle_rank{rank}.safetensors"))
    dist.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Collected transitions, a tokenizer and a briefly MLE-trained tiny model in one folder."""
    from rlvr_world.mle import train_mle
    from rlvr_world.models.lm import build_model
    from rlvr_world.worlds import get_world
    from rlvr_world.worlds.textworld.collect import TextWorldCollectConfig, collect

    root = tmp_path_factory.mktemp("ddp")
    collect(TextWorldCollectConfig(n_train_games=1, n_val_games=1, n_test_games=1, world_size=[2, 3],
                                   nb_objects=[3, 5], quest_length=[1, 2], episodes_per_game=2,
                                   steps_per_episode=10, workers=1), root / "data", seed=7, progress=False)
    world = get_world("textworld", max_new_tokens=32)
    transitions = [t for split in ("train", "val", "test") for t in world.load_transitions(root / "data", split)]
    tokenizer = world.train_tokenizer(transitions, root / "tokenizer")
    examples = world.make_examples(transitions, tokenizer)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = build_model("tiny", tokenizer, seed=0)
        mle = MLEConfig(steps=150, batch_size=16, lr=3e-3, warmup_steps=5, eval_every=0, eval_examples=2, save_every=0)
        train_mle(model, tokenizer, world, examples, examples[:2], mle, root / "mle", progress=False)
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture(scope="module")
def ranks(root):
    """The data-parallel runs, once for the module: 2 spawned gloo ranks."""
    mp.spawn(_rank_main, args=(str(root), _free_port()), nprocs=WORLD, join=True)
    return root


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _close(single: dict, ddp: dict, start: dict) -> tuple[float, float]:
    """(how far the one-process run moved the parameters, how far the ranks' end is from its end)."""
    moved = sum(float((single[n] - start[n]).norm() ** 2) for n in single) ** 0.5
    diff = sum(float((single[n] - ddp[n]).norm() ** 2) for n in single) ** 0.5
    return moved, diff


def test_grpo_two_ranks_stay_identical_and_match_one_process_on_the_global_batch(ranks, one_thread, monkeypatch):
    root = ranks
    import rlvr_world.rl.trainer as trainer_module
    from rlvr_world.rl.rollout import concat_rollouts, sample

    start = load_file(str(root / "mle" / "final" / "model.safetensors"))
    for agg in AGGS:
        # One process, the same global batch: the prompts sampled share by share with the ranks' noise.
        trainer = _train(root, agg, f"single_{agg}")

        def sample_in_shares(model, prompts, plans, generator=None, **kwargs):
            parts = []
            for k in range(WORLD):
                lo, hi = dist.shard_range(len(prompts), k, WORLD)
                noise = dist.shard_generator(trainer.seed, trainer.step, 1, k, WORLD)
                parts.append(sample(model, prompts[lo:hi], plans[lo:hi], generator=noise, **kwargs))
            return concat_rollouts(parts, kwargs["pad_id"])

        monkeypatch.setattr(trainer_module, "sample", sample_in_shares)
        single = _params(trainer.train())

        replicas = [load_file(str(root / f"params_{agg}_rank{r}.safetensors")) for r in range(WORLD)]
        # Replicas: bitwise identical after training (no broadcast after the start).
        for name in replicas[0]:
            assert torch.equal(replicas[0][name], replicas[1][name]), (agg, name)

        # The update equals the one-process update: the same step losses, gradient norms
        # (before clipping) and parameters, up to float summation order.
        ddp_rows = [r for r in read_metrics(root / f"ddp_{agg}") if r["split"] == "train"]
        one_rows = [r for r in read_metrics(root / f"single_{agg}") if r["split"] == "train"]
        assert [r["step"] for r in ddp_rows] == [r["step"] for r in one_rows] == list(range(1, STEPS + 1))
        # Step 1 samples from identical weights, so both runs train on the same responses. Later
        # steps sample from weights that differ by float summation order (~1e-6), which can
        # rarely flip a sampled token; steps are compared for as long as the batches agree.
        same_batches = 0
        for a, b in zip(ddp_rows, one_rows):
            if (a["reward_mean"], a["response_len"]) != (b["reward_mean"], b["response_len"]):
                assert a["step"] > 1, agg
                break
            same_batches += 1
            assert a["updates"] == b["updates"] and a["prompts_updated"] == b["prompts_updated"], agg
            assert ("guided_frac" in a) == (agg == "seq-mean-token-mean") and a.get("guided_frac") == b.get("guided_frac")
            for key in ("loss", "pg_loss", "kl", "entropy", "grad_norm", "clip_fraction", "ratio_mean"):
                assert a[key] == pytest.approx(b[key], rel=5e-4, abs=1e-6), (agg, a["step"], key)
        moved, diff = _close(single, replicas[0], start)
        assert moved > 1e-3, agg  # the policy did move ...
        if same_batches == STEPS:
            assert diff < 1e-3 * moved, (agg, diff, moved)  # ... and both runs moved it the same way

        # Rank 0 alone wrote the logs, the checkpoints and `final`.
        assert (root / f"ddp_{agg}" / "final" / "model.safetensors").exists()
        assert [p.name for p in sorted((root / f"ddp_{agg}" / "checkpoints").iterdir())] == \
            ["step_0000002", "step_0000003"]

    # The ranks resumed from the step-2 checkpoint end exactly where the uninterrupted ones did.
    for r in range(WORLD):
        resumed = load_file(str(root / f"params_resumed_rank{r}.safetensors"))
        uninterrupted = load_file(str(root / f"params_token-mean_rank{r}.safetensors"))
        assert all(torch.equal(resumed[n], uninterrupted[n]) for n in resumed)


def test_mle_two_ranks_stay_identical_and_match_one_process_on_the_global_batch(ranks, one_thread):
    root = ranks
    from rlvr_world.models.lm import build_model

    world, tokenizer, _ = _setup(root)
    start = _params(build_model("tiny", tokenizer, seed=1))
    single = _params(_pretrain(root, "single_mle"))
    replicas = [load_file(str(root / f"params_mle_rank{r}.safetensors")) for r in range(WORLD)]
    for name in replicas[0]:
        assert torch.equal(replicas[0][name], replicas[1][name]), name
    ddp_rows = [r for r in read_metrics(root / "ddp_mle") if r["split"] == "train"]
    one_rows = [r for r in read_metrics(root / "single_mle") if r["split"] == "train"]
    assert [r["step"] for r in ddp_rows] == [r["step"] for r in one_rows] == list(range(1, STEPS + 1))
    for a, b in zip(ddp_rows, one_rows):
        for key in ("loss", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=5e-4), (a["step"], key)
    moved, diff = _close(single, replicas[0], start)
    assert moved > 1e-3 and diff < 1e-3 * moved, (diff, moved)
