"""Tokenizers trained offline on a world's own text.

Text worlds use a small BPE over words and single punctuation marks: frequent words become
one token, unseen words (new object names in unseen games) still encode as sub-words rather
than collapsing into one unknown token. The result is a Hugging Face fast tokenizer, saved
with `save_pretrained`, so a model trained here loads in TRL, verl or vLLM with its tokenizer.

Decoding restores the original spacing ("at(P, kitchen: r)"); world codecs parse text
insensitively to spacing anyway.

A world whose responses copy quoted strings from its prompt (a value typed into a web form)
can pass its quote character (`quote="'"`): what stands between an opening and a closing quote
becomes its own pre-token, so `'Next'` in the action and `value='Next'` in the page share the
tokens of `Next` and the copy is token for token. (A value appended to another,
`value='lowerTRUMAN'`, is one pre-token, whose merges need not match those of its parts.)
Splitting inside a chunk needs word starts marked ("▁word") rather than word ends
("word</w>"), otherwise decoding would put a space at every split.
"""

from __future__ import annotations

import itertools
import re
from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
_SUFFIX = "</w>"
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-'(),:;.!?+/&"
_WORD_START = "\u2581"  # "▁", as in SentencePiece


def train_word_bpe(texts: Iterable[str], vocab_size: int = 2000, min_frequency: int = 2,
                   extra_alphabet: str = "", quote: str = "") -> PreTrainedTokenizerFast:
    """Train a BPE tokenizer over whitespace-separated chunks of the given texts.

    extra_alphabet: characters to keep encodable beyond the default letters, digits and
    punctuation (e.g. every printable character, for worlds with random strings).
    quote: a quote character whose quoted text is split from the rest of its chunk (see the
    module docstring).
    """
    alphabet = _ALPHABET + "".join(c for c in dict.fromkeys(extra_alphabet) if c not in _ALPHABET)
    if quote:
        q = re.escape(quote)
        tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement=_WORD_START, prepend_scheme="always", split=False),
            # "▁value='Next'," -> "▁value='" "Next'" "," -> ... "Next" "'": an opening quote (at a
            # word start or after "=") stays with what precedes it, a closing one stands alone.
            pre_tokenizers.Split(Regex(q), behavior="merged_with_previous"),
            pre_tokenizers.Split(Regex(f"(?<=[^={_WORD_START}{q}]){q}$"), behavior="isolated"),
        ])
        tok.decoder = decoders.Metaspace(replacement=_WORD_START, prepend_scheme="always", split=False)
        trainer_kwargs, alphabet = {}, alphabet + _WORD_START
    else:
        tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"], end_of_word_suffix=_SUFFIX))
        # Whitespace-separated chunks keep their punctuation, so BPE learns "at(P," or "kitchen:"
        # as single tokens: prompts are ~2.5x shorter than with punctuation split off.
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tok.decoder = decoders.BPEDecoder(suffix=_SUFFIX)
        trainer_kwargs = {"end_of_word_suffix": _SUFFIX}
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=list(alphabet),
        show_progress=False,
        **trainer_kwargs,
    )
    # Each character also as a one-letter word gives its word form ("x</w>" or "▁x"), so every
    # letter and digit stays encodable and unseen words never become <unk>.
    tok.train_from_iterator(itertools.chain(texts, [" ".join(alphabet)]), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
