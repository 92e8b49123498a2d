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


@pytest.mark.parametrize(
    "over, says",
    [
        ({"pool": "mean,mode"}, "pool='mean,mode': unknown 'mode'; give a comma-separated list of mean, std, max, min"),
        ({"pool": "max, max"}, "a statistic named twice"),
        ({"pool": ""}, "unknown ''"),
        ({"pool": "mean,std,max", "features": "last"}, "statistics of stage features: add --features stages"),
    ],
)
def test_a_pool_names_known_statistics_of_stage_features(over, says):
    with pytest.raises(ConfigError, match=says):
        load_config(None, over)
    assert load_config(None, {"pool": "mean,std,max,min"}).pool == "mean,std,max,min"
    for same in ("mean,std", "mean, std"):  # what the last stage pools anyway
        assert load_config(None, {"pool": same, "features": "last"}).pool == same


@pytest.mark.parametrize(
    "key, bad, says",
    [
        ("lr", "nan", "lr must be a finite number"),
        ("lr", "inf", "lr must be a finite number"),
        ("label_smoothing", "nan", "label_smoothing must be a finite number"),
        ("noise_std_max", "nan", "noise_std_max must be a finite number"),
        ("momentum", "1.5", r"momentum must be in \[0, 1\)"),
        ("dropout", "1", r"dropout must be in \[0, 1\)"),
        ("weight_decay", "-0.1", "weight_decay"),
        ("gamma", "0", "gamma must be > 0"),
        ("step_size", "0", "step_size >= 1"),
        ("patience", "-1", "patience must be >= 0"),
        ("epochs", "[1", "epochs='\\[1' is not a whole number$"),
        ("lr", "abc", "lr='abc' is not a number$"),
        ("amp", "maybe", "amp='maybe' is not true or false$"),
    ],
)
def test_numbers_out_of_range_are_named_before_training(key, bad, says):
    with pytest.raises(ConfigError, match=says):
        load_config(None, {key: bad})


@pytest.mark.parametrize(
    "text, says",
    [
        (b"epochs: [1, 2\n", r"c.yaml: expected ',' or '\]'.* at line 2, column 1; a config is YAML"),
        (b"\xff\xfe\x00", "c.yaml is not a UTF-8 text file"),
        (b"1: 2\n", "unknown config key '1'"),
    ],
)
def test_a_config_file_that_is_not_yaml_is_named(tmp_path, text, says):
    (tmp_path / "c.yaml").write_bytes(text)
    with pytest.raises(ConfigError, match=says):
        load_config(tmp_path / "c.yaml")


def test_a_config_path_that_is_a_folder_or_missing_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"--config '.*' cannot be read: it is a folder; give a YAML file"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match=r"--config '.*none.yaml' cannot be read: no such file or directory"):
        load_config(tmp_path / "none.yaml")


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
