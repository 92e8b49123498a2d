"""CPU vs GPU, side by side in one run: `finetune` training images/s and time to the hymenoptera
accuracy, `predict` images/s against the raw forward ceiling and the one-image loop, and how busy
the GPU is while fine-tuning (is the input pipeline keeping up?).

    .venv/bin/python benchmarks/bench_gpu.py [--data ../shared/data/hymenoptera_data] [--epochs 6]

Without a CUDA device it measures the CPU column and says that the GPU figures are pending.
Targets (issue 14): predict >= 80% of the raw forward throughput and >= 5x the one-image loop on
the GPU; GPU busy >= 80% of the fine-tuning time; GPU accuracy within 1 point of the CPU run.
Writes benchmarks/results/gpu.json.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import save

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "hymenoptera_data"


class GpuBusy:
    """Samples ``nvidia-smi`` utilisation every 0.2 s while active (None where it is missing)."""

    def __init__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True,
                text=True,
            )
            if out.returncode == 0 and out.stdout.strip():
                self.samples.append(float(out.stdout.split()[0]))
            self._stop.wait(0.2)

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def train_column(data: str, device: str, epochs: int, workdir: Path) -> dict:
    from transferlab.config import load_config
    from transferlab.training.trainer import train

    cfg = load_config(
        None,
        {
            "data": data,
            "out": str(workdir / f"finetune_{device}"),
            "model": "efficientnet_lite0",
            "mode": "finetune",
            "recipe": "classic",
            "epochs": epochs,
            "device": device,
            "progress": False,
        },
    )
    with GpuBusy() if device == "cuda" else _Null() as busy:
        t0 = time.perf_counter()
        run = train(cfg)
        wall = time.perf_counter() - t0
    hist = run.summary["history"]
    n_train = sum(run.summary["data"]["counts"]["train"].values())
    return {
        "val_acc": run.best_val_acc,
        "wall_seconds": wall,
        "train_images_per_second": n_train * len(hist) / sum(h["seconds"] for h in hist),
        "history": [{"epoch": h["epoch"], "val_acc": h["val_acc"], "seconds": h["seconds"]} for h in hist],
        "gpu_busy_percent": getattr(busy, "mean", None),
        "run_dir": str(run.run_dir),
    }


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def time_to(history: list[dict], target: float) -> float | None:
    t = 0.0
    for h in history:
        t += h["seconds"]
        if h["val_acc"] >= target:
            return t
    return None


def predict_column(run_dir: str, images: list[str], device: str) -> dict:
    import torch

    from transferlab.predict.predictor import Predictor

    pred = Predictor.from_run(run_dir, device=device, batch_size=64)
    pred.predict(images[:64])  # warm-up (cuDNN autotune, allocator)
    t0 = time.perf_counter()
    pred.predict(images)
    batched = len(images) / (time.perf_counter() - t0)
    few = images[:48]
    t0 = time.perf_counter()
    for p in few:
        pred.predict([p])
    loop = len(few) / (time.perf_counter() - t0)
    size = pred.preprocess.input_size
    x = torch.randn(64, 3, size, size, device=pred.device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        pred.model(x)
        if pred.device.type == "cuda":
            torch.cuda.synchronize()
        t0, reps = time.perf_counter(), max(2, len(images) // 64)
        for _ in range(reps):
            pred.model(x)
        if pred.device.type == "cuda":
            torch.cuda.synchronize()
    ceiling = 64 * reps / (time.perf_counter() - t0)
    return {
        "predict_images_per_second": batched,
        "one_image_loop_per_second": loop,
        "raw_forward_per_second": ceiling,
        "predict_vs_raw": batched / ceiling,
        "predict_vs_loop": batched / loop,
    }


def compile_column(device: str, steps: int = 5, batch: int = 32) -> dict:
    """``--compile`` measured: the training step of efficientnet_lite0 at 224 px, eager vs
    ``torch.compile``: the one-off compile cost, the time per step, and the steps it takes to pay."""
    import torch
    import torch.nn.functional as F

    from transferlab.models.transfer import create_model

    dev = torch.device(device)
    out = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = create_model("efficientnet_lite0", 2, pretrained=False).train().to(dev)
        model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x = torch.rand(batch, 3, 224, 224, device=dev).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 2, (batch,), device=dev)
        net = torch.compile(model) if compiled else model

        def step(net=net, opt=opt, x=x, y=y):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()

        t0 = time.perf_counter()
        step()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        out["compiled" if compiled else "eager"] = {"first_step_s": first, "step_s": (time.perf_counter() - t0) / steps}
    e, c = out["eager"], out["compiled"]
    saving = e["step_s"] - c["step_s"]
    out["compile_cost_s"] = c["first_step_s"] - e["first_step_s"]
    out["speedup"] = e["step_s"] / c["step_s"]
    out["steps_to_pay"] = out["compile_cost_s"] / saving if saving > 0 else None
    return out


def decode_column(images: list[str], device: str) -> dict:
    """JPEG decoding images/s: PIL in this process (what a loader worker does per image) vs
    ``torchvision.io.decode_jpeg`` on a batch, on ``device`` (on "cuda", nvJPEG)."""
    import torch
    from PIL import Image
    from torchvision.io import decode_jpeg

    jpegs = [p for p in images if p.lower().endswith((".jpg", ".jpeg"))][:256]
    t0 = time.perf_counter()
    for p in jpegs:
        with Image.open(p) as im:
            im.convert("RGB").load()
    pil = len(jpegs) / (time.perf_counter() - t0)
    data = [torch.frombuffer(bytearray(Path(p).read_bytes()), dtype=torch.uint8) for p in jpegs]
    decode_jpeg(data[:8], device=device)  # warm-up (nvJPEG handles)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(0, len(data), 64):
        decode_jpeg(data[i : i + 64], device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    batched = len(data) / (time.perf_counter() - t0)
    return {"images": len(jpegs), "pil_per_second": pil, "decode_jpeg_per_second": batched, "ratio": batched / pil}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile (minutes on a CPU)")
    a = ap.parse_args()
    import torch

    from transferlab.data.index import load_index
    from transferlab.runtime import set_threads

    set_threads()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    images = [s.path for s in load_index(a.data).splits["val"]] * 4
    out: dict = {"data": a.data, "epochs": a.epochs, "devices": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for dev in devices:
            col = train_column(a.data, dev, a.epochs, Path(tmp))
            col.update(predict_column(col.pop("run_dir"), images, dev))
            col["decode"] = decode_column(images, dev)
            if a.compile:
                col["compile"] = compile_column(dev)
            out["devices"][dev] = col
    cpu = out["devices"]["cpu"]
    for dev, col in out["devices"].items():
        col["time_to_cpu_accuracy_seconds"] = time_to(col["history"], cpu["val_acc"] - 0.01)
        busy = col["gpu_busy_percent"]
        print(
            f"{dev:>4}: finetune val acc {col['val_acc']:.4f}, {col['train_images_per_second']:.1f} train img/s, "
            f"to CPU accuracy -1pt in {col['time_to_cpu_accuracy_seconds'] or float('nan'):.1f}s"
            + (f", GPU busy {busy:.0f}%" if busy is not None else "")
        )
        print(
            f"      predict {col['predict_images_per_second']:.1f} img/s = {col['predict_vs_raw']:.0%} of the raw "
            f"forward ({col['raw_forward_per_second']:.1f}), {col['predict_vs_loop']:.1f}x the one-image loop"
        )
        d = col["decode"]
        print(
            f"      JPEG decode: PIL {d['pil_per_second']:.0f} img/s, decode_jpeg in batches of 64 "
            f"{d['decode_jpeg_per_second']:.0f} img/s ({d['ratio']:.1f}x)"
        )
        if "compile" in col:
            c = col["compile"]
            pay = f"pays after {c['steps_to_pay']:.0f} steps" if c["steps_to_pay"] else "never pays"
            print(
                f"      torch.compile: {c['compile_cost_s']:.0f}s to compile, step {c['eager']['step_s']:.2f}s -> "
                f"{c['compiled']['step_s']:.2f}s ({c['speedup']:.2f}x), {pay}"
            )
    if "cuda" not in out["devices"]:
        print("no CUDA device here: the GPU column is pending; run this script on a machine with one")
    else:
        g = out["devices"]["cuda"]
        print(
            f"GPU vs CPU: train {g['train_images_per_second'] / cpu['train_images_per_second']:.1f}x, "
            f"predict {g['predict_images_per_second'] / cpu['predict_images_per_second']:.1f}x, "
            f"accuracy {g['val_acc'] - cpu['val_acc']:+.4f}"
        )
    print(f"wrote {save('gpu', out)}")


if __name__ == "__main__":
    main()
