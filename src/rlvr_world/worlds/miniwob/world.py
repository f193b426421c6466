"""`MiniWoBWorld`: predict how a MiniWoB++ page changes after a click or a typed value.

Prompt: the task's instruction, the page listing, the action and the item it acts on.
Response: the difference in the paper's form (`page.render_diff`), ending at EOS. A prediction is
``{"new": frozenset, "deleted": frozenset, "updated": frozenset}`` of item lines, or None when
the response does not parse; the default reward is the paper's web reward, micro F1 over the
items of the three sections.
"""

from __future__ import annotations

import bisect
import math
import string
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from rlvr_world.rewards.set_diff import exact, match_counts, precision_recall_f1
from rlvr_world.sequence import Example
from rlvr_world.worlds.base import response_text
from rlvr_world.worlds.language import LanguageWorld, token_ends
from rlvr_world.worlds.miniwob import collect as web_collect
from rlvr_world.worlds.miniwob.browser import ACTION, action_kind
from rlvr_world.worlds.miniwob.collect import MiniWoBCollectConfig
from rlvr_world.worlds.miniwob.page import EMPTY, SECTIONS, diff_spans, parse_diff, render_diff, target_sets
from rlvr_world.worlds.miniwob.rename import rename_share

EMPTY_DIFF = {s: frozenset() for s in SECTIONS}


def action_element(page_lines, action: str) -> str:
    """The page item the action acts on (its listing line), or ``missing``."""
    m = ACTION.match(action)
    if m is None:
        return "missing"
    head = f"[{m.group(2)}] "
    return next((line for line in page_lines if line.startswith(head)), "missing")


def prompt_text(utterance: str, page_lines, action: str, repeat_element: bool = True) -> str:
    """``task: ...`` / ``page:`` + one item per line / ``action: ...`` / ``element: ...`` / ``diff:``.

    The ``element:`` line repeats the acted-on item. Without it, a small model has to find the
    item by its id before it can compare the item's text with the instruction; with 50 episodes
    per task the demo's 3.9M model never learned that lookup and predicted the same reward for
    every button (see docs/results_miniwob.md)."""
    lines = [f"task: {utterance}", "page:", *page_lines, f"action: {action}"]
    if repeat_element:
        lines.append(f"element: {action_element(page_lines, action)}")
    return "\n".join([*lines, "diff:"])


def transition_target(t: dict) -> str:
    return render_diff(t["diff"])


class MiniWoBWorld(LanguageWorld):
    """MiniWoB++ page-difference prediction.

    max_new_tokens: response budget of the sampler.
    max_prompt_tokens: transitions with longer prompts are left out (counted in `stats`).
    tokenizer_vocab_size: size of the word-level BPE trained on the training transitions.
    repeat_element: repeat the acted-on page item after the action in the prompt.
    split_quoted: the tokenizer splits quoted text from the rest of its chunk, so that a typed
        value (`'Next'`) and the page's `value='Next'` share the tokens of `Next` and copying
        is token for token; with whole chunks (the default), the two spellings have unrelated
        tokens. Off by default: at the demo's scale the model still does not copy
        (docs/results_miniwob.md).
    rename_typed: share of the training transitions that type a value in which that value is
        renamed to a random string of the same shape wherever the transition shows it
        (`rename.rename_typed`), so that recalling a value seen in training stops paying and
        only copying the typed one from the prompt does. 0 = train on the recorded values only.
        Off by default: the demo's model learned the values' shape from it, not the copy.
    """

    name = "miniwob"
    default_reward = "f1"  # the paper's web reward
    collect_config = MiniWoBCollectConfig
    eval_rewards = ("f1", "exact")
    headline_metrics = ("f1", "precision", "recall", "exact", "f1_click", "f1_type", "f1_terminal",
                        "exact_changed", "exact_unchanged", "parse_failure_rate", "truncated_rate")

    def __init__(self, max_new_tokens: int = 128, max_prompt_tokens: int = 448, tokenizer_vocab_size: int = 3000,
                 repeat_element: bool = True, split_quoted: bool = False, rename_typed: float = 0.0):
        if not 0.0 <= rename_typed <= 1.0:
            raise ValueError(f"world_options.rename_typed must lie in [0, 1], got {rename_typed}")
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.tokenizer_vocab_size = tokenizer_vocab_size
        self.repeat_element = repeat_element
        # Passwords and typed values are random strings: every printable character must stay encodable.
        # (A byte-level BPE doubled the sequence lengths and, per second of training, did worse.)
        self.tokenizer_alphabet = "".join(c for c in string.printable if not c.isspace())
        self.tokenizer_quote = "'" if split_quoted else ""
        self.rename_typed = rename_typed
        self.dropped_long = 0

    def collect(self, cfg: Any, data_dir: Path, seed: int) -> dict:
        return web_collect.collect(cfg, Path(data_dir), seed)

    def load_transitions(self, data_dir: Path, split: str) -> list[dict]:
        return web_collect.load_transitions(Path(data_dir), split)

    def training_transitions(self, transitions: list[dict], seed: int) -> list[dict]:
        return rename_share(transitions, self.rename_typed, seed)

    def prompt_text(self, transition: dict) -> str:
        return self.action_prompt(transition["utterance"], [line for _, line in transition["page"]], transition["action"])

    def action_prompt(self, utterance: str, page_lines, action: str) -> str:
        """The prompt for `action` on a page (a recorded one, or the MPC agent's live one)."""
        return prompt_text(utterance, page_lines, action, self.repeat_element)

    def target_text(self, transition: dict) -> str:
        return transition_target(transition)

    def target(self, transition: dict) -> dict:
        return target_sets(transition["diff"])

    def meta(self, transition: dict) -> dict:
        return {"task": transition["task"], "action": action_kind(transition["action"]),
                "changed": any(self.target(transition).values()), "terminal": bool(transition["done"])}

    def parse(self, text: str) -> dict | None:
        return parse_diff(text)

    def token_scores(self, metric: str, responses: list[list[int]], predictions: list[Any], targets: list[Any],
                     length: int, tokenizer: PreTrainedTokenizerBase) -> np.ndarray:
        """F1 credited item by item: the tokens of a listed item score 1 if the item is in that
        section of the target and 0 if not; a section's ``None`` scores 1 if the section is
        empty. Headers, EOS and anything between items score the response's F1, the same for
        every token, as without dense credit; so does all of an unparseable response (0)."""
        if metric != "f1":
            raise NotImplementedError(f"the web world credits only 'f1' item by item, not {metric!r}")
        out = np.zeros((len(responses), length))
        for i, (ids, prediction, target) in enumerate(zip(responses, predictions, targets)):
            out[i, : len(ids)] = precision_recall_f1(prediction, target)[2]
            if prediction is None:
                continue
            spans = diff_spans(response_text(ids, tokenizer))  # parsed, so never None: three sections
            starts = [s[0] for s in spans]
            for t, end in enumerate(token_ends(ids, tokenizer)):
                k = bisect.bisect_right(starts, end - 1) - 1  # the last span starting at or before the token's last character
                if k >= 0 and end <= spans[k][1]:
                    _, _, section, item = spans[k]
                    out[i, t] = float(not target[section]) if item == EMPTY else float(item in target[section])
        return out

    def metrics(self, predictions: list[Any], examples: list[Example]) -> dict[str, float]:
        """P / R / F1 (mean of the per-transition micro scores, as the reward) and exact match,
        overall and split by action type, by whether the page changed, and on episode-ending
        actions; corpus-level `micro_f1` too. An unparseable prediction scores 0 and, in the
        corpus counts, as having predicted nothing."""
        if len(predictions) != len(examples):
            raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples")
        out = _scores(predictions, examples, "")
        subsets = {
            "click": lambda ex: ex.meta["action"] == "click",
            "type": lambda ex: ex.meta["action"] == "type",
            "changed": lambda ex: ex.meta["changed"],
            "unchanged": lambda ex: not ex.meta["changed"],
            "terminal": lambda ex: ex.meta["terminal"],
        }
        for name, keep in subsets.items():
            pairs = [(p, ex) for p, ex in zip(predictions, examples) if keep(ex)]
            out.update(_scores([p for p, _ in pairs], [ex for _, ex in pairs], f"_{name}"))
        out["accuracy"] = out["exact"]  # the engine's progress bars and plots read "accuracy"
        out["parse_failure_rate"] = _mean([p is None for p in predictions])
        out["n"] = float(len(examples))
        return out

    def summarize(self, evals: dict[str, dict], baselines: dict[str, dict]) -> dict:
        first = next(iter(evals.values()))
        out: dict = {"metric": "f1", "test_split": {"n": first["n"], "task_seeds_unseen": True},
                     "state_prediction": {}}
        for name, ev in evals.items():
            block = {"f1": ev["greedy"].get("f1"), "exact": ev["greedy"].get("exact"),
                     "greedy": ev["greedy"], "sampled": ev["sampled"]}
            for split, other in ev.get("other_splits", {}).items():
                block[split] = {"greedy": other["greedy"]}
            out["state_prediction"][name] = block
        out["baselines"] = baselines
        return out

    def baselines(self, examples: list[Example]) -> dict[str, list[Any]]:
        """"Nothing changes": the page is predicted to stay as it is."""
        return {"no_change": [EMPTY_DIFF for _ in examples]}

    def render(self, prediction: Any) -> str:
        if prediction is None:
            return "<unparseable>"
        return render_diff({s: sorted(prediction[s]) for s in SECTIONS})

    def downstream(self, cfg, stages: dict[str, Path]) -> dict:
        """The MPC web agent with each world model (apps/web_agent.py), for the demo's results;
        none with `agent.episodes_per_task=0` (e.g. a model too slow to plan with here)."""
        from rlvr_world.apps.web_agent import AgentConfig, agent_comparison
        from rlvr_world.config import from_dict

        if from_dict(AgentConfig, cfg.agent, prefix="agent.").episodes_per_task <= 0:
            return {}
        return {"agent": agent_comparison(cfg, self, stages)}


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else math.nan


def _scores(predictions: list, examples: list[Example], suffix: str) -> dict[str, float]:
    """Means over transitions of the per-transition P / R / F1 (the reward) and exact match,
    plus corpus-level micro P / R / F1 pooling every item of every transition."""
    prf = [precision_recall_f1(p, ex.target) for p, ex in zip(predictions, examples)]
    tp = fp = fn = 0
    for pred, ex in zip(predictions, examples):
        c = match_counts(pred if pred is not None else EMPTY_DIFF, ex.target)
        tp, fp, fn = tp + c[0], fp + c[1], fn + c[2]
    micro = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else (1.0 if examples else math.nan)
    return {f"precision{suffix}": _mean(x[0] for x in prf), f"recall{suffix}": _mean(x[1] for x in prf),
            f"f1{suffix}": _mean(x[2] for x in prf), f"micro_f1{suffix}": micro,
            f"exact{suffix}": _mean(exact(p, ex.target) for p, ex in zip(predictions, examples)),
            f"n{suffix}": float(len(examples))}
