"""Probe: does a decision threshold fitted on validation images that include perturbed copies keep
the verdict steady under JPEG, blur and noise? Under those perturbations a face-set detector's
ROC-AUC barely moves while its accuracy drops several points: the scores shift past the saved
threshold rather than lose their order (BENCHMARKS.md, "What the blur and noise views buy").

For each stored run of bench_detect / bench_repeats (a run folder with its split.csv): P(fake) of
every validation and test image, clean and under each perturbation; test accuracy under each at
(a) the saved threshold (the equal-error point of the clean validation scores) and (b) the
equal-error point of the clean and perturbed validation scores pooled. It decided that fitting the
threshold on perturbed copies was worth building: `train --threshold-perturb` now does it at
training time (the detect recipe's default); the probe still scores stored runs without retraining.

    .venv/bin/python benchmarks/probe_threshold.py RUN [RUN ...] [--perturb jpeg:75,blur:1,noise:0.02]

Writes benchmarks/results/probe_threshold.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import save
from transferlab.data.index import load_index
from transferlab.data.perturb import parse_perturbations
from transferlab.metrics import equal_error_rate
from transferlab.predict.predictor import Predictor


def scores(run: Path, perturb: str) -> tuple[Predictor, dict]:
    """The run's predictor and ``{(split, condition): (P(positive), y)}`` for val and test."""
    index = load_index(run / "split.csv", verify=False)
    pred = Predictor.from_run(run)
    out = {}
    for split in ("val", "test"):
        paths = [s.path for s in index.splits[split]]
        y = np.array([index.classes[s.label] == pred.positive_class for s in index.splits[split]], int)
        for p in [None, *parse_perturbations(perturb)]:
            pred.perturb = p
            out[split, p.name if p else "clean"] = (
                np.array([q.probs[pred.positive_class] for q in pred.predict_paths(paths)]),
                y,
            )
    pred.perturb = None
    return pred, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--perturb", default="jpeg:75,blur:1,noise:0.02")
    a = ap.parse_args()
    names = ["clean", *a.perturb.split(",")]
    out = {}
    for run in map(Path, a.runs):
        pred, s = scores(run, a.perturb)
        val_y = np.concatenate([s["val", n][1] for n in names])
        val_p = np.concatenate([s["val", n][0] for n in names])
        thresholds = {"saved": pred.threshold, "pooled": equal_error_rate(val_y, val_p)[1]}
        print(f"\n{run}: saved threshold {thresholds['saved']:.4f}, pooled {thresholds['pooled']:.4f}")
        print("| test | acc. at saved | acc. at pooled | mean P(positive) |\n|---|---:|---:|---:|")
        res = {}
        for n in names:
            p, y = s["test", n]
            res[n] = {k: float(((p >= t).astype(int) == y).mean()) for k, t in thresholds.items()}
            res[n]["mean_p"] = float(p.mean())
            print(f"| {n} | {res[n]['saved']:.3f} | {res[n]['pooled']:.3f} | {p.mean():.3f} |")
        out[str(run)] = {"thresholds": thresholds, "test": res}
    print(f"\nwrote {save('probe_threshold', out)}")


if __name__ == "__main__":
    main()
