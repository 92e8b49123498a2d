import numpy as np
import pytest
from PIL import Image

from transferlab.lab.demo import PHOTOS, build_demo_data, make_fake, run_demo


def test_splits_use_different_photos():
    seen = [p for split in PHOTOS.values() for p in split]
    assert len(seen) == len(set(seen))


def test_nearest_fakes_repeat_every_pixel_twice():
    rng = np.random.default_rng(0)
    real = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    fake = make_fake(real, rng, "nearest")
    assert fake.shape == real.shape
    assert np.array_equal(fake[0::2], fake[1::2]) and np.array_equal(fake[:, 0::2], fake[:, 1::2])
    assert not np.array_equal(real[0::2], real[1::2])


def test_transposed_fakes_leave_a_checkerboard_on_flat_input():
    flat = np.full((32, 32, 3), 128, np.uint8)
    fake = make_fake(flat, np.random.default_rng(1), "transposed").astype(int)
    inner = fake[2:-2, 2:-2]
    assert inner.std() > 5  # a flat photo becomes patterned...
    assert np.array_equal(inner[:-2], inner[2:]) and np.array_equal(inner[:, :-2], inner[:, 2:])  # ...with period 2


def test_build_demo_data_layout(tmp_path):
    root = build_demo_data(tmp_path / "demo", size=64)
    for split in ("train", "val", "test"):
        for cls in ("real", "fake"):
            files = list((root / split / cls).glob("*.png"))
            assert files, (split, cls)
            assert {f.name.rsplit("_", 1)[0] for f in files} <= set(PHOTOS[split])
    with Image.open(next((root / "test" / "fake").glob("*.png"))) as im:
        assert im.size == (64, 64)
    mtime = (root / "demo.json").stat().st_mtime
    build_demo_data(tmp_path / "demo", size=64)  # reused, not rebuilt
    assert (root / "demo.json").stat().st_mtime == mtime


@pytest.mark.slow
def test_demo_detector_reaches_90_percent_on_unseen_photos(tmp_path, capsys):
    report = run_demo(tmp_path / "demo", progress=False)
    assert report["accuracy"] >= 0.9
    out = capsys.readouterr().out
    assert "test accuracy" in out and str(tmp_path / "demo" / "run") in out
