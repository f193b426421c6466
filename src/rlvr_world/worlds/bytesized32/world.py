"""`ByteSized32World`: predict how a text game's objects and score change after an action.

Prompt: the task, the game's rules (when the user gave them), the current objects one per
line, the score, the uuid base and the action (codec.render_prompt). Response: the
difference after the action and one game tick as JSON (codec.render_diff), ending at EOS.
A prediction is a normalised difference ``{"modified", "removed", "score"}`` or None; the
target carries the current and the true next state, because the rewards rebuild the full
next state from the predicted difference (rewards/bytesized32.py). Default reward: the
binary exact match of that rebuilt state (the paper's text-game reward).
"""

from __future__ import annotations

import json
import math
import string
from pathlib import Path
from typing import Any

from rlvr_world.rewards.bytesized32 import score_prediction, task_specific_value
from rlvr_world.sequence import Example
from rlvr_world.worlds.bytesized32 import collect as bs_collect
from rlvr_world.worlds.bytesized32.codec import parse_diff, render_diff, render_prompt, state_diff
from rlvr_world.worlds.bytesized32.collect import ByteSized32CollectConfig
from rlvr_world.worlds.language import LanguageWorld

NO_CHANGE = {"modified": [], "removed": [], "score": {}}


class ByteSized32World(LanguageWorld):
    """ByteSized32 state-difference prediction.

    max_new_tokens: response budget of the sampler (a difference lists changed objects in full).
    max_prompt_tokens: transitions with longer prompts are left out (counted in `stats`); 0 = keep all.
    tokenizer_vocab_size: size of the word-level BPE trained on the training transitions.
    rules_in_prompt: show the game's rules (when collected) in the prompt.
    """

    name = "bytesized32"
    default_reward = "bytesized32_binary"
    collect_config = ByteSized32CollectConfig
    eval_rewards = ("bytesized32_binary", "bytesized32_task_specific")
    task_specific_reward = "bytesized32_task_specific"
    headline_metrics = ("accuracy", "accuracy_changed", "accuracy_unchanged", "task_specific", "object_accuracy",
                        "score_accuracy", "changed_accuracy", "parse_failure_rate", "truncated_rate")

    def __init__(self, max_new_tokens: int = 256, max_prompt_tokens: int = 0, tokenizer_vocab_size: int = 2000,
                 rules_in_prompt: bool = True):
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.tokenizer_vocab_size = tokenizer_vocab_size
        self.rules_in_prompt = rules_in_prompt
        # JSON punctuation and any printable character a property value may hold stay encodable.
        self.tokenizer_alphabet = "".join(c for c in string.printable if not c.isspace())
        self.dropped_long = 0

    def collect(self, cfg: Any, data_dir: Path, seed: int) -> dict:
        return bs_collect.collect(cfg, Path(data_dir), seed)

    def load_transitions(self, data_dir: Path, split: str) -> list[dict]:
        return bs_collect.load_transitions(Path(data_dir), split)

    def prompt_text(self, transition: dict) -> str:
        current = transition["current"]
        return render_prompt(current["objects"], current["score"], transition["action"], transition["task"],
                             transition["uuid_base"], transition.get("rules") if self.rules_in_prompt else None)

    def target_text(self, transition: dict) -> str:
        return render_diff(bs_collect.target_diff(transition))

    def target(self, transition: dict) -> dict:
        return bs_collect.target_of(transition)

    def ground_truth(self, transition: dict) -> str:
        """The current and the true next state as JSON: the binary reward needs both."""
        return json.dumps(self.target(transition))

    def target_from_ground_truth(self, ground_truth: str) -> dict:
        return json.loads(ground_truth)

    def meta(self, transition: dict) -> dict:
        return {"changed": bool(transition["changed"]), "game": transition["game"]}

    def parse(self, text: str) -> dict | None:
        return parse_diff(text)

    def metrics(self, predictions: list[Any], examples: list[Example]) -> dict[str, float]:
        """Exact-match accuracy (overall, changed, unchanged), the task-specific reward and its
        parts: object accuracy, score accuracy and, over changed transitions, the accuracy on
        what changed. An unparseable prediction scores 0 on all. Means of empty subsets are NaN."""
        if len(predictions) != len(examples):
            raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples")
        rows = []
        for pred, ex in zip(predictions, examples):
            s = score_prediction(pred, ex.target)
            rows.append({
                "changed": bool(ex.meta.get("changed")),
                "exact": s.exact if s else 0.0,
                "task_specific": task_specific_value(s) if s else 0.0,
                "objects": s.objects if s else 0.0,
                "score": s.score if s else 0.0,
                "changed_acc": (s.changed or 0.0) if s else 0.0,
            })
        changed = [r for r in rows if r["changed"]]
        unchanged = [r for r in rows if not r["changed"]]
        return {
            "accuracy": _mean(r["exact"] for r in rows),
            "accuracy_changed": _mean(r["exact"] for r in changed),
            "accuracy_unchanged": _mean(r["exact"] for r in unchanged),
            "task_specific": _mean(r["task_specific"] for r in rows),
            "object_accuracy": _mean(r["objects"] for r in rows),
            "score_accuracy": _mean(r["score"] for r in rows),
            "changed_accuracy": _mean(r["changed_acc"] for r in changed),
            "parse_failure_rate": _mean(p is None for p in predictions),
            "n": float(len(examples)),
            "n_changed": float(len(changed)),
        }

    def baselines(self, examples: list[Example]) -> dict[str, list[Any]]:
        """"Nothing changes": the next state is predicted to be the current one."""
        return {"no_change": [NO_CHANGE for _ in examples]}

    def summarize(self, evals: dict[str, dict], baselines: dict[str, dict]) -> dict:
        first = next(iter(evals.values()))
        out: dict = {"metric": "accuracy", "test_split": {"n": first["n"]}, "state_prediction": {}}
        for name, ev in evals.items():
            out["state_prediction"][name] = {"accuracy": ev["greedy"].get("accuracy"),
                                             "task_specific": ev["greedy"].get("task_specific"),
                                             "greedy": ev["greedy"], "sampled": ev["sampled"]}
        out["baselines"] = baselines
        return out

    def render(self, prediction: Any) -> str:
        if prediction is None:
            return "<unparseable>"
        if isinstance(prediction, dict) and "current" in prediction and "next" in prediction:  # a target
            cur, nxt = prediction["current"], prediction["next"]
            return render_diff(state_diff(cur["objects"], nxt["objects"], nxt["score"]))
        return render_diff(prediction)


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else math.nan
