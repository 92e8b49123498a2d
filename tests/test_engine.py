import pytest
import torch

from transferlab.backbones import create_model
from transferlab.config import load_config
from transferlab.data import load_index, make_loader
from transferlab.engine import (FitState, build_optimizer, build_scheduler, evaluate, fit, is_better,
                                train_one_epoch)
from transferlab.transforms import eval_transform
from transferlab.backbones import get_spec


def _loader(folder, shuffle=True, batch=8):
    pre = get_spec("scratch_cnn").preprocess(32)
    return make_loader(load_index(folder).splits["train"], eval_transform(pre), batch, shuffle, num_workers=0)


def test_overfit_one_batch(tiny_folder):
    torch.manual_seed(0)
    cfg = load_config(None, {"model": "scratch_cnn", "mode": "scratch", "lr": 0.01, "progress": False,
                             "scheduler": "none", "optimizer": "adamw", "weight_decay": 0.0})
    model = create_model("scratch_cnn", 2, pretrained=False)
    batch = next(iter(_loader(tiny_folder, batch=8)))
    opt = build_optimizer(model, cfg)
    model.train()
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(batch["image"]), batch["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(batch["image"]).argmax(1) == batch["label"]).float().mean().item()
    assert loss.item() < 0.05 and acc == 1.0


def test_train_epoch_and_evaluate_report_metrics(tiny_folder):
    torch.manual_seed(0)
    cfg = load_config(None, {"model": "scratch_cnn", "mode": "scratch", "lr": 0.01, "progress": False,
                             "epochs": 3})
    model = create_model("scratch_cnn", 2, pretrained=False)
    loader = _loader(tiny_folder, batch=4)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, len(loader))
    res = train_one_epoch(model, loader, opt, sched, torch.device("cpu"), cfg)
    assert res["n"] == 20 and 0 <= res["acc"] <= 1 and res["loss"] > 0
    ev = evaluate(model, _loader(tiny_folder, shuffle=False), torch.device("cpu"))
    assert ev["probs"].shape == (20, 2) and ev["labels"].shape == (20,)
    assert abs(ev["probs"].sum(1) - 1).max() < 1e-5
    assert sorted(ev["indices"].tolist()) == list(range(20))


def test_finetune_gives_backbone_smaller_lr():
    cfg = load_config(None, {"mode": "finetune", "lr": 0.1, "backbone_lr_mult": 0.1})
    model = create_model("scratch_cnn", 2, pretrained=False)
    lrs = {g["name"]: g["lr"] for g in build_optimizer(model, cfg).param_groups}
    assert lrs["head"] == 0.1 and abs(lrs["body"] - 0.01) < 1e-12
    assert all(g["weight_decay"] == 0 for g in build_optimizer(model, cfg).param_groups if "no_decay" in g["name"])


def test_schedulers_step_per_batch():
    model = create_model("scratch_cnn", 2, pretrained=False)
    for name in ("onecycle", "cosine", "step"):
        cfg = load_config(None, {"scheduler": name, "epochs": 10, "step_size": 7, "lr": 0.1,
                                 "optimizer": "sgd", "mode": "scratch"})
        opt = build_optimizer(model, cfg)
        sched = build_scheduler(opt, cfg, steps_per_epoch=5)
        lrs = []
        for _ in range(50):
            opt.step()
            sched.step()
            lrs.append(opt.param_groups[0]["lr"])
        if name == "step":
            assert abs(lrs[33] - 0.1) < 1e-9 and abs(lrs[35] - 0.01) < 1e-9  # decays after 7 epochs x 5
        else:
            assert lrs[-1] < 0.01
    assert build_scheduler(opt, load_config(None, {"scheduler": "none"}), 5) is None


def test_is_better_breaks_ties_on_loss():
    assert is_better("accuracy", 0.9, 0.8) and not is_better("accuracy", 0.8, 0.9)
    assert is_better("loss", 0.1, 0.2) and not is_better("loss", 0.3, 0.2)
    assert is_better("accuracy", 0.9, 0.9, loss=0.1, best_loss=0.2)
    assert not is_better("accuracy", 0.9, 0.9, loss=0.3, best_loss=0.2)
    assert is_better("accuracy", 0.1, None)


def test_fit_early_stopping_and_hook(tiny_folder, monkeypatch):
    import numpy as np
    import transferlab.engine as engine
    flat = {"loss": 0.5, "acc": 0.5, "probs": np.full((4, 2), 0.5), "labels": np.array([0, 1, 0, 1]),
            "indices": np.arange(4), "skipped": []}
    monkeypatch.setattr(engine, "evaluate", lambda *a, **k: dict(flat))  # validation never improves
    cfg = load_config(None, {"model": "scratch_cnn", "mode": "scratch", "lr": 0.01, "progress": False,
                             "epochs": 10, "patience": 2, "scheduler": "none"})
    model = create_model("scratch_cnn", 2, pretrained=False)
    loader = _loader(tiny_folder, batch=10)
    seen = []
    state = fit(model, loader, loader, build_optimizer(model, cfg), None, torch.device("cpu"), cfg,
                FitState(), lambda rec, imp, st, val: seen.append((rec["epoch"], imp)))
    assert seen == [(1, True), (2, False), (3, False)]  # best at 1, then patience 2 -> stop after 3
    assert state.epoch == 3 and state.best_epoch == 1 and len(state.history) == 3
    assert set(state.history[0]) >= {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"}


def test_tune_malloc_takes_on_glibc():
    import platform
    from transferlab.engine import tune_malloc
    ok = tune_malloc()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert ok is True
    else:
        assert ok in (True, False)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 7, 40])
def test_onecycle_survives_tiny_runs(steps):
    """torch's OneCycleLR divides by zero when the warm-up is one step long (1 epoch x 4 batches)."""
    from transferlab.config import TrainConfig
    from transferlab.engine import build_scheduler
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = build_scheduler(opt, TrainConfig(epochs=1), steps)
    for _ in range(steps):
        opt.step()
        sched.step()
    assert 0 <= opt.param_groups[0]["lr"] <= 0.1 + 1e-9
