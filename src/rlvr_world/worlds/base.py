"""What a world must provide to the engine."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from rlvr_world.sequence import Example


class World(ABC):
    """An environment's transitions, its codec and its metrics.

    name: registry name, e.g. "textworld".
    default_reward: reward spec used when the config does not name one.
    collect_config: dataclass type holding the world's collection options (YAML `collect:`).
    eval_rewards, task_specific_reward: see below.
    """

    name: str
    default_reward: str
    collect_config: type
    eval_rewards: tuple[str, ...] = ()  # rewards whose mean every evaluation reports
    task_specific_reward: str = ""  # the demo also trains an RLVR model on this reward, when set

    @abstractmethod
    def collect(self, cfg: Any, data_dir: Path, seed: int) -> dict:
        """Run the real environment and cache transitions (JSONL per split) in `data_dir`.

        Returns the manifest (also written to `data_dir/manifest.json`).
        """

    @abstractmethod
    def load_transitions(self, data_dir: Path, split: str) -> list[dict]:
        """Read one split ("train", "val", "test") of the cache; clear error when missing."""

    @abstractmethod
    def train_tokenizer(self, transitions: list[dict]) -> PreTrainedTokenizerBase:
        """Fit a tokenizer on the training transitions' text."""

    @abstractmethod
    def make_examples(self, transitions: list[dict], tokenizer: PreTrainedTokenizerBase) -> list[Example]:
        """Encode transitions into prompts, target responses and response plans."""

    @abstractmethod
    def decode(self, response_ids: list[int], tokenizer: PreTrainedTokenizerBase) -> Any:
        """Turn generated response token ids into a prediction; junk gives None, never raises."""

    @abstractmethod
    def metrics(self, predictions: list[Any], examples: list[Example]) -> dict[str, float]:
        """Task metrics of decoded predictions against the examples' targets."""

    def render(self, prediction: Any) -> str:
        """Human-readable form of a prediction, for reports."""
        return repr(prediction)
