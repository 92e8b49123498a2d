"""Probe: does the centre of a face crop, magnified, add what the whole image's stage features miss?
Same splits as bench_detect, frozen efficientnet_lite0 stage features at 224 px of the whole image
and of centre crops (a fraction of each side, cut from the decoded file at its own resolution,
bilinear to 224 px), standardised, logistic regression with C by 5-fold CV on the training split.
For each view and each whole + centre pair: 5-fold CV ROC-AUC on the training split, and test
ROC-AUC. No augmented views. A probe, not a feature of the tool: it measured the idea behind
``--zoom`` (which uses the centre half: fraction 0.5).

    .venv/bin/python benchmarks/probe_zoom.py [--data dfdc,ciplab,tpdne]

Features are kept in benchmarks/results/probe_zoom/ (a second run fits the heads only). Writes
benchmarks/results/probe_zoom.json.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, save
from probe_residual import probe_model

FRACTIONS = (1.0, 0.8, 0.7, 0.6, 0.5, 0.4)
PAIRS = ((1.0, 0.7), (1.0, 0.6), (1.0, 0.5))


def centre_crop(im: Image.Image, fraction: float, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """The middle ``fraction`` of each side of ``im``, cut at its own resolution, bilinear to
    224 px and normalised: ``(3, 224, 224)``."""
    w, h = im.size
    box = ((w - w * fraction) / 2, (h - h * fraction) / 2, (w + w * fraction) / 2, (h + h * fraction) / 2)
    a = (np.asarray(im.resize((224, 224), Image.BILINEAR, box=box), np.float32) / 255 - mean) / std
    return torch.from_numpy(a.transpose(2, 0, 1).copy())


@torch.inference_mode()
def features(samples, model, mean: np.ndarray, std: np.ndarray, fractions=FRACTIONS) -> dict[float, np.ndarray]:
    """``{fraction: (N, D) stage features of each image's centre crop of that fraction}``."""
    out: dict[float, list] = {f: [] for f in fractions}
    for i in range(0, len(samples), 32):
        views: dict[float, list] = {f: [] for f in fractions}
        for s in samples[i : i + 32]:
            im = Image.open(s.path).convert("RGB")
            for f in fractions:
                views[f].append(centre_crop(im, f, mean, std))
        for f in fractions:
            x = torch.stack(views[f]).contiguous(memory_format=torch.channels_last)
            out[f].append(model.forward_features(x).float().numpy())
    return {f: np.concatenate(v) for f, v in out.items()}


def load(ds: str) -> dict[str, np.ndarray]:
    from transferlab.data.index import read_manifest
    from transferlab.metrics import guess_positive

    cache = RESULTS / "probe_zoom" / f"{ds}.npz"
    if cache.is_file():
        return dict(np.load(cache))
    model, _pre, mean, std = probe_model()
    mean, std = (t.view(3).numpy() for t in (mean, std))
    index = read_manifest(RESULTS / "detect" / ds / "split" / "split.csv")
    pos = guess_positive(index.classes)
    out = {}
    for split in ("train", "test"):
        samples = index.splits[split]
        out.update({f"{split}_{f}": v for f, v in features(samples, model, mean, std).items()})
        out[f"{split}_y"] = np.array([int(s.label == pos) for s in samples])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def scores(xtr, ytr, xte, yte) -> tuple[float, float]:
    """(5-fold CV ROC-AUC on the training split, test ROC-AUC) of the standardised logistic head."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def head():
        logistic = LogisticRegressionCV(Cs=[1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1], max_iter=3000)
        return make_pipeline(StandardScaler(), logistic)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and API-transition notes
        folds = StratifiedKFold(5, shuffle=True, random_state=0)
        cv = cross_val_score(head(), xtr, ytr, cv=folds, scoring="roc_auc").mean()
        test = roc_auc_score(yte, head().fit(xtr, ytr).predict_proba(xte)[:, 1])
    return float(cv), float(test)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="dfdc,ciplab,tpdne")
    a = ap.parse_args()
    out = {}
    for ds in a.data.split(","):
        d = load(ds)
        for views in [(f,) for f in FRACTIONS] + list(PAIRS):
            xtr, xte = (np.hstack([d[f"{s}_{f}"] for f in views]) for s in ("train", "test"))
            cv, test = scores(xtr, d["train_y"], xte, d["test_y"])
            name = " + ".join("whole" if f == 1.0 else f"centre {f}" for f in views)
            out[f"{ds}/{name}"] = {"train_cv_roc_auc": cv, "test_roc_auc": test}
            print(f"{ds:>7} {name:>24}: train CV ROC-AUC {cv:.3f}  test {test:.3f}", flush=True)
    print(f"wrote {save('probe_zoom', out)}")


if __name__ == "__main__":
    main()
