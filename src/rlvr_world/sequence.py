"""The unified record every world produces and every trainer consumes.

A world turns one transition (state, action, next state) into an `Example`: the prompt
token ids, the ground-truth response token ids (for MLE), the *response plan* that tells
the sampler how to produce a response (for RL), and the world's own ground-truth object
that its reward compares a decoded prediction against.

A response plan is a tuple of segments:
  * `Generate(n)`: sample up to `n` tokens from the model (stopping early at EOS when
    `stop_at_eos`); these tokens are trained on.
  * `Force(tokens)`: append the given tokens verbatim (e.g. ground-truth action tokens
    between generated video frames, the "interactive rollout"); these are masked out of
    the loss.
Text worlds use a single `Generate(max_new_tokens)` that ends at EOS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(frozen=True)
class Generate:
    """Sample up to `n` tokens; with `stop_at_eos` a row ends at its first EOS."""

    n: int
    stop_at_eos: bool = True


@dataclass(frozen=True)
class Force:
    """Append these token ids verbatim; they are excluded from the loss."""

    tokens: tuple[int, ...]


Segment = Union[Generate, Force]
ResponsePlan = tuple[Segment, ...]


def plan_length(plan: ResponsePlan) -> int:
    """Largest number of response tokens the plan can produce."""
    return sum(s.n if isinstance(s, Generate) else len(s.tokens) for s in plan)


@dataclass
class Example:
    """One prompt with its ground truth, ready for MLE and RL.

    prompt_ids: token ids of the prompt (state + action), BOS included.
    target_ids: ground-truth response token ids, EOS included (what MLE learns).
    plan: how the sampler produces a response to this prompt.
    target: the world's ground-truth object that rewards and metrics compare against.
    meta: world-specific facts about the example (e.g. `changed`, `game`, `action_type`).
    """

    prompt_ids: list[int]
    target_ids: list[int]
    plan: ResponsePlan
    target: Any
    meta: dict = field(default_factory=dict)
