"""Probe: does a head other than the default's logistic regression get more out of the frozen stage
features? Same splits and features as probe_residual.py (frozen efficientnet_lite0 stage features
at 224 px; optionally its NPR residual input), standardised, then one of: logistic regression with
C by 5-fold CV (what the default fits), PCA to 256 dimensions before it, an RBF SVM with C by
5-fold CV, a one-hidden-layer MLP (256 units, early stopping) with its L2 strength by 5-fold CV.
Test ROC-AUC. A probe, not a feature of the tool: it says whether a non-linear head is worth
building (issue 11, "a small MLP when it measurably helps").

    .venv/bin/python benchmarks/probe_heads.py [--data dfdc,ciplab] [--inputs image,residual,both]

Features are kept in benchmarks/results/probe_heads/ (a second run fits the heads only). Writes
benchmarks/results/probe_heads.json.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, save
from probe_residual import probe_model, split_features

Cs = [1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1]


def heads() -> dict:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import GridSearchCV
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    def search(model, grid):
        return GridSearchCV(model, grid, cv=5, scoring="roc_auc")

    mlp = MLPClassifier((256,), max_iter=300, early_stopping=True, random_state=0)
    return {
        "logistic": lambda: make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=Cs, max_iter=3000)),
        "pca256_logistic": lambda: make_pipeline(
            StandardScaler(), PCA(256, random_state=0), LogisticRegressionCV(Cs=Cs, max_iter=3000)
        ),
        "svm_rbf": lambda: make_pipeline(StandardScaler(), search(SVC(kernel="rbf"), {"C": [0.3, 1, 3, 10]})),
        "mlp": lambda: make_pipeline(StandardScaler(), search(mlp, {"alpha": [1.0, 10.0, 30.0]})),
    }


def load(ds: str) -> dict[str, np.ndarray]:
    """Image and residual stage features of every split of ``ds``, extracted once."""
    cache = RESULTS / "probe_heads" / f"{ds}.npz"
    if cache.is_file():
        return dict(np.load(cache))
    out = {}
    for split, (img, res, y) in split_features(ds, probe_model()).items():
        out.update({f"{split}_image": img, f"{split}_residual": res, f"{split}_y": y})
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def main() -> None:
    from sklearn.metrics import roc_auc_score

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="dfdc,ciplab")
    ap.add_argument("--inputs", default="image,residual,both")
    a = ap.parse_args()
    out = {}
    for ds in a.data.split(","):
        d = load(ds)
        for inp in a.inputs.split(","):
            names = ["image", "residual"] if inp == "both" else [inp]
            xtr, xte = (np.hstack([d[f"{s}_{n}"] for n in names]) for s in ("train", "test"))
            for head, make in heads().items():
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # convergence and API-transition notes
                    clf = make().fit(xtr, d["train_y"])
                score = clf.predict_proba(xte)[:, 1] if hasattr(clf, "predict_proba") else clf.decision_function(xte)
                row = {"roc_auc": float(roc_auc_score(d["test_y"], score)), "seconds": time.perf_counter() - t0}
                out[f"{ds}/{inp}/{head}"] = row
                print(
                    f"{ds:>7} {inp:>8} {head:>16}: test ROC-AUC {row['roc_auc']:.3f} ({row['seconds']:.0f} s)",
                    flush=True,
                )
    print(f"wrote {save('probe_heads', out)}")


if __name__ == "__main__":
    main()
