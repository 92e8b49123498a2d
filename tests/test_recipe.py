"""recipe auto: detect for real/fake data, classic otherwise; explicit settings win."""

import pytest

from transferlab.config import ConfigError, load_config
from transferlab.data.transforms import AugmentSpec
from transferlab.training.calibration import threshold_perturbations
from transferlab.training.recipe import resolve


def test_real_fake_data_gets_the_detect_recipe():
    cfg, notes = resolve(load_config(None, {}), ["fake", "real"])
    assert (cfg.recipe, cfg.features, cfg.head, cfg.image_size, cfg.augment) == (
        "detect",
        "stages",
        "logistic",
        None,  # the backbone's own size (448 measured: BENCHMARKS.md)
        "robust",
    )
    assert cfg.zoom == 2  # the whole image and its centre magnified (BENCHMARKS.md, "zoom")
    assert cfg.parts == "none"  # an option (BENCHMARKS.md, "Face parts at fixed places")
    assert cfg.pool == "mean,std,max,min"  # each channel's extremes too (BENCHMARKS.md, "Spatial max and min")
    assert any("detect recipe: features stages, head logistic, zoom 2, pool mean,std,max,min" in n for n in notes)


def test_other_data_keeps_the_classic_recipe():
    cfg, _ = resolve(load_config(None, {}), ["ants", "bees"])
    assert (cfg.recipe, cfg.features, cfg.head, cfg.image_size, cfg.augment) == (
        "classic",
        "last",
        "sgd",
        None,
        "light",
    )
    assert (cfg.zoom, cfg.pool) == (1, "mean,std")


@pytest.mark.parametrize(
    "mode, head, size", [("finetune", "sgd", None), ("lpft", "logistic", None), ("scratch", "sgd", None)]
)
def test_detect_recipe_per_mode(mode, head, size):
    cfg, _ = resolve(
        load_config(None, {"mode": mode, "model": "scratch_cnn" if mode == "scratch" else "efficientnet_lite0"}),
        ["real", "fake"],
    )
    # zoom and the extremes were measured on frozen features only
    assert (cfg.head, cfg.image_size, cfg.zoom, cfg.pool) == (head, size, 1, "mean,std")
    assert cfg.features == ("last" if mode == "scratch" else "stages")


def test_explicit_settings_win():
    cfg, _ = resolve(
        load_config(None, {"features": "last", "image_size": 224, "head": "sgd", "augment": "light"}), ["fake", "real"]
    )
    assert (cfg.recipe, cfg.features, cfg.head, cfg.image_size, cfg.augment) == ("detect", "last", "sgd", 224, "light")
    assert cfg.zoom == 1  # no stage features, no zoom
    assert resolve(load_config(None, {"zoom": 1}), ["fake", "real"])[0].zoom == 1
    cfg, notes = resolve(load_config(None, {"parts": "face"}), ["fake", "real"])
    assert (cfg.zoom, cfg.parts) == (2, "face") and any("zoom 2" in n for n in notes)
    cfg, _ = resolve(load_config(None, {"recipe": "detect"}), ["ants", "bees"])
    assert (cfg.features, cfg.head, cfg.image_size) == ("stages", "logistic", None)
    assert resolve(load_config(None, {"pool": "mean,std"}), ["fake", "real"])[0].pool == "mean,std"
    assert resolve(load_config(None, {"features": "stages"}), ["ants", "bees"])[0].pool == "mean,std"


def test_detect_recipe_views_are_jpeg_resaves_with_light_blur():
    views = ("blur_prob", "blur_sigma_max", "jpeg_prob", "noise_prob")
    cfg, notes = resolve(load_config(None, {}), ["fake", "real"])
    assert tuple(getattr(cfg, k) for k in views) == (0.5, 1.0, 1.0, 0.2)
    assert any("blur_sigma_max 1, jpeg_prob 1" in n for n in notes)
    spec = AugmentSpec.from_config(cfg)
    assert (spec.blur_prob, spec.blur_sigma_max, spec.jpeg_prob, spec.noise_prob) == (0.5, 1.0, 1.0, 0.2)
    # the classic recipe keeps Wang et al.'s mix, on real/fake data too
    for overrides, classes in (({}, ["ants", "bees"]), ({"recipe": "classic"}, ["fake", "real"])):
        cfg, _ = resolve(load_config(None, overrides), classes)
        assert tuple(getattr(cfg, k) for k in views) == (0.5, 3.0, 0.5, 0.2)
    # one knob given explicitly wins; the others still come from the recipe
    cfg, notes = resolve(load_config(None, {"blur_sigma_max": 2.0}), ["fake", "real"])
    assert tuple(getattr(cfg, k) for k in views) == (0.5, 2.0, 1.0, 0.2)
    assert not any("blur_sigma_max 1" in n for n in notes)
    # a config no recipe resolved takes the classic mix instead of failing on None
    spec = AugmentSpec.from_config(load_config(None, {"augment": "robust"}))
    assert (spec.blur_prob, spec.blur_sigma_max, spec.jpeg_prob, spec.noise_prob) == (0.5, 3.0, 0.5, 0.2)
    with pytest.raises(ConfigError, match="blur_sigma_max"):
        load_config(None, {"blur_sigma_max": 0.01})


def test_detect_recipe_fits_the_threshold_on_perturbed_validation_copies_too():
    cfg, notes = resolve(load_config(None, {}), ["fake", "real"])
    assert cfg.threshold_perturb == "jpeg:75,blur:1,noise:0.02"
    assert [p.name for p in threshold_perturbations(cfg.threshold_perturb)] == ["jpeg:75", "blur:1", "noise:0.02"]
    assert any("threshold fitted on validation clean + jpeg:75,blur:1,noise:0.02" in n for n in notes)
    for overrides, classes in (({}, ["ants", "bees"]), ({"recipe": "classic"}, ["fake", "real"])):
        cfg, notes = resolve(load_config(None, overrides), classes)
        assert cfg.threshold_perturb == "none" and threshold_perturbations(cfg.threshold_perturb) == []
        assert not any("threshold fitted" in n for n in notes)
    cfg, notes = resolve(load_config(None, {"threshold_perturb": "jpeg:90"}), ["fake", "real"])
    assert cfg.threshold_perturb == "jpeg:90" and not any("threshold fitted" in n for n in notes)


def test_bad_recipe_values_fail_with_the_choices():
    with pytest.raises(ConfigError, match="did you mean 'detect'"):
        load_config(None, {"recipe": "detekt"})
    with pytest.raises(ConfigError, match="square"):
        load_config(None, {"crop": "native", "crop_views": 3})
    with pytest.raises(ConfigError, match="--crop native"):
        load_config(None, {"crop_views": 4})
    with pytest.raises(ConfigError, match="cached frozen features"):
        load_config(None, {"head": "logistic", "mode": "finetune"})
