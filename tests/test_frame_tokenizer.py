"""The FSQ frame tokenizer: shapes, FSQ indexing by hand, straight-through gradients, training,
save/load, non-finite decoder outputs, and resume of a killed training run."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rlvr_world.models.frame_tokenizer import (
    CONFIG_NAME,
    FSQ,
    WEIGHTS_NAME,
    FrameTokenizer,
    FrameTokenizerConfig,
    FrameTokenizerTrainConfig,
    evaluate_frame_tokenizer,
    frames_to_tensor,
    reference_pairs,
    tensor_to_frames,
    train_frame_tokenizer,
)
from rlvr_world.runlog import read_metrics

TINY = FrameTokenizerConfig(channels=(8, 16, 16), res_blocks=1)


def moving_squares(n=16, size=64, seed=0) -> np.ndarray:
    """uint8 [n, size, size, 3]: a grey background with a coloured square moving across it."""
    rng = np.random.default_rng(seed)
    frames = np.full((n, size, size, 3), 90, np.uint8)
    frames[:, size // 2 :, :, :] = (120, 80, 50)  # a "table"
    for i in range(n):
        x, y = (4 + 3 * i) % (size - 12), int(rng.integers(0, size - 12))
        frames[i, y : y + 12, x : x + 12] = rng.integers(0, 256, 3)
    return frames


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """These models are tiny: one thread is as fast, and far faster when other processes
    keep the cores busy (a second OpenMP thread then waits for a time slice at every op)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- FSQ ------------------------------------------------------------------------------------


def test_fsq_index_round_trip_over_the_whole_codebook():
    fsq = FSQ((8, 5, 5, 5))
    assert fsq.codebook_size == 1000
    idx = torch.arange(1000)
    codes = fsq.indices_to_codes(idx)
    assert codes.shape == (1000, 4)
    assert torch.equal(fsq.codes_to_indices(codes), idx)
    assert len({tuple(c) for c in codes.tolist()}) == 1000  # every index has its own code
    # Codes produced by quantize map to indices in range and back to the same codes.
    q = fsq.quantize(torch.randn(5000, 4) * 3)
    back = fsq.indices_to_codes(fsq.codes_to_indices(q))
    assert torch.equal(back, q)


def test_fsq_hand_computed_index():
    fsq = FSQ((8, 5, 5, 5))
    # digits (3, 1, 4, 2) -> 3 + 1*8 + 4*(8*5) + 2*(8*5*5) = 571; value = (digit - L//2) / (L//2)
    code = torch.tensor([(3 - 4) / 4, (1 - 2) / 2, (4 - 2) / 2, (2 - 2) / 2])
    assert int(fsq.codes_to_indices(code)) == 571
    assert torch.equal(fsq.indices_to_codes(torch.tensor(571)), code)
    assert int(fsq.codes_to_indices(torch.tensor([-1.0, -1.0, -1.0, -1.0]))) == 0
    assert int(fsq.codes_to_indices(torch.tensor([0.75, 1.0, 1.0, 1.0]))) == 999


@pytest.mark.parametrize("levels", [(8, 5, 5, 5), (2, 3, 4, 7)])
def test_fsq_values_lie_on_the_level_grid(levels):
    fsq = FSQ(levels)
    z = torch.linspace(-20, 20, 4001).unsqueeze(1).expand(-1, len(levels))
    q = fsq.quantize(z)
    for i, L in enumerate(levels):
        half = L // 2
        allowed = torch.arange(-half, L - half, dtype=torch.float32) / half
        values = torch.unique(q[:, i])
        assert torch.allclose(values, allowed), (L, values)  # all L values used, nothing else
        assert torch.equal(values * half, torch.round(values * half))
    assert torch.equal(fsq.quantize(torch.zeros(1, len(levels))), torch.zeros(1, len(levels)))  # bound(0) = 0


def test_straight_through_gradients():
    fsq = FSQ((8, 5, 5, 5))
    z = (torch.randn(64, 4) * 0.5).requires_grad_()
    fsq.quantize(z).sum().backward()
    # Rounding passes the gradient unchanged: d quantize / dz = d bound / dz / (L // 2) > 0.
    zz = z.detach().requires_grad_()
    (fsq.bound(zz) / fsq._half_width).sum().backward()
    assert torch.allclose(z.grad, zz.grad)
    assert (z.grad > 0).all()
    # ... and through the whole model to the encoder's first layer.
    model = FrameTokenizer(TINY)
    recon, _ = model(frames_to_tensor(moving_squares(2)))
    recon.mean().backward()
    first = model.encoder[0].weight.grad
    assert first is not None and first.abs().sum() > 0


# -- the autoencoder ------------------------------------------------------------------------


@pytest.mark.parametrize("downsample,grid", [(8, 8), (4, 16)])
def test_encode_decode_shapes_and_ranges(downsample, grid):
    model = FrameTokenizer(FrameTokenizerConfig(downsample=downsample))
    assert model.codebook_size == 1000 and model.grid == (grid, grid)
    frames = moving_squares(3)
    codes = model.encode(frames)
    assert codes.shape == (3, grid, grid) and codes.dtype == torch.int64
    assert codes.min() >= 0 and codes.max() < model.codebook_size
    assert torch.equal(model.encode(torch.from_numpy(frames)), codes)  # numpy or tensor input
    assert torch.equal(model.encode(frames, batch_size=2), codes)  # batching changes nothing
    out = model.decode(codes)
    assert out.shape == (3, 3, 64, 64) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    recon, fwd_codes = model(frames_to_tensor(frames))
    assert torch.equal(fwd_codes, codes)
    assert torch.allclose(recon.clamp(0, 1), out, atol=1e-5)
    with pytest.raises(ValueError, match="codes must lie"):
        model.decode(torch.full((1, grid, grid), 1000))
    with pytest.raises(ValueError, match=r"\[N, 64, 64, 3\]"):
        model.encode(np.zeros((1, 32, 32, 3), np.uint8))


def test_training_steps_lower_l1_on_a_fixed_batch():
    model = FrameTokenizer(TINY)
    x = frames_to_tensor(moving_squares(4))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        recon, _ = model(x)
        loss = (recon - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses[::4]  # measured: 0.151 -> 0.068


def test_save_load_identical_decode(tmp_path):
    model = FrameTokenizer(FrameTokenizerConfig(downsample=4, channels=(16, 32), levels=(7, 5, 5, 5)))
    with torch.no_grad():  # make the weights differ from a fresh init
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([WEIGHTS_NAME, CONFIG_NAME])  # no temp files left
    assert json.loads((tmp_path / CONFIG_NAME).read_text())["config"]["levels"] == [7, 5, 5, 5]
    loaded = FrameTokenizer.load(tmp_path)
    assert loaded.config == model.config and loaded.codebook_size == 875
    frames = moving_squares(4)
    codes = model.encode(frames)
    assert torch.equal(loaded.encode(frames), codes)
    assert torch.equal(loaded.decode(codes), model.decode(codes))


def test_load_names_the_missing_file(tmp_path):
    FrameTokenizer(TINY).save(tmp_path)
    (tmp_path / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME):
        FrameTokenizer.load(tmp_path)
    with pytest.raises(FileNotFoundError, match=CONFIG_NAME):
        FrameTokenizer.load(tmp_path / "nowhere")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_decoder_output_is_clamped_and_counted(bad):
    model = FrameTokenizer(TINY)
    codes = model.encode(moving_squares(5))
    assert model.nonfinite_count == 0
    last = model.decoder[-1]  # the final transposed convolution
    with torch.no_grad():
        last.weight[0, 0, 1, 1] = bad  # non-finite in the red channel
        last.bias[1] = 10.0  # green far above 1, blue far below 0
        last.bias[2] = -10.0
    raw = model.decode_latent(model.fsq.indices_to_codes(codes)).detach()
    assert not torch.isfinite(raw).all()  # the decoder really produces non-finite values
    out = model.decode(codes)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert (out[:, 1] == 1).all() and (out[:, 2] == 0).all()  # finite values out of range are clamped
    assert model.nonfinite_count == 5  # frames with a non-finite value
    model.decode(codes[:2])
    assert model.nonfinite_count == 7  # a running count


# -- the training loop ----------------------------------------------------------------------


class Killed(Exception):
    pass


def test_train_kill_and_resume_matches_an_uninterrupted_run(tmp_path):
    frames = moving_squares(24)
    train, val = frames[:20], frames[20:]
    cfg = FrameTokenizerTrainConfig(steps=12, batch_size=4, lr=3e-3, warmup=2, perceptual_weight=0.5,
                                    log_every=2, eval_every=6, save_every=4, tensorboard=False)
    calls = []

    def perceptual(x, y, kill_at=None):
        assert x.shape == y.shape == (4, 3, 64, 64) and 0 <= x.min() and x.max() <= 1
        calls.append(1)
        if kill_at is not None and len(calls) == kill_at:
            raise Killed
        return (x - y).pow(2).flatten(1).mean(1)

    full, metrics = train_frame_tokenizer(train, val, cfg, tmp_path / "full", progress=False,
                                          perceptual=perceptual, model_config=TINY)
    assert set(metrics) >= {"psnr", "l1", "code_usage", "frames_per_s"}
    assert 0 < metrics["code_usage"] <= 1 and metrics["frames_per_s"] > 0 and np.isfinite(metrics["psnr"])
    assert len(calls) == 12
    assert (tmp_path / "full" / WEIGHTS_NAME).exists()
    rows = read_metrics(tmp_path / "full")
    assert [r["step"] for r in rows if r["split"] == "train"] == [2, 4, 6, 8, 10, 12]
    assert "perceptual" in rows[0] and rows[0]["loss"] > rows[0]["l1"]

    calls.clear()
    out = tmp_path / "killed"
    with pytest.raises(Killed):  # dies in step 11 (the 10th call), after the checkpoint of step 8
        train_frame_tokenizer(train, val, cfg, out, progress=False, model_config=TINY,
                              perceptual=lambda x, y: perceptual(x, y, kill_at=10))
    assert not (out / WEIGHTS_NAME).exists()
    resumed, metrics2 = train_frame_tokenizer(train, val, cfg, out, progress=False, model_config=TINY,
                                              perceptual=perceptual)
    steps = [r["step"] for r in read_metrics(out) if r["split"] == "train"]
    assert steps == [2, 4, 6, 8, 10, 12]  # no gap, no duplicate
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert metrics2["psnr"] == pytest.approx(metrics["psnr"], abs=1e-3)

    # A finished run is not trained again.
    calls.clear()
    again, _ = train_frame_tokenizer(train, val, cfg, out, progress=False, model_config=TINY, perceptual=perceptual)
    assert calls == []
    assert torch.equal(again.decode(again.encode(val)), resumed.decode(resumed.encode(val)))
    with pytest.raises(ValueError, match="config"):  # resuming with another architecture
        train_frame_tokenizer(train, val, cfg, out, progress=False, model_config=FrameTokenizerConfig(downsample=4))


def test_motion_weight_trains(tmp_path):
    frames = moving_squares(12)
    cfg = FrameTokenizerTrainConfig(steps=4, batch_size=4, motion_weight=3.0, log_every=2, eval_every=0,
                                    save_every=0, tensorboard=False)
    model, metrics = train_frame_tokenizer(frames[:8], frames[8:], cfg, tmp_path, progress=False, model_config=TINY)
    assert np.isfinite(metrics["psnr"]) and np.isfinite(metrics["l1"])
    assert [r["step"] for r in read_metrics(tmp_path) if r["split"] == "train"] == [2, 4]


# -- decoding against a reference frame -------------------------------------------------------

TINY_REF = FrameTokenizerConfig(channels=(8, 16, 16), res_blocks=1, reference=True)


def test_reference_pairs_by_hand():
    # episodes of 3 and 2 frames laid end to end: frames 0-2 and 3-4
    assert reference_pairs([3, 2], 2).tolist() == [[1, 0], [2, 1], [2, 0], [4, 3]]
    assert reference_pairs([1], 4).shape == (0, 2)


def test_copy_gate_mixes_reference_and_decoded_pixels_as_documented():
    """out = g * reference + (1 - g) * decoded per pixel, here with the gate fixed at
    sigmoid(-2) (its first conv zeroed, its last conv's bias -2)."""
    model = FrameTokenizer(TINY_REF)
    with torch.no_grad():
        model.copy_gate.conv1.weight.zero_()
        model.copy_gate.conv1.bias.zero_()
        model.copy_gate.conv2.bias.fill_(-2.0)
    frames, refs = moving_squares(3), moving_squares(3, seed=1)
    zhat = model.fsq.indices_to_codes(model.encode(frames))
    plain = model.decoder(zhat.permute(0, 3, 1, 2))  # the decoder's own frame, in [-1, 1]
    g = torch.sigmoid(torch.tensor(-2.0))
    expected = (g * (frames_to_tensor(refs) * 2 - 1) + (1 - g) * plain) * 0.5 + 0.5
    assert torch.allclose(model.decode_latent(zhat, frames_to_tensor(refs)), expected, atol=1e-6)
    recon, _ = model(frames_to_tensor(frames))  # the training pass: the decoder's frame, no gate
    assert torch.allclose(recon, plain * 0.5 + 0.5, atol=1e-6)


def test_reference_tokenizer_needs_a_reference_and_the_plain_one_ignores_it():
    frames = moving_squares(2)
    ref_model, plain = FrameTokenizer(TINY_REF), FrameTokenizer(TINY)
    codes = ref_model.encode(frames)
    with pytest.raises(ValueError, match="reference"):
        ref_model.decode(codes)
    with pytest.raises(ValueError, match=r"\[2, 64, 64, 3\]"):
        ref_model.decode(codes, reference=frames[:1])
    out = ref_model.decode(codes, reference=frames[::-1].copy())
    assert out.shape == (2, 3, 64, 64) and 0 <= out.min() and out.max() <= 1
    assert not torch.equal(out, ref_model.decode(codes, reference=frames))  # the reference matters
    plain_codes = plain.encode(frames)
    assert torch.equal(plain.decode(plain_codes, reference=frames), plain.decode(plain_codes))
    with pytest.raises(ValueError, match="train_pairs"):
        train_frame_tokenizer(frames, frames, FrameTokenizerTrainConfig(steps=1), Path("unused"), progress=False,
                              model_config=TINY_REF)


def test_reference_tokenizer_trains_saves_and_loads(tmp_path):
    """Trained on (frame, previous frame) pairs of a moving square, it reconstructs better than
    copying the reference, and a saved tokenizer decodes the same after loading."""
    frames = moving_squares(24)
    pairs = reference_pairs([12, 12], 1)
    cfg = FrameTokenizerTrainConfig(steps=150, batch_size=8, lr=8e-3, warmup=5, log_every=50, eval_every=0,
                                    save_every=0, tensorboard=False)
    model, metrics = train_frame_tokenizer(frames, frames, cfg, tmp_path, progress=False, model_config=TINY_REF,
                                           train_pairs=pairs, val_pairs=pairs)
    assert metrics["l1"] < 0.75 * metrics["l1_copy_reference"], metrics  # measured: 0.0099 against 0.0191
    again = evaluate_frame_tokenizer(model, frames, pairs=pairs)
    assert again["l1"] == pytest.approx(metrics["l1"], rel=1e-6)
    loaded = FrameTokenizer.load(tmp_path)
    assert loaded.config.reference and hasattr(loaded, "copy_gate")
    codes = model.encode(frames[pairs[:, 0]])
    refs = frames[pairs[:, 1]]
    assert torch.equal(loaded.decode(codes, reference=refs), model.decode(codes, reference=refs))


def test_frames_to_tensor_and_back_is_exact_for_any_leading_dims():
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 3, 8, 8, 3), dtype=np.uint8)
    t = frames_to_tensor(frames)
    assert t.shape == (2, 3, 3, 8, 8) and float(t.max()) <= 1.0
    assert t[1, 2, 0, 4, 5] == frames[1, 2, 4, 5, 0] / 255  # channel moves in front of the pixels
    assert np.array_equal(tensor_to_frames(t), frames)
