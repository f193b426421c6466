"""TextWorld codec: exact rendering, round trips through the word tokenizer, junk handling,
and the world's decode / metrics built on it."""

from __future__ import annotations

import math
import random
import re

import pytest

from rlvr_world.models.tokenizer import train_word_bpe
from rlvr_world.sequence import Example, Generate
from rlvr_world.worlds.textworld.codec import format_fact, parse_diff, parse_fact, render_diff, render_prompt

# Names as TextWorld's house grammar writes them: multi-word, capitals, digits, ' and -.
HAND_FACTS = [
    "at(P, red room: r)",
    "at(Henderson's limited edition box: c, dish-pit: r)",
    "in(napkin: o, I)",
    "in(type 6 key: k, Henderson's safe: c)",
    "on(pair of headphones: o, non-euclidean chest: c)",
    "link(spare room: r, TextWorld style gateway: d, steam room: r)",
    "match(Microsoft passkey: k, Quote of the Day Calendar: c)",
    "open(wooden door: d)",
    "free(laundry place: r, recreation zone: r)",
    "north_of(attic: r, scullery: r)",
]


def diff(added=(), removed=()):
    return {"added": frozenset(added), "removed": frozenset(removed)}


@pytest.fixture(scope="module")
def tokenizer():
    # Trained on a few other facts only, so most names above are unseen and become sub-words.
    text = render_prompt(["at(P, kitchen: r)", "in(apple: f, I)"], "take apple") + "\n"
    text += render_diff(["in(apple: f, I)"], ["at(apple: f, kitchen: r)"]) + "\nno change"
    return train_word_bpe([text] * 3, vocab_size=300)


def roundtrip(tokenizer, added, removed):
    text = render_diff(added, removed)
    decoded = tokenizer.decode(tokenizer.encode(text, add_special_tokens=False), skip_special_tokens=True)
    # Also the spelling of a tokenizer that splits punctuation off: "at ( P , red room : r )".
    spaced = " ".join(re.findall(r"\w+|[^\w\s]", text))
    assert parse_diff(spaced) == parse_diff(decoded), spaced
    return decoded, parse_diff(decoded)


# --- rendering -------------------------------------------------------------------------------


def test_render_prompt_exact():
    text = render_prompt(["in(napkin: o, I)", "at(P, red room: r)"], "open wooden door")
    assert text == "at(P, red room: r)\nin(napkin: o, I)\n> open wooden door\ndiff:"


def test_render_diff_exact():
    text = render_diff(added=["open(wooden door: d)", "at(P, attic: r)"], removed=["closed(wooden door: d)"])
    assert text == "- closed(wooden door: d)\n+ at(P, attic: r)\n+ open(wooden door: d)"
    assert render_diff([], []) == "no change"


def test_parse_fact_and_format_fact():
    assert parse_fact("in(napkin: o, I)") == ("in", ("napkin: o", "I"))
    assert parse_fact("link ( a b : r , door : d , c : r )") == ("link", ("a b: r", "door: d", "c: r"))
    assert parse_fact("at(P, kitchen: r) extra") is None
    for fact in HAND_FACTS:
        assert format_fact(*parse_fact(fact)) == fact


# --- round trips -----------------------------------------------------------------------------


def test_roundtrip_hand_written_facts(tokenizer):
    for i in range(len(HAND_FACTS)):
        added, removed = HAND_FACTS[i:i + 2], HAND_FACTS[i + 2:i + 4]
        decoded, parsed = roundtrip(tokenizer, added, removed)
        assert "\n" not in decoded  # the word tokenizer loses the line structure
        assert parsed == diff(added, removed), decoded


def test_roundtrip_no_change(tokenizer):
    assert roundtrip(tokenizer, [], [])[1] == diff()


def test_parse_is_whitespace_insensitive():
    text = "-at(P,red room:r)   +  in ( Henderson ' s safe : c , I )\n\n+open( dish - pit : r )"
    assert parse_diff(text) == diff(
        added=["in(Henderson's safe: c, I)", "open(dish-pit: r)"], removed=["at(P, red room: r)"]
    )
    assert parse_diff("  no\n change ") == diff()


def test_roundtrip_real_facts(tmp_path_factory):
    """Every fact string of a real TextWorld game survives render -> tokenizer -> parse."""
    from rlvr_world.worlds.textworld.collect import TextWorldCollectConfig, collect, load_transitions

    data_dir = tmp_path_factory.mktemp("tw_codec")
    cfg = TextWorldCollectConfig(n_train_games=1, n_val_games=0, n_test_games=0, world_size=(4, 4),
                                 nb_objects=(10, 10), quest_length=(2, 2), episodes_per_game=2,
                                 steps_per_episode=20, workers=1)
    collect(cfg, data_dir, seed=3, progress=False)
    rows = load_transitions(data_dir, "train")
    facts = sorted({f for r in rows for f in r["facts"] + r["added"] + r["removed"]})
    assert len(facts) > 20
    # A tokenizer that never saw these names: every name goes through sub-word pieces.
    tok = train_word_bpe([render_diff(["at(P, x: r)"], ["at(P, y: r)"]) + "\nno change"] * 3, vocab_size=300)
    for fact in facts:
        assert parse_fact(fact) is not None and format_fact(*parse_fact(fact)) == fact
        assert roundtrip(tok, [fact], [])[1] == diff(added=[fact]), fact
    for r in rows:
        assert roundtrip(tok, r["added"], r["removed"])[1] == diff(r["added"], r["removed"])


# --- junk ------------------------------------------------------------------------------------


@pytest.mark.parametrize("junk", [
    "",
    "   \n ",
    "the quick brown fox",
    "at(P, kitchen: r)",  # no sign
    "+ at(P, kitchen: r",  # truncated
    "+ at(P, kitchen: r) - open(",  # truncated second fact
    "+ at(P, kitchen: r))",  # unbalanced
    "+ at((P, kitchen: r)",
    "+ at(P, kitchen: r) +",
    "no change + at(P, kitchen: r)",
    "no change no change",
    "no change.",
    "+ at()",
    "+ at(P, : r)",
    "+ at(P, kitchen:)",
    "+ at(P, kitchen: big r)",  # a type is one word
    "+ at(P, red room)",  # a multi-word name needs a type
    "+ at(P, kit!chen: r)",
    "+ (P, kitchen: r)",
    "+ - at(P, kitchen: r)",
    "- at(P, kitchen: r) garbage",
])
def test_parse_junk_is_none(junk):
    assert parse_diff(junk) is None


def test_parse_never_raises():
    rng = random.Random(0)
    pieces = ["+", "-", "(", ")", ",", ":", "'", "at", "P", "I", "red", "room", "r", "no", "change", " ", "\n",
              "\x00", "é", "[", "<s>", "</s>"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        result = parse_diff(text)
        assert result is None or set(result) == {"added", "removed"}
    for weird in (None, 12, b"+ at(P, r: r)", ["+"], "(" * 10000):
        assert parse_diff(weird) is None


# --- the world's decode and metrics ----------------------------------------------------------


def test_world_decode(tokenizer):
    from rlvr_world.worlds import get_world

    world = get_world("textworld")
    eos = tokenizer.eos_token_id
    ids = tokenizer.encode(render_diff(["in(apple: f, I)"], ["at(apple: f, kitchen: r)"]), add_special_tokens=False)
    expected = diff(["in(apple: f, I)"], ["at(apple: f, kitchen: r)"])
    assert world.decode(ids + [eos], tokenizer) == expected
    junk_after_eos = tokenizer.encode("take apple", add_special_tokens=False)
    assert world.decode(ids + [eos] + junk_after_eos, tokenizer) == expected
    assert world.decode(ids[:-1] + [eos], tokenizer) is None  # truncated fact
    assert world.decode([], tokenizer) is None
    assert world.decode([eos], tokenizer) is None
    assert world.decode([10**9, -5], tokenizer) is None  # ids outside the vocabulary
    assert world.render(expected) == "- at(apple: f, kitchen: r)\n+ in(apple: f, I)"
    assert world.render(None) == "<unparseable>"


def test_world_make_examples(tokenizer):
    from rlvr_world.worlds import get_world

    world = get_world("textworld", max_new_tokens=40)
    t = {"game": "g", "seed": 1, "episode": 0, "step": 0, "facts": [], "command": "take apple",
         "view": ["in(apple: f, I)", "at(P, kitchen: r)"], "added": ["in(apple: f, I)"],
         "removed": ["at(apple: f, kitchen: r)"], "changed": True, "walkthrough": False}
    (ex,) = world.make_examples([t], tokenizer)
    assert ex.prompt_ids[0] == tokenizer.bos_token_id and ex.target_ids[-1] == tokenizer.eos_token_id
    prompt = "at(P, kitchen: r)\nin(apple: f, I)\n> take apple\ndiff:"
    assert render_prompt(t["view"], t["command"]) == prompt
    assert tokenizer.decode(ex.prompt_ids[1:]).split() == prompt.split()  # line breaks become spaces
    assert ex.plan == (Generate(40),)
    assert ex.target == diff(["in(apple: f, I)"], ["at(apple: f, kitchen: r)"])
    assert ex.meta == {"changed": True, "game": "g", "verb": "take"}
    assert world.decode(ex.target_ids, tokenizer) == ex.target


def test_world_metrics_hand_computed():
    from rlvr_world.worlds import get_world

    world = get_world("textworld")

    def example(added, removed):
        return Example([0], [0], (Generate(1),), diff(added, removed), {"changed": bool(added or removed)})

    examples = [example(["a(x: o)"], ["b(x: o)"]), example(["c(x: o)"], []), example([], [])]
    predictions = [diff(["a(x: o)"], ["b(x: o)"]), diff(["c(x: o)", "d(x: o)"], []), None]
    m = world.metrics(predictions, examples)
    # micro over facts: tp = 2 + 1, fp = 1 (d), fn = 0; the unparseable one predicts nothing.
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["accuracy_changed"] == pytest.approx(1 / 2)
    assert m["accuracy_unchanged"] == 0.0
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == 1.0
    assert m["f1"] == pytest.approx(6 / 7)
    assert m["mean_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert m["parse_failure_rate"] == pytest.approx(1 / 3)
    assert (m["n"], m["n_changed"]) == (3, 2)
    assert math.isnan(world.metrics([diff()], [example([], [])])["accuracy_changed"])
