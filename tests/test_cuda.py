"""Placement on a CUDA device: the same sampler, log-probs, MLE step and frame tokenizer as on
the CPU. The GPU tests are skipped on a machine without CUDA; the device and precision choices
are checked everywhere."""

import numpy as np
import pytest
import torch

from rlvr_world.mle import collate, mle_step
from rlvr_world.models.lm import autocast, model_device, resolve_device, resolve_precision
from rlvr_world.rl.rollout import response_logprobs, sample
from rlvr_world.sequence import Example, Force, Generate
from rlvr_world.training import NonFiniteGuard, make_optimizer
from test_rollout import EOS, PAD, PROMPTS, tiny_model

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_auto_precision_is_fp32_on_the_cpu_and_an_explicit_device_must_exist():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_precision("auto", "cpu") == torch.float32  # bf16 autocast only on a GPU
    assert resolve_precision("bf16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="model.device"):
        resolve_device("tpu-please")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="sees no CUDA device"):
            resolve_device("cuda")


def _plans():
    # generated, forced and vocabulary-restricted segments: every path of the sampler
    return [(Generate(4, stop_at_eos=False), Force((40 + i, 41)), Generate(3, stop_at_eos=False, vocab=(10, 30)),
             Generate(5)) for i in range(len(PROMPTS))]


@cuda
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_sampler_on_cuda_gives_the_cpu_tokens(temperature):
    cpu_model = tiny_model(3)
    gpu_model = tiny_model(3).to("cuda")
    kw = dict(eos_id=EOS, pad_id=PAD, group_size=2, temperature=temperature)
    a = sample(cpu_model, PROMPTS, _plans(), generator=torch.Generator().manual_seed(7), **kw)
    b = sample(gpu_model, PROMPTS, _plans(), generator=torch.Generator().manual_seed(7), **kw)
    assert b.response_ids.device.type == "cuda"
    assert torch.equal(a.response_ids, b.response_ids.cpu())  # a CPU generator: the same draws
    assert torch.equal(a.loss_mask, b.loss_mask.cpu())
    assert torch.allclose(a.logprobs, b.logprobs.cpu(), atol=1e-4)
    # The training forward on the GPU recomputes the sampler's log-probs (greedy: at temperature 1).
    with torch.no_grad():
        again, _ = response_logprobs(gpu_model, b, temperature or 1.0, group_size=2)
    assert torch.allclose(again * b.loss_mask, b.logprobs, atol=1e-4)


@cuda
def test_mle_step_on_cuda_takes_a_cpu_batch_and_matches_the_cpu_loss():
    examples = [Example(prompt_ids=p, target_ids=[20, 21, EOS], plan=(Generate(3),), target=None) for p in PROMPTS]
    batch = collate(examples, PAD)
    losses = []
    for device in ("cpu", "cuda"):
        model = tiny_model(4).to(device).train()
        opt = make_optimizer(model, 1e-3, 0.0)
        loss, grad_norm, ok = mle_step(model, opt, NonFiniteGuard(3), batch, grad_clip=1.0)
        assert ok and model_device(model).type == device
        losses.append((float(loss), grad_norm))
    assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-4)
    assert losses[0][1] == pytest.approx(losses[1][1], rel=1e-3)


@cuda
def test_auto_precision_on_a_gpu_is_bf16_autocast():
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    assert resolve_precision("auto", "cuda") == torch.bfloat16
    model = tiny_model(0).to("cuda")
    with autocast("auto", "cuda"):
        out = model(input_ids=torch.tensor([PROMPTS[0]], device="cuda"))
    assert out.logits.dtype == torch.bfloat16


@cuda
def test_frame_tokenizer_trains_on_cuda_and_codes_come_back_on_the_cpu(tmp_path):
    from rlvr_world.models.frame_tokenizer import FrameTokenizerConfig, FrameTokenizerTrainConfig, train_frame_tokenizer

    frames = np.random.default_rng(0).integers(0, 256, size=(40, 64, 64, 3), dtype=np.uint8)
    cfg = FrameTokenizerTrainConfig(steps=6, batch_size=8, eval_every=0, save_every=0, eval_frames=8,
                                    tensorboard=False, device="cuda")
    model, metrics = train_frame_tokenizer(frames[:32], frames[32:], cfg, tmp_path,
                                           model_config=FrameTokenizerConfig(channels=[8, 16, 32]), progress=False)
    assert next(model.parameters()).device.type == "cuda"
    codes = model.encode(frames[:4])
    assert codes.device.type == "cpu" and codes.shape == (4, *model.grid)
    assert np.isfinite(metrics["psnr"])
