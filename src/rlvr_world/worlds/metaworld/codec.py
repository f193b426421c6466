"""Token layout of the video world model: frame codes and binned actions in one vocabulary.

    ids 0..3                 <pad> <s> </s> <unk>
    ids 4 .. 4+K-1           frame codes <f0> .. <f{K-1}> of the frozen frame tokenizer
    ids 4+K .. 4+K+D*B-1     action bins <a{d}_{b}>: dimension d, bin b (D dims, B bins each)

A window of frames f_0..f_{C+T-1} with actions a_0..a_{C+T-2} becomes

    prompt   = <s> f_0 a_0 f_1 a_1 ... f_{C-1} a_{C-1}
    response = f_C a_C f_{C+1} ... a_{C+T-2} f_{C+T-1}

where each f is the h*w codes of one frame (row-major) and each a is D action tokens. The
response plan generates each frame, sampling only frame codes, and *forces* the ground-truth
actions between them (the interactive rollout), so forced actions are never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from rlvr_world.models.tokenizer import SPECIAL_TOKENS
from rlvr_world.sequence import Force, Generate, ResponsePlan

N_SPECIAL = 4  # <pad> <s> </s> <unk>, in the order of SPECIAL_TOKENS


@dataclass(frozen=True)
class VideoLayout:
    """Where frame codes and action bins live in the vocabulary, and the window shape.

    codebook_size: K frame codes. tokens_per_frame: h*w codes per frame.
    action_dims, action_bins: D dimensions of B bins each.
    context_frames: C frames (with their actions) in the prompt. horizon: T predicted frames.
    """

    codebook_size: int
    tokens_per_frame: int
    action_dims: int
    action_bins: int
    context_frames: int
    horizon: int

    @property
    def code_offset(self) -> int:
        return N_SPECIAL

    @property
    def action_offset(self) -> int:
        return N_SPECIAL + self.codebook_size

    @property
    def vocab_size(self) -> int:
        return self.action_offset + self.action_dims * self.action_bins

    @property
    def window(self) -> int:
        """Frames per example: context plus horizon."""
        return self.context_frames + self.horizon

    def action_ids(self, bins: np.ndarray) -> list[int]:
        """Token ids of one action's bins [D]."""
        return [self.action_offset + d * self.action_bins + int(b) for d, b in enumerate(bins)]

    def frame_ids(self, codes: np.ndarray) -> list[int]:
        """Token ids of one frame's codes [h, w] (row-major)."""
        return (np.asarray(codes).reshape(-1) + self.code_offset).tolist()

    def prompt_ids(self, codes: np.ndarray, bins: np.ndarray, bos_id: int) -> list[int]:
        """<s> then (frame, action) for each context frame. codes [>=C, h, w]; bins [>=C, D]."""
        ids = [bos_id]
        for i in range(self.context_frames):
            ids += self.frame_ids(codes[i]) + self.action_ids(bins[i])
        return ids

    def response(self, codes: np.ndarray, bins: np.ndarray) -> tuple[list[int], ResponsePlan]:
        """Ground-truth response ids and the response plan for a window.

        codes [C+T, h, w], bins [C+T-1, D]: the plan generates T frames and forces the T-1
        actions between them.
        """
        ids: list[int] = []
        plan: list = []
        for j in range(self.horizon):
            ids += self.frame_ids(codes[self.context_frames + j])
            plan.append(Generate(self.tokens_per_frame, stop_at_eos=False, vocab=(self.code_offset, self.action_offset)))
            if j < self.horizon - 1:
                action = self.action_ids(bins[self.context_frames + j])
                ids += action
                plan.append(Force(tuple(action)))
        return ids, tuple(plan)

    def code_positions(self) -> np.ndarray:
        """Where the generated frames' codes sit in a response: int [T * tokens_per_frame], frame-major."""
        stride = self.tokens_per_frame + self.action_dims
        return (np.arange(self.horizon)[:, None] * stride + np.arange(self.tokens_per_frame)).reshape(-1)

    def frame_codes(self, response_ids: list[int]) -> np.ndarray | None:
        """The generated frames' codes [T, tokens_per_frame], or None if any is not a frame code."""
        positions = self.code_positions()
        if len(response_ids) <= positions[-1]:
            return None
        codes = np.asarray(response_ids, dtype=np.int64)[positions].reshape(self.horizon, -1) - self.code_offset
        if codes.min() < 0 or codes.max() >= self.codebook_size:
            return None  # the model put a special or action token where a frame code belongs
        return codes


def build_tokenizer(layout: VideoLayout) -> PreTrainedTokenizerFast:
    """A word-level Hugging Face tokenizer over the layout's vocabulary (saved beside the model)."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS.values())}
    assert len(vocab) == N_SPECIAL
    vocab.update({f"<f{k}>": layout.code_offset + k for k in range(layout.codebook_size)})
    for d in range(layout.action_dims):
        for b in range(layout.action_bins):
            vocab[f"<a{d}_{b}>"] = layout.action_offset + d * layout.action_bins + b
    tok = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
