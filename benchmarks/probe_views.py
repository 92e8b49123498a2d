"""Probe: which whole + centre views, over the five seeded splits, with folds that keep pairs whole?
The zoom default's views (whole image + centre 0.5), the centre 0.6 alone, and whole + centre 0.6
(probe_zoom's crops: cut from the decoded file, bilinear to 224 px; lite0 stage features, no
augmented views). On each of bench_repeats' splits (seed 0 is bench_detect's): standardised
logistic regression, C by 5-fold ROC-AUC with folds grouped by the manifest's ``group`` column;
the best fold ROC-AUC and the test ROC-AUC.

    .venv/bin/python benchmarks/bench_repeats.py --data dfdc --configs zoom   # the splits, once
    .venv/bin/python benchmarks/probe_views.py [--data dfdc]

Features of every image in any split are kept in benchmarks/results/probe_views/. Writes
benchmarks/results/probe_views.json.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, save
from probe_folds import fold_groups
from probe_residual import probe_model
from probe_zoom import features

VIEWS = {"whole + centre 0.5": (1.0, 0.5), "centre 0.6": (0.6,), "whole + centre 0.6": (1.0, 0.6)}
SEEDS = range(5)


def splits(ds: str) -> list:
    from transferlab.data.index import read_manifest

    paths = [RESULTS / "detect" / ds / "split" / "split.csv"]
    paths += [RESULTS / "repeats" / ds / f"split_seed{k}" / "split.csv" for k in SEEDS if k]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        sys.exit(f"missing {missing}: run bench_repeats.py --data {ds} first")
    return [read_manifest(p) for p in paths]


def every_feature(ds: str, indexes) -> tuple[dict[str, int], dict[float, np.ndarray]]:
    """(resolved path -> row, {fraction: (N, D)}) for every image of every split, cached."""
    files = sorted({str(Path(s.path).resolve()) for ix in indexes for s in ix.all_samples()})
    cache = RESULTS / "probe_views" / f"{ds}.npz"
    if cache.is_file():
        feats = {float(k): v for k, v in np.load(cache).items()}
    else:
        model, _pre, mean, std = probe_model()
        mean, std = (t.view(3).numpy() for t in (mean, std))
        fractions = sorted({f for v in VIEWS.values() for f in v}, reverse=True)
        feats = features([argparse.Namespace(path=p) for p in files], model, mean, std, fractions)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **{str(k): v for k, v in feats.items()})
    return {p: i for i, p in enumerate(files)}, feats


def main() -> None:
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.preprocessing import StandardScaler

    from transferlab.metrics import guess_positive
    from transferlab.training.logistic import C_GRID

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="dfdc")
    a = ap.parse_args()
    out: dict[str, dict] = {}
    for ds in a.data.split(","):
        indexes = splits(ds)
        row, feats = every_feature(ds, indexes)
        pos = guess_positive(indexes[0].classes)
        for seed, ix in zip(SEEDS, indexes):
            tr, te = ix.splits["train"], ix.splits["test"]
            r_tr, r_te = ([row[str(Path(s.path).resolve())] for s in part] for part in (tr, te))
            y, yt = (np.array([int(s.label == pos) for s in part]) for part in (tr, te))
            folds = list(StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(y, y, fold_groups(tr)))
            for name, views in VIEWS.items():
                x, xt = (np.hstack([feats[f][r] for f in views]) for r in (r_tr, r_te))
                scaler = StandardScaler().fit(x)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    clf = LogisticRegressionCV(Cs=list(C_GRID), cv=folds, scoring="roc_auc", max_iter=2000)
                    clf.fit(scaler.transform(x), y)
                cv = float(np.mean(clf.scores_[1], axis=0).max())
                test = float(roc_auc_score(yt, clf.decision_function(scaler.transform(xt))))
                out.setdefault(f"{ds}/{name}", {})[f"seed{seed}"] = {"cv_roc_auc": cv, "test_roc_auc": test}
                print(f"{ds} seed {seed} {name:>20}: CV ROC-AUC {cv:.3f}  test {test:.3f}", flush=True)
        for name in VIEWS:
            runs = out[f"{ds}/{name}"].values()
            cv, test = (np.mean([r[k] for r in runs]) for k in ("cv_roc_auc", "test_roc_auc"))
            print(f"{ds} mean {name:>20}: CV ROC-AUC {cv:.3f}  test {test:.3f}")
    print(f"wrote {save('probe_views', out)}")


if __name__ == "__main__":
    main()
