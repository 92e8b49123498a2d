import os
import stat

import pytest
import torch

from transferlab.models.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint


def _payload(**kw):
    pre = {
        "input_size": 32,
        "resize_size": 32,
        "decode_size": 64,
        "crop": "resize",
        "crop_views": 1,
        "interpolation": "bilinear",
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
    }
    return {
        "model": {"w": torch.ones(2)},
        "classes": ["a", "b"],
        "backbone": "scratch_cnn",
        "preprocess": pre,
        "config": {"lr": None, "extra": {}},
        "threshold": 0.3,
        "positive_class": "b",
        **kw,
    }


def test_round_trip_weights_only(tmp_path):
    save_checkpoint(_payload(), tmp_path / "best.pt")
    back = load_checkpoint(tmp_path / "best.pt")
    assert back["classes"] == ["a", "b"] and back["threshold"] == 0.3 and back["format_version"] == 1
    assert torch.equal(back["model"]["w"], torch.ones(2))


def test_checkpoints_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        save_checkpoint(_payload(), tmp_path / "best.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "best.pt").stat().st_mode) == 0o644  # not mkstemp's 0600


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    save_checkpoint(_payload(classes=["old", "b"]), tmp_path / "last.pt")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="no space left"):
        save_checkpoint(_payload(classes=["new", "b"]), tmp_path / "last.pt")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt")["classes"] == ["old", "b"]
    assert os.listdir(tmp_path) == ["last.pt"]


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"x": 1}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a transferlab checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    (tmp_path / "junk.pt").write_text("junk")
    for content in (b"junk", b"", bytes(range(256)) * 4):  # text, empty, random bytes
        (tmp_path / "junk.pt").write_bytes(content)
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(tmp_path / "junk.pt")
        says = str(e.value)
        assert "cannot be read (" in says and "damaged or not a checkpoint" in says and "--checkpoint" in says
        assert "weights_only" not in says and "\n" not in says  # torch's advice to load unsafely is not ours


@pytest.mark.parametrize(
    "edit, field",
    [
        ({"classes": ["a"]}, "classes"),
        ({"classes": ["a", "a"]}, "classes"),
        ({"classes": "ab"}, "classes"),
        ({"threshold": "high"}, "threshold"),
        ({"threshold": 2.0}, "threshold"),
        ({"temperature": -1.0}, "temperature"),
        ({"positive_class": "c"}, "positive_class"),
        ({"preprocess": {"input_size": 0}}, "preprocess.input_size"),
        ({"backbone": None}, "backbone"),
        ({"model": {"w": "text"}}, "model"),
    ],
)
def test_edited_fields_are_named(tmp_path, edit, field):
    torch.save(_payload(**edit), tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match=f"field '{field}'"):
        load_checkpoint(tmp_path / "best.pt")


def test_weights_that_do_not_fit_the_model_are_named(tiny_run, tmp_path):
    ckpt = load_checkpoint(tiny_run / "best.pt")
    three = {**ckpt, "classes": ["a", "b", "c"], "threshold": None, "positive_class": None}
    with pytest.raises(CheckpointError, match=r"model.head.weight' has shape \(2, 256\).*3 classes"):
        model_from_checkpoint(three)
    bad = dict(ckpt["model"])
    bad["body.features.0.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="body.features.0.weight"):
        model_from_checkpoint({**ckpt, "model": bad})
    with pytest.raises(CheckpointError, match="unknown backbone"):
        model_from_checkpoint({**ckpt, "backbone": "resnet1000"})
