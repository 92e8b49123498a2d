"""The mode table is the one place that says what a mode does; a new row is a new mode."""

import dataclasses

import pytest

from transferlab.config import ConfigError, load_config
from transferlab.modes import MODES, Mode, get_mode


def test_the_table_matches_what_each_mode_promises():
    assert list(MODES) == ["scratch", "features", "finetune", "lpft"]
    scratch, features, finetune, lpft = MODES.values()
    assert not scratch.pretrained and all(m.pretrained for m in (features, finetune, lpft))
    assert features.frozen_body and features.cached_features and not finetune.frozen_body
    assert lpft.probe == "features" and MODES[lpft.probe].cached_features
    assert finetune.body_lr_mult and lpft.body_lr_mult and not features.body_lr_mult
    assert {m.name for m in MODES.values() if m.head_on_features} == {"features", "lpft"}
    assert lpft.lr_adamw < finetune.lr_adamw  # the fine-tuning stage starts from a fitted head


def test_config_reads_learning_rates_and_choices_from_the_table():
    for m in MODES.values():
        assert load_config(None, {"mode": m.name}).default_lr() == m.lr_adamw
        assert load_config(None, {"mode": m.name, "optimizer": "sgd"}).default_lr() == m.lr_sgd
    with pytest.raises(ConfigError, match="did you mean 'finetune'"):
        load_config(None, {"mode": "fintune"})
    with pytest.raises(KeyError, match="modes: scratch, features"):
        get_mode("nope")


def test_a_new_row_is_a_new_mode_end_to_end(tiny_folder, tmp_path, monkeypatch):
    """A mode the table's columns can express needs no code anywhere else: here one that fine-tunes
    the body at a tenth of the head's pace with batch-norm statistics frozen, from random init."""
    new = dataclasses.replace(MODES["finetune"], name="slowbody", pretrained=False, lr_adamw=0.01,
                              description="random init, the body at lr x backbone_lr_mult")  # fmt: skip
    monkeypatch.setitem(MODES, "slowbody", new)
    assert isinstance(get_mode("slowbody"), Mode)
    from transferlab.training.trainer import train

    res = train(load_config(None, {"data": str(tiny_folder), "out": str(tmp_path / "r"), "model": "scratch_cnn",
                                   "mode": "slowbody", "image_size": 32, "epochs": 2, "batch_size": 4,
                                   "num_workers": 0, "progress": False, "augment": "none"}))  # fmt: skip
    assert res.summary["mode"] == "slowbody" and res.summary["params"]["trainable"] == res.summary["params"]["total"]
    import torch

    opt = torch.load(tmp_path / "r" / "last.pt", weights_only=True)["optimizer"]
    lrs = sorted({g["initial_lr"] for g in opt["param_groups"]})
    assert len(lrs) == 2 and lrs[0] / lrs[1] == pytest.approx(0.01)  # body at lr x backbone_lr_mult, head at lr
    assert max(g["max_lr"] for g in opt["param_groups"]) == pytest.approx(0.01)  # the row's learning rate
