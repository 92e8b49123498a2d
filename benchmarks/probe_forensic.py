"""Probe: do hand-made forensic features add to the default detector on ciplab, and if so, what do
they see? Photoshop composites paste eyes, noses and mouths from other photos: the pasted part can
carry another noise level, another colour cast, or a JPEG grid that no longer lines up. These
features measure that at the file's own pixels, per region of a 5 x 5 grid:

- noise: the log standard deviation of a median-filter residual in 24 px blocks, of Y, Cb and Cr
  (per region, relative to the image's median; plus quantiles and spread): 93 values;
- colour: the mean Cb and Cr per region, relative to the image's: 50;
- grid: the log ratio of pixel differences across 8 px block borders to those inside, per region,
  horizontal and vertical (how strongly and where the JPEG grid shows): 50;
- dq: double quantisation against the file's own JPEG tables: the luminance DCT of every 8 x 8
  block divided by the file's table, and for the 15 lowest AC frequencies the histogram of the
  quantised magnitudes 1-16, the share of zeros and the rounding error (a second save with other
  tables leaves periodic gaps in these histograms), plus the share of zeros and the rounding
  error per region of a 3 x 3 grid: 288 (the "all" group is the first three, not dq).

A logistic head (C by 5-fold ROC-AUC) fitted on them over each stored default_meanstd run's
training split (the default until 2026-11-27); its test logits fused with the run's (each
divided by its validation spread, then added). Test
ROC-AUC is also reported on two halves of the fakes: those saved with the reals' JPEG tables, and
those re-saved with other tables (ciplab's PROVENANCE.md: a quarter of its fakes; `transferlab
train` warns about it, data/audit.py). Then seed 0's heads on the other face sets' usual test splits.

    .venv/bin/python benchmarks/probe_forensic.py        # the stored ciplab default_meanstd runs, seeds 0-4

Writes benchmarks/results/probe_forensic.json.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from PIL import Image
from scipy import ndimage
from scipy.fft import dctn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import save
from transferlab.data.audit import file_traits
from transferlab.data.index import load_index
from transferlab.predict.predictor import Predictor

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = [
    RESULTS / "detect/ciplab/default_meanstd",
    *(RESULTS / f"repeats/ciplab/seed{s}/default_meanstd" for s in range(1, 5)),
]
OTHERS = {"tpdne": RESULTS / "detect/tpdne/split/split.csv", "dfdc": RESULTS / "detect/dfdc/split/split.csv"}
GROUPS = {"noise": np.r_[0:93], "colour": np.r_[93:143], "grid": np.r_[143:193], "noise+grid": np.r_[0:93, 143:193]}
GROUPS["all"] = np.r_[0:193]
GROUPS["dq"] = np.r_[193:481]
# the 15 lowest AC frequencies of an 8 x 8 DCT, in zigzag order
ZIGZAG = [
    (0, 1),
    (1, 0),
    (2, 0),
    (1, 1),
    (0, 2),
    (0, 3),
    (1, 2),
    (2, 1),
    (3, 0),
    (4, 0),
    (3, 1),
    (2, 2),
    (1, 3),
    (0, 4),
    (0, 5),
]


def _regions(m: np.ndarray, g: int = 5) -> np.ndarray:
    ys, xs = (np.linspace(0, n, g + 1).astype(int) for n in m.shape)
    return np.array([[m[ys[i] : ys[i + 1], xs[j] : xs[j + 1]].mean() for j in range(g)] for i in range(g)]).ravel()


def forensic_features(path: str) -> np.ndarray:
    """The 193 features above, at the file's own pixels."""
    a = np.asarray(Image.open(path).convert("YCbCr")).astype(np.float32)
    out = []
    for ch in np.moveaxis(a, 2, 0):
        r = ch - ndimage.median_filter(ch, 3)
        h, w = (r.shape[0] // 24) * 24, (r.shape[1] // 24) * 24
        s = np.log(r[:h, :w].reshape(h // 24, 24, w // 24, 24).std(axis=(1, 3)) + 1e-3)
        out += [_regions(s) - np.median(s), np.quantile(s, [0.05, 0.25, 0.5, 0.75, 0.95]), [s.std()]]
    for ch in (a[..., 1], a[..., 2]):
        out.append(_regions(ch) - ch.mean())
    y = a[..., 0]
    for d, axis in ((np.abs(np.diff(y, axis=1)), 1), (np.abs(np.diff(y, axis=0)), 0)):
        border = np.zeros(d.shape, bool)
        (border[:, 7::8] if axis == 1 else border[7::8, :]).fill(True)
        across = _regions(np.where(border, d, 0)) / border.mean()
        inside = _regions(np.where(~border, d, 0)) / (~border).mean()
        out.append(np.log((across + 1e-3) / (inside + 1e-3)))
    return np.concatenate([np.ravel(o) for o in out]).astype(np.float32)


def dq_features(path: str, g: int = 3) -> np.ndarray:
    """The 288 double-quantisation features above (a file without JPEG tables: unit tables)."""
    im = Image.open(path)
    tables = getattr(im, "quantization", None)
    q = np.array(tables[0], float).reshape(8, 8) if tables else np.ones((8, 8))  # natural order (Pillow >= 8.3)
    im.draft("YCbCr", im.size)
    y = np.asarray(im.convert("YCbCr"))[..., 0].astype(np.float64) - 128
    h, w = (y.shape[0] // 8) * 8, (y.shape[1] // 8) * 8
    blocks = y[:h, :w].reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)
    d = dctn(blocks, axes=(2, 3), norm="ortho") / q  # in units of the last save's table
    k = np.round(d)
    err = np.abs(d - k)
    out = []
    for u, v in ZIGZAG:
        a = np.abs(k[:, :, u, v]).ravel()
        nz = a[a >= 1]
        hist = np.bincount(np.minimum(nz, 16).astype(int), minlength=17)[1:17] / max(len(nz), 1)
        out += [hist, [np.mean(a == 0), err[:, :, u, v].mean()]]
    for m in ((k[:, :, :3, :3] == 0).mean(axis=(2, 3)), err[:, :, :3, :3].mean(axis=(2, 3))):
        ys, xs = (np.linspace(0, n, g + 1).astype(int) for n in m.shape)
        regions = [m[ys[i] : ys[i + 1], xs[j] : xs[j + 1]].mean() for i in range(g) for j in range(g)]
        out.append(np.array(regions) - m.mean())
    return np.concatenate([np.ravel(o) for o in out]).astype(np.float32)


def _all_features(path: str) -> np.ndarray:
    return np.concatenate([forensic_features(path), dq_features(path)])


def _head():
    lr = LogisticRegression(max_iter=5000)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    return GridSearchCV(
        make_pipeline(StandardScaler(), lr), {"logisticregression__C": np.logspace(-4, 1, 11)}, cv=cv, scoring="roc_auc"
    )


HALVES = ("all", "same_tables", "other_tables")


def _pick(row: dict, name: str, half: str, kind: str | None) -> float:
    return row[name][half] if kind is None else row[name][half][kind]


def _line(row: dict, name: str, kind: str | None = None) -> str:
    return f"{name} {kind or ''} " + " / ".join(f"{_pick(row, name, h, kind):.3f}" for h in HALVES)


def _mean_line(rows: dict, name: str, kind: str | None = None) -> str:
    return " / ".join(f"{np.mean([_pick(r, name, h, kind) for r in rows.values()]):.3f}" for h in HALVES)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def run_data(run: str, ix, feats: dict, tables: dict) -> tuple[Predictor, dict, str | None]:
    """A stored run's predictor; per split ``(paths, features, labels 1 = fake, the run's P(fake)
    or None on train)``; and the JPEG tables most of its training reals have."""
    pred = Predictor.from_run(run)
    fake = ix.classes.index(pred.positive_class)
    data = {}
    for split in ("train", "val", "test"):
        ps = [s.path for s in ix.splits[split]]
        y = np.array([s.label == fake for s in ix.splits[split]], int)
        p = None if split == "train" else np.array([q.probs[pred.positive_class] for q in pred.predict_paths(ps)])
        data[split] = (ps, np.stack([feats[q] for q in ps]), y, p)
    train_paths, _, train_y, _ = data["train"]
    real_table = Counter(tables[q] for q, y in zip(train_paths, train_y) if not y).most_common(1)[0][0]
    return pred, data, real_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="*", default=[str(r) for r in RUNS])
    a = ap.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    t0 = time.time()
    indexes = {run: load_index(Path(run) / "split.csv", verify=False) for run in a.runs}
    indexes.update({k: load_index(v, verify=False) for k, v in OTHERS.items()})
    own = {s.path for run in a.runs for s in indexes[run].all_samples()}
    paths = sorted(own | {s.path for k in OTHERS for s in indexes[k].splits["test"]})  # other sets: test only
    feats = dict(zip(paths, Parallel(n_jobs=2)(delayed(_all_features)(p) for p in paths)))
    tables = {p: file_traits(p).get("jpeg_tables") for p in paths}
    print(f"{len(paths)} images: features in {time.time() - t0:.0f} s", flush=True)

    out: dict = {"runs": {}, "cross": {}}
    for run in a.runs:
        pred, data, real_table = run_data(run, indexes[run], feats, tables)
        ps, _, yt, pt = data["test"]
        same = np.array([tables[q] == real_table for q in ps]) | (yt == 0)
        other = ~np.array([tables[q] == real_table for q in ps]) | (yt == 0)
        row: dict = {"n_test_fakes_same_tables": int((same & (yt == 1)).sum())}
        masks = dict(zip(HALVES, (np.ones_like(same), same, other)))
        row["default"] = {name: roc_auc_score(yt[m], pt[m]) for name, m in masks.items()}
        for g, cols in GROUPS.items():
            head = _head().fit(data["train"][1][:, cols], data["train"][2])
            hv, ht = (head.decision_function(data[s][1][:, cols]) for s in ("val", "test"))
            dv, dt = _logit(data["val"][3]), _logit(pt)
            fused = dt / dv.std() + ht / hv.std()
            row[g] = {
                name: {"alone": roc_auc_score(yt[m], ht[m]), "fused": roc_auc_score(yt[m], fused[m])}
                for name, m in masks.items()
            }
            if run == a.runs[0]:  # seed 0: the heads on the other face sets
                for other_name, oix in ((k, indexes[k]) for k in OTHERS):
                    ops = [s.path for s in oix.splits["test"]]
                    oy = np.array([oix.classes[s.label] == pred.positive_class for s in oix.splits["test"]], int)
                    oh = head.decision_function(np.stack([feats[q] for q in ops])[:, cols])
                    if g == "all":
                        od = _logit(np.array([q.probs[pred.positive_class] for q in pred.predict_paths(ops)]))
                        out["cross"].setdefault(other_name, {})["default"] = roc_auc_score(oy, od)
                        out["cross"][other_name]["fused_all"] = roc_auc_score(oy, od / dv.std() + oh / hv.std())
                    out["cross"].setdefault(other_name, {})[g] = roc_auc_score(oy, oh)
        out["runs"][run] = row
        print(Path(run).parent.name, _line(row, "default"), _line(row, "all", "fused"), flush=True)

    print(f"\nmean test ROC-AUC over {len(out['runs'])} splits: all fakes / saved like the reals / re-saved")
    print(f"{'default':>16}: {_mean_line(out['runs'], 'default')}")
    for g in GROUPS:
        for kind in ("alone", "fused"):
            print(f"{g + ' ' + kind:>16}: {_mean_line(out['runs'], g, kind)}")
    print("seed 0 across sources:", {k: {g: round(v, 3) for g, v in d.items()} for k, d in out["cross"].items()})
    out["seconds"] = time.time() - t0
    print(f"{out['seconds']:.0f} s; wrote {save('probe_forensic', out)}")


if __name__ == "__main__":
    main()
