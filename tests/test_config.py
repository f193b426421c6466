import pytest

from rlvr_world.config import PRESET_DIR, ConfigError, describe_options, load_config, parse_overrides


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
