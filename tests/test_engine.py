import pytest
import torch

from transferlab.config import load_config
from transferlab.data.index import load_index
from transferlab.data.loading import make_loader
from transferlab.data.transforms import eval_transform
from transferlab.models.registry import get_spec
from transferlab.models.transfer import create_model
from transferlab.training.engine import (
    FitState,
    build_optimizer,
    build_scheduler,
    evaluate,
    fit,
    is_better,
    train_one_epoch,
)


def _loader(folder, shuffle=True, batch=8):
    pre = get_spec("scratch_cnn").preprocess(32)
    return make_loader(load_index(folder).splits["train"], eval_transform(pre), batch, shuffle, num_workers=0)


def test_overfit_one_batch(tiny_folder):
    """train_one_epoch, run on a loader that holds one batch, drives that batch's loss to ~0."""
    torch.manual_seed(0)
    cfg = load_config(None, {"model": "scratch_cnn", "mode": "scratch", "lr": 0.01, "progress": False,
                             "scheduler": "none", "weight_decay": 0.0})  # fmt: skip
    model = create_model("scratch_cnn", 2, pretrained=False)
    one = [next(iter(_loader(tiny_folder, batch=8)))]
    opt = build_optimizer(model, cfg)
    first = train_one_epoch(model, one, opt, None, torch.device("cpu"), cfg)
    for _ in range(40):
        last = train_one_epoch(model, one, opt, None, torch.device("cpu"), cfg)
    val = evaluate(model, one, torch.device("cpu"))
    assert first["loss"] > 0.3 and last["loss"] < 0.05 and last["n"] == 8
    assert val["acc"] == 1.0 and val["loss"] < 0.05


def test_train_epoch_and_evaluate_report_metrics(tiny_folder):
    torch.manual_seed(0)
    cfg = load_config(None, {"model": "scratch_cnn", "mode": "scratch", "lr": 0.01, "progress": False, "epochs": 3})
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
        cfg = load_config(
            None, {"scheduler": name, "epochs": 10, "step_size": 7, "lr": 0.1, "optimizer": "sgd", "mode": "scratch"}
        )
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

    import transferlab.training.engine as engine

    flat = {
        "loss": 0.5,
        "acc": 0.5,
        "probs": np.full((4, 2), 0.5),
        "labels": np.array([0, 1, 0, 1]),
        "indices": np.arange(4),
        "skipped": [],
    }
    monkeypatch.setattr(engine, "evaluate", lambda *a, **k: dict(flat))  # validation never improves
    cfg = load_config(
        None,
        {
            "model": "scratch_cnn",
            "mode": "scratch",
            "lr": 0.01,
            "progress": False,
            "epochs": 10,
            "patience": 2,
            "scheduler": "none",
        },
    )
    model = create_model("scratch_cnn", 2, pretrained=False)
    loader = _loader(tiny_folder, batch=10)
    seen = []
    state = fit(
        model,
        loader,
        loader,
        build_optimizer(model, cfg),
        None,
        torch.device("cpu"),
        cfg,
        FitState(),
        lambda rec, imp, st, val: seen.append((rec["epoch"], imp)),
    )
    assert seen == [(1, True), (2, False), (3, False)]  # best at 1, then patience 2 -> stop after 3
    assert state.epoch == 3 and state.best_epoch == 1 and len(state.history) == 3
    assert set(state.history[0]) >= {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"}


def test_tune_malloc_stops_page_faults_on_glibc():
    """Without it, every large freed buffer goes back to the kernel and the next allocation faults
    its pages in again; with it, the heap keeps them (a subprocess measures minor page faults)."""
    import platform
    import subprocess
    import sys

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    code = "\n".join([
        "import ctypes, ctypes.util, resource, sys",
        "from transferlab.runtime import tune_malloc",
        "libc = ctypes.CDLL(ctypes.util.find_library('c'))",
        "libc.malloc.restype = ctypes.c_void_p",
        "libc.free.argtypes = [ctypes.c_void_p]",
        "libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]",
        "ok = tune_malloc() if sys.argv[1] == '1' else True",
        "def use(n=64 << 20):  # an activation-sized buffer: allocated, written, freed",
        "    p = libc.malloc(n); libc.memset(p, 1, n); libc.free(p)",
        "use()",
        "f = resource.getrusage(resource.RUSAGE_SELF).ru_minflt",
        "for _ in range(10):",
        "    use()",
        "print(ok, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f)",
    ])  # fmt: skip
    faults = {}
    for tuned in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", code, tuned], capture_output=True, text=True, check=True).stdout
        ok, n = out.split()
        assert ok == "True"
        faults[tuned] = int(n)
    assert faults["0"] > 10 * 16_000  # 64 MB buffers: ~16k pages faulted in again every time
    assert faults["1"] < 1_000  # kept in the heap: no page faults after the first use


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 7, 40])
def test_onecycle_survives_tiny_runs(steps):
    """torch's OneCycleLR divides by zero when the warm-up is one step long (1 epoch x 4 batches):
    every run length gets a finite schedule that stays within the peak and ends far below it."""
    from transferlab.config import TrainConfig
    from transferlab.training.engine import build_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = build_scheduler(opt, TrainConfig(epochs=1), steps)
    lrs = []  # the rate each of the `steps` batches trains at
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(0 <= lr <= 0.1 + 1e-9 for lr in lrs)
    if steps >= 2:
        assert lrs[-1] < max(lrs)  # annealed by the end
    if steps >= 4:  # one-cycle: a warm-up to (near) the peak first
        assert lrs[0] < 0.05 and max(lrs) > 0.07
