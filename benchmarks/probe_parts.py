"""Probe: do a face's parts, found by facial landmarks, add to the default detector? ciplab's
Photoshop composites paste eyes, noses and mouths from other photos; face swaps and GAN faces
change the same parts. The default sees the whole image and its centre half, where an eye is a
few dozen pixels of a 224 px view. Here the parts are cut at about the file's own pixel scale.

MTCNN (facenet-pytorch's bundled weights, offline) finds five landmarks per image: the eyes, the
nose tip and the mouth corners. A similarity transform maps them onto ArcFace's five-point
template scaled to 448 px (eyes 141 px apart: ciplab's 600 px faces keep about their own
scale), and 126 px squares are cut around the left eye, the right eye (mirrored, so that both
eyes face the same way), the nose and the mouth. Lite0's stage features (mean and std per
channel of every stage) of each part, concatenated (4 x 4192), are the probe's features; an
image with no face found falls back to the whole image resized to 448.

A logistic head (C by 5-fold ROC-AUC) on them over each stored default_meanstd run's training
split (the default until 2026-11-27), its test logits fused with the run's (each divided by
its validation spread; the parts' weighted
by w, then added), as probe_symmetry does. Test ROC-AUC on all fakes, on ciplab's fakes saved
with the reals' JPEG tables, and per difficulty level; then each data set's seed-0 head on the
other face sets' usual test splits.

    .venv/bin/pip install --no-deps facenet-pytorch==2.6.0   # not a product dependency: it pins torch < 2.3
    .venv/bin/python benchmarks/probe_parts.py
    .venv/bin/python benchmarks/probe_parts.py --fixed

Writes benchmarks/results/probe_parts.json (landmarks and features are kept beside it).
``--fixed`` asks whether the landmarks are needed: every image of a data set is cut at the same
place, its data set's median landmarks (as fractions of the image's width and height), and the
results go to probe_parts_fixed.json. ``--template`` cuts every image of every data set at the
template's own points (the image resized to 448 px, no landmarks and nothing taken from the
data): probe_parts_template.json.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.transform import SimilarityTransform
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, save
from probe_forensic import RUNS, _head, _logit, run_data
from probe_residual import probe_model
from transferlab.data.audit import file_traits
from transferlab.data.index import load_index
from transferlab.models.stages import pool_stats

SETS = {
    "ciplab": [str(r) for r in RUNS],
    "dfdc": [
        str(RESULTS / "detect/dfdc/default_meanstd"),
        *(str(RESULTS / f"repeats/dfdc/seed{s}/default_meanstd") for s in range(1, 5)),
    ],
    "tpdne": [str(RESULTS / "detect/tpdne/default_meanstd")],
}
SIZE = 448
# ArcFace's five-point template (112 px: eyes, nose tip, mouth corners), scaled to SIZE
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
TEMPLATE *= SIZE / 112
PART = 126  # about 0.9 of the eyes' distance
WEIGHTS = (0.5, 1.0)
LANDMARKS = RESULTS / "probe_parts_landmarks.npz"
FEATURES = RESULTS / "probe_parts_features.npz"
TEMPLATE_ONLY = "--template" in sys.argv
FIXED = "--fixed" in sys.argv or TEMPLATE_ONLY
MODE = "template" if TEMPLATE_ONLY else "fixed" if FIXED else ""
if FIXED:
    FEATURES = RESULTS / f"probe_parts_{MODE}_features.npz"


def _load(path: Path) -> dict:
    return dict(np.load(path, allow_pickle=True)["d"].item()) if path.exists() else {}


def landmarks(paths: list[str]) -> dict[str, np.ndarray | None]:
    """``{path: (5, 2) landmarks in the file's pixels, or None where MTCNN finds no face}``."""
    done = _load(LANDMARKS)
    todo = [p for p in paths if p not in done]
    if todo:
        from facenet_pytorch import MTCNN

        mtcnn = MTCNN(keep_all=False, select_largest=True, device="cpu")
        for p in todo:
            boxes, _probs, points = mtcnn.detect(Image.open(p).convert("RGB"), landmarks=True)
            done[p] = None if boxes is None else np.asarray(points[0], float)
        np.savez(LANDMARKS, d=np.array(done, dtype=object))
    return {p: done[p] for p in paths}


def fixed(points: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
    """Every image's landmarks replaced by its data set's median, scaled to the image's size."""
    sizes = {p: np.array(Image.open(p).size, float) for p in points}
    by_set: dict[str, list[np.ndarray]] = {}
    for p, v in points.items():
        if v is not None:
            by_set.setdefault(Path(p).parents[1].name, []).append(v / sizes[p])
    median = {k: TEMPLATE / SIZE if TEMPLATE_ONLY else np.median(np.stack(v), 0) for k, v in by_set.items()}
    return {p: median[Path(p).parents[1].name] * sizes[p] for p in points}


def aligned(path: str, points: np.ndarray | None) -> np.ndarray:
    """The face warped onto the template, ``(SIZE, SIZE, 3)`` floats in [0, 1]."""
    im = Image.open(path).convert("RGB")
    if points is None:
        return np.asarray(im.resize((SIZE, SIZE), Image.BILINEAR), np.float32) / 255
    to_image = SimilarityTransform.from_estimate(TEMPLATE, points)  # template pixels -> file pixels
    warped = im.transform((SIZE, SIZE), Image.AFFINE, tuple(to_image.params[:2].ravel()), Image.BICUBIC)
    return np.asarray(warped, np.float32) / 255


def parts(face: np.ndarray) -> list[np.ndarray]:
    """Left eye, right eye mirrored, nose, mouth: ``PART`` px squares around the template's points."""
    out = []
    for k, (x, y) in enumerate([TEMPLATE[0], TEMPLATE[1], TEMPLATE[2], TEMPLATE[3:].mean(0)]):
        x0, y0 = round(x - PART / 2), round(y - PART / 2)
        crop = face[y0 : y0 + PART, x0 : x0 + PART]
        out.append(crop[:, ::-1] if k == 1 else crop)
    return out


@torch.inference_mode()
def features(paths: list[str], points: dict) -> dict[str, np.ndarray]:
    done = _load(FEATURES)
    todo = [p for p in paths if p not in done]
    if todo:
        model, _pre, mean, std = probe_model()
        mean, std = mean.view(3).numpy(), std.view(3).numpy()
        for i in range(0, len(todo), 16):
            batch = todo[i : i + 16]
            crops = [(c - mean) / std for p in batch for c in parts(aligned(p, points[p]))]
            x = torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).copy())
            f = pool_stats(model.body.maps(x.contiguous(memory_format=torch.channels_last))).numpy()
            done.update(zip(batch, f.reshape(len(batch), -1)))
        np.savez(FEATURES, d=np.array(done, dtype=object))
    return {p: done[p] for p in paths}


def _level(path: str) -> str:
    head = Path(path).stem.split("_")[0]
    return head if head in ("easy", "mid", "hard") else "other"


def _auc(y: np.ndarray, s: np.ndarray, m: np.ndarray) -> float:
    return float(roc_auc_score(y[m], s[m]))


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    t0 = time.time()
    indexes = {run: load_index(Path(run) / "split.csv", verify=False) for runs in SETS.values() for run in runs}
    paths = sorted({s.path for ix in indexes.values() for s in ix.all_samples()})
    points = landmarks(paths)
    if FIXED:
        points = fixed(points)
    print(f"{len(paths)} images, no face found in {sum(v is None for v in points.values())}: {time.time() - t0:.0f} s")
    feats = features(paths, points)
    tables = {p: file_traits(p).get("jpeg_tables") for p in paths}
    print(f"features: {time.time() - t0:.0f} s", flush=True)

    out: dict = {"runs": {}, "cross": {}}
    heads = {}
    for name, runs in SETS.items():
        for run in runs:
            pred, data, real_table = run_data(run, indexes[run], feats, tables)
            ps, xt, yt, pt = data["test"]
            masks = {"all": np.ones(len(ps), bool)}
            if name == "ciplab":
                masks["same_tables"] = np.array([tables[q] == real_table for q in ps]) | (yt == 0)
                levels = np.array([_level(q) for q in ps])
                masks.update({lv: (levels == lv) | (yt == 0) for lv in ("easy", "mid", "hard")})
            head = _head().fit(data["train"][1], data["train"][2])
            hv, ht = head.decision_function(data["val"][1]), head.decision_function(xt)
            dv, dt = _logit(data["val"][3]), _logit(pt)
            row = {"C": float(head.best_params_["logisticregression__C"]), "cv": float(head.best_score_)}
            for m, mask in masks.items():
                row[m] = {"default": _auc(yt, pt, mask), "parts": _auc(yt, ht, mask)}
                row[m].update({f"fused w{w}": _auc(yt, dt / dv.std() + w * ht / hv.std(), mask) for w in WEIGHTS})
            out["runs"].setdefault(name, {})[run] = row
            print(
                name,
                Path(run).parent.name,
                {k: round(v, 3) for k, v in row["all"].items()},
                f"cv {row['cv']:.3f}",
                flush=True,
            )
            if run == runs[0]:
                heads[name] = (pred, head, dv.std(), hv.std())

    for name, (pred, head, sd_d, sd_h) in heads.items():
        for other, runs in SETS.items():
            if other == name:
                continue
            test = indexes[runs[0]].splits["test"]
            ops = [s.path for s in test]
            oy = np.array([indexes[runs[0]].classes[s.label] == pred.positive_class for s in test], int)
            oh = head.decision_function(np.stack([feats[q] for q in ops]))
            od = _logit(np.array([q.probs[pred.positive_class] for q in pred.predict_paths(ops)]))
            every = np.ones(len(ops), bool)
            row = {"default": _auc(oy, od, every), "parts": _auc(oy, oh, every)}
            row.update({f"fused w{w}": _auc(oy, od / sd_d + w * oh / sd_h, every) for w in WEIGHTS})
            out["cross"][f"{name} -> {other}"] = row

    kinds = ["default", "parts", *(f"fused w{w}" for w in WEIGHTS)]
    print("\nmean test ROC-AUC over splits: " + " / ".join(kinds))
    for name, rows in out["runs"].items():
        for m in rows[next(iter(rows))]:
            if m in ("C", "cv"):
                continue
            vals = " / ".join(f"{np.mean([r[m][k] for r in rows.values()]):.3f}" for k in kinds)
            print(f"{name} ({len(rows)}) {m}: {vals}")
    print("across sources (seed 0 heads): " + " / ".join(kinds))
    for pair, row in out["cross"].items():
        print(f"{pair}: " + " / ".join(f"{row[k]:.3f}" for k in kinds))
    out["seconds"] = time.time() - t0
    print(f"{out['seconds']:.0f} s; wrote {save('probe_parts_' + MODE if MODE else 'probe_parts', out)}")


if __name__ == "__main__":
    main()
