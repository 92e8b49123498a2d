"""Probe: should every stage get an equal share of the logistic head's prior?
The head standardises each of the (2 views x 2 statistics x 9 stages =) 8384 stage features and
fits an L2-regularised logistic regression, so every feature has the same prior variance and the
widest stage (lite0's 1280-channel final map: 61% of the features) dominates the logit. Here the
standardised features of each stage (its mean and std, in one view) are scaled by
``sqrt(D / (blocks * width))`` (the L2 penalty then charges every stage alike; the total prior
variance is unchanged), against the plain head and against dropping the final map. Zoom's views
(whole + centre 0.5, probe_zoom's crops: cut from the decoded file, bilinear to 224 px; no
augmented views), on bench_repeats' five splits of dfdc and ciplab and bench_detect's split of
tpdne; C by 5-fold log loss with folds grouped by the manifest's ``group`` (as the product
chooses it). Test ROC-AUC per split, and across sources (seed 0's model on the other sets' usual
test split). It measured the idea behind ``--stage-balance``.

    .venv/bin/python benchmarks/probe_stage_weights.py [--data dfdc,ciplab,tpdne]

Features of every image in any split are kept in benchmarks/results/probe_stage_weights/.
Writes benchmarks/results/probe_stage_weights.json.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, save
from probe_folds import fold_groups
from probe_residual import probe_model
from probe_zoom import features

FRACTIONS = (1.0, 0.5)
SEEDS = range(5)
HEADS = ("plain", "per stage", "no final map")


def manifests(ds: str) -> list:
    """bench_detect's split of ``ds`` and, where bench_repeats made them, its seeds 1-4."""
    from transferlab.data.index import read_manifest

    paths = [RESULTS / "detect" / ds / "split" / "split.csv"]
    paths += [RESULTS / "repeats" / ds / f"split_seed{k}" / "split.csv" for k in SEEDS if k]
    if not paths[0].is_file():
        sys.exit(f"missing {paths[0]}: run bench_detect.py --data {ds} first")
    return [read_manifest(p) for p in paths if p.is_file()]


def every_file(indexes) -> list[str]:
    """The resolved paths of every image in any split of ``indexes``, sorted: the cached rows' order."""
    return sorted({str(Path(s.path).resolve()) for ix in indexes for s in ix.all_samples()})


def every_feature(ds: str, indexes, model, mean, std) -> tuple[dict[str, int], np.ndarray]:
    """(resolved path -> row, (N, 2 * D) whole + centre 0.5 features) of every image, cached."""
    files = every_file(indexes)
    cache = RESULTS / "probe_stage_weights" / f"{ds}.npz"
    if cache.is_file():
        x = np.load(cache)["x"]
    else:
        feats = features([argparse.Namespace(path=p) for p in files], model, mean, std, FRACTIONS)
        x = np.hstack([feats[f] for f in FRACTIONS])
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, x=x)
    return {p: i for i, p in enumerate(files)}, x


def lite0_stages():
    """probe_model's frozen lite0, its stage widths, and its normalisation mean and std as ``(3,)`` arrays."""
    model, _pre, mean, std = probe_model()
    return model, stage_widths(model), *(t.view(3).numpy() for t in (mean, std))


def stage_widths(model) -> list[int]:
    """Channels of each stage map of the probe model, shallow to deep."""
    with torch.inference_mode():
        return [m.shape[1] for m in model.body.maps(torch.zeros(1, 3, 64, 64))]


def column_weights(widths: list[int], views: int, head: str) -> np.ndarray:
    """Per-column factor on the standardised features for ``head`` (0 drops a column)."""
    blocks = []  # (width, keep) in column order: per view, per stage, mean then std
    for _ in range(views):
        for i, c in enumerate(widths):
            keep = head != "no final map" or i < len(widths) - 1
            blocks += [(c, keep, i), (c, keep, i)]
    d = sum(c for c, _, _ in blocks)
    if head in ("plain", "no final map"):
        return np.concatenate([np.full(c, float(keep)) for c, keep, _ in blocks])
    # per stage: a stage's mean and std (in one view) form one block of 2c columns (the same
    # factor as a block per statistic, since both statistics are c wide)
    n = len(blocks) // 2
    return np.concatenate([np.full(c, np.sqrt(d / (n * 2 * c))) for c, _, _ in blocks])


def fit(x, y, groups, seed, w):
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.preprocessing import StandardScaler

    from transferlab.training.logistic import C_GRID

    keep = w > 0
    scaler = StandardScaler().fit(x)
    folds = list(StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(y, y, groups))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LogisticRegressionCV(Cs=list(C_GRID), cv=folds, scoring="neg_log_loss", max_iter=2000)
        clf.fit(scaler.transform(x)[:, keep] * w[keep], y)
    return lambda xt: clf.decision_function(scaler.transform(xt)[:, keep] * w[keep]), float(clf.C_[0])


def main() -> None:
    from sklearn.metrics import roc_auc_score

    from transferlab.metrics import guess_positive

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="dfdc,ciplab,tpdne")
    a = ap.parse_args()
    model, widths, mean, std = lite0_stages()
    data = {}
    for ds in a.data.split(","):
        indexes = manifests(ds)
        row, x = every_feature(ds, indexes, model, mean, std)
        pos = guess_positive(indexes[0].classes)
        data[ds] = (indexes, row, x, pos)

    def part(ds, seed, name):
        indexes, row, x, pos = data[ds]
        samples = indexes[seed].splits[name]
        return x[[row[str(Path(s.path).resolve())] for s in samples]], np.array([int(s.label == pos) for s in samples])

    out: dict[str, dict] = {}
    for head in HEADS:
        w = column_weights(widths, len(FRACTIONS), head)
        for ds, (indexes, *_rest) in data.items():
            for seed in range(len(indexes)):
                x, y = part(ds, seed, "train")
                score, c = fit(x, y, fold_groups(indexes[seed].splits["train"]), seed, w)
                r = {"C": c}
                for other in data:
                    if other == ds or seed == 0:
                        xt, yt = part(other, 0 if other != ds else seed, "test")
                        r[other] = float(roc_auc_score(yt, score(xt)))
                out.setdefault(f"{ds}/{head}", {})[f"seed{seed}"] = r
                shown = "  ".join(f"{k} {v:.3f}" for k, v in r.items() if k != "C")
                print(f"{head:>13} {ds:>6} seed {seed}: C {c:.2g}  {shown}", flush=True)
            runs = out[f"{ds}/{head}"].values()
            print(f"{head:>13} {ds:>6} mean own test {np.mean([r[ds] for r in runs]):.3f}", flush=True)
    print(f"wrote {save('probe_stage_weights', out)}")


if __name__ == "__main__":
    main()
