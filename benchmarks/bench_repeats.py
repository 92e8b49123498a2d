"""Detection recipes over repeated splits: how much of a difference between two recipes is the
split. A test split of 150-220 images gives ROC-AUC a 95% interval about +-0.08 wide, so one split
cannot show a difference of a few points; several seeded splits, each with both recipes, can.

    .venv/bin/python benchmarks/bench_repeats.py [--data dfdc,ciplab] [--seeds 0,1,2,3,4]
        [--configs zoom,stages_224__logistic_head,classic] [--cross dfdc,ciplab,tpdne]

For each seed K: bench_detect's split of each data set made with `--seed K` (seed 0 is
bench_detect's own split, and its runs are reused), then `transferlab train SPLIT --seed K` per
configuration (bench_detect's CONFIGS) and `transferlab evaluate RUN --perturb jpeg:75`. Prints
per data set the test ROC-AUC per seed (with the accuracy drop under JPEG 75, in points), the
mean and standard deviation per configuration, and the paired difference of the first
configuration minus each other one. ``--cross SETS``: every run is also
scored on the usual (seed 0) test split of each other set named (`transferlab evaluate RUN
OTHER/split.csv`, kept in RUN/cross/OTHER): across sources, over the training splits.
``--perturb LIST`` (e.g. `blur:1,noise:0.02`): every run is also evaluated under these
(`transferlab evaluate RUN --perturb LIST --out RUN/perturbed`), and the accuracy drop under each
is printed per split, in points, argmax and at the saved threshold. Finished runs and evaluations
are reused. Writes benchmarks/results/repeats.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, save
from bench_detect import CONFIGS, sh, split_for, trained_and_evaluated


def run_dir(ds: str, seed: int, key: str) -> Path:
    return RESULTS / "detect" / ds / key if seed == 0 else RESULTS / "repeats" / ds / f"seed{seed}" / key


def scored(ds: str, seed: int, key: str) -> tuple[float, float | None]:
    """Test ROC-AUC of configuration ``key`` on ``ds``'s split ``seed`` (trained and evaluated
    once), and its accuracy drop under JPEG 75 in points (None: evaluated without it)."""
    split = split_for(RESULTS / ("detect" if seed == 0 else "repeats"), ds, seed)
    flags = ["--seed", str(seed), *CONFIGS[key][1]]
    ev = trained_and_evaluated(run_dir(ds, seed, key), split, flags, ("--perturb", "jpeg:75"))
    drop = next((r["accuracy_drop"] for r in ev.get("robustness") or [] if r["name"] == "jpeg:75"), None)
    return ev["binary"]["roc_auc"], None if drop is None else 100 * drop


def cross_auc(ds: str, seed: int, key: str, other: str) -> float:
    """Test ROC-AUC on ``other``'s usual test split of the run ``roc_auc`` made (evaluated once)."""
    run = run_dir(ds, seed, key)
    out = run / "cross" / other
    if not (out / "eval.json").exists():
        sh("evaluate", str(run), str(split_for(RESULTS / "detect", other)), "--out", str(out), "--explain", "0")
    return json.loads((out / "eval.json").read_text())["binary"]["roc_auc"]


def perturbed_drops(ds: str, seed: int, key: str, perturb: str) -> dict[str, tuple[float, float | None]]:
    """Accuracy drop in points, argmax and at the saved threshold, under each of ``perturb`` of the
    run ``scored`` made (evaluated once into RUN/perturbed)."""
    run = run_dir(ds, seed, key)
    out, names = run / "perturbed", perturb.split(",")
    report = out / "eval.json"
    stored = lambda: json.loads(report.read_text()).get("robustness") or [] if report.exists() else []
    rows = stored()
    if not set(names) <= {r["name"] for r in rows}:
        sh("evaluate", str(run), "--perturb", perturb, "--out", str(out), "--explain", "0")
        rows = stored()
    points = lambda v: None if v is None else 100 * v
    return {r["name"]: (100 * r["accuracy_drop"], points(r.get("threshold_drop"))) for r in rows if r["name"] in names}


def show_drops(title: str, drops: dict[str, list[dict]], seeds: list[int], names: list[str]) -> None:
    """One table per perturbation: a row per configuration, each split's drop (at the threshold in
    brackets) and the means."""
    for name in names:
        print(f"\n### {title}: accuracy drop under {name}, points (at the saved threshold)\n")
        print("| configuration | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | max |")
        print("|---|" + "---:|" * (len(seeds) + 2))
        for k, per_seed in drops.items():
            arg = [d[name][0] for d in per_seed]
            thr = [d[name][1] for d in per_seed]
            cells = " | ".join(f"{a:.1f}" + ("" if t is None else f" ({t:.1f})") for a, t in zip(arg, thr))
            mean_thr = "" if None in thr else f" ({statistics.mean(thr):.1f})"
            print(f"| {CONFIGS[k][0]} | {cells} | {statistics.mean(arg):.1f}{mean_thr} | {max(arg):.1f} |")


def show(title: str, aucs: dict[str, list[float]], seeds: list[int], drops: dict | None = None) -> dict:
    """Print one table (a row per configuration, a column per seed; ``drops``: each cell's JPEG-75
    drop in brackets) and the paired differences of the first configuration minus each other
    one; returns them."""
    first, *others = list(aucs)
    diffs = {k: [x - y for x, y in zip(aucs[first], aucs[k])] for k in others}
    print(f"\n### {title}\n")
    print("| configuration | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd |")
    print("|---|" + "---:|" * (len(seeds) + 2))
    for k, v in aucs.items():
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        jpeg = (drops or {}).get(k) or [None] * len(v)
        cells = " | ".join(f"{x:.3f}" + ("" if j is None else f" ({j:.1f})") for x, j in zip(v, jpeg))
        print(f"| {CONFIGS[k][0]} | {cells} | {statistics.mean(v):.3f} | {sd:.3f} |")
    for k, d in diffs.items():
        sd = statistics.stdev(d) if len(d) > 1 else 0.0
        above = sum(x > 0 for x in d)
        print(f"\n{first} - {k}: mean {statistics.mean(d):+.3f}, sd {sd:.3f}, higher on {above} of {len(d)} splits")
    return diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="dfdc,ciplab")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--configs", default="zoom,stages_224__logistic_head,classic")
    ap.add_argument("--cross", default="", help="also score every run on these sets' usual test splits")
    ap.add_argument("--perturb", default="", help="also evaluate every run under these, e.g. blur:1,noise:0.02")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    keys = a.configs.split(",")
    out = {}
    for ds in a.data.split(","):
        runs = {k: [scored(ds, s, k) for s in seeds] for k in keys}
        aucs = {k: [auc for auc, _ in v] for k, v in runs.items()}
        drops = {k: [d for _, d in v] for k, v in runs.items()}
        diffs = show(f"{ds}: test ROC-AUC (JPEG-75 drop) over {len(seeds)} seeded splits", aucs, seeds, drops)
        out[ds] = {"seeds": seeds, "roc_auc": aucs, "jpeg75_drop_points": drops, "difference": diffs}
        if a.perturb:
            more = {k: [perturbed_drops(ds, s, k, a.perturb) for s in seeds] for k in keys}
            show_drops(ds, more, seeds, a.perturb.split(","))
            out[ds]["perturbed_drop_points"] = more
        for other in [o for o in a.cross.split(",") if o and o != ds]:
            aucs = {k: [cross_auc(ds, s, k, other) for s in seeds] for k in keys}
            diffs = show(f"trained on {ds}, tested on {other}: ROC-AUC over {len(seeds)} training splits", aucs, seeds)
            out[f"{ds}->{other}"] = {"seeds": seeds, "roc_auc": aucs, "difference": diffs}
    print(f"\nwrote {save('repeats', out)}")


if __name__ == "__main__":
    main()
