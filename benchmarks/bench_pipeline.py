"""The input pipeline alone (images/s) vs the model's training throughput, same process.

    .venv/bin/python benchmarks/bench_pipeline.py [--data ../shared/data/hymenoptera_data]

The pipeline is what `transferlab train` uses for finetune: decoded-image cache, per-sample
random-resized crop + flip on uint8 tensors, batches of 32. Epoch 1 decodes every JPEG; later
epochs read the cache. Writes benchmarks/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import save

sys.path.insert(0, str(ROOT / "src"))

import torch

from transferlab.data.index import load_index
from transferlab.data.loading import (
    DecodedImageCache,
    make_loader,
)
from transferlab.data.transforms import train_transform
from transferlab.models.registry import get_spec
from transferlab.models.transfer import create_model
from transferlab.runtime import set_threads


def pipeline_rate(loader) -> float:
    n, t0 = 0, time.perf_counter()
    for batch in loader:
        n += len(batch["label"])
    return n / (time.perf_counter() - t0)


def train_rate(model, size: int, batch: int, steps: int = 6) -> float:
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "hymenoptera_data"))
    a = ap.parse_args()
    set_threads()
    spec = get_spec("efficientnet_lite0")
    pre = spec.preprocess()
    samples = load_index(a.data).splits["train"]
    cache = DecodedImageCache(2 << 30)
    loader = make_loader(samples, train_transform(pre), 32, True, -1, 0, False, pre["decode_size"], cache)
    cold = pipeline_rate(loader)
    warm = pipeline_rate(loader)
    model = create_model(spec.name, 2, pretrained=True).to(memory_format=torch.channels_last)
    model.freeze_batchnorm(True)
    fit = train_rate(model, pre["input_size"], 32)
    res = {
        "images": len(samples),
        "pipeline_cold_img_s": cold,
        "pipeline_warm_img_s": warm,
        "model_train_img_s": fit,
        "warm_pipeline_vs_model": warm / fit,
        "cache": cache.stats(),
    }
    print(
        f"pipeline: epoch 1 (decoding) {cold:.0f} img/s, later epochs (cached) {warm:.0f} img/s | "
        f"model training step {fit:.1f} img/s | pipeline / model = {warm / fit:.1f}x"
    )
    save("pipeline", res)


if __name__ == "__main__":
    main()
