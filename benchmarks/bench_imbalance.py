"""Imbalanced training data (10:1): balanced accuracy with no correction, with ``--class-weights
auto`` and with ``--sampler balanced``, side by side on the same split.

The split: training and validation keep every image of the majority class drawn and one tenth as
many of the minority class (seeded); the test split is balanced, so its balanced accuracy is the
mean recall a user would see on either class. hymenoptera: bees are the minority (its own val
folder is the test split). Faces (ciplab): fakes are the minority, as in practice; 70/15/15 of
each class first, then the 10:1 cut of training and validation. Default settings otherwise (the
recipe ``auto`` picks the detection recipe for real/fake data). The three settings share one
feature cache, so the backbone runs once per data set.

    .venv/bin/python benchmarks/bench_imbalance.py [--sets hymenoptera,ciplab] [--ratio 10]

Prints a table and writes benchmarks/results/imbalance.json.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import save

SHARED = ROOT.parent / "shared" / "data"
SETS = {
    "hymenoptera": (SHARED / "hymenoptera_data", "bees"),
    "ciplab": (SHARED / "faces" / "ciplab_real_and_fake_face", "fake"),
}
SETTINGS = {"none": {}, "class_weights_auto": {"class_weights": "auto"}, "sampler_balanced": {"sampler": "balanced"}}


def imbalanced_manifest(name: str, out: Path, ratio: int, seed: int = 0) -> Path:
    """A CSV manifest (path,label,split) with train and val at ``ratio``:1 and a balanced test."""
    from transferlab.data.index import load_index

    root, minority = SETS[name]
    index = load_index(root)
    rng = random.Random(seed)
    rows = []
    if "val" in index.splits:  # pre-split folder: its val is the (balanced) test split
        pool = {c: [s for s in index.splits["train"] if s.label == i] for i, c in enumerate(index.classes)}
        test = index.splits["val"]
    else:
        pool, test = {}, []
        for i, c in enumerate(index.classes):
            items = [s for s in index.splits["train"] if s.label == i]
            rng.shuffle(items)
            cut = int(0.85 * len(items))
            pool[c], test = items[:cut], test + items[cut:]
        n = min(sum(s.label == i for s in test) for i in range(len(index.classes)))
        test = [s for i in range(len(index.classes)) for s in [t for t in test if t.label == i][:n]]
    for c, items in pool.items():
        rng.shuffle(items)
        if c == minority:
            items = items[: max(4, len([s for s in index.splits["train"] if index.classes[s.label] != c]) // ratio)]
        cut = int(0.82 * len(items))
        rows += [(s.path, c, "train") for s in items[:cut]] + [(s.path, c, "val") for s in items[cut:]]
    rows += [(s.path, index.classes[s.label], "test") for s in test]
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}_{ratio}to1.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        w.writerows(rows)
    return path


def one(manifest: Path, out: Path, cache: Path, setting: dict) -> dict:
    from transferlab.config import load_config
    from transferlab.evaluation.scoring import evaluate_run
    from transferlab.training.trainer import train

    t0 = time.perf_counter()
    run = train(
        load_config(
            None, {"data": str(manifest), "out": str(out), "cache_dir": str(cache), "progress": False, **setting}
        )
    )
    ev = evaluate_run(run.run_dir, explain=0)
    b = ev.get("binary") or {}
    return {
        "counts": run.summary["data"]["counts"],
        "test_accuracy": ev["accuracy"],
        "test_balanced_accuracy": ev["balanced_accuracy"],
        "test_recall": {c: v["recall"] for c, v in ev["per_class"].items()},
        "test_accuracy_at_threshold": b.get("accuracy_at_threshold"),
        "test_balanced_accuracy_at_threshold": b.get("balanced_accuracy_at_threshold"),
        "roc_auc": b.get("roc_auc"),
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="hymenoptera,ciplab")
    ap.add_argument("--ratio", type=int, default=10)
    a = ap.parse_args()
    from transferlab.runtime import set_threads

    set_threads()
    results: dict = {"ratio": a.ratio, "sets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.sets.split(","):
            manifest = imbalanced_manifest(name, Path(tmp), a.ratio)
            results["sets"][name] = {}
            for key, setting in SETTINGS.items():
                r = one(manifest, Path(tmp) / f"{name}_{key}", Path(tmp) / f"cache_{name}", setting)
                results["sets"][name][key] = r
                recall = ", ".join(f"{c} {v:.3f}" for c, v in r["test_recall"].items())
                print(
                    f"{name:>12} {key:>19}: balanced acc {r['test_balanced_accuracy']:.4f}  "
                    f"acc {r['test_accuracy']:.4f}  recall {recall}  "
                    f"ROC-AUC {r['roc_auc'] or float('nan'):.4f}  ({r['seconds']:.0f}s)",
                    flush=True,
                )
            base = results["sets"][name]["none"]["test_balanced_accuracy"]
            for key in ("class_weights_auto", "sampler_balanced"):
                gain = results["sets"][name][key]["test_balanced_accuracy"] - base
                results["sets"][name][key]["gain_points"] = 100 * gain
                print(f"{name:>12} {key}: {100 * gain:+.1f} points of balanced accuracy over none")
    print(f"wrote {save('imbalance', results)}")


if __name__ == "__main__":
    main()
