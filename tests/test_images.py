import numpy as np
import pytest
from PIL import Image

from transferlab.data.images import ImageReadError, check_image, is_image_name, load_rgb, to_rgb


def test_every_mode_becomes_8bit_rgb(messy_folder):
    root, _ = messy_folder
    for name in ["fake/gray.png", "fake/rgba.png", "fake/cmyk.jpg", "fake/palette.png", "real/sixteen_bit.png"]:
        im = load_rgb(root / name)
        assert im.mode == "RGB", name
        assert np.asarray(im).dtype == np.uint8


def test_sixteen_bit_is_rescaled_not_clipped(tmp_path):
    a = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    rgb = np.asarray(load_rgb(tmp_path / "g16.png"))
    # PIL's own convert("RGB") would clip everything above 255 to white
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255
    assert 100 < rgb[32, 0, 0] < 155


def test_rgba_transparent_area_is_white():
    im = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert to_rgb(im).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied(messy_folder):
    root, _ = messy_folder
    with Image.open(root / "real" / "exif_rotated.jpg") as raw:
        assert raw.size == (40, 20)
    assert load_rgb(root / "real" / "exif_rotated.jpg").size == (20, 40)


def test_unicode_name_with_spaces_loads(messy_folder):
    root, _ = messy_folder
    assert load_rgb(root / "real" / "ñandú photo été.png").size == (40, 40)


@pytest.mark.parametrize(
    "name,word",
    [
        ("fake/empty.jpg", "zero-byte"),
        ("real/notes.jpg", "not an image"),
        ("real/truncated.jpg", "truncated"),
        ("fake/corrupt.jpg", ""),
    ],
)
def test_bad_files_raise_with_path_and_reason(messy_folder, name, word):
    root, _ = messy_folder
    with pytest.raises(ImageReadError) as e:
        load_rgb(root / name)
    assert str(root / name) in str(e.value)
    assert word in e.value.reason


def test_check_image_is_cheap_but_catches_headers(messy_folder):
    root, _ = messy_folder
    check_image(root / "fake" / "gray.png")
    for name in ["fake/empty.jpg", "real/notes.jpg"]:
        with pytest.raises(ImageReadError):
            check_image(root / name)


def test_image_names():
    assert is_image_name("a/B.JPEG") and is_image_name("x.webp")
    assert not is_image_name("notes.txt")
