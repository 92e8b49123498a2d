"""Detection recipes side by side: last vs stage features; 224 vs 448 vs native crops; one backbone
vs an ensemble; a fitted linear head vs fine-tuning; on every real/fake set in ../shared/data/faces
and on hymenoptera.

    .venv/bin/python benchmarks/bench_detect.py [--data ciplab,tpdne,dfdc,hymenoptera]
        [--configs NAME,...] [--perturb jpeg:75] [--reeval]

Each (data set, configuration) is one `transferlab train` on a fixed seeded split, then
`transferlab evaluate RUN --perturb jpeg:75` on its test split. Finished runs in
benchmarks/results/detect/ are reused, so an interrupted table resumes. Prints one markdown table per
data set and writes benchmarks/results/detect.json (rows of other data sets and configurations kept).

Splits: ciplab 500 + 500 train, 60 + 60 validation, the rest test, same_source_pairs.csv kept on
one side (as bench_faces.py); tpdne and dfdc 70/15/15 per class (dfdc grouped by its pairs file);
hymenoptera its own train/val folders (val is the test column there).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, save

SHARED = ROOT.parent / "shared" / "data"
DATA = {
    "ciplab": (SHARED / "faces" / "ciplab_real_and_fake_face", ["--train-per-class", "500", "--val-per-class", "60"]),
    "tpdne": (SHARED / "faces" / "tpdne_unsplash_hard", []),
    "dfdc": (SHARED / "faces" / "dfdc_faces_paired", []),
    "hymenoptera": (SHARED / "hymenoptera_data", None),  # None: keep the data's own split
}
# the robust views, the clean-only threshold and the mean and std of each stage channel every detect
# configuration was measured with before the detect recipe's own (JPEG on every view, blur up to
# sigma 1, the threshold fitted on perturbed validation copies too; the spatial max and min too):
# it pins them to what their stored results mean
EARLIER_DEFAULTS = [
    *("--blur-prob", "0.5", "--blur-sigma-max", "3", "--jpeg-prob", "0.5", "--noise-prob", "0.2"),
    *("--threshold-perturb", "none", "--pool", "mean,std"),
]
# zoom 2 with the exact middle half and every stage an equal share of the head's prior: the base
# that the zoom_balanced* configurations vary one setting of
BALANCED = ["--recipe", "detect", "--zoom", "2", "--centre", "0.5", "--stage-balance", *EARLIER_DEFAULTS]
# folder name -> (what it is, train flags); "default" is `transferlab train DATA --out RUN` with no other flag
CONFIGS = {
    "classic": ("classic: last stage 224, SGD head (the old features default)", ["--recipe", "classic"]),
    "classic_finetune": (
        "classic: finetune 224 (the old finetune default)",
        ["--recipe", "classic", "--mode", "finetune"],
    ),
    "last_stage_448__logistic_head": (
        "last stage 448, logistic head",
        ["--recipe", "detect", "--features", "last", "--head", "logistic", *EARLIER_DEFAULTS],
    ),
    # --zoom 1 pins the configurations measured before zoom 2 became the detect recipe's default,
    # and --no-stage-balance those measured before the logistic head gave each stage an equal share
    "stages_224__logistic_head": (
        "stages 224, logistic head (the default before zoom)",
        ["--recipe", "detect", "--image-size", "224", "--zoom", "1", "--no-stage-balance", *EARLIER_DEFAULTS],
    ),
    "default": (
        "default (real/fake: the mean, std, spatial max and min of each channel of every stage, 224 px, of the "
        "whole image and its centre zoomed 2x, logistic head, JPEG on every augmented view, blur up to sigma 1, "
        "threshold fitted on perturbed validation copies too)",
        [],
    ),
    "default_meanstd": (
        "the default with each stage channel's mean and std only (--pool mean,std; the default until 2026-11-27)",
        ["--pool", "mean,std"],
    ),
    "parts_face": (
        "the default (mean and std) with a face crop's eyes, nose and mouth cut at fixed places (--parts face)",
        ["--parts", "face", "--pool", "mean,std"],
    ),
    "pool_maxmin": (
        "each stage channel's spatial max and min beside its mean and std (--pool mean,std,max,min; the default since)",
        ["--pool", "mean,std,max,min"],
    ),
    "default_noise04": (
        "the default (mean and std) with noise on two augmented views in five (--noise-prob 0.4)",
        ["--noise-prob", "0.4", "--pool", "mean,std"],
    ),
    "stages_448__logistic_head": (
        "stages 448, logistic head",
        ["--image-size", "448", "--zoom", "1", "--no-stage-balance", *EARLIER_DEFAULTS],
    ),
    "native_crops": (
        "stages, 4 native crops of 224, logistic head",
        [
            "--recipe",
            "detect",
            "--crop",
            "native",
            "--crop-views",
            "4",
            "--image-size",
            "224",
            "--zoom",
            "1",
            "--no-stage-balance",
            *EARLIER_DEFAULTS,
        ],
    ),
    "ensemble": (
        "ensemble lite0+lite2 stages 448, logistic head",
        [
            "--recipe",
            "detect",
            "--model",
            "efficientnet_lite0+efficientnet_lite2",
            "--image-size",
            "448",
            "--zoom",
            "1",
            "--no-stage-balance",
            *EARLIER_DEFAULTS,
        ],
    ),
    "zoom": (
        "stages 224 of the whole image and of its centre magnified 2x (input 448), logistic head",
        ["--recipe", "detect", "--zoom", "2", "--centre", "0.5", "--no-stage-balance", *EARLIER_DEFAULTS],
    ),
    "zoom_centre06": (
        "stages 224 of the whole image and of its centre 0.6 magnified (input 448), logistic head",
        ["--recipe", "detect", "--zoom", "2", "--centre", "0.6", "--no-stage-balance", *EARLIER_DEFAULTS],
    ),
    "zoom_balanced": (
        "zoom 2 (centre 0.5), every stage an equal share of the logistic head's prior",
        BALANCED,
    ),
    "zoom_balanced_jpeg08": (
        "the same, JPEG views with probability 0.8 (0.5 by default)",
        [*BALANCED, "--jpeg-prob", "0.8"],
    ),
    **{
        f"zoom_balanced_invariance{mu.replace('.', '')}": (
            f"the same, the head's prior against what the augmented views move (--invariance {mu})",
            [*BALANCED, "--invariance", mu],
        )
        for mu in ("0.1", "0.3", "1")
    },
    "zoom_balanced_jpeg_only": (
        "the same, JPEG views only (every augmented view re-saved, no blur or noise views)",
        [*BALANCED, "--jpeg-prob", "1", "--blur-prob", "0", "--noise-prob", "0"],
    ),
    "zoom_balanced_jpeg_noise": (
        "the same, every augmented view re-saved as JPEG, noise on one in five, no blur views",
        [*BALANCED, "--jpeg-prob", "1", "--blur-prob", "0", "--noise-prob", "0.2"],
    ),
    "zoom_balanced_jpeg_noise_blur1": (
        "the same with light blur views too (half the views, sigma up to 1 instead of 3)",
        [*BALANCED, "--jpeg-prob", "1", "--blur-prob", "0.5", "--blur-sigma-max", "1", "--noise-prob", "0.2"],
    ),
    "zoom_no_views": (
        "the same, no augmented views",
        ["--recipe", "detect", "--zoom", "2", "--augment", "none", "--no-stage-balance", *EARLIER_DEFAULTS],
    ),
    "residual": (
        "stages 224 of the neighbouring-pixel residual, no augmented views, logistic head",
        [
            *("--recipe", "detect", "--input", "residual", "--augment", "none", "--zoom", "1"),
            *("--no-stage-balance", *EARLIER_DEFAULTS),
        ],
    ),
    "lpft": (
        "lpft: stages 224, logistic probe, then 4 epochs fine-tuning",
        ["--recipe", "detect", "--mode", "lpft", "--epochs", "4", "--no-stage-balance", *EARLIER_DEFAULTS],
    ),
}


def sh(*args: str) -> None:
    print("$ transferlab " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "transferlab", *args], check=True)


def trained_and_evaluated(
    run: Path, data: Path, flags: list[str], evaluate_flags: tuple[str, ...] = (), reeval: bool = False
) -> dict:
    """``run``'s eval.json: trained on ``data`` with ``flags``, then evaluated on its test split,
    each only when not done before (``reeval``: evaluate again)."""
    if not (run / "summary.json").exists():
        sh("train", str(data), "--out", str(run), "--no-progress", *flags)
    if reeval or not (run / "eval.json").exists():
        sh("evaluate", str(run), *evaluate_flags, "--explain", "0")
    return json.loads((run / "eval.json").read_text())


def split_for(work: Path, name: str, seed: int = 0) -> Path:
    """The manifest of data set ``name``'s split with ``seed`` (made once, under ``work``)."""
    src, flags = DATA[name]
    if flags is None:
        return src
    out = work / name / ("split" if seed == 0 else f"split_seed{seed}")
    if not (out / "split.csv").exists():
        groups = src / "same_source_pairs.csv"
        sh(
            "split",
            str(src),
            "--out",
            str(out),
            "--seed",
            str(seed),
            *flags,
            *(["--groups", str(groups)] if groups.exists() else []),
        )
    return out / "split.csv"


def ci(row: dict) -> str:
    c = row.get("roc_auc_ci95")  # runs evaluated before the interval existed: --reeval adds it
    return f" ({c[0]:.2f}-{c[1]:.2f})" if c else ""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=",".join(DATA))
    ap.add_argument(
        "--configs", default="", help="comma-separated configuration keys (default all): " + ", ".join(CONFIGS)
    )
    ap.add_argument("--perturb", default="jpeg:75")
    ap.add_argument("--reeval", action="store_true")
    a = ap.parse_args()
    work = RESULTS / "detect"
    wanted = [c.strip() for c in a.configs.split(",") if c.strip()]
    configs = {k: v for k, v in CONFIGS.items() if not wanted or k in wanted}
    rows = []
    for ds in a.data.split(","):
        data = split_for(work, ds)
        for key, (cname, flags) in configs.items():
            run = work / ds / key
            ev = trained_and_evaluated(run, data, flags, ("--perturb", a.perturb), a.reeval)
            s = json.loads((run / "summary.json").read_text())
            rob = {r["name"]: r for r in ev["robustness"]}
            p = a.perturb.split(",")[0]
            rows.append(
                {
                    "data": ds,
                    "config": cname,
                    "run": str(run),
                    "flags": flags,
                    "features": s.get("features"),
                    "head": s.get("head"),
                    "image_size": s["preprocess"]["input_size"],
                    "train_seconds": s["wall_seconds"],
                    "val_acc": s["best_val_acc"],
                    "split": ev["split"],
                    "n": ev["n"],
                    "test_acc": ev["accuracy"],
                    "roc_auc": ev["binary"]["roc_auc"],
                    "roc_auc_ci95": ev["binary"].get("roc_auc_ci95"),
                    "ap": ev["binary"]["average_precision"],
                    "acc_thr": ev["binary"].get("accuracy_at_threshold"),
                    "perturb": p,
                    "perturb_acc": rob[p]["accuracy"],
                    "perturb_drop": rob[p]["accuracy_drop"],
                    "perturb_auc": rob[p]["roc_auc"],
                    "perturb_changed": rob[p].get("changed"),
                }
            )
    for ds in a.data.split(","):
        print(f"\n### {ds}\n")
        print(
            f"| configuration | train s | test acc | ROC-AUC (95% CI) | AP | acc at threshold | {a.perturb} acc | "
            f"drop | {a.perturb} AUC |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            if r["data"] == ds:
                print(
                    f"| {r['config']} | {r['train_seconds']:.0f} | {r['test_acc']:.3f} | {r['roc_auc']:.3f}{ci(r)} | "
                    f"{r['ap']:.3f} | {r['acc_thr']:.3f} | {r['perturb_acc']:.3f} | {r['perturb_drop']:+.3f} | "
                    f"{r['perturb_auc']:.3f} |"
                )
    # rows of configurations and data sets not run this call stay as they were
    done = {r["run"] for r in rows}
    earlier = json.loads((RESULTS / "detect.json").read_text())["rows"] if (RESULTS / "detect.json").exists() else []
    save("detect", {"perturb": a.perturb, "rows": [r for r in earlier if r["run"] not in done] + rows})


if __name__ == "__main__":
    main()
