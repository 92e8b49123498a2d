import os

import pytest
import torch

from transferlab.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip_weights_only(tmp_path):
    payload = {"model": {"w": torch.ones(2)}, "classes": ["a", "b"], "preprocess": {"input_size": 32},
               "config": {"lr": None, "extra": {}}, "threshold": 0.3}
    save_checkpoint(payload, tmp_path / "best.pt")
    back = load_checkpoint(tmp_path / "best.pt")
    assert back["classes"] == ["a", "b"] and back["threshold"] == 0.3 and back["format_version"] == 1
    assert torch.equal(back["model"]["w"], torch.ones(2))


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    save_checkpoint({"model": {}, "classes": ["old"]}, tmp_path / "last.pt")

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint({"model": {}, "classes": ["new"]}, tmp_path / "last.pt")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt")["classes"] == ["old"]
    assert os.listdir(tmp_path) == ["last.pt"]


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"x": 1}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a transferlab checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "junk.pt")
