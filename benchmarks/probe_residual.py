"""Probe: does a neighbouring-pixel residual (NPR, Tan et al. CVPR 2024) fed to the frozen backbone
add what the image's own stage features miss? Same splits as bench_detect, frozen
efficientnet_lite0 stage features at 224 px, standardised, logistic regression with C by 5-fold CV
on the training split, test ROC-AUC for: the image, the residual, both concatenated.

The residual is computed on the preprocessed 224 px image: r = x - nearest_up(x[::2, ::2]), scaled
x4 and normalised like an image. A probe, not a feature of the tool: it says whether the idea is
worth building.

    .venv/bin/python benchmarks/probe_residual.py [--data ciplab,dfdc,tpdne]

Writes benchmarks/results/probe_residual.json.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, save


def residual(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    img = x * std + mean  # back to [0, 1]
    down = img[..., ::2, ::2]
    up = down.repeat_interleave(2, -2).repeat_interleave(2, -1)[..., : img.shape[-2], : img.shape[-1]]
    r = ((img - up) * 4 + 0.5).clamp(0, 1)
    return (r - mean) / std


@torch.inference_mode()
def features(samples, model, pre, mean, std, residual_too: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image features, residual features (empty without ``residual_too``), labels) of ``samples``."""
    from transferlab.data.loading import make_loader
    from transferlab.data.transforms import eval_transform

    loader = make_loader(samples, eval_transform(pre), 32, False, 0, 0, False, pre.decode_size, None)
    a, b, y = [], [], []
    for batch in loader:
        if batch["image"] is None:
            continue
        x = batch["image"].contiguous(memory_format=torch.channels_last)
        a.append(model.forward_features(x).float())
        if residual_too:
            r = residual(x, mean, std).contiguous(memory_format=torch.channels_last)
            b.append(model.forward_features(r).float())
        y.append(batch["label"])
    return torch.cat(a).numpy(), torch.cat(b).numpy() if b else np.empty(0), torch.cat(y).numpy()


def probe_model():
    """The frozen efficientnet_lite0 with stage features, its 224 px preprocessing, mean and std."""
    from transferlab.models.registry import get_spec
    from transferlab.models.transfer import create_model
    from transferlab.runtime import set_threads

    set_threads()
    spec = get_spec("efficientnet_lite0")
    model = create_model("efficientnet_lite0", 2, pretrained=True, features="stages").eval()
    model.to(memory_format=torch.channels_last)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (spec.mean, spec.std))
    return model, spec.preprocess(224), mean, std


def split_features(ds: str, probe) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{"train"|"test": (image features, residual features, labels 1 = the positive class)}`` on
    bench_detect's split of ``ds``, with ``probe`` from :func:`probe_model`."""
    from transferlab.data.index import read_manifest
    from transferlab.metrics import guess_positive

    index = read_manifest(RESULTS / "detect" / ds / "split" / "split.csv")
    pos = guess_positive(index.classes)
    out = {}
    for split in ("train", "test"):
        img, res, y = features(index.splits[split], *probe)
        out[split] = (img, res, (y == pos).astype(int))
    return out


def auc(xtr, ytr, xte, yte) -> float:
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=[1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1], max_iter=3000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's API-transition notes
        clf.fit(xtr, ytr)
    return float(roc_auc_score(yte, clf.predict_proba(xte)[:, 1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="ciplab,dfdc,tpdne")
    a = ap.parse_args()
    probe = probe_model()
    out = {}
    for ds in a.data.split(","):
        parts = split_features(ds, probe)
        tr, te = parts["train"], parts["test"]
        ytr, yte = tr[2], te[2]
        row = {
            "image": auc(tr[0], ytr, te[0], yte),
            "residual": auc(tr[1], ytr, te[1], yte),
            "both": auc(np.hstack(tr[:2]), ytr, np.hstack(te[:2]), yte),
            "n_train": len(ytr),
            "n_test": len(yte),
        }
        out[ds] = row
        print(
            f"{ds:>7}: test ROC-AUC image {row['image']:.3f}  residual {row['residual']:.3f}  both {row['both']:.3f}",
            flush=True,
        )
    print(f"wrote {save('probe_residual', out)}")


if __name__ == "__main__":
    main()
