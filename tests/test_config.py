import pytest

from rlvr_world.config import PRESET_DIR, ConfigError, describe_options, load_config, parse_overrides
from rlvr_world.eval.evaluate import evenly_spaced


def test_preset_loads_and_overrides_apply():
    cfg = load_config("textworld_tiny", ["rlvr.lr=2e-5", "rlvr.group_size=3", "collect.world_size=[3, 4]"])
    assert cfg.rlvr.lr == 2e-5 and isinstance(cfg.rlvr.lr, float)
    assert cfg.rlvr.group_size == 3
    assert cfg.collect["world_size"] == [3, 4]
    assert cfg.model.preset == "tiny"


def test_unknown_key_names_key_and_closest_valid_ones():
    with pytest.raises(ConfigError) as e:
        load_config("textworld_tiny", ["rlvr.group_sise=4"])
    assert "rlvr.group_sise" in str(e.value) and "group_size" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(None, ["mle.lrr=1"])
    assert "mle.lrr" in str(e.value) and "Did you mean: lr" in str(e.value)


def test_wrong_type_and_malformed_override_are_rejected():
    with pytest.raises(ConfigError, match="rlvr.group_size"):
        load_config(None, ["rlvr.group_size=many"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_overrides(["no_equals_sign"])


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
def test_every_shipped_preset_loads(preset):
    # A key renamed in the dataclasses but not in a preset would only fail when a user runs it.
    assert load_config(preset).world in preset


def test_missing_config_file_lists_presets(tmp_path):
    with pytest.raises(ConfigError, match="textworld_tiny"):
        load_config(str(tmp_path / "nope.yaml"))


def test_help_lists_every_option_with_its_comment():
    text = describe_options()
    assert "rlvr.kl_coef" in text and "KL(policy || frozen start model)" in text
    assert "mle.warmup_steps" in text


def test_evenly_spaced_takes_the_middle_of_equal_stretches():
    items = list(range(10))
    assert evenly_spaced(items, 3) == [1, 5, 8]  # stretches [0,3.3) [3.3,6.7) [6.7,10): middles 1.67, 5, 8.33
    assert evenly_spaced(items, 5) == [1, 3, 5, 7, 9]
    assert evenly_spaced(items, 1) == [5]
    assert evenly_spaced(items, 0) == items and evenly_spaced(items, 10) == items and evenly_spaced(items, 99) == items
    # a split stored task by task: the head covers one task, the spread both in proportion
    split = ["reach"] * 6 + ["drawer"] * 2
    assert evenly_spaced(split, 4) == ["reach", "reach", "reach", "drawer"]


def test_cli_help_names_every_shipped_preset_and_eval_subset():
    from rlvr_world.cli import _parser

    sub = next(a for a in _parser()._actions if a.dest == "command").choices["eval"]
    text = " ".join(sub.format_help().split())
    for preset in PRESET_DIR.glob("*.yaml"):
        assert preset.stem + "," in text or preset.stem + ")" in text
    assert "eval.subset 'spread' which max_examples" in text
