"""Probe: does a face's left-right asymmetry, as the frozen backbone sees it, add to the default
detector? A third of ciplab's Photoshop composites replace one eye and not the other (the 4-bit
mask in the file names: left eye, right eye, nose, mouth), face swaps blend a face onto another
head, and GAN faces are known for eyes that do not match (Matern et al., WACVW 2019). A real face
is close to its mirror image; a composite need not be.

For each view of the default (the whole image and its centre half, cut from the decoded file, 224
px, as probe_zoom does), lite0's stage maps of the image ``F(x)`` and of its mirror ``F(m(x))``
are compared location by location, without flipping the maps back: at each place the left part of
the face is set against the mirrored right part. Per channel of every stage, the mean of
``|F(x) - F(m(x))|`` over space is one feature (2 views x 4192). A logistic head (C by 5-fold
ROC-AUC) is fitted on them over each stored default run's training split; its test logits are
fused with the run's (each divided by its validation spread, then added), as probe_forensic does.
Test ROC-AUC on all fakes, on those saved with the reals' JPEG tables and on the re-saved ones;
per edited region (one eye only, both eyes, no eye); then seed 0's heads on the other face sets'
usual test splits.

    .venv/bin/python benchmarks/probe_symmetry.py

Writes benchmarks/results/probe_symmetry.json.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import save
from probe_forensic import OTHERS, RUNS, _head, _logit, run_data
from probe_residual import probe_model
from transferlab.data.audit import file_traits
from transferlab.data.index import load_index

FRACTIONS = (1.0, 0.5)


def _views(path: str, mean: np.ndarray, std: np.ndarray) -> list[torch.Tensor]:
    im = Image.open(path).convert("RGB")
    w, h = im.size
    out = []
    for f in FRACTIONS:
        box = ((w - w * f) / 2, (h - h * f) / 2, (w + w * f) / 2, (h + h * f) / 2)
        a = (np.asarray(im.resize((224, 224), Image.BILINEAR, box=box), np.float32) / 255 - mean) / std
        out.append(torch.from_numpy(a.transpose(2, 0, 1).copy()))
    return out


@torch.inference_mode()
def asymmetry(paths: list[str]) -> dict[str, np.ndarray]:
    """``{path: (2 * sum(C_i),) mean |F(x) - F(mirror x)| per channel of every stage, per view}``."""
    model, _pre, mean, std = probe_model()
    mean, std = (t.view(3).numpy() for t in (mean, std))
    out = {}
    for i in range(0, len(paths), 16):
        batch = paths[i : i + 16]
        x = torch.stack([v for p in batch for v in _views(p, mean, std)])  # (2B, 3, 224, 224): per image, its views
        maps = model.body.maps(torch.cat([x, x.flip(-1)]).contiguous(memory_format=torch.channels_last))
        feats = []
        for m in maps:
            a, b = m.float().unflatten(0, (2, -1))
            feats.append((a - b).abs().mean((2, 3)))
        f = torch.cat(feats, 1).unflatten(0, (len(batch), len(FRACTIONS))).flatten(1).numpy()
        out.update(zip(batch, f))
    return out


def _edit(path: str) -> str:
    """ciplab's edited regions from the file name's mask (left eye, right eye, nose, mouth)."""
    mask = Path(path).stem.rsplit("_", 1)[-1]
    if len(mask) != 4 or set(mask) - {"0", "1"}:
        return "unknown"
    eyes = mask[:2]
    return {"10": "one eye", "01": "one eye", "11": "both eyes", "00": "no eye"}[eyes]


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    t0 = time.time()
    runs = [str(r) for r in RUNS]
    indexes = {run: load_index(Path(run) / "split.csv", verify=False) for run in runs}
    indexes.update({k: load_index(v, verify=False) for k, v in OTHERS.items()})
    own = {s.path for run in runs for s in indexes[run].all_samples()}
    paths = sorted(own | {s.path for k in OTHERS for s in indexes[k].splits["test"]})
    feats = asymmetry(paths)
    tables = {p: file_traits(p).get("jpeg_tables") for p in paths}
    print(f"{len(paths)} images: features in {time.time() - t0:.0f} s", flush=True)

    out: dict = {"runs": {}, "cross": {}}
    for run in runs:
        pred, data, real_table = run_data(run, indexes[run], feats, tables)
        train_y = data["train"][2]
        ps, xt, yt, pt = data["test"]
        same_tables = np.array([tables[q] == real_table for q in ps])
        masks = {
            "all": np.ones(len(ps), bool),
            "same_tables": same_tables | (yt == 0),
            "other_tables": ~same_tables | (yt == 0),
        }
        edits = np.array([_edit(q) for q in ps])
        for e in ("one eye", "both eyes", "no eye"):
            masks[e] = (edits == e) | (yt == 0)
        head = _head().fit(data["train"][1], train_y)
        hv, ht = head.decision_function(data["val"][1]), head.decision_function(xt)
        dv, dt = _logit(data["val"][3]), _logit(pt)
        fused = dt / dv.std() + ht / hv.std()
        row = {"C": float(head.best_params_["logisticregression__C"]), "cv": float(head.best_score_)}
        for name, m in masks.items():
            row[name] = {
                "n_fakes": int((m & (yt == 1)).sum()),
                "default": roc_auc_score(yt[m], pt[m]),
                "alone": roc_auc_score(yt[m], ht[m]),
                "fused": roc_auc_score(yt[m], fused[m]),
            }
        if run == runs[0]:
            for other, oix in ((k, indexes[k]) for k in OTHERS):
                ops = [s.path for s in oix.splits["test"]]
                oy = np.array([oix.classes[s.label] == pred.positive_class for s in oix.splits["test"]], int)
                oh = head.decision_function(np.stack([feats[q] for q in ops]))
                od = _logit(np.array([q.probs[pred.positive_class] for q in pred.predict_paths(ops)]))
                out["cross"][other] = {
                    "default": roc_auc_score(oy, od),
                    "alone": roc_auc_score(oy, oh),
                    "fused": roc_auc_score(oy, od / dv.std() + oh / hv.std()),
                }
        out["runs"][run] = row
        print(Path(run).parent.name, f"all: {row['all']}", f"saved like the reals: {row['same_tables']}", flush=True)

    print(f"\nmean test ROC-AUC over {len(out['runs'])} splits: default / asymmetry alone / fused")
    for name in ("all", "same_tables", "other_tables", "one eye", "both eyes", "no eye"):
        vals = [[r[name][k] for r in out["runs"].values()] for k in ("default", "alone", "fused")]
        print(f"{name:>13}: " + " / ".join(f"{np.mean(v):.3f}" for v in vals))
    print("seed 0 across sources:", {k: {g: round(v, 3) for g, v in d.items()} for k, d in out["cross"].items()})
    out["seconds"] = time.time() - t0
    print(f"{out['seconds']:.0f} s; wrote {save('probe_symmetry', out)}")


if __name__ == "__main__":
    main()
