"""The word-level BPE fitted on a world's own text: exact pre-tokenization by hand, lossless
decoding, and (with `quote`) quoted text that tokenizes the same wherever it stands."""

import pytest

from rlvr_world.models.tokenizer import train_word_bpe

PAGE = ["[5] textbox #tt value='lower' focused", "type [5] 'TRUMAN'", "[5] textbox #tt value='lowerTRUMAN' focused",
        "[3] button 'Okay', don't 'john smith' value=''", "type [7] 'Next'", "[7] textbox value='Next'"]


def pieces(tokenizer, text):
    return [p for p, _ in tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)]


def test_default_pre_tokens_are_whitespace_chunks():
    tok = train_word_bpe(PAGE * 3, vocab_size=120)
    assert pieces(tok, "[7] textbox value='Next'\ntype [7] 'Next'") == [
        "[7]", "textbox", "value='Next'", "type", "[7]", "'Next'"]


def test_quote_splits_quoted_text_from_its_chunk():
    tok = train_word_bpe(PAGE * 3, vocab_size=120, quote="'")
    assert pieces(tok, "[5] textbox value='lowerTRUMAN' focused\ntype [5] 'TRUMAN'") == [
        "▁[5]", "▁textbox", "▁value='", "lowerTRUMAN", "'", "▁focused", "▁type", "▁[5]", "▁'", "TRUMAN", "'"]
    # A closing quote followed by punctuation, an apostrophe, a value with a space, an empty value.
    assert pieces(tok, "'Okay', don't 'john smith' value=''") == [
        "▁'", "Okay", "'", ",", "▁don", "'", "t", "▁'", "john", "▁smith", "'", "▁value='", "'"]


def test_quoted_value_has_the_same_tokens_in_the_action_and_the_page():
    tok = train_word_bpe(PAGE * 3, vocab_size=400, quote="'")
    assert tok.tokenize("type [7] 'Next'") == ["▁type", "▁[7]", "▁'", "Next", "'"]
    assert tok.tokenize("[7] textbox value='Next'") == ["▁[7]", "▁textbox", "▁value='", "Next", "'"]
    without = train_word_bpe(PAGE * 3, vocab_size=400)  # whole chunks: unrelated tokens
    assert without.tokenize("type [7] 'Next'") == ["type</w>", "[7]</w>", "'Next'</w>"]
    assert without.tokenize("[7] textbox value='Next'") == ["[7]</w>", "textbox</w>", "value='Next'</w>"]


@pytest.mark.parametrize("quote", ["", "'"])
@pytest.mark.parametrize("text", [
    "[5] textbox #tt value='lowerTRUMAN' focused",
    "[3] button 'Okay', don't 'john smith' value=''",
    "New items:\nNone\nDeleted items:\n[4] text 'x~y' Updated items: [9] link 'a''b'",
    "unseen ZQXJ words and 'quotes' 12'34",
])
def test_decoding_restores_the_text_up_to_whitespace(quote, text):
    tok = train_word_bpe(PAGE * 3, vocab_size=120, quote=quote, extra_alphabet="~")
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == " ".join(text.split())
