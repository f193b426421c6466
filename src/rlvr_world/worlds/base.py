"""What a world must provide to the engine."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Optional

import numpy as np
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
    headline_metrics: tuple[str, ...] = ()  # what the CLI prints and the report tabulates first
    run_dir: Path | None = None  # set by `attach`: where a run keeps the world's artefacts

    @abstractmethod
    def collect(self, cfg: Any, data_dir: Path, seed: int) -> dict:
        """Run the real environment and cache transitions (JSONL per split) in `data_dir`.

        Returns the manifest (also written to `data_dir/manifest.json`).
        """

    @abstractmethod
    def load_transitions(self, data_dir: Path, split: str) -> list[dict]:
        """Read one split ("train", "val", "test") of the cache; clear error when missing."""

    def attach(self, run_dir: Path) -> "World":
        """Bind the world to a run directory (e.g. to find a frame tokenizer trained there)."""
        self.run_dir = Path(run_dir)
        return self

    @abstractmethod
    def train_tokenizer(self, transitions: list[dict], out_dir: Path) -> PreTrainedTokenizerBase:
        """Fit a tokenizer on the training transitions; the engine saves it to `out_dir`.

        A world may write its own extra artefacts there too (e.g. a frame tokenizer).
        """

    @abstractmethod
    def make_examples(self, transitions: list[dict], tokenizer: PreTrainedTokenizerBase) -> list[Example]:
        """Encode transitions into prompts, target responses and response plans."""

    def training_transitions(self, transitions: list[dict], seed: int) -> list[dict]:
        """What the training stages (MLE and RLVR) learn from: the recorded training transitions,
        or versions of them the world rewrites (e.g. the web world's renamed typed values).
        Evaluation, the tokenizer and the apps always read the recorded ones."""
        return transitions

    @abstractmethod
    def decode(self, response_ids: list[int], tokenizer: PreTrainedTokenizerBase) -> Any:
        """Turn generated response token ids into a prediction; junk gives None, never raises."""

    def decode_batch(self, responses: list[list[int]], tokenizer: PreTrainedTokenizerBase,
                     examples: Optional[list[Example]] = None) -> list[Any]:
        """`decode` over a batch; worlds whose decoding is a network (frames) override this.
        `examples[i]` is the example that response i answers: a world whose prediction depends
        on what the prompt observed (a frame drawn against the last observed frame) reads it
        from there; the others ignore it."""
        return [self.decode(r, tokenizer) for r in responses]

    # Whether token t of every response to one prompt decides the same part of the answer (a
    # fixed layout, e.g. frame codes). If so, dense credit compares a token with the group's
    # tokens at t; if not (free text), with the group's mean reward (`grpo.token_advantages`).
    aligned_responses: bool = True

    def token_scores(self, metric: str, responses: list[list[int]], predictions: list[Any], targets: list[Any],
                     length: int, tokenizer: PreTrainedTokenizerBase) -> np.ndarray:
        """Reward term `metric` split over the response tokens that decide it: float [B, length],
        for dense (per-token) credit in GRPO (`rlvr.dense_rewards`). `responses` are the
        generated ids that `predictions` were decoded from. Worlds whose metric does not split
        over tokens do not implement it."""
        raise NotImplementedError(f"{type(self).__name__} cannot split the reward {metric!r} over response "
                                  f"tokens; leave rlvr.dense_rewards empty for this world")

    @abstractmethod
    def metrics(self, predictions: list[Any], examples: list[Example]) -> dict[str, float]:
        """Task metrics of decoded predictions against the examples' targets."""

    def baselines(self, examples: list[Example]) -> dict[str, list[Any]]:
        """Predictions that need no model (e.g. "copy the last frame"), scored beside the models."""
        return {}

    def summarize(self, evals: dict[str, dict], baselines: dict[str, dict]) -> dict:
        """The results-file blocks of a demo: `evals` maps stage -> `pipeline.evaluate_model`
        output, `baselines` maps split -> baseline name -> metrics."""
        return {name: {"greedy": ev["greedy"], "sampled": ev["sampled"]} for name, ev in evals.items()}

    def save_samples(self, path: Path, examples: list[Example], predictions: list[Any]) -> Path | None:
        """Write a few predictions for the report (e.g. frames as .npz); text worlds need not."""
        return None

    def downstream(self, cfg: Any, stages: dict[str, Path]) -> dict:
        """Results of the world's downstream apps with the demo's trained models (e.g. a web
        agent planning with each world model), merged into the results file."""
        return {}

    def stats(self) -> dict[str, float]:
        """Counters the world wants in the training logs (e.g. non-finite decoder outputs)."""
        return {}

    def render(self, prediction: Any) -> str:
        """Human-readable form of a prediction, for reports."""
        return repr(prediction)


def response_text(response_ids: list[int], tokenizer: PreTrainedTokenizerBase) -> Optional[str]:
    """A text world's response as text, cut at the first EOS; None for ids that do not decode."""
    try:
        ids = [int(i) for i in response_ids]
        if tokenizer.eos_token_id in ids:
            ids = ids[: ids.index(tokenizer.eos_token_id)]
        return tokenizer.decode(ids, skip_special_tokens=True)
    except Exception:  # junk ids must never crash a rollout
        return None
