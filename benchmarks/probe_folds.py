"""Probe: does the logistic head's cross-validation need folds that keep each pair whole?
dfdc pairs every face swap with the real video frame it was made from (same actor, same scene);
ciplab pairs a few composites with their sources. The probe_zoom features (lite0 stage features
at 224 px of the whole image and of centre crops, no augmented views) of bench_detect's usual
split, standardised, logistic regression with C chosen by 5-fold CV (log loss, the product's
grid) with folds by image and with folds grouped by the manifest's ``group`` column. For
each: the chosen C, the 5-fold ROC-AUC at that C, and test ROC-AUC.

    .venv/bin/python benchmarks/probe_zoom.py --data dfdc,ciplab   # the features, once
    .venv/bin/python benchmarks/probe_folds.py [--data dfdc,ciplab]

Writes benchmarks/results/probe_folds.json.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, save
from probe_zoom import load

VIEWS = ((1.0, 0.5), (1.0,), (0.6,))  # the zoom default's views, the whole image, the best centre


def fold_groups(samples) -> np.ndarray:
    """Each sample's fold unit: its group in the manifest, or itself when it has none."""
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(s.group or s.path, len(ids)) for s in samples])


def train_groups(ds: str) -> np.ndarray:
    """The fold units of bench_detect's training split of ``ds``, in probe_zoom's row order."""
    from transferlab.data.index import read_manifest

    return fold_groups(read_manifest(RESULTS / "detect" / ds / "split" / "split.csv").splits["train"])


def fit(z, y, zt, yt, folds) -> dict:
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.metrics import roc_auc_score

    from transferlab.training.logistic import C_GRID

    clf = LogisticRegressionCV(Cs=list(C_GRID), cv=folds, scoring="neg_log_loss", max_iter=2000).fit(z, y)
    c = float(clf.C_[0])
    cv = [
        roc_auc_score(y[b], LogisticRegression(C=c, max_iter=2000).fit(z[a], y[a]).decision_function(z[b]))
        for a, b in folds
    ]
    test = roc_auc_score(yt, clf.decision_function(zt))
    return {"C": c, "cv_roc_auc": float(np.mean(cv)), "test_roc_auc": float(test)}


def main() -> None:
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="dfdc,ciplab")
    a = ap.parse_args()
    out = {}
    for ds in a.data.split(","):
        d, groups = load(ds), train_groups(ds)
        y, yt = d["train_y"], d["test_y"]
        assert len(groups) == len(y), "probe_zoom's features are from another split: delete its cache"
        print(f"{ds}: {len(y)} training images in {len(set(groups))} fold units", flush=True)
        by = {
            "image folds": list(StratifiedKFold(5, shuffle=True, random_state=0).split(y, y)),
            "pair folds": list(StratifiedGroupKFold(5, shuffle=True, random_state=0).split(y, y, groups)),
        }
        for views in VIEWS:
            x, xt = (np.hstack([d[f"{s}_{f}"] for f in views]) for s in ("train", "test"))
            scaler = StandardScaler().fit(x)
            z, zt = scaler.transform(x), scaler.transform(xt)
            name = " + ".join("whole" if f == 1.0 else f"centre {f}" for f in views)
            for kind, folds in by.items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = fit(z, y, zt, yt, folds)
                out[f"{ds}/{name}/{kind}"] = r
                print(
                    f"{ds:>7} {name:>16} {kind:>11}: C {r['C']:.2g}  CV ROC-AUC {r['cv_roc_auc']:.3f}  "
                    f"test {r['test_roc_auc']:.3f}",
                    flush=True,
                )
    print(f"wrote {save('probe_folds', out)}")


if __name__ == "__main__":
    main()
