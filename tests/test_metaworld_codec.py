"""The video token layout, and the interactive rollout on it: the sampler generates each frame
and puts exactly the ground-truth action tokens between frames, masked out of every loss."""

import numpy as np
import pytest
import torch

from rlvr_world.mle import collate
from rlvr_world.models.lm import build_model
from rlvr_world.rl.rollout import sample
from rlvr_world.sequence import Example, Force, Generate, forced_positions
from rlvr_world.worlds.metaworld.codec import VideoLayout, build_tokenizer

LAYOUT = VideoLayout(codebook_size=12, tokens_per_frame=4, action_dims=2, action_bins=5, context_frames=2, horizon=3)


def window(seed=0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, LAYOUT.codebook_size, size=(LAYOUT.window, 2, 2))
    bins = rng.integers(0, LAYOUT.action_bins, size=(LAYOUT.window - 1, LAYOUT.action_dims))
    return codes, bins


def test_vocabulary_layout_and_tokenizer_agree():
    tok = build_tokenizer(LAYOUT)
    assert len(tok) == LAYOUT.vocab_size == 4 + 12 + 2 * 5
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids("<f0>") == 4 and tok.convert_tokens_to_ids("<f11>") == 15
    assert tok.convert_tokens_to_ids("<a0_0>") == 16 and tok.convert_tokens_to_ids("<a1_4>") == 25
    assert LAYOUT.action_ids(np.array([3, 1])) == [16 + 3, 16 + 5 + 1]


def test_prompt_and_response_follow_the_window():
    codes, bins = window()
    prompt = LAYOUT.prompt_ids(codes, bins, bos_id=1)
    assert prompt == [1] + LAYOUT.frame_ids(codes[0]) + LAYOUT.action_ids(bins[0]) + LAYOUT.frame_ids(codes[1]) + LAYOUT.action_ids(bins[1])
    response, plan = LAYOUT.response(codes, bins)
    codes_only = (4, 16)
    assert plan == (Generate(4, False, codes_only), Force(tuple(LAYOUT.action_ids(bins[2]))), Generate(4, False, codes_only),
                    Force(tuple(LAYOUT.action_ids(bins[3]))), Generate(4, False, codes_only))
    assert len(response) == 3 * 4 + 2 * 2
    assert forced_positions(plan) == [4, 5, 10, 11]
    # Decoding the ground-truth response gives back the target frames' codes.
    assert (LAYOUT.frame_codes(response) == codes[2:].reshape(3, 4)).all()


def test_junk_in_a_frame_is_undecodable_not_an_error():
    codes, bins = window()
    response, _ = LAYOUT.response(codes, bins)
    assert LAYOUT.frame_codes(response[:5]) is None  # too short
    bad = list(response)
    bad[7] = LAYOUT.action_offset  # an action token where a frame code belongs
    assert LAYOUT.frame_codes(bad) is None
    bad[7] = 2  # EOS
    assert LAYOUT.frame_codes(bad) is None


def test_forced_actions_are_not_trained_on_by_mle():
    codes, bins = window()
    response, plan = LAYOUT.response(codes, bins)
    prompt = LAYOUT.prompt_ids(codes, bins, bos_id=1)
    batch = collate([Example(prompt, response, plan, target=None)], pad_id=0)
    labels = batch["labels"][0, len(prompt):].tolist()
    for j, tok in enumerate(response):
        assert labels[j] == (-100 if j in (4, 5, 10, 11) else tok)


def test_interactive_rollout_inserts_exactly_the_given_actions_and_masks_them():
    tok = build_tokenizer(LAYOUT)
    model = build_model("tiny", tok, max_positions=128, seed=0)
    prompts, plans, actions = [], [], []
    for seed in range(3):
        codes, bins = window(seed)
        prompts.append(LAYOUT.prompt_ids(codes, bins, tok.bos_token_id))
        plans.append(LAYOUT.response(codes, bins)[1])
        actions.append([LAYOUT.action_ids(bins[2]), LAYOUT.action_ids(bins[3])])
    out = sample(model, prompts, plans, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, group_size=2,
                 temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert not out.truncated.any()
    for row, response in enumerate(out.responses()):
        given = actions[row // 2]
        assert len(response) == 16
        assert response[4:6] == given[0] and response[10:12] == given[1]
        assert out.loss_mask[row].tolist() == [1] * 4 + [0, 0] + [1] * 4 + [0, 0] + [1] * 4
        assert (out.logprobs[row][out.loss_mask[row] == 0] == 0).all()


def test_horizon_blocks_and_relative_improvements_by_hand():
    from rlvr_world.worlds.metaworld.world import horizon_blocks, relative_improvements

    flat = {"mae": 0.3, "mae_h1": 0.2, "mae_h2": 0.4, "repetition_rate": 0.5, "repetition_rate_h1": 0.0,
            "repetition_rate_h2": 1.0, "decode_failure_rate": 0.25, "n": 4.0}
    single, multi = horizon_blocks(flat, horizon=2)
    assert single == {"mae": 0.2, "repetition_rate": 0.0, "decode_failure_rate": 0.25, "n": 4.0}
    assert multi == {"mae": 0.3, "repetition_rate": 0.5, "decode_failure_rate": 0.25, "n": 4.0,
                     "per_horizon": {"mae": [0.2, 0.4], "repetition_rate": [0.0, 1.0]}}
    results = {"single_step": {"mle": {"greedy": {"mae": 0.2, "lpips": 0.5}},
                               "rlvr": {"greedy": {"mae": 0.15, "lpips": 0.6}}}}
    rel = relative_improvements(results)
    assert set(rel) == {"single_step_vs_mle"}  # no mle_longer, no multi-step block
    assert rel["single_step_vs_mle"]["mae"] == pytest.approx(0.25)  # (0.2 - 0.15) / 0.2: RLVR better
    assert rel["single_step_vs_mle"]["lpips"] == pytest.approx(-0.2)  # (0.5 - 0.6) / 0.5: RLVR worse
