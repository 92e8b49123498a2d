"""Exports of a face detector: parity with PyTorch on the face validation split, int8 accuracy /
size / speed, and `predict` throughput of the ONNX backend vs PyTorch on the same folder.

    .venv/bin/python benchmarks/bench_export.py [--run benchmarks/results/faces/finetune_robust]

The run defaults to the face benchmark's finetune + robust run (efficientnet_lite0; make it with
benchmarks/bench_faces.py). Prints figures and ratios; writes benchmarks/results/export.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, save

sys.path.insert(0, str(ROOT / "src"))

from transferlab.data.index import read_manifest
from transferlab.deploy.export import export_run
from transferlab.predict.predictor import Predictor
from transferlab.predict.runtimes import OnnxPredictor, TorchScriptPredictor


def rate(predictor, paths: list[str], rounds: int = 2) -> float:
    """Best-of-``rounds`` images/s of ``predict_paths`` over ``paths`` (after a warm-up batch)."""
    predictor.predict_paths(paths[:8])
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = predictor.predict_paths(paths)
        best = min(best, time.perf_counter() - t0)
        assert all(p.label for p in out)
    return len(paths) / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=str(RESULTS / "faces" / "finetune_robust"))
    ap.add_argument("--out", default=str(RESULTS / "export"))
    a = ap.parse_args()
    out = Path(a.out)
    res = {"run": a.run}
    for fmt in ("onnx", "torchscript"):
        r = export_run(a.run, fmt, out, int8=fmt == "onnx", images=None)
        res[fmt] = r
        p, f = r["parity"], r["parity_from_files"]
        print(
            f"{fmt:<11} {r['size_mb']:.1f} MB, exported in {r['export_seconds']:.1f}s; on {p['n']} validation "
            f"images: max |dp| {p['max_abs_diff']:.2e} (from files {f['max_abs_diff']:.2e}), identical "
            f"predictions {p['identical_predictions']:.1%} (from files {f['identical_predictions']:.1%})"
        )
    q = res["onnx"]["int8"]
    print(
        f"int8 ONNX   {q['size_mb']:.1f} MB ({q['size_ratio']:.2f}x); validation accuracy {q['float']['accuracy']:.4f} "
        f"-> {q['int8']['accuracy']:.4f}, at threshold {q['float']['accuracy_at_threshold']:.4f} -> "
        f"{q['int8']['accuracy_at_threshold']:.4f}; identical predictions "
        f"{q['parity_vs_float']['identical_predictions']:.1%}, "
        f"max |dp| {q['parity_vs_float']['max_abs_diff']:.3f}; {q['float_images_per_s']:.0f} -> "
        f"{q['int8_images_per_s']:.0f} images/s model-only ({q['int8_images_per_s'] / q['float_images_per_s']:.2f}x)"
    )

    index = read_manifest(Path(a.run) / "split.csv", verify=False)
    paths = [s.path for s in index.splits.get("test") or index.splits["val"]]
    backends = {
        "pytorch (transferlab predict RUN)": Predictor.from_run(a.run),
        "onnxruntime (predict model.onnx)": OnnxPredictor(out / "model.onnx"),
        "onnxruntime int8": OnnxPredictor(out / "model.int8.onnx"),
        "torchscript": TorchScriptPredictor(out / "model.torchscript.pt"),
    }
    rates = {name: rate(b, paths) for name, b in backends.items()}
    base = rates["pytorch (transferlab predict RUN)"]
    print(f"\npredict over {len(paths)} images (decode + preprocess + model), side by side:")
    for name, r in rates.items():
        print(f"  {name:<36} {r:7.1f} images/s  {r / base:5.2f}x PyTorch")
    res["predict_images_per_s"] = rates
    res["n_images"] = len(paths)
    save("export", res)


if __name__ == "__main__":
    main()
