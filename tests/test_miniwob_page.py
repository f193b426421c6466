"""MiniWoB++ page listing and difference codec without a browser: exact element lines, stable
ids, the diff's rendering and parsing (junk included), the F1 web reward, and the world's
metrics / decode built on them."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from rlvr_world.rewards.set_diff import exact, f1, match_counts, precision_recall_f1
from rlvr_world.sequence import Example, Generate
from rlvr_world.models.tokenizer import train_word_bpe
from rlvr_world.worlds.miniwob.page import (diff_spans, element_line, page_diff, page_items, parse_diff, render_diff,
                                         target_sets)
from rlvr_world.worlds.miniwob.world import MiniWoBWorld, transition_target


def el(ref, tag, text="", value=None, id="", parent=1, focused=False, is_leaf=True, classes=""):
    """One `dom_elements` entry as MiniWoB's gymnasium observation gives it."""
    return {"ref": ref, "parent": parent, "tag": tag, "text": text, "value": value, "id": id,
            "classes": classes, "flags": [int(focused), 0, 0, int(is_leaf)]}


def sets(new=(), deleted=(), updated=()):
    return {"new": frozenset(new), "deleted": frozenset(deleted), "updated": frozenset(updated)}


# --- element lines and page listings ---------------------------------------------------------


def test_element_line_textbox_with_value_and_focus():
    e = el(7, "input_text", value="kim", id="username", focused=True)
    assert element_line("7", e) == "[7] textbox #username value='kim' focused"
    # Not focused, empty value: the value is still printed, as ''.
    assert element_line("7", el(7, "input_text", value="", id="username")) == "[7] textbox #username value=''"
    # A password box is a textbox too, and a textarea's text is its value (not printed twice).
    assert element_line("3", el(3, "input_password", value="91YP")) == "[3] textbox value='91YP'"
    assert element_line("4", el(4, "textarea", text="hello", value="hello")) == "[4] textbox value='hello'"


def test_element_line_checkbox_checked_and_unchecked():
    assert element_line("8", el(8, "input_checkbox", value="True", id="ch0")) == "[8] checkbox #ch0 checked"
    assert element_line("8", el(8, "input_checkbox", value="", id="ch0")) == "[8] checkbox #ch0 unchecked"
    assert element_line("8", el(8, "input_checkbox", value="False", id="ch0")) == "[8] checkbox #ch0 unchecked"
    assert element_line("9", el(9, "input_radio", value="True")) == "[9] radio checked"


def test_element_line_texts_and_left_out_containers():
    assert element_line("11", el(11, "button", text="Login", id="subbtn")) == "[11] button #subbtn 'Login'"
    # Whitespace collapsed, text cut at 60 characters, spaces in an html id become _.
    long = "word " * 30
    line = element_line("2", el(2, "span", text=long, id="my id"))
    assert line.startswith("[2] span #my_id 'word word") and len(line) <= len("[2] span #my_id ''") + 60
    assert element_line("2", el(2, "label", text="  First\n  name:  ")) == "[2] label 'First name:'"
    # Plain containers with children but no text are left out, with or without an html id;
    # a leaf is kept (an empty cell or a colour box is something an agent may click).
    assert element_line("3", el(3, "div", is_leaf=False)) is None
    assert element_line("3", el(3, "div", id="area", is_leaf=False)) is None
    assert element_line("3", el(3, "span", is_leaf=False)) is None
    assert element_line("3", el(3, "div", id="area", is_leaf=True)) == "[3] div #area"
    # An unknown non-interactive tag without text that has children is left out too.
    assert element_line("4", el(4, "center", is_leaf=False)) is None


SNAPSHOT_1 = [
    el(1, "body", is_leaf=False, parent=0),
    el(3, "div", id="wrap", is_leaf=False),
    el(5, "label", is_leaf=False, parent=3),
    el(-40, "t", text="First", parent=5),
    el(6, "input_checkbox", value="", id="ch0", parent=5),
    el(-41, "t", text="Second", parent=5),
    el(7, "input_text", value="", id="username", parent=3),
    el(11, "button", text="Login", id="subbtn", parent=3),
]


def test_page_items_text_nodes_keyed_by_parent_and_position():
    items = page_items(SNAPSHOT_1)
    assert items == {
        "5": "[5] label",
        "5.0": "[5.0] text 'First'",
        "6": "[6] checkbox #ch0 unchecked",
        "5.1": "[5.1] text 'Second'",
        "7": "[7] textbox #username value=''",
        "11": "[11] button #subbtn 'Login'",
    }
    assert list(items) == ["5", "5.0", "6", "5.1", "7", "11"]  # page order
    # The next snapshot gives the text nodes fresh refs: their ids stay, nothing changes.
    renumbered = [dict(e, ref=e["ref"] - 100) if e["ref"] < 0 else e for e in SNAPSHOT_1]
    assert page_items(renumbered) == items
    assert page_diff(items, page_items(renumbered)) == {"new": (), "deleted": (), "updated": ()}


def test_page_items_cover_after_the_episode_ends():
    items = page_items(SNAPSHOT_1, last_reward=1.0)
    assert list(items)[-1] == "cover"
    assert items["cover"] == "[cover] button 'START' last_reward=1.00"
    assert page_items(SNAPSHOT_1, last_reward=-1)["cover"] == "[cover] button 'START' last_reward=-1.00"
    assert page_items(SNAPSHOT_1, last_reward=0.0)["cover"] == "[cover] button 'START' last_reward=0.00"
    assert "cover" not in page_items(SNAPSHOT_1)


# --- differences -----------------------------------------------------------------------------


def test_page_diff_new_deleted_updated():
    after_elements = [
        e for e in SNAPSHOT_1 if e["ref"] != 11  # the Login button is gone
    ]
    after_elements = [dict(e, value="kim", flags=[1, 0, 0, 1]) if e["ref"] == 7 else e for e in after_elements]
    after_elements.append(el(12, "a", text="Next", parent=3))
    before, after = page_items(SNAPSHOT_1), page_items(after_elements)
    assert page_diff(before, after) == {
        "new": ("[12] link 'Next'",),
        "deleted": ("[11] button #subbtn 'Login'",),
        "updated": ("[7] textbox #username value='kim' focused",),
    }
    assert page_diff(after, before) == {
        "new": ("[11] button #subbtn 'Login'",),
        "deleted": ("[12] link 'Next'",),
        "updated": ("[7] textbox #username value=''",),
    }
    assert page_diff(before, before) == {"new": (), "deleted": (), "updated": ()}


def test_page_diff_keeps_page_order():
    before = {"1": "[1] button 'a'", "2": "[2] button 'b'", "3": "[3] button 'c'"}
    after = {"4": "[4] link 'x'", "3": "[3] button 'C'", "1": "[1] button 'A'", "5": "[5] link 'y'"}
    d = page_diff(before, after)
    assert d["new"] == ("[4] link 'x'", "[5] link 'y'")
    assert d["updated"] == ("[3] button 'C'", "[1] button 'A'")  # after's order
    assert d["deleted"] == ("[2] button 'b'",)


DIFF = {
    "new": ["[12] link 'Next'", "[cover] button 'START' last_reward=1.00"],
    "deleted": [],
    "updated": ["[7] textbox #username value='kim' focused", "[5.1] text 'Second'"],
}


def test_render_diff_exact():
    assert render_diff(DIFF) == (
        "New items:\n[12] link 'Next'\n[cover] button 'START' last_reward=1.00\n"
        "Deleted items:\nNone\n"
        "Updated items:\n[7] textbox #username value='kim' focused\n[5.1] text 'Second'"
    )
    assert render_diff({"new": (), "deleted": (), "updated": ()}) == "New items:\nNone\nDeleted items:\nNone\nUpdated items:\nNone"
    assert render_diff({}) == render_diff({"new": (), "deleted": (), "updated": ()})


def test_parse_diff_round_trip_and_spacing():
    expected = sets(new=DIFF["new"], updated=DIFF["updated"])
    assert target_sets(DIFF) == expected
    assert parse_diff(render_diff(DIFF)) == expected
    # A word tokenizer decodes newlines as single spaces; extra whitespace is free too.
    assert parse_diff(render_diff(DIFF).replace("\n", " ")) == expected
    assert parse_diff("  " + render_diff(DIFF).replace("\n", " \n\t ").replace("] ", "]   ") + "\n") == expected
    empty = {"new": (), "deleted": (), "updated": ()}
    assert parse_diff(render_diff(empty)) == target_sets(empty) == sets()
    assert parse_diff(render_diff(empty).replace("\n", " ")) == sets()
    # Every section filled, one item each.
    full = {"new": ["[3] button 'Ok'"], "deleted": ["[4.0] text 'Bye'"], "updated": ["[5] checkbox checked"]}
    assert parse_diff(render_diff(full).replace("\n", " ")) == target_sets(full)


def test_diff_spans_locate_each_item_and_none():
    text = "New items:\n[3] button  'OK'\n[4] link 'no'\nDeleted items:\nNone\nUpdated items: None"
    spans = diff_spans(text)
    assert [(text[a:b], section, item) for a, b, section, item in spans] == [
        ("[3] button  'OK'", "new", "[3] button 'OK'"),  # the item normalised, its span as written
        ("[4] link 'no'", "new", "[4] link 'no'"),
        ("None", "deleted", "None"),
        ("None", "updated", "None"),
    ]
    assert diff_spans("Deleted items: None New items: None Updated items: None") is None


@pytest.mark.parametrize("split_quoted", [False, True])
def test_token_scores_credit_f1_item_by_item(split_quoted):
    """Dense F1 credit: item tokens score 1 if the item is in its target section, else 0; a
    section's None scores 1 if the section is empty; headers and EOS score the response's F1."""
    target = sets(new=["[3] button 'OK'"], updated=["[2] text 'x'"])
    text = "New items:\n[3] button 'OK'\n[4] link 'no'\nDeleted items:\nNone\nUpdated items:\nNone"
    world = MiniWoBWorld(split_quoted=split_quoted)
    tokenizer = train_word_bpe([text, render_diff(target)], vocab_size=300, quote=world.tokenizer_quote)
    ids = tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
    prediction = world.decode(ids, tokenizer)
    assert f1(prediction, target) == 0.5  # tp 1 ([3]), fp 1 ([4]), fn 1 ([2]): 2 / (2 + 1 + 1)
    scores = world.token_scores("f1", [ids, ids[:5]], [prediction, None], [target, target], len(ids) + 2, tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    # Each token's expected score, read off the text: which part of the response holds it.
    parts = [("New items:", 0.5), ("[3] button 'OK'", 1.0), ("[4] link 'no'", 0.0), ("Deleted items:", 0.5),
             ("None", 1.0), ("Updated items:", 0.5), ("None", 0.0)]
    expected, k, seen = [], 0, ""
    for piece in pieces[:-1]:
        seen += tokenizer.convert_tokens_to_string([piece]).strip()
        expected.append(parts[k][1])
        if seen == parts[k][0].replace(" ", ""):
            k, seen = k + 1, ""
    assert k == len(parts)  # every part was read to its end
    assert scores[0].tolist() == expected + [0.5, 0.0, 0.0]  # EOS scores the F1; padding 0
    assert scores[1].tolist() == [0.0] * (len(ids) + 2)  # unparseable (cut short): F1 0 everywhere
    with pytest.raises(NotImplementedError, match="exact"):
        world.token_scores("exact", [ids], [prediction], [target], len(ids), tokenizer)


def test_target_sets_normalises_spacing():
    assert target_sets({"new": ["[3]  button\n'Ok' "]}) == sets(new=["[3] button 'Ok'"])


JUNK = [
    "",
    " \n ",
    "None",
    # a missing header
    "New items:\nNone\nUpdated items:\nNone",
    "Deleted items:\nNone\nUpdated items:\nNone",
    # headers out of order
    "Deleted items:\nNone\nNew items:\nNone\nUpdated items:\nNone",
    "New items:\nNone\nUpdated items:\nNone\nDeleted items:\nNone",
    # a repeated header (in place of another, or in addition)
    "New items:\nNone\nNew items:\nNone\nUpdated items:\nNone",
    "New items:\nNone\nDeleted items:\nNone\nUpdated items:\nNone\nUpdated items:\nNone",
    "New items:\nNone\nDeleted items:\nNone\nDeleted items:\nNone\nUpdated items:\nNone",
    # text before the first header
    "diff:\nNew items:\nNone\nDeleted items:\nNone\nUpdated items:\nNone",
    "[3] button 'Ok' New items: None Deleted items: None Updated items: None",
    # a section with None plus an item
    "New items:\nNone\n[7] button 'A'\nDeleted items:\nNone\nUpdated items:\nNone",
    "New items:\nNone\nDeleted items:\nNone [4.0] text 'x'\nUpdated items:\nNone",
    # an item that is only an id
    "New items:\n[7]\nDeleted items:\nNone\nUpdated items:\nNone",
    "New items:\n[7] button 'A'\n[8]\nDeleted items:\nNone\nUpdated items:\nNone",
    "New items:\nNone\nDeleted items:\nNone\nUpdated items:\n[cover]",
    # a section body that does not start with an id, or an empty body
    "New items:\nbutton [7] 'A'\nDeleted items:\nNone\nUpdated items:\nNone",
    "New items:\nNone\nDeleted items:\n7 button 'A'\nUpdated items:\nNone",
    "New items:\nNone\nDeleted items:\nNone\nUpdated items:\n(7) button 'A'",
    "New items:\nDeleted items:\nNone\nUpdated items:\nNone",
    "New items:\nNone\nDeleted items:\nNone\nUpdated items:",
    "New items:\nnone\nDeleted items:\nNone\nUpdated items:\nNone",
    # a truncated response
    "New items:\n[12] link 'Next'\nDeleted items:\nNone\nUpda",
    "New items:\n[12] link 'Next'\nDeleted it",
]


@pytest.mark.parametrize("text", JUNK)
def test_parse_diff_junk_gives_none(text):
    assert parse_diff(text) is None
    assert parse_diff(text.replace("\n", " ")) is None


def test_parse_diff_never_raises_on_garbage():
    rng = random.Random(0)
    pieces = ["New items:", "Deleted items:", "Updated items:", "None", "[", "]", "[7]", "[cover]", "[3.1]",
              "'", "\n", " ", "é", "\u200b", "\x00", "𝔘", "按钮", "\ud800", "]]", "[[", "\\"]
    for _ in range(500):
        text = "".join(rng.choice(pieces) if rng.random() < 0.5 else chr(rng.randrange(0x110000))
                       for _ in range(rng.randrange(0, 30)))
        result = parse_diff(text)  # must not raise
        assert result is None or (set(result) == {"new", "deleted", "updated"}
                                  and all(isinstance(v, frozenset) for v in result.values()))
    for bad in (None, 7, b"New items: None Deleted items: None Updated items: None", ["New items:"]):
        assert parse_diff(bad) is None


# --- the F1 web reward -----------------------------------------------------------------------

A, B, C, D = ("[12] link 'Next'", "[13] link 'Back'", "[7] textbox #username value='kim' focused",
              "[11] button #subbtn 'Login'")


def test_f1_partial_credit():
    prediction = sets(new=[A, B], updated=[C])
    target = sets(new=[A], deleted=[D], updated=[C])
    # tp = {A in new, C in updated} = 2; fp = {B in new} = 1; fn = {D in deleted} = 1.
    assert match_counts(prediction, target) == (2, 1, 1)
    # P = 2/(2+1) = 2/3, R = 2/(2+1) = 2/3, F1 = 2*2/(2*2+1+1) = 4/6 = 2/3.
    p, r, f = precision_recall_f1(prediction, target)
    assert (p, r, f) == pytest.approx((float(Fraction(2, 3)),) * 3)
    assert f1(prediction, target) == pytest.approx(float(Fraction(2, 3)))
    assert exact(prediction, target) == 0.0


def test_f1_unequal_precision_and_recall():
    prediction = sets(new=[A])
    target = sets(new=[A, B], updated=[C, D])
    # tp 1, fp 0, fn 3: P = 1, R = 1/4, F1 = 2*1/(2*1+0+3) = 2/5.
    assert match_counts(prediction, target) == (1, 0, 3)
    assert precision_recall_f1(prediction, target) == pytest.approx((1.0, 0.25, float(Fraction(2, 5))))
    # Swapped roles: P = 1/4, R = 1.
    assert precision_recall_f1(target, prediction) == pytest.approx((0.25, 1.0, float(Fraction(2, 5))))


def test_f1_item_in_the_wrong_section():
    # The right line under the wrong header: a miss in "updated" and a false positive in "new".
    prediction, target = sets(new=[C]), sets(updated=[C])
    assert match_counts(prediction, target) == (0, 1, 1)
    assert precision_recall_f1(prediction, target) == (0.0, 0.0, 0.0)
    assert exact(prediction, target) == 0.0
    # With one more item right: tp 1, fp 1, fn 1 -> P = R = F1 = 1/2.
    prediction, target = sets(new=[C], updated=[A]), sets(updated=[A, C])
    assert match_counts(prediction, target) == (1, 1, 1)
    assert precision_recall_f1(prediction, target) == pytest.approx((0.5, 0.5, 0.5))


def test_f1_none_empty_and_exact():
    target = sets(new=[A], deleted=[D], updated=[C])
    assert precision_recall_f1(None, target) == (0.0, 0.0, 0.0)
    assert f1(None, sets()) == 0.0 and exact(None, sets()) == 0.0
    # "Nothing changed", predicted correctly: perfect.
    assert precision_recall_f1(sets(), sets()) == (1.0, 1.0, 1.0)
    assert exact(sets(), sets()) == 1.0
    # Predicting no change when something changed, or a change when nothing did.
    assert precision_recall_f1(sets(), target) == (0.0, 0.0, 0.0)
    assert precision_recall_f1(target, sets()) == (0.0, 0.0, 0.0)
    assert f1(target, target) == 1.0 and exact(target, target) == 1.0
    # A missing section equals an empty one.
    assert exact({"new": frozenset([A])}, sets(new=[A])) == 1.0
    assert f1({"new": frozenset([A])}, sets(new=[A])) == 1.0
    # A parsed response scores like its rendered target.
    assert f1(parse_diff(render_diff({"new": [A], "deleted": [D], "updated": [C]})), target) == 1.0


# --- the world's metrics and decoding ---------------------------------------------------------


def example(target, action, changed, terminal, task="login-user"):
    return Example(prompt_ids=[1, 5], target_ids=[6, 2], plan=(Generate(8),), target=target,
                   meta={"task": task, "action": action, "changed": changed, "terminal": terminal})


COVER = "[cover] button 'START' last_reward=1.00"


def test_world_metrics_hand_computed():
    examples = [
        example(sets(updated=[C]), "type", True, False),  # 0
        example(sets(updated=["[6] checkbox #ch0 checked focused"]), "click", True, False),  # 1
        example(sets(new=[COVER], updated=[D, "[7] textbox #username value='kim'"]), "click", True, True),  # 2
        example(sets(), "type", False, False),  # 3
    ]
    predictions = [
        sets(updated=[C]),  # exact: P = R = F1 = 1
        sets(updated=["[6] checkbox #ch0 unchecked focused"]),  # tp 0 fp 1 fn 1: 0, 0, 0
        sets(new=[COVER], deleted=[A], updated=[D]),  # tp 2 fp 1 fn 1: 2/3, 2/3, 2/3
        None,  # unparseable: 0, 0, 0 (and "predicted nothing" in the corpus counts)
    ]
    m = MiniWoBWorld().metrics(predictions, examples)
    F = Fraction
    assert m["f1"] == pytest.approx(float((1 + 0 + F(2, 3) + 0) / 4))  # 5/12
    assert m["precision"] == pytest.approx(float(F(5, 12)))
    assert m["recall"] == pytest.approx(float(F(5, 12)))
    assert m["exact"] == pytest.approx(0.25)
    assert m["f1_type"] == pytest.approx(float((1 + 0) / F(2)))  # examples 0 and 3: 1/2
    assert m["f1_click"] == pytest.approx(float((0 + F(2, 3)) / 2))  # examples 1 and 2: 1/3
    assert m["exact_type"] == pytest.approx(0.5) and m["exact_click"] == 0.0
    assert m["f1_terminal"] == pytest.approx(float(F(2, 3))) and m["n_terminal"] == 1.0
    assert m["f1_changed"] == pytest.approx(float((1 + 0 + F(2, 3)) / 3))  # 5/9
    assert m["f1_unchanged"] == 0.0 and m["exact_unchanged"] == 0.0
    assert m["parse_failure_rate"] == pytest.approx(0.25)
    # Corpus micro F1: tp 1+0+2+0 = 3, fp 0+1+1+0 = 2, fn 0+1+1+0 = 2 -> 6/10.
    assert m["micro_f1"] == pytest.approx(0.6)
    assert (m["n"], m["n_click"], m["n_type"], m["n_changed"], m["n_unchanged"]) == (4.0, 2.0, 2.0, 3.0, 1.0)

    # Predicting "no change" for the unchanged example fixes it: f1_unchanged 1, no parse failures.
    predictions[3] = sets()
    m = MiniWoBWorld().metrics(predictions, examples)
    assert m["f1_unchanged"] == 1.0 and m["parse_failure_rate"] == 0.0
    assert m["f1"] == pytest.approx(float((1 + 0 + F(2, 3) + 1) / 4))
    assert m["micro_f1"] == pytest.approx(0.6)  # nothing predicted, nothing to predict: counts unchanged

    with pytest.raises(ValueError, match="3 predictions for 4 examples"):
        MiniWoBWorld().metrics(predictions[:3], examples)


def test_world_metrics_empty_subset_is_nan():
    m = MiniWoBWorld().metrics([sets(new=[A])], [example(sets(new=[A]), "click", True, False)])
    assert m["f1"] == 1.0 and m["exact"] == 1.0 and m["f1_click"] == 1.0
    assert math.isnan(m["f1_type"]) and math.isnan(m["f1_terminal"]) and m["n_type"] == 0.0


def transition(action, diff, done=False, task="login-user"):
    page = [["6", "[6] label 'Username'"], ["7", "[7] textbox #username value=''"], ["11", "[11] button #subbtn 'Login'"]]
    return {"task": task, "utterance": "Enter the username \"kim\" and press login.", "page": page,
            "action": action, "diff": diff, "done": done}


TRANSITIONS = [
    transition("type [7] 'kim'", {"new": [], "deleted": [], "updated": [C]}),
    transition("click [11]", {"new": [COVER], "deleted": [], "updated": [D + " focused"]}, done=True),
    transition("click [6]", {"new": [], "deleted": [], "updated": []}),
    transition("type [7] 'x_Y9#'", {"new": [], "deleted": [], "updated": ["[7] textbox #username value='x_Y9#' focused"]}),
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return MiniWoBWorld().train_tokenizer(TRANSITIONS * 3, tmp_path_factory.mktemp("mw_tok"))


def test_make_examples_and_decode_round_trip(tokenizer):
    world = MiniWoBWorld()
    examples = world.make_examples(TRANSITIONS, tokenizer)
    assert len(examples) == len(TRANSITIONS)
    assert [ex.meta["action"] for ex in examples] == ["type", "click", "click", "type"]
    assert [ex.meta["changed"] for ex in examples] == [True, True, False, True]
    assert [ex.meta["terminal"] for ex in examples] == [False, True, False, False]
    for t, ex in zip(TRANSITIONS, examples):
        assert ex.target == target_sets(t["diff"])
        assert ex.prompt_ids[0] == tokenizer.bos_token_id
        assert ex.target_ids[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id not in ex.target_ids[:-1]
        assert world.decode(ex.target_ids, tokenizer) == ex.target
        # Whatever the model writes after EOS is ignored.
        assert world.decode(ex.target_ids + ex.target_ids[:5], tokenizer) == ex.target
        # The token ids of the rendered text, without the EOS, decode too.
        assert world.decode(tokenizer.encode(transition_target(t), add_special_tokens=False), tokenizer) == ex.target
    assert examples[2].target == sets()
    # A prompt too long is left out and counted.
    short = MiniWoBWorld(max_prompt_tokens=5)
    assert short.make_examples(TRANSITIONS, tokenizer) == [] and short.stats() == {"prompts_too_long": 4.0}


def test_prompt_repeats_the_acted_on_item_after_the_action():
    world = MiniWoBWorld()
    head = "task: Enter the username \"kim\" and press login.\npage:\n[6] label 'Username'\n" \
           "[7] textbox #username value=''\n[11] button #subbtn 'Login'\n"
    assert world.prompt_text(TRANSITIONS[0]) == head + "action: type [7] 'kim'\n" \
        "element: [7] textbox #username value=''\ndiff:"
    assert world.prompt_text(TRANSITIONS[1]).endswith("action: click [11]\nelement: [11] button #subbtn 'Login'\ndiff:")
    # "[1]" must not match the item "[11]"; an id the page does not list, or a malformed action, is "missing".
    lines = [line for _, line in TRANSITIONS[0]["page"]]
    assert world.action_prompt("u", lines, "click [1]").endswith("action: click [1]\nelement: missing\ndiff:")
    assert world.action_prompt("u", lines, "press enter").endswith("element: missing\ndiff:")
    # Off, the prompt is the action alone (the layout of runs made before the element line).
    assert MiniWoBWorld(repeat_element=False).prompt_text(TRANSITIONS[0]) == head + "action: type [7] 'kim'\ndiff:"


def test_decode_junk_ids_gives_none(tokenizer):
    world = MiniWoBWorld()
    rng = random.Random(1)
    vocab = len(tokenizer)
    good = world.make_examples(TRANSITIONS[:1], tokenizer)[0].target_ids
    junk = [
        [],
        [tokenizer.eos_token_id],
        [tokenizer.eos_token_id] + good,  # EOS first: an empty response
        [tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id],
        good[:len(good) // 2],  # truncated before the last header
        [10**9, 3, 4],  # out of the vocabulary
        [-1, -5],
        ["x", None],
        [3.7, "12"],
        None,
    ]
    junk += [[rng.randrange(vocab) for _ in range(rng.randrange(1, 60))] for _ in range(200)]
    for ids in junk:
        assert world.decode(ids, tokenizer) is None, ids
