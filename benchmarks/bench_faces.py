"""Fake-face detection grid: features / finetune / lpft, each with and without the robustness
augmentation, each scored clean and under JPEG re-compression and blur.

    .venv/bin/python benchmarks/bench_faces.py [--data ../shared/data/faces/ciplab_real_and_fake_face]
        [--modes features,finetune,lpft] [--augments light,robust] [--perturb jpeg:75,blur:1] [--reeval]

Grouped, seeded split (500 + 500 train, 60 + 60 validation, the rest test; the image pairs in
same_source_pairs.csv stay on one side). Finished runs in benchmarks/results/faces/ are reused,
so an interrupted grid resumes. Prints a markdown table and writes benchmarks/results/faces.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, save

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "faces" / "ciplab_real_and_fake_face"


def sh(*args: str) -> None:
    print("$ transferlab " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "transferlab", *args], check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--modes", default="features,finetune,lpft")
    ap.add_argument("--augments", default="light,robust")
    ap.add_argument("--perturb", default="jpeg:75,blur:1")
    ap.add_argument("--extra", default="", help="more train flags for every run, e.g. '--crop native'")
    ap.add_argument("--tag", default="", help="suffix for the run folders")
    ap.add_argument("--reeval", action="store_true", help="evaluate finished runs again (new metrics)")
    a = ap.parse_args()
    work = RESULTS / "faces"
    split = work / "split"
    if not (split / "split.csv").exists():
        sh(
            "split",
            a.data,
            "--out",
            str(split),
            "--train-per-class",
            "500",
            "--val-per-class",
            "60",
            "--seed",
            "0",
            "--groups",
            str(Path(a.data) / "same_source_pairs.csv"),
        )
    rows = []
    for mode in a.modes.split(","):
        for aug in a.augments.split(","):
            run = work / f"{mode}_{aug}{a.tag}"
            t0 = time.perf_counter()
            if not (run / "summary.json").exists():
                sh(
                    "train",
                    str(split / "split.csv"),
                    "--mode",
                    mode,
                    "--augment",
                    aug,
                    "--out",
                    str(run),
                    "--no-progress",
                    *a.extra.split(),
                )
            if a.reeval or not (run / "eval.json").exists():
                sh("evaluate", str(run), "--perturb", a.perturb, "--explain", "0")
            summary = json.loads((run / "summary.json").read_text())
            ev = json.loads((run / "eval.json").read_text())
            rob = {r["name"]: r for r in ev["robustness"]}
            rows.append(
                {
                    "mode": mode,
                    "augment": aug,
                    "run": str(run),
                    "train_seconds": summary["wall_seconds"],
                    "best_val_acc": summary["best_val_acc"],
                    "seconds_this_call": time.perf_counter() - t0,
                    **{
                        f"{name}_{k}": r.get(k)
                        for name, r in rob.items()
                        for k in (
                            "accuracy",
                            "balanced_accuracy",
                            "roc_auc",
                            "average_precision",
                            "accuracy_at_threshold",
                            "changed",
                            "right_to_wrong",
                            "wrong_to_right",
                        )
                    },
                }
            )
    names = ["clean", *a.perturb.split(",")]
    head = (
        "| mode | augment | train s | val acc | "
        + " | ".join(f"{n} acc | {n} AUC | {n} AP" for n in names)
        + " | "
        + " | ".join(f"drop {n}" for n in names[1:])
        + " |"
    )
    print("\n" + head)
    print("|" + "---|" * (4 + 3 * len(names) + len(names) - 1))
    for r in rows:
        cells = [r["mode"], r["augment"], f"{r['train_seconds']:.0f}", f"{r['best_val_acc']:.3f}"]
        for n in names:
            cells += [f"{r[f'{n}_accuracy']:.3f}", f"{r[f'{n}_roc_auc']:.3f}", f"{r[f'{n}_average_precision']:.3f}"]
        cells += [f"{r['clean_accuracy'] - r[f'{n}_accuracy']:+.3f}" for n in names[1:]]
        print("| " + " | ".join(cells) + " |")
    print("\nPredictions each perturbation changed on the test split (right -> wrong / wrong -> right):")
    for r in rows:
        print(
            f"  {r['mode']:<9} {r['augment']:<7} "
            + "  ".join(
                f"{n}: {r[f'{n}_changed']} ({r[f'{n}_right_to_wrong']} / {r[f'{n}_wrong_to_right']})" for n in names[1:]
            )
        )
    save(f"faces{a.tag}", {"data": a.data, "perturb": a.perturb, "rows": rows})


if __name__ == "__main__":
    main()
