"""Cost against data size: indexing time, `features` wall time, images/s and peak memory for
synthetic folders of 1k, 5k and 20k images, each measured in its own process.

The folders are made once (in a temp folder, reused) from the shared photos: random crops and
flips of hymenoptera and the face sets, 192 px, JPEG q90. The decoded-image budget
(``--image-cache-mb``, default 96 MB) is smaller than the decoded 5k and 20k sets, so the table
shows the streaming path: time per image should stay flat (at 20k within 1.3x of 1k) and peak
memory should stop growing once the budget is exceeded.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 1000,5000,20000] [--image-size 128]

Prints a table and writes benchmarks/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import save

SHARED = ROOT.parent / "shared" / "data"


def _sources() -> list[Path]:
    exts = {".jpg", ".jpeg", ".png"}
    found = [p for p in sorted(SHARED.rglob("*")) if p.suffix.lower() in exts and p.is_file()]
    if not found:
        raise SystemExit(f"no photos under {SHARED}; the shared data sets are needed")
    return found


def make_folder(root: Path, n: int, side: int = 192) -> Path:
    """``root/{a,b}/NNNNNN.jpg``: ``n`` crops (written once; a complete folder is reused)."""
    from PIL import Image, ImageOps

    done = root / ".complete"
    if done.is_file():
        return root
    rng = random.Random(n)
    sources = _sources()
    for c in ("a", "b"):
        (root / c).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        with Image.open(rng.choice(sources)) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            w, h = im.size
            s = rng.randint(min(w, h) // 3, min(w, h))
            x, y = rng.randint(0, w - s), rng.randint(0, h - s)
            crop = im.crop((x, y, x + s, y + s)).resize((side, side), Image.BILINEAR)
            if rng.random() < 0.5:
                crop = ImageOps.mirror(crop)
            crop.save(root / ("a" if i % 2 else "b") / f"{i:06d}.jpg", quality=90)
    done.write_text(str(n))
    return root


def one(folder: str, image_size: int, cache_mb: int, out: str) -> dict:
    """Index, then train a `features` head (two backbone passes per image: plain + one augmented view)."""
    from transferlab.config import load_config
    from transferlab.data.index import load_index
    from transferlab.training.trainer import train

    t0 = time.perf_counter()
    index = load_index(folder)
    t_index = time.perf_counter() - t0
    n = sum(len(v) for v in index.splits.values())
    cfg = load_config(
        None,
        {
            "data": folder,
            "out": out,
            "model": "efficientnet_lite0",
            "mode": "features",
            "recipe": "classic",
            "features": "last",
            "head": "sgd",
            "augment": "light",
            "feature_views": 1,  # two passes over the images: the decoded-image cache is worth having
            "epochs": 2,
            "image_size": image_size,
            "image_cache_mb": cache_mb,
            "cache_dir": str(Path(out) / "cache"),
            "progress": False,
        },
    )
    t0 = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - t0
    return {
        "images": n,
        "index_seconds": t_index,
        "features_seconds": wall,
        "ms_per_image": 1000 * wall / n,
        "images_per_second": n / wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,5000,20000")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--image-cache-mb", type=int, default=96)
    ap.add_argument("--folders", default=str(Path(tempfile.gettempdir()) / "transferlab_scale"))
    ap.add_argument("--one", nargs=2, metavar=("FOLDER", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print("RESULT " + json.dumps(one(a.one[0], a.image_size, a.image_cache_mb, a.one[1])), flush=True)
        return
    rows = []
    for n in [int(s) for s in a.sizes.split(",")]:
        t0 = time.perf_counter()
        folder = make_folder(Path(a.folders) / str(n), n)
        made = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, __file__, "--one", str(folder), str(Path(tmp) / "run")]
            cmd += ["--image-size", str(a.image_size), "--image-cache-mb", str(a.image_cache_mb)]
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if out.returncode:
            raise SystemExit(out.stdout[-3000:] + out.stderr[-3000:])
        row = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
        row["folder_made_seconds"] = made
        rows.append(row)
        print(
            f"{row['images']:>6} images  index {row['index_seconds']:6.2f}s  "
            f"features {row['features_seconds']:7.1f}s  {row['ms_per_image']:6.2f} ms/img  "
            f"{row['images_per_second']:6.1f} img/s  peak {row['peak_rss_mb']:6.0f} MB",
            flush=True,
        )
    base = rows[0]
    for r in rows:
        r["time_per_image_ratio"] = r["ms_per_image"] / base["ms_per_image"]
        r["peak_memory_ratio"] = r["peak_rss_mb"] / base["peak_rss_mb"]
    print(
        "time per image vs the smallest: " + ", ".join(f"{r['images']}: {r['time_per_image_ratio']:.2f}x" for r in rows)
    )
    print("peak memory vs the smallest:    " + ", ".join(f"{r['images']}: {r['peak_memory_ratio']:.2f}x" for r in rows))
    print(f"wrote {save('scale', {'image_size': a.image_size, 'image_cache_mb': a.image_cache_mb, 'rows': rows})}")


if __name__ == "__main__":
    main()
