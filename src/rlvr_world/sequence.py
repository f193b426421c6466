"""The unified record every world produces and every trainer consumes.

A world turns one transition (state, action, next state) into an `Example`: the prompt
token ids, the ground-truth response token ids (for MLE), the *response plan* that tells
the sampler how to produce a response (for RL), and the world's own ground-truth object
that its reward compares a decoded prediction against.

A response plan is a tuple of segments:
  * `Generate(n)`: sample up to `n` tokens from the model (stopping early at EOS when
    `stop_at_eos`, and only from the id range `vocab` when given); these tokens are trained on.
  * `Force(tokens)`: append the given tokens verbatim (e.g. ground-truth action tokens
    between generated video frames, the "interactive rollout"); these are masked out of
    the loss.
Text worlds use a single `Generate(max_new_tokens)` that ends at EOS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union


@dataclass(frozen=True)
class Generate:
    """Sample up to `n` tokens; with `stop_at_eos` a row ends at its first EOS.

    `vocab` = (lo, hi) restricts these tokens to ids lo <= id < hi (e.g. a video frame's codes):
    the policy is the model's distribution renormalised over that range, both when sampling
    and when the trainer recomputes log-probs.
    """

    n: int
    stop_at_eos: bool = True
    vocab: Optional[tuple[int, int]] = None


@dataclass(frozen=True)
class Force:
    """Append these token ids verbatim; they are excluded from the loss."""

    tokens: tuple[int, ...]


Segment = Union[Generate, Force]
ResponsePlan = tuple[Segment, ...]


def plan_length(plan: ResponsePlan) -> int:
    """Largest number of response tokens the plan can produce."""
    return sum(s.n if isinstance(s, Generate) else len(s.tokens) for s in plan)


def forced_positions(plan: ResponsePlan) -> list[int]:
    """Offsets within the response of the tokens a plan forces (empty for a single Generate).

    Offsets are exact only up to the first Generate that may stop early at EOS; plans that
    interleave Force segments use fixed-length generation (`stop_at_eos=False`).
    """
    out, pos = [], 0
    for seg in plan:
        if isinstance(seg, Force):
            out.extend(range(pos, pos + len(seg.tokens)))
            pos += len(seg.tokens)
        else:
            pos += seg.n
    return out


@dataclass
class Example:
    """One prompt with its ground truth, ready for MLE and RL.

    prompt_ids: token ids of the prompt (state + action), BOS included.
    target_ids: ground-truth response token ids (what MLE learns): EOS-terminated for text;
        for a plan with Force segments, laid out exactly as the plan (forced tokens included,
        and excluded from the MLE loss as from the RL loss).
    plan: how the sampler produces a response to this prompt.
    target: the world's ground-truth object that rewards and metrics compare against.
    meta: world-specific facts about the example (e.g. `changed`, `game`, `action_type`).
    """

    prompt_ids: list[int]
    target_ids: list[int]
    plan: ResponsePlan
    target: Any
    meta: dict = field(default_factory=dict)
