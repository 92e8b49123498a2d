"""Probe: which statistics of each stage map should the head see? The product pools every stage
of every zoom view into the mean and the standard deviation of each channel over space. A local
edit (a pasted eye, a blend seam) changes a few positions of a map, which a mean dilutes; the
spatial maximum and minimum, or the map's tails (its kurtosis), may keep it. The issue asked to
try GeM or a spatial max too; lite0's block outputs are signed (linear bottlenecks), so GeM's
positive power does not apply and the max and the min stand for it.

Zoom's views (whole + centre 0.5, probe_zoom's crops: cut from the decoded file, bilinear to
224 px; no augmented views) of every image of bench_repeats' five splits of ciplab and dfdc and
bench_detect's split of tpdne; the product's head (``fit_logistic``: standardised columns, every
stage of every view an equal share of the prior with all its statistics in one block, C by 5-fold
log loss with the manifest's groups kept whole). Test ROC-AUC per split, and seed 0's model on
the other sets' usual test splits.

    .venv/bin/python benchmarks/probe_pooling.py [--data ciplab,dfdc,tpdne] [--variants "mean std,..."]

Statistics of every image are kept in benchmarks/results/probe_pooling/.
Writes benchmarks/results/probe_pooling.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, save
from probe_stage_weights import every_file, lite0_stages, manifests
from probe_zoom import centre_crop

FRACTIONS = (1.0, 0.5)
STATS = ("mean", "std", "max", "min", "kurt")
VARIANTS = ("mean std", "mean std max", "mean std max min", "mean std kurt")


def pooled(maps: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each statistic of every channel of ``maps`` over space, stages concatenated: ``{stat: (B, sum C)}``."""
    out: dict[str, list] = {s: [] for s in STATS}
    for m in maps:
        m = m.float().flatten(2)
        mean = m.mean(2)
        c = m - mean.unsqueeze(2)
        var = c.pow(2).mean(2)
        out["mean"].append(mean)
        out["std"].append((var + 1e-12).sqrt())
        out["max"].append(m.amax(2))
        out["min"].append(m.amin(2))
        out["kurt"].append(torch.log((c.pow(4).mean(2) + 1e-12) / (var.pow(2) + 1e-12)))
    return {s: torch.cat(v, 1) for s, v in out.items()}


def every_stat(ds: str, files: list[str], model, mean, std) -> dict[str, np.ndarray]:
    """``{stat: (N, views, sum C)}`` of every file, cached."""
    cache = RESULTS / "probe_pooling" / f"{ds}.npz"
    if cache.is_file():
        return dict(np.load(cache))
    out: dict[str, list] = {s: [] for s in STATS}
    t0 = time.perf_counter()
    for i in range(0, len(files), 32):
        images = [Image.open(p).convert("RGB") for p in files[i : i + 32]]
        views = [centre_crop(im, f, mean, std) for f in FRACTIONS for im in images]  # view by view
        x = torch.stack(views).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            stats = pooled(model.body.maps(x))
        for s, v in stats.items():  # (V * B, C) -> (B, V, C)
            out[s].append(v.unflatten(0, (len(FRACTIONS), -1)).transpose(0, 1).numpy())
    print(f"{ds}: statistics of {len(files)} images in {time.perf_counter() - t0:.0f}s", flush=True)
    arrays = {s: np.concatenate(v) for s, v in out.items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **arrays)
    return arrays


class Head(nn.Module):
    """What ``fit_logistic`` fits: the standardisation and a linear layer."""

    def __init__(self, dim: int):
        super().__init__()
        from transferlab.models.stages import Standardize

        self.feature_norm = Standardize(dim)
        self.fc = nn.Linear(dim, 2)

    def linear_layer(self) -> nn.Linear:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.feature_norm(x))


def columns(arrays: dict[str, np.ndarray], rows: list[int], variant: str, widths: list[int]):
    """``(len(rows), D)`` features of ``variant``'s statistics, per view then per stage (the stage's
    statistics side by side: one block), and the blocks' widths."""
    stats = variant.split()
    edges = np.cumsum([0, *widths])
    parts, blocks = [], []
    for v in range(len(FRACTIONS)):
        for a, b in zip(edges[:-1], edges[1:]):
            parts += [arrays[s][rows, v, a:b] for s in stats]
            blocks.append(len(stats) * (b - a))
    return np.hstack(parts), blocks


def main() -> None:
    from sklearn.metrics import roc_auc_score

    from probe_folds import fold_groups
    from transferlab.metrics import guess_positive
    from transferlab.training.logistic import fit_logistic

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="ciplab,dfdc,tpdne")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    a = ap.parse_args()
    model, widths, mean, std = lite0_stages()
    data = {}
    for ds in a.data.split(","):
        indexes = manifests(ds)
        files = every_file(indexes)
        row = {p: i for i, p in enumerate(files)}
        data[ds] = (indexes, row, every_stat(ds, files, model, mean, std), guess_positive(indexes[0].classes))

    def part(ds, seed, name, variant):
        indexes, row, arrays, pos = data[ds]
        samples = indexes[seed].splits[name]
        x, blocks = columns(arrays, [row[str(Path(s.path).resolve())] for s in samples], variant, widths)
        return x, np.array([s.label for s in samples]), blocks

    out: dict[str, dict] = {}
    for variant in a.variants.split(","):
        for ds, (indexes, *_rest) in data.items():
            for seed in range(len(indexes)):
                x, y, blocks = part(ds, seed, "train", variant)
                groups = [str(g) for g in fold_groups(indexes[seed].splits["train"])]
                head = Head(x.shape[1])
                t0 = time.perf_counter()
                labels = torch.from_numpy(y).long()
                fit = fit_logistic(
                    head, torch.from_numpy(x).float()[:, None], labels, seed=seed, groups=groups, blocks=blocks
                )
                r = {"C": fit.C, "cv_log_loss": min(fit.cv_log_loss.values()), "seconds": time.perf_counter() - t0}
                for other in data:
                    if other == ds or seed == 0:
                        xt, yt, _ = part(other, 0 if other != ds else seed, "test", variant)
                        pos = data[other][3]
                        with torch.no_grad():
                            p = head(torch.from_numpy(xt).float()).softmax(1)[:, pos].numpy()
                        r[other] = float(roc_auc_score(yt == pos, p))
                out.setdefault(f"{ds}/{variant}", {})[f"seed{seed}"] = r
                shown = "  ".join(f"{k} {r[k]:.3f}" for k in data if k in r)
                print(
                    f"{variant:>17} {ds:>6} seed {seed}: C {fit.C:.2g} cv {r['cv_log_loss']:.4f}  {shown}", flush=True
                )
            runs = out[f"{ds}/{variant}"].values()
            print(f"{variant:>17} {ds:>6} mean own test {np.mean([r[ds] for r in runs]):.3f}", flush=True)
    print(f"wrote {save('probe_pooling', out)}")


if __name__ == "__main__":
    main()
