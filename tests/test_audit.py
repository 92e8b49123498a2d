"""Shortcuts in how files were saved (`transferlab.data.audit`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferlab.config import load_config
from transferlab.data.audit import file_traits, jpeg_quality, metadata_shortcuts
from transferlab.data.index import Sample


def _photo(i: int, size=(48, 40)) -> Image.Image:
    rng = np.random.default_rng(i)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _save(root: Path, cls: str, i: int, quality: int = 90, fmt: str = "JPEG", size=(48, 40)) -> Sample:
    (root / cls).mkdir(parents=True, exist_ok=True)
    path = root / cls / f"{cls}_{i:02d}.{'jpg' if fmt == 'JPEG' else 'png'}"
    _photo(i, size).save(path, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return Sample(str(path), 0 if cls == "fake" else 1)


@pytest.mark.parametrize("quality", [40, 75, 90, 97])
def test_the_jpeg_quality_is_read_back_from_the_files_tables(tmp_path, quality):
    s = _save(tmp_path, "fake", 0, quality)
    traits = file_traits(s.path)
    assert traits["format"] == "JPEG" and traits["size"] == "48x40"
    with Image.open(s.path) as im:
        assert abs(jpeg_quality(im.quantization[0]) - quality) <= 1
    assert traits["jpeg_tables"].startswith(f"quality ~{jpeg_quality(Image.open(s.path).quantization[0])} [")


def test_a_share_of_one_class_saved_with_other_tables_is_named(tmp_path):
    real = [_save(tmp_path, "real", i, 90) for i in range(10)]
    fake = [_save(tmp_path, "fake", i, 90) for i in range(7)] + [_save(tmp_path, "fake", i, 60) for i in range(7, 10)]
    found = metadata_shortcuts(real + fake, ["fake", "real"])
    assert [(f.trait, f.cls, f.count, f.total) for f in found] == [("jpeg_tables", "fake", 3, 10)]
    text = found[0].text()
    assert "3 of 10 'fake' files (30%) have JPEG quantisation tables" in text and "quality ~60" in text
    assert "fake_07.jpg" in text  # an example file to look at
    assert sorted(Path(p).name for p in found[0].paths) == ["fake_07.jpg", "fake_08.jpg", "fake_09.jpg"]

    # the same tables in both classes: nothing to say
    same = [_save(tmp_path / "b", cls, i, 90) for cls in ("real", "fake") for i in range(10)]
    assert metadata_shortcuts(same, ["fake", "real"]) == []


def test_one_off_values_and_small_shares_are_not_called_a_pattern(tmp_path):
    # every file its own pixel size (a photo collection): no size value is shared by 3 files
    sizes = [(40 + i, 40) for i in range(20)]
    samples = [_save(tmp_path, "real" if i % 2 else "fake", i, 90, size=sizes[i]) for i in range(20)]
    assert not any(f.trait == "size" for f in metadata_shortcuts(samples, ["fake", "real"]))
    # 3 re-saved files of 100: under the 5% share
    real = [_save(tmp_path / "c", "real", i, 90) for i in range(100)]
    fake = [_save(tmp_path / "c", "fake", i, 90 if i < 97 else 60) for i in range(100)]
    assert metadata_shortcuts(real + fake, ["fake", "real"]) == []
    assert [f.count for f in metadata_shortcuts(real + fake, ["fake", "real"], min_share=0.03)] == [3]


def test_unreadable_files_and_a_single_class_give_no_finding(tmp_path):
    bad = tmp_path / "fake" / "bad.jpg"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not an image")
    assert file_traits(str(bad)) == {}
    only = [_save(tmp_path, "real", i, 90) for i in range(5)]
    assert metadata_shortcuts([*only, Sample(str(bad), 0)], ["fake", "real"]) == []


def test_training_data_whose_classes_differ_in_file_format_gets_a_warning(tmp_path):
    from transferlab.training.trainer import prepare_data

    for i in range(6):
        _save(tmp_path / "data", "real", i, fmt="JPEG")
        _save(tmp_path / "data", "fake", i, fmt="PNG")
    _, notes = prepare_data(load_config(None, {"data": str(tmp_path / "data"), "out": str(tmp_path / "run")}))
    warned = [n for n in notes if n.startswith("warning: 6 of 6 'fake' files (100%) have file format")]
    assert len(warned) == 1 and "PNG (6)" in warned[0]
