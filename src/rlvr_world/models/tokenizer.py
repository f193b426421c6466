"""Tokenizers trained offline on a world's own text.

Text worlds use a small BPE over words and single punctuation marks: frequent words become
one token, unseen words (new object names in unseen games) still encode as sub-words rather
than collapsing into one unknown token. The result is a Hugging Face fast tokenizer, saved
with `save_pretrained`, so a model trained here loads in TRL, verl or vLLM with its tokenizer.

Decoding restores the original spacing ("at(P, kitchen: r)"); world codecs parse text
insensitively to spacing anyway.
"""

from __future__ import annotations

import itertools
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
_SUFFIX = "</w>"
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-'(),:;.!?+/&"


def train_word_bpe(texts: Iterable[str], vocab_size: int = 2000, min_frequency: int = 2,
                   extra_alphabet: str = "") -> PreTrainedTokenizerFast:
    """Train a BPE tokenizer over whitespace-separated chunks of the given texts.

    extra_alphabet: characters to keep encodable beyond the default letters, digits and
    punctuation (e.g. every printable character, for worlds with random strings).
    """
    alphabet = _ALPHABET + "".join(c for c in dict.fromkeys(extra_alphabet) if c not in _ALPHABET)
    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"], end_of_word_suffix=_SUFFIX))
    # Whitespace-separated chunks keep their punctuation, so BPE learns "at(P," or "kitchen:"
    # as single tokens: prompts are ~2.5x shorter than with punctuation split off.
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.BPEDecoder(suffix=_SUFFIX)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
        end_of_word_suffix=_SUFFIX,
        initial_alphabet=list(alphabet),
        show_progress=False,
    )
    # Each character also as a one-letter word gives its word-final form ("x</w>"), so every
    # letter and digit stays encodable and unseen words never become <unk>.
    tok.train_from_iterator(itertools.chain(texts, [" ".join(alphabet)]), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
