"""Renamed typed values (worlds/miniwob/rename.py): exact checks on hand-built transitions."""

import random
import string

import pytest

from rlvr_world.worlds.miniwob.rename import rename_share, rename_typed, renamable, replace_all, same_shape
from rlvr_world.worlds.miniwob.world import MiniWoBWorld


def login_typing(value="Macie", step=1):
    """Typing the username a second time into a login form (the box already holds it once)."""
    return {
        "task": "login-user", "split": "train", "seed": 3, "episode": 0, "step": step, "policy": "random",
        "utterance": 'Enter the username "macie" and the password "KY" into the text fields and press login.',
        "fields": [["username", "macie"], ["password", "KY"]],
        "page": [["6", "[6] label 'Username'"], ["7", "[7] textbox #macie-box value='Macie' focused"],
                 ["10", "[10] textbox #password value='KY'"], ["11", "[11] button #subbtn 'Login'"]],
        "action": f"type [7] '{value}'",
        "next_page": [["6", "[6] label 'Username'"], ["7", f"[7] textbox #macie-box value='Macie{value}' focused"],
                      ["10", "[10] textbox #password value='KY'"], ["11", "[11] button #subbtn 'Login'"]],
        "diff": {"new": [], "deleted": [], "updated": [f"[7] textbox #macie-box value='Macie{value}' focused"]},
        "done": False, "raw_reward": 0.0, "error": "", "success": False,
    }


def click(step=0):
    t = login_typing(step=step)
    return {**t, "action": "click [11]", "diff": {"new": [], "deleted": [], "updated": []}}


def test_which_values_are_renamed():
    assert renamable("hK") and renamable("Macie") and renamable("Last name")
    # a lone digit, a date or a number is also an ordinal or a calendar on the page; one letter
    # is inside every word; a quote would end the listing's quoted text
    assert not any(renamable(v) for v in ("1", "-5", "10/11/2011", "x", "O'Neil"))


def test_same_shape_keeps_length_digits_and_punctuation():
    rng = random.Random(0)
    for value in ("Macie", "hK3", "a-b 9"):
        new = same_shape(value, rng)
        assert len(new) == len(value)
        for c, n in zip(value, new):
            if c.isalpha():
                assert n in string.ascii_lowercase
            elif c.isdigit():
                assert n in string.digits
            else:
                assert n == c


def test_replace_all_keeps_each_occurrences_case():
    assert replace_all("MacieMACIE macie", "Macie", "wotbe") == "WotbeWOTBE wotbe"
    # whole words: the instruction's "Macies" or "xMacie" are other words
    assert replace_all('Type "MACIE", not Macies or xMacie.', "macie", "wotbe", whole_words=True) == \
        'Type "WOTBE", not Macies or xMacie.'


def test_a_typing_transition_is_renamed_everywhere_it_shows_and_nowhere_else():
    t = login_typing()
    out = rename_typed(t, random.Random(1))
    old, new = out["renamed"]
    assert old == "Macie" and new != "macie" and len(new) == 5 and new.islower()
    cap = new.capitalize()
    assert out["action"] == f"type [7] '{cap}'"
    assert out["utterance"] == f'Enter the username "{new}" and the password "KY" into the text fields and press login.'
    assert out["fields"] == [["username", new], ["password", "KY"]]
    # quoted text renamed (twice in the new value), the html id #macie-box and the roles not
    assert out["page"][1] == ["7", f"[7] textbox #macie-box value='{cap}' focused"]
    assert out["diff"]["updated"] == [f"[7] textbox #macie-box value='{cap}{cap}' focused"]
    assert out["next_page"][1] == ["7", f"[7] textbox #macie-box value='{cap}{cap}' focused"]
    assert out["page"][0] == t["page"][0] and out["page"][2:] == t["page"][2:]
    assert {k: out[k] for k in ("task", "seed", "episode", "step", "done", "success")} == \
        {k: t[k] for k in ("task", "seed", "episode", "step", "done", "success")}
    assert t["action"] == "type [7] 'Macie'"  # the recorded transition is left as it was


def test_clicks_and_values_that_are_not_renamable_stay_as_recorded():
    c = click()
    assert rename_typed(c, random.Random(0)) is c
    digit = {**login_typing(), "action": "type [7] '1'"}
    assert rename_typed(digit, random.Random(0)) is digit


def test_rename_share_is_per_transition_and_independent_of_order():
    rows = [login_typing(step=s) for s in range(40)] + [click(step=40 + s) for s in range(10)]
    assert rename_share(rows, 0.0, seed=0) is rows
    every = rename_share(rows, 1.0, seed=0)
    assert all("renamed" in t for t in every[:40]) and all("renamed" not in t for t in every[40:])
    half = rename_share(rows, 0.5, seed=0)
    renamed = [t["step"] for t in half if "renamed" in t]
    assert 10 <= len(renamed) <= 30
    backwards = rename_share(rows[::-1], 0.5, seed=0)
    assert sorted(t["step"] for t in backwards if "renamed" in t) == renamed
    assert {t["step"]: t["action"] for t in backwards} == {t["step"]: t["action"] for t in half}
    other_seed = rename_share(rows, 0.5, seed=1)
    assert [t["action"] for t in other_seed] != [t["action"] for t in half]


def test_the_world_renames_training_transitions_only_when_asked():
    rows = [login_typing(step=s) for s in range(8)]
    assert MiniWoBWorld().training_transitions(rows, seed=0) is rows
    renamed = MiniWoBWorld(rename_typed=1.0).training_transitions(rows, seed=0)
    assert all(t["action"] != "type [7] 'Macie'" for t in renamed)
    with pytest.raises(ValueError, match="rename_typed"):
        MiniWoBWorld(rename_typed=1.5)
