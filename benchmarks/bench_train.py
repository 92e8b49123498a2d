"""Seed recipe vs `transferlab train`, side by side in one run, for `features` and `finetune`.

The seed recipe (the PyTorch transfer-learning tutorial the project started from): per-sample PIL
transforms, batch 4, SGD lr 1e-3 momentum 0.9, StepLR(step 7, gamma 0.1), 25 epochs, keep the
best validation accuracy; in feature extraction only the classifier has gradients, yet the whole
network still runs forward (in train mode) every epoch. Same data, same backbone weights
(efficientnet_lite0, bundled). Each contestant runs in its own process so memory peaks and
process-wide settings do not leak between them.

    .venv/bin/python benchmarks/bench_train.py [--data ../shared/data/hymenoptera_data] [--epochs 25]

Prints a table and writes benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import save

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "hymenoptera_data"


def recipe(data: str, mode: str, epochs: int, workers: int) -> dict:
    """The seed recipe, written the way the tutorial writes it."""
    import torch
    from torch import nn
    from torchvision import datasets, transforms

    from transferlab.models.registry import get_spec

    torch.manual_seed(0)
    spec = get_spec("efficientnet_lite0")
    net = spec.build()
    spec.weights.load_into(net, spec.name)
    norm = transforms.Normalize(spec.mean, spec.std)
    tfs = {
        "train": transforms.Compose(
            [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor(), norm]
        ),
        "val": transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), norm]),
    }
    sets = {x: datasets.ImageFolder(os.path.join(data, x), tfs[x]) for x in ("train", "val")}
    loaders = {
        x: torch.utils.data.DataLoader(sets[x], batch_size=4, shuffle=True, num_workers=workers)
        for x in ("train", "val")
    }
    if mode == "features":
        for p in net.parameters():
            p.requires_grad = False
    net.classifier = nn.Linear(net.classifier.in_features, len(sets["train"].classes))
    params = net.classifier.parameters() if mode == "features" else net.parameters()
    opt = torch.optim.SGD(params, lr=0.001, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.1)
    crit = nn.CrossEntropyLoss()
    best, history, t0 = 0.0, [], time.perf_counter()
    for epoch in range(epochs):
        for phase in ("train", "val"):
            net.train() if phase == "train" else net.eval()
            correct = 0
            for x, y in loaders[phase]:
                opt.zero_grad()
                with torch.set_grad_enabled(phase == "train"):
                    out = net(x)
                    loss = crit(out, y)
                    if phase == "train":
                        loss.backward()
                        opt.step()
                correct += (out.argmax(1) == y).sum().item()
            if phase == "train":
                sched.step()
            else:
                acc = correct / len(sets["val"])
                best = max(best, acc)
                history.append({"epoch": epoch + 1, "val_acc": acc, "elapsed": time.perf_counter() - t0})
                print(json.dumps(history[-1]), file=sys.stderr, flush=True)
    return {"wall": time.perf_counter() - t0, "best_val_acc": best, "history": history}


def ours(data: str, mode: str, cache: str) -> dict:
    """`transferlab train` with default settings (a fresh, empty feature cache)."""
    os.environ["TRANSFERLAB_CACHE"] = cache
    from transferlab.config import load_config
    from transferlab.training.trainer import train

    t0 = time.perf_counter()
    out = Path(cache) / f"run_{mode}"
    res = train(load_config(None, {"data": data, "mode": mode, "out": str(out), "progress": False}))
    wall = time.perf_counter() - t0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    setup = wall - sum(float(r["seconds"]) for r in rows)  # indexing, model, feature extraction, figures
    elapsed, history = setup, []
    for r in rows:
        elapsed += float(r["seconds"])
        history.append({"epoch": int(r["epoch"]), "val_acc": float(r["val_acc"]), "elapsed": elapsed})
    return {"wall": wall, "best_val_acc": res.best_val_acc, "history": history}


def _child(kind: str, data: str, mode: str, epochs: int, workers: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--data",
        data,
        "--mode",
        mode,
        "--epochs",
        str(epochs),
        "--workers",
        str(workers),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        cmd += ["--cache", tmp]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(f"{kind}/{mode} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def time_to(history: list[dict], target: float) -> float | None:
    return next((h["elapsed"] for h in history if h["val_acc"] >= target - 1e-9), None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--modes", default="features,finetune")
    ap.add_argument("--child")
    ap.add_argument("--mode", default="features")
    ap.add_argument("--cache")
    a = ap.parse_args()
    if a.child:
        sys.path.insert(0, str(ROOT / "src"))
        r = recipe(a.data, a.mode, a.epochs, a.workers) if a.child == "recipe" else ours(a.data, a.mode, a.cache)
        r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(r))
        return
    results = {}
    for mode in a.modes.split(","):
        rec = _child("recipe", a.data, mode, a.epochs, a.workers)
        our = _child("ours", a.data, mode, a.epochs, a.workers)
        results[mode] = {
            "recipe": rec,
            "transferlab": our,
            "speedup_wall": rec["wall"] / our["wall"],
            "transferlab_time_to_recipe_best": time_to(our["history"], rec["best_val_acc"]),
            "recipe_time_to_its_best": time_to(rec["history"], rec["best_val_acc"]),
        }
    print(f"\n{'mode':<9} {'who':<12} {'wall s':>8} {'best val':>9} {'to recipe best s':>17} {'peak MB':>8}")
    for mode, r in results.items():
        for who in ("recipe", "transferlab"):
            x = r[who]
            tt = time_to(x["history"], r["recipe"]["best_val_acc"])
            print(
                f"{mode:<9} {who:<12} {x['wall']:>8.1f} {x['best_val_acc']:>9.4f} "
                f"{'-' if tt is None else f'{tt:.1f}':>17} {x['peak_rss_mb']:>8.0f}"
            )
        print(
            f"{mode:<9} speed-up (wall): {r['speedup_wall']:.1f}x   accuracy change: "
            f"{100 * (r['transferlab']['best_val_acc'] - r['recipe']['best_val_acc']):+.1f} points"
        )
    save("train", results)


if __name__ == "__main__":
    main()
