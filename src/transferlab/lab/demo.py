"""The built-in demo: a real-vs-fake detector trained on photos that ship with scikit-image.

"Fake" crops are made the way image generators leave traces: the crop is downsampled, then
upsampled by 2 with a nearest-neighbour or transposed-convolution kernel, which leaves the
periodic upsampling artefacts that Zhang et al. (2019, "Detecting and Simulating Artifacts in
GAN Fake Images") show in generated images. "Real" crops get the same random downscaling but no
upsampling. Train, validation and test crops come from different source photos.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..files import check_writable, write_text
from ..rundir import RunFolder, RunFolderError, next_run_dir

__all__ = ["PHOTOS", "make_fake", "build_demo_data", "run_demo"]

# Which bundled colour photo feeds which split: no photo is in two splits.
PHOTOS = {
    "train": ["astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "retina"],
    "val": ["motorcycle"],
    "test": ["chelsea", "coffee"],
}
_CROPS = {"train": 60, "val": 40, "test": 50}  # per photo and class
_VERSION = 2


def _photo(name: str) -> np.ndarray:
    import skimage.data as d

    img = d.stereo_motorcycle()[0] if name == "motorcycle" else getattr(d, name)()
    return np.ascontiguousarray(img[..., :3])


def _texture(crop: np.ndarray) -> float:
    g = crop.astype(np.float32).mean(2)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(lap.std())


def make_fake(crop: np.ndarray, rng: np.random.Generator, kernel: str | None = None) -> np.ndarray:
    """Down- then up-sample ``crop (H, W, 3) uint8`` by 2 with a generator-style kernel.

    ``kernel``: ``nearest`` (nearest-neighbour), ``transposed`` (stride-2 transposed convolution
    with a random positive 3x3 kernel: uneven overlap -> checkerboard), or None for either at
    random. Returns the same shape, uint8.
    """
    h, w = crop.shape[:2]
    x = torch.from_numpy(np.array(crop)).permute(2, 0, 1).float().unsqueeze(0) / 255.0
    small = F.interpolate(x, size=(h // 2, w // 2), mode="bilinear", antialias=True, align_corners=False)
    kernel = kernel or ("nearest" if rng.random() < 0.5 else "transposed")
    if kernel == "nearest":
        up = F.interpolate(small, scale_factor=2, mode="nearest")
    else:
        k = torch.from_numpy(rng.uniform(0.2, 1.0, (3, 3))).float()
        k = k / k.sum() * 4  # each output pixel gets ~1x the input on average (stride 2 => 4 taps share)
        weight = k.expand(3, 1, 3, 3).contiguous()
        up = F.conv_transpose2d(small, weight, stride=2, padding=1, output_padding=1, groups=3)
    return (up.squeeze(0).permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).byte().numpy()


def _crops(photo: np.ndarray, n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` textured ``size`` x ``size`` crops, each taken at a random scale in [0.3, 0.6]:
    a ``size / scale`` square region resized (antialiased) to ``size``."""
    out, tries = [], 0
    h, w = photo.shape[:2]
    while len(out) < n and tries < n * 50:
        tries += 1
        r = min(int(size / rng.uniform(0.3, 0.6)), h, w)
        y, x = rng.integers(0, h - r + 1), rng.integers(0, w - r + 1)
        region = Image.fromarray(photo[y : y + r, x : x + r])
        crop = np.asarray(region.resize((size, size), Image.BICUBIC) if r != size else region)
        if _texture(crop) > 6.0:
            out.append(crop)
    return out


def build_demo_data(root: str | Path, size: int = 128, seed: int = 0) -> Path:
    """Write ``root/{train,val,test}/{real,fake}/*.png`` (lossless, so artefacts survive).

    Reuses an existing build with the same settings. Returns ``root``.
    """
    root = Path(root)
    marker = root / "demo.json"
    info = {"version": _VERSION, "size": size, "seed": seed, "photos": PHOTOS, "crops": _CROPS}
    if marker.exists() and json.loads(marker.read_text()) == info:
        return root
    rng = np.random.default_rng(seed)
    for split, photos in PHOTOS.items():
        for cls in ("real", "fake"):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
        for name in photos:
            photo = _photo(name)
            for i, crop in enumerate(_crops(photo, 2 * _CROPS[split], size, rng)):
                cls = "real" if i % 2 == 0 else "fake"
                img = crop if cls == "real" else make_fake(crop, rng)
                # lossless either way; level 1 encodes these noisy crops 2.5x faster than the default 6
                Image.fromarray(img).save(root / split / cls / f"{name}_{i:03d}.png", compress_level=1)
    write_text(marker, json.dumps(info))
    return root


def run_demo(
    out: str | Path = "runs/demo", mode: str = "features", epochs: int = 6, seed: int = 0, progress: bool = True
) -> dict:
    """Build the demo data, train the default backbone, evaluate on the held-out photos and
    print a short table. Returns the evaluation dict plus timings.

    ``out`` holds the data (built once, then reused) and the runs: ``out/run``, then ``out/run2``
    and so on, so running the demo again never meets or replaces an earlier run."""
    from ..config import load_config
    from ..evaluation.scoring import evaluate_run
    from ..training.trainer import train

    out = Path(out)
    if RunFolder(out).is_run():
        raise RunFolderError(
            f"--out '{out}' is a run folder; the demo writes its data and runs into a folder of its own: "
            "choose another --out"
        )
    check_writable(out)
    t0 = time.perf_counter()
    data = build_demo_data(out / "data", seed=seed)
    t_data = time.perf_counter() - t0
    cfg = load_config(
        overrides={
            "data": str(data),
            "out": str(next_run_dir(out / "run")),
            "mode": mode,
            "epochs": epochs,
            "image_size": 128,
            "augment": "none",
            "seed": seed,
            "progress": progress,
        }
    )
    result = train(cfg)
    report = evaluate_run(result.run_dir)
    total = time.perf_counter() - t0
    b = report["binary"]
    rows = [
        ("train / val / test photos", " / ".join(", ".join(PHOTOS[s]) for s in ("train", "val", "test"))),
        ("backbone", f"{cfg.model} ({mode}, {epochs} epochs, {cfg.image_size} px)"),
        ("best val accuracy", f"{result.best_val_acc:.3f} (epoch {result.best_epoch})"),
        ("test accuracy", f"{report['accuracy']:.3f}  ({report['n']} crops from unseen photos)"),
        ("test ROC-AUC / AP", f"{b['roc_auc']:.3f} / {b['average_precision']:.3f}"),
        ("time", f"{total:.0f} s (data {t_data:.0f} s)"),
        ("run folder", str(result.run_dir)),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n" + "\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    return {**report, "seconds": total, "best_val_acc": result.best_val_acc}
