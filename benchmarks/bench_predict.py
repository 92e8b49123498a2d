"""`transferlab predict` throughput vs the seed's one-image-at-a-time loop vs the raw forward
ceiling (random tensors, same model, same process).

    .venv/bin/python benchmarks/bench_predict.py [--data ../shared/data/hymenoptera_data]

Prints images/s and ratios; writes benchmarks/results/predict.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import save

sys.path.insert(0, str(ROOT / "src"))

import torch
from PIL import Image
from torchvision import transforms

from transferlab.data.index import expand_inputs
from transferlab.models.registry import get_spec
from transferlab.models.transfer import create_model
from transferlab.predict.predictor import Predictor
from transferlab.runtime import set_threads


def raw_forward(model, size: int, batch: int, seconds: float = 8.0) -> float:
    """Images/s of model(x) on random channels-last tensors: what the hardware allows."""
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    n, t0 = 0, None
    with torch.inference_mode():
        model(x)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            model(x)
            n += batch
    return n / (time.perf_counter() - t0)


def seed_loop(model, files: list[str], spec) -> float:
    """The tutorial's way: open, transform, forward, one image at a time."""
    tf = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(spec.mean, spec.std),
        ]
    )
    t0 = time.perf_counter()
    with torch.no_grad():
        for f in files:
            x = tf(Image.open(f).convert("RGB")).unsqueeze(0)
            model(x).softmax(1)
    return len(files) / (time.perf_counter() - t0)


def seed_loop_fresh_process(data: str) -> float:
    """The seed loop as the seed runs it: its own Python process, torch defaults, no transferlab
    allocator or thread settings."""
    out = subprocess.run(
        [sys.executable, __file__, "--data", data, "--seed-loop-only"], check=True, capture_output=True, text=True
    ).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "hymenoptera_data"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=-1)
    ap.add_argument("--seed-loop-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    files, _ = expand_inputs([a.data])
    spec = get_spec("efficientnet_lite0")
    if a.seed_loop_only:
        print(seed_loop(create_model(spec.name, 2, pretrained=True).eval(), files, spec))
        return
    fresh = seed_loop_fresh_process(a.data)
    set_threads()
    model = create_model(spec.name, 2, pretrained=True).eval()
    pred = Predictor(model, ["a", "b"], spec.preprocess(), batch_size=a.batch, num_workers=a.workers)
    pred.predict_paths(files[:64])  # warm-up: worker start, allocator
    t0 = time.perf_counter()
    out = pred.predict_paths(files)
    ours = len(files) / (time.perf_counter() - t0)
    assert sum(p.label is not None for p in out) == len(files)
    ceiling = raw_forward(pred.model, spec.input_size, a.batch)
    plain = create_model(spec.name, 2, pretrained=True).eval()  # contiguous memory, as the seed has it
    loop = seed_loop(plain, files, spec)
    res = {
        "images": len(files),
        "predict_img_s": ours,
        "raw_forward_img_s": ceiling,
        "seed_loop_img_s": loop,
        "seed_loop_own_process_img_s": fresh,
        "predict_vs_raw": ours / ceiling,
        "predict_vs_loop": ours / loop,
        "predict_vs_loop_own_process": ours / fresh,
        "raw_vs_loop": ceiling / loop,
        "threads": torch.get_num_threads(),
    }
    print(
        f"{len(files)} images | transferlab predict {ours:.1f} img/s | raw forward {ceiling:.1f} img/s | "
        f"one-at-a-time loop {loop:.1f} img/s (same process), {fresh:.1f} img/s (own process, torch defaults)"
    )
    print(
        f"predict / raw forward = {res['predict_vs_raw']:.2f}   predict / loop = {res['predict_vs_loop']:.1f}x "
        f"(same process), {res['predict_vs_loop_own_process']:.1f}x (own process)"
    )
    print(
        f"bound: raw forward / loop = {res['raw_vs_loop']:.1f}x: no predictor on this machine can beat the "
        f"same-process loop by more than that"
    )
    save("predict", res)


if __name__ == "__main__":
    main()
