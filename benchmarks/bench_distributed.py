"""One process vs ``--nproc-per-node N`` (torchrun, gloo on CPU), side by side: the hymenoptera
default (`transferlab train DATA`, nothing else), each with its own empty feature cache so the
backbone work is measured in both; optionally `finetune` too.

    .venv/bin/python benchmarks/bench_distributed.py [--nproc 2] [--modes features,finetune] [--epochs 4]

On a 2-core CPU two processes each get one core: no speed-up is expected, the point is equal
accuracy. Writes benchmarks/results/distributed.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import save

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "hymenoptera_data"


def run(data: str, out: Path, nproc: int, mode: str | None, epochs: int | None) -> dict:
    cmd = [sys.executable, "-m", "transferlab", "train", data, "--out", str(out / "run"), "--no-progress"]
    cmd += ["--cache-dir", str(out / "cache")]
    if mode:
        cmd += ["--mode", mode]
    if epochs:
        cmd += ["--epochs", str(epochs)]
    if nproc > 1:
        cmd += ["--nproc-per-node", str(nproc)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
    s = json.loads((out / "run" / "summary.json").read_text())
    return {"val_acc": s["best_val_acc"], "wall_seconds": wall, "best_epoch": s["best_epoch"], "mode": s["mode"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--modes", default="default", help="comma-separated: default (no --mode flag), features, finetune")
    ap.add_argument("--epochs", type=int, help="passed as --epochs (default: the tool's own)")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in a.modes.split(","):
            flag = None if mode == "default" else mode
            one = run(a.data, Path(tmp) / f"{mode}_1", 1, flag, a.epochs)
            many = run(a.data, Path(tmp) / f"{mode}_{a.nproc}", a.nproc, flag, a.epochs)
            row = {
                "mode": mode,
                "one_process": one,
                f"{a.nproc}_processes": many,
                "accuracy_difference_points": 100 * (many["val_acc"] - one["val_acc"]),
                "wall_ratio": many["wall_seconds"] / one["wall_seconds"],
            }
            rows.append(row)
            print(
                f"{mode:>9}: 1 process val acc {one['val_acc']:.4f} in {one['wall_seconds']:.0f}s | "
                f"{a.nproc} processes {many['val_acc']:.4f} in {many['wall_seconds']:.0f}s | "
                f"difference {row['accuracy_difference_points']:+.1f} points, wall ratio {row['wall_ratio']:.2f}",
                flush=True,
            )
    print(f"wrote {save('distributed', {'data': a.data, 'nproc': a.nproc, 'rows': rows})}")


if __name__ == "__main__":
    main()
