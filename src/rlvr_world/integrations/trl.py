"""A text world's verifiable rewards and data in TRL's `GRPOTrainer`.

TRL calls each reward function as ``fn(prompts=..., completions=..., completion_ids=...,
trainer_state=..., <every other dataset column>=...)`` and wants one float per completion.
`reward_functions` gives one such function per term of a reward spec (``"binary"``,
``"f1:1,exact:0.2"``; default: the world's `default_reward`); each parses a completion with
the world's `parse` and scores it against the `ground_truth` column. The spec's weights are
not applied inside the functions: they go to `GRPOConfig(reward_weights=...)`, so TRL logs
every term unweighted under ``rewards/<world>_<term>/mean`` and sums them with the weights.
`grpo_dataset` builds the matching dataset: `prompt`, `ground_truth`, and the world's meta
facts (TextWorld: `changed`, `game`, `verb`) as extra columns.

    from trl import GRPOConfig, GRPOTrainer
    from rlvr_world.integrations.trl import load_grpo_dataset, reward_functions, reward_weights

    spec = "binary:1,f1:0.5"
    trainer = GRPOTrainer(
        model=model, processing_class=tokenizer,
        reward_funcs=reward_functions("textworld", spec),
        train_dataset=load_grpo_dataset("textworld", "runs/textworld/data", "train", tokenizer=tokenizer),
        args=GRPOConfig(output_dir="runs/trl", reward_weights=reward_weights("textworld", spec)),
    )
    trainer.train()

Junk never raises: an unparseable completion (`parse` gives None) scores 0, and a reward
that raises or is not finite scores 0 too (`WeightedReward.score`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rlvr_world.rewards import WeightedReward
from rlvr_world.worlds.language import LanguageWorld, chat_messages, has_chat_template, text_world

RESERVED_COLUMNS = ("prompt", "ground_truth", "completion", "completion_ids")


def reward_terms(world: str | LanguageWorld, spec: str | None = None) -> list[tuple[str, float]]:
    """(reward name, weight) per term of `spec`, default the world's `default_reward`."""
    return WeightedReward.parse(spec or text_world(world).default_reward).terms


def completion_text(completion: Any) -> str:
    """A completion as text: a string as is; conversational (a list of messages) -> the last
    assistant message's content. Anything else reads as "" (which no world parses)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)):
        for message in reversed(completion):
            if isinstance(message, dict) and message.get("role") == "assistant":
                content = message.get("content")
                if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
                    return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
                return content if isinstance(content, str) else ""
    return ""


class TermReward:
    """One reward term of a text world, called the way TRL's `GRPOTrainer` calls a reward function.

    An object rather than a closure so that it pickles; `__name__` is what TRL logs
    (``rewards/textworld_binary/mean``). The weight of the term is not applied here (see
    `reward_weights`). With `log_parse_failures`, it also logs the fraction of completions
    that did not parse through TRL's `log_metric` (one function of a set does).
    """

    def __init__(self, world: LanguageWorld, reward: str, log_parse_failures: bool = False):
        self.world, self.reward = world, WeightedReward([(reward, 1.0)])
        self.log_parse_failures = log_parse_failures
        self.__name__ = f"{world.name}_{reward}"

    def __call__(self, prompts: list, completions: list, ground_truth: list[str] | None = None,
                 **kwargs) -> list[float]:
        """One float per completion; `ground_truth` is the dataset column of that name."""
        if ground_truth is None:
            raise ValueError(f"{self.__name__}: the dataset has no `ground_truth` column (build it with grpo_dataset)")
        predictions = [self.world.parse(completion_text(c)) for c in completions]
        targets = [self.world.target_from_ground_truth(g) if isinstance(g, str) else None for g in ground_truth]
        rewards, _ = self.reward.score(predictions, targets)  # a raising or non-finite reward scores 0
        log_metric = kwargs.get("log_metric")
        if self.log_parse_failures and callable(log_metric) and predictions:
            log_metric(f"{self.world.name}_parse_failure_rate", sum(p is None for p in predictions) / len(predictions))
        return rewards

    def __repr__(self) -> str:
        return f"TermReward({self.__name__})"


def reward_functions(world: str | LanguageWorld, spec: str | None = None) -> list[Callable[..., list[float]]]:
    """TRL reward functions, one per term of `spec` (default: the world's `default_reward`).

    Each is called as ``fn(prompts, completions, ground_truth, **kwargs) -> list[float]``,
    with completions as strings or conversations; any other keyword (`completion_ids`,
    `trainer_state`, `log_metric`, dataset columns) is accepted. The weights of `spec`
    belong in `GRPOConfig(reward_weights=reward_weights(world, spec))`; without them TRL
    weights every term 1.
    """
    world = text_world(world)
    return [TermReward(world, name, log_parse_failures=i == 0) for i, (name, _) in enumerate(reward_terms(world, spec))]


def reward_weights(world: str | LanguageWorld, spec: str | None = None) -> list[float]:
    """The weights of `spec`'s terms, in the order of `reward_functions(world, spec)`."""
    return [weight for _, weight in reward_terms(world, spec)]


def bos_prefix(tokenizer) -> str:
    """The BOS token's text when the tokenizer does not add BOS itself, else "".

    TRL tokenises a plain-text prompt with `tokenizer(text)`; our word tokenizer adds no
    special tokens there, while our own trainer feeds BOS + prompt (`encode_prompt_text`).
    """
    bos_id = tokenizer.bos_token_id
    if bos_id is None or tokenizer("x")["input_ids"][:1] == [bos_id]:
        return ""
    return tokenizer.bos_token


def grpo_dataset(world: str | LanguageWorld, transitions: list[dict], chat: bool | None = None,
                 tokenizer=None):
    """A `datasets.Dataset` for TRL's `GRPOTrainer`, one row per transition.

    Columns: `prompt` (the world's prompt text, or one user message when `chat`), `ground_truth`
    (the world's ground-truth string, which the reward functions read back) and the world's
    `meta` facts (e.g. `changed`).
    chat: None = chat messages when `tokenizer` has a chat template, plain text otherwise.
    tokenizer: optional; given one, a plain prompt starts with the BOS text when the tokenizer
      does not add BOS itself, so TRL's prompt ids equal `world.encode_prompt`'s, and prompts
      longer than the world's `max_prompt_tokens` are left out (as `make_examples` does).
    """
    from datasets import Dataset

    world = text_world(world)
    if chat is None:
        chat = tokenizer is not None and has_chat_template(tokenizer)
    prefix = "" if chat or tokenizer is None else bos_prefix(tokenizer)
    rows = []
    for t in transitions:
        text = world.prompt_text(t)
        if tokenizer is not None and world.max_prompt_tokens:
            if len(world.encode_prompt(text, tokenizer)) > world.max_prompt_tokens:
                continue
        meta = world.meta(t)
        clash = set(meta) & set(RESERVED_COLUMNS)
        if clash:
            raise ValueError(f"{world.name}: meta keys {sorted(clash)} clash with the columns TRL reserves")
        rows.append({"prompt": chat_messages(text) if chat else prefix + text,
                     "ground_truth": world.ground_truth(t), **meta})
    return Dataset.from_list(rows)


def load_grpo_dataset(world: str | LanguageWorld, data_dir: str | Path, split: str = "train",
                      chat: bool | None = None, tokenizer=None):
    """`grpo_dataset` of one split of a collected cache (a run's `data` folder)."""
    world = text_world(world)
    return grpo_dataset(world, world.load_transitions(Path(data_dir), split), chat=chat, tokenizer=tokenizer)
