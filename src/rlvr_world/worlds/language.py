"""`LanguageWorld`: a world whose prompts and responses are text.

A text world only says how a transition reads (`prompt_text`, `target_text`), what its
ground truth is (`target`) and how response text parses back into a prediction (`parse`,
None for junk). Everything that turns text into tokens lives here, once:

* a tokenizer with a chat template (a pretrained instruct LM) gets the prompt as one user
  message with the generation prompt appended; any other tokenizer gets BOS + the text;
* the response is the target text followed by the tokenizer's EOS.

The same text interface is what the TRL and verl adapters (`rlvr_world.integrations`) hand
to those engines: `ground_truth` is a string a dataset column can carry, and
`target_from_ground_truth` turns it back into the object the world's rewards compare with.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, Optional

from transformers import PreTrainedTokenizerBase

from rlvr_world.sequence import Example, Generate
from rlvr_world.worlds.base import World, response_text


def has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_messages(prompt: str) -> list[dict[str, str]]:
    """The prompt as a conversation: one user turn (what TRL's and verl's datasets carry)."""
    return [{"role": "user", "content": prompt}]


def encode_prompt_text(prompt: str, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids of a prompt: the chat template when the tokenizer has one, else BOS + text."""
    if has_chat_template(tokenizer):
        text = tokenizer.apply_chat_template(chat_messages(prompt), tokenize=False, add_generation_prompt=True)
        return tokenizer.encode(text, add_special_tokens=False)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + tokenizer.encode(prompt, add_special_tokens=False)


def text_world(world: "str | World", why: str = "") -> "LanguageWorld":
    """The world itself, or the registered world of that name, checked to be a text world
    (the TRL and verl adapters read text); `why` ends the error message."""
    if isinstance(world, str):
        from rlvr_world.worlds import get_world

        world = get_world(world)
    if not isinstance(world, LanguageWorld):
        name = getattr(world, "name", type(world).__name__)
        raise ValueError(f"{name!r} is not a text world (LanguageWorld){': ' + why if why else ''}")
    return world


def token_ends(response_ids: list[int], tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Where each response token's text ends in the decoded response (`response_text`), up to
    the first EOS: the length of the decoded prefix that ends with the token. Decoding prefixes
    (not single tokens) keeps it right for any decoder, whatever it does with spaces."""
    ids = [int(i) for i in response_ids]
    if tokenizer.eos_token_id in ids:
        ids = ids[: ids.index(tokenizer.eos_token_id)]
    return [len(text) for text in tokenizer.batch_decode([ids[: t + 1] for t in range(len(ids))],
                                                         skip_special_tokens=True)]


class LanguageWorld(World):
    """Base of the text worlds (TextWorld, MiniWoB++, ByteSized32).

    Subclasses set `max_new_tokens`, `tokenizer_vocab_size` (and optionally
    `max_prompt_tokens`, `tokenizer_alphabet`) and implement the four text methods.
    """

    max_new_tokens: int = 128
    max_prompt_tokens: int = 0  # longer prompts are left out (counted in `stats`); 0 = keep all
    tokenizer_vocab_size: int = 2000
    tokenizer_alphabet: str = ""  # characters the fitted BPE must keep encodable beyond the defaults
    tokenizer_quote: str = ""  # quoted text becomes its own pre-token (see models/tokenizer.py)
    dropped_long: int = 0
    aligned_responses = False  # free-length text: token t decides different things in each answer

    @abstractmethod
    def prompt_text(self, transition: dict) -> str:
        """The state and action as the model reads them."""

    @abstractmethod
    def target_text(self, transition: dict) -> str:
        """The ground-truth response text (what MLE learns; `parse` reads it back as `target`)."""

    @abstractmethod
    def target(self, transition: dict) -> Any:
        """The ground-truth object the world's rewards and metrics compare a prediction with."""

    @abstractmethod
    def parse(self, text: str) -> Any:
        """A response's text as a prediction; None when it does not parse. Never raises."""

    def meta(self, transition: dict) -> dict:
        """Facts about a transition the metrics split on (e.g. `changed`)."""
        return {}

    def ground_truth(self, transition: dict) -> str:
        """The ground truth as a string (a TRL dataset column, verl's `reward_model.ground_truth`)."""
        return self.target_text(transition)

    def target_from_ground_truth(self, ground_truth: str) -> Any:
        """Inverse of `ground_truth`: the reward's target object."""
        return self.parse(ground_truth)

    def train_tokenizer(self, transitions: list[dict], out_dir: Path) -> PreTrainedTokenizerBase:
        from rlvr_world.models.tokenizer import train_word_bpe

        texts = (text for t in transitions for text in (self.prompt_text(t), self.target_text(t)))
        return train_word_bpe(texts, vocab_size=self.tokenizer_vocab_size, extra_alphabet=self.tokenizer_alphabet,
                              quote=self.tokenizer_quote)

    def encode_prompt(self, prompt: str, tokenizer: PreTrainedTokenizerBase) -> list[int]:
        return encode_prompt_text(prompt, tokenizer)

    def make_examples(self, transitions: list[dict], tokenizer: PreTrainedTokenizerBase) -> list[Example]:
        plan = (Generate(self.max_new_tokens),)
        examples = []
        for t in transitions:
            prompt = self.encode_prompt(self.prompt_text(t), tokenizer)
            if self.max_prompt_tokens and len(prompt) > self.max_prompt_tokens:
                self.dropped_long += 1
                continue
            examples.append(Example(
                prompt_ids=prompt,
                target_ids=tokenizer.encode(self.target_text(t), add_special_tokens=False) + [tokenizer.eos_token_id],
                plan=plan, target=self.target(t), meta=self.meta(t),
            ))
        return examples

    def decode(self, response_ids: list[int], tokenizer: PreTrainedTokenizerBase) -> Optional[Any]:
        text = response_text(response_ids, tokenizer)
        return None if text is None else self.parse(text)

    def stats(self) -> dict[str, float]:
        return {"prompts_too_long": float(self.dropped_long)} if self.max_prompt_tokens else {}
