import numpy as np
import pytest
from PIL import Image

from transferlab.data.perturb import Perturbation, blur, jpeg, noise, parse_perturbations, resize, saltpepper


@pytest.fixture
def photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((128, 128))


def _err(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


def test_parse_perturbations_names_and_values():
    ps = parse_perturbations("jpeg:90, jpeg:75,blur:1,resize:0.5,noise:0.02")
    assert [p.name for p in ps] == ["jpeg:90", "jpeg:75", "blur:1", "resize:0.5", "noise:0.02"]
    assert parse_perturbations("") == [] and parse_perturbations(None) == []


@pytest.mark.parametrize(
    "bad, words",
    [
        ("jpg:75", "unknown perturbation 'jpg'"),
        ("jpeg:high", "needs a number"),
        ("jpeg:0", "out of range"),
        ("blur:-1", "out of range"),
        ("resize:9", "out of range"),
        ("jpeg:75.5", "out of range"),
    ],
)
def test_parse_perturbations_rejects_with_the_fix(bad, words):
    with pytest.raises(ValueError, match=words):
        parse_perturbations(bad)


def test_lower_jpeg_quality_loses_more(photo):
    assert 0 < _err(photo, jpeg(photo, 95)) < _err(photo, jpeg(photo, 50)) < _err(photo, jpeg(photo, 10))


def test_blur_removes_detail_and_zero_is_identity(photo):
    def detail(im):
        return float(np.abs(np.diff(np.asarray(im, np.float32), axis=1)).mean())

    assert detail(blur(photo, 2)) < detail(blur(photo, 0.5)) < detail(photo)
    assert blur(photo, 0) is photo


def test_noise_is_seeded_and_scaled(photo):
    a = noise(photo, 0.05, np.random.default_rng(1))
    assert _err(a, noise(photo, 0.05, np.random.default_rng(1))) == 0
    assert 5 < _err(photo, a) < 15  # mean |N(0, 12.75)| ~ 10 grey levels, minus clipping
    assert Perturbation("noise", 0.02)(photo).tobytes() == Perturbation("noise", 0.02)(photo).tobytes()


def test_resize_changes_size(photo):
    assert resize(photo, 0.5).size == (64, 64)
    assert Perturbation("resize", 0.25)(photo).size == (32, 32)


def test_salt_and_pepper_sets_the_asked_fraction_to_black_or_white(photo):
    out = np.asarray(saltpepper(photo, 0.1, np.random.default_rng(3)))
    changed = (out != np.asarray(photo)).any(-1)
    assert 0.07 < changed.mean() < 0.11  # a few hits land on pixels that already were black/white
    extreme = out[changed]
    assert set(np.unique(extreme)) <= {0, 255} and (extreme == 0).all(-1).mean() > 0.3
    assert Perturbation("sp", 0.01)(photo).tobytes() == Perturbation("sp", 0.01)(photo).tobytes()
    assert parse_perturbations("sp:0.02")[0].name == "sp:0.02"
