"""`TextWorldWorld`: predict which TextWorld facts a command adds and removes.

Prompt: the facts the player can see and the command (codec.render_prompt). Response: the
difference (codec.render_diff), ending at EOS. A prediction is ``{"added": frozenset,
"removed": frozenset}`` or None when the response does not parse; the default reward is the
binary exact match of the whole difference (the paper's text-game reward).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rlvr_world.rewards.set_diff import match_counts, exact, precision_recall_f1
from rlvr_world.sequence import Example
from rlvr_world.worlds.language import LanguageWorld
from rlvr_world.worlds.textworld import collect as tw_collect
from rlvr_world.worlds.textworld.codec import parse_diff, render_diff, render_prompt
from rlvr_world.worlds.textworld.collect import TextWorldCollectConfig


def prompt_text(transition: dict) -> str:
    return render_prompt(transition["view"], transition["command"])


def target_text(transition: dict) -> str:
    return render_diff(transition["added"], transition["removed"])


class TextWorldWorld(LanguageWorld):
    """TextWorld state-difference prediction.

    max_new_tokens: response budget of the sampler (diffs are 1-4 facts, ~10 tokens each).
    tokenizer_vocab_size: size of the word-level BPE trained on the training transitions.
    """

    name = "textworld"
    default_reward = "binary"  # the paper's text-game reward: exact match of the whole difference
    collect_config = TextWorldCollectConfig
    eval_rewards = ("binary", "task_specific", "f1")
    task_specific_reward = "task_specific"
    headline_metrics = ("accuracy", "accuracy_changed", "accuracy_unchanged", "precision", "recall", "f1",
                        "reward_binary", "reward_task_specific", "parse_failure_rate", "truncated_rate")

    def __init__(self, max_new_tokens: int = 96, tokenizer_vocab_size: int = 2000):
        self.max_new_tokens = max_new_tokens
        self.tokenizer_vocab_size = tokenizer_vocab_size

    def collect(self, cfg: Any, data_dir: Path, seed: int) -> dict:
        return tw_collect.collect(cfg, Path(data_dir), seed)

    def load_transitions(self, data_dir: Path, split: str) -> list[dict]:
        return tw_collect.load_transitions(Path(data_dir), split)

    def prompt_text(self, transition: dict) -> str:
        return prompt_text(transition)

    def target_text(self, transition: dict) -> str:
        return target_text(transition)

    def target(self, transition: dict) -> dict:
        return {"added": frozenset(transition["added"]), "removed": frozenset(transition["removed"])}

    def meta(self, transition: dict) -> dict:
        return {"changed": bool(transition["changed"]), "game": transition["game"],
                "verb": transition["command"].split()[0]}

    def parse(self, text: str) -> dict | None:
        return parse_diff(text)

    def metrics(self, predictions: list[Any], examples: list[Example]) -> dict[str, float]:
        """Exact-match accuracy (overall, changed, unchanged), micro P/R/F1 over facts, mean F1.

        An unparseable prediction (None) counts as wrong and, in the micro scores, as having
        predicted no fact. Accuracies over an empty subset are NaN.
        """
        if len(predictions) != len(examples):
            raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples")
        empty = {"added": frozenset(), "removed": frozenset()}
        hits, f1s, tp, fp, fn = [], [], 0, 0, 0
        for pred, ex in zip(predictions, examples):
            hits.append(exact(pred, ex.target))
            f1s.append(precision_recall_f1(pred, ex.target)[2])
            c = match_counts(pred if pred is not None else empty, ex.target)
            tp, fp, fn = tp + c[0], fp + c[1], fn + c[2]

        def mean(xs):
            return sum(xs) / len(xs) if xs else math.nan

        changed = [h for h, ex in zip(hits, examples) if ex.meta.get("changed")]
        unchanged = [h for h, ex in zip(hits, examples) if not ex.meta.get("changed")]
        if tp + fp + fn == 0:
            precision = recall = f1 = 1.0
        else:
            precision = tp / (tp + fp) if tp + fp else 0.0
            recall = tp / (tp + fn) if tp + fn else 0.0
            f1 = 2 * tp / (2 * tp + fp + fn)
        return {
            "accuracy": mean(hits),
            "accuracy_changed": mean(changed),
            "accuracy_unchanged": mean(unchanged),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "mean_f1": mean(f1s),
            "parse_failure_rate": mean([p is None for p in predictions]),
            "n": float(len(examples)),
            "n_changed": float(len(changed)),
        }

    def summarize(self, evals: dict[str, dict], baselines: dict[str, dict]) -> dict:
        out: dict = {"metric": "overall_accuracy",
                     "test_split": {"n": next(iter(evals.values()))["n"], "games_unseen": True}}
        for name, ev in evals.items():
            out[name] = {"overall_accuracy": ev["greedy"].get("accuracy"), "greedy": ev["greedy"], "sampled": ev["sampled"]}
        return out

    def render(self, prediction: Any) -> str:
        if prediction is None:
            return "<unparseable>"
        return render_diff(prediction["added"], prediction["removed"])
