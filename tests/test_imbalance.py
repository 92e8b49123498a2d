"""Imbalanced data: class weights in the loss, a balanced sampler (images and cached features),
the logistic head's balanced weighting, and the warnings in `split` and `train`."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import make_folder
from transferlab.config import ConfigError, TrainConfig
from transferlab.data.index import Sample, imbalance_note
from transferlab.data.loading import balanced_sampler, collate_skipping
from transferlab.training.engine import class_weights, train_one_epoch
from transferlab.training.features import FeatureDataset, FeatureSet, feature_loader


def test_class_weights_are_inverse_frequency_and_one_when_balanced():
    torch.testing.assert_close(class_weights([0, 0, 0, 1], 2), torch.tensor([4 / 6, 2.0]))
    torch.testing.assert_close(class_weights([0, 1, 0, 1], 2), torch.tensor([1.0, 1.0]))
    assert class_weights([0, 0], 2).tolist() == [0.5, 0.0]  # an absent class weighs nothing


@pytest.mark.parametrize(("sizes", "warned"), [((10, 100), True), ((40, 100), False), ((30, 100), True)])
def test_imbalance_is_reported_beyond_three_to_one(sizes, warned):
    samples = [Sample(f"{c}{i}.jpg", c) for c, n in enumerate(sizes) for i in range(n)]
    note = imbalance_note(samples, ["fake", "real"])
    assert (note is not None) == warned
    if warned:
        assert "--class-weights auto" in note and "--sampler balanced" in note and "balanced accuracy" in note


def test_balanced_sampler_draws_each_class_equally_often():
    labels = [0] * 100 + [1] * 10
    drawn = torch.tensor(labels)[list(balanced_sampler(labels, torch.Generator().manual_seed(0)))]
    assert len(drawn) == 110
    assert 0.4 < drawn.float().mean().item() < 0.6  # vs 0.09 without it


def test_balanced_feature_loader_draws_minority_rows_too():
    feats = torch.randn(44, 2, 3)  # 44 images x 2 views
    labels = torch.tensor([0] * 40 + [1] * 4)
    fs = FeatureSet(feats, labels, list(range(44)), [], 44, 0.0)
    plain = torch.cat([b["label"] for b in feature_loader(fs, True, 8, True, 0)])
    even = torch.cat([b["label"] for b in feature_loader(fs, True, 8, True, 0, balanced=True)])
    assert len(plain) == len(even) == 88
    assert plain.float().mean().item() == pytest.approx(4 / 44)
    assert even.float().mean().item() > 0.35


def test_class_weights_move_the_decision_toward_the_minority_class():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(90, 4, generator=g) + 0.3, torch.randn(10, 4, generator=g) - 0.3])
    y = torch.tensor([0] * 90 + [1] * 10)
    loader = torch.utils.data.DataLoader(FeatureDataset(x, y), batch_size=20, collate_fn=collate_skipping)
    cfg = TrainConfig(data="x", progress=False, amp=False, channels_last=False)
    minority = []
    for weight in (None, class_weights(y, 2)):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.2)
        for _ in range(20):
            train_one_epoch(model, loader, opt, None, torch.device("cpu"), cfg, class_weight=weight)
        minority.append((model(x).argmax(1) == 1).sum().item())
    assert minority[0] < minority[1]  # unweighted: the 10% class is mostly never predicted


def test_sampler_and_class_weight_settings_are_checked():
    with pytest.raises(ConfigError, match="class_weights"):
        TrainConfig(data="x", class_weights="inverse").validate()
    with pytest.raises(ConfigError, match="sampler"):
        TrainConfig(data="x", sampler="oversample").validate()


@pytest.mark.parametrize("setting", [{"class_weights": "auto"}, {"sampler": "balanced"}])
@pytest.mark.parametrize("mode", ["features", "scratch"])
def test_imbalanced_training_warns_and_records_the_setting(tmp_path, fast_overrides, setting, mode):
    from transferlab.config import load_config
    from transferlab.training.trainer import train

    data = make_folder(tmp_path / "data", n=20)
    for p in sorted((data / "fake").iterdir())[4:]:  # 20 real, 4 fake
        p.unlink()
    extra = (
        {"model": "efficientnet_lite0", "image_size": 64, "cache_dir": str(tmp_path / "c")}
        if mode == "features"
        else {}
    )
    cfg = load_config(
        None, {**fast_overrides, **extra, "mode": mode, **setting, "data": str(data), "out": str(tmp_path / "r")}
    )
    run = train(cfg)
    notes = run.summary["data"]["notes"]
    assert any("classes are imbalanced" in n for n in notes)
    assert run.summary["val"]["balanced_accuracy"] is not None
    saved = (tmp_path / "r" / "config.yaml").read_text()
    assert f"{next(iter(setting))}: {next(iter(setting.values()))}" in saved


def test_split_warns_about_imbalance(tmp_path):
    data = make_folder(tmp_path / "data", n=20)
    for p in sorted((data / "fake").iterdir())[3:]:
        p.unlink()
    out = subprocess.run(
        [sys.executable, "-m", "transferlab", "split", str(data), "--out", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "classes are imbalanced (fake 3, real 20" in out.stderr
