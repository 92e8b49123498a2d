import pytest

from transferlab.config import ConfigError, TrainConfig, load_config, save_config


def test_defaults_come_from_the_dataclass():
    cfg = load_config()
    assert cfg == TrainConfig()
    assert cfg.model == "efficientnet_lite0"


def test_yaml_then_overrides_layering(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("epochs: 3\nlr: 0.5\nmode: finetune\n")
    cfg = load_config(y, {"epochs": "7"})
    assert cfg.epochs == 7 and cfg.lr == 0.5 and cfg.mode == "finetune"


def test_unknown_key_suggests_close_match(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        load_config(None, {"epoch": 3})


def test_bad_choice_and_bad_type():
    with pytest.raises(ConfigError, match="did you mean 'finetune'"):
        load_config(None, {"mode": "fintune"})
    with pytest.raises(ConfigError, match="epochs"):
        load_config(None, {"epochs": "three"})
    with pytest.raises(ConfigError):
        load_config(None, {"epochs": 2.5})


@pytest.mark.parametrize("bad", ["-1", "nan", "inf"])
def test_invariance_must_be_a_finite_non_negative_strength(bad):
    with pytest.raises(ConfigError, match="invariance must be a finite number >= 0"):
        load_config(None, {"invariance": bad})
    assert load_config(None, {"invariance": "0.3"}).invariance == 0.3


def test_values_are_parsed_safely_never_evaluated():
    with pytest.raises(ConfigError):
        load_config(None, {"epochs": "__import__('os').getcwd()"})


def test_bool_flags_parse(tmp_path):
    assert load_config(None, {"amp": "false"}).amp is False
    assert load_config(None, {"amp": True}).amp is True


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, {"epochs": 4, "model": "resnet18"})
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_default_lr_depends_on_mode():
    assert load_config(None, {"mode": "finetune"}).default_lr() < load_config(None, {"mode": "features"}).default_lr()
    assert load_config(None, {"lr": 0.123}).default_lr() == 0.123


def test_shipped_configs_load():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert files
    for f in files:
        cfg = load_config(f)
        assert cfg.mode in ("features", "finetune", "lpft", "scratch")
    faces = load_config(files[[f.stem for f in files].index("faces")])
    assert (faces.mode, faces.augment) == ("finetune", "robust")
