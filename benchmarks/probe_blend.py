"""Probe: do self-blended pseudo-fakes (Shiohara & Yamasaki, "SBI", CVPR 2022) teach the frozen
detector blending traces that carry over to real fakes, in its own source and in the others?

Each training real is blended with a colour-shifted, slightly misaligned and resampled copy of
itself inside a soft ellipse around the face, then re-saved as JPEG: a fake with a blending seam and
nothing else. Frozen efficientnet_lite0 stage features at 224 px (the default's), standardised,
logistic regression with C by 5-fold CV on the training split; test ROC-AUC on every face set's test
split (bench_detect's splits) for three training sets per data set:

- ``plain``: the training split as it is (the default's head, without augmented views);
- ``plus_sbi``: the training split plus one self-blend of each training real, labelled fake;
- ``sbi_only``: the training reals against their self-blends (no real fake seen at all).

With ``--matched``, each real also comes re-saved at its blend's JPEG quality, as one more real, so
that a second JPEG save is in both classes. With ``--sharp``, the blended copy is shifted by whole
pixels and never resampled, so the blend does not soften the face.

    .venv/bin/python benchmarks/probe_blend.py [--data ciplab,dfdc,tpdne] [--matched] [--sharp]

A probe, not a feature of the tool. Writes benchmarks/results/probe_blend.json
(probe_blend_matched.json, probe_blend_sharp.json, probe_blend_matched_sharp.json with the flags).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, save
from probe_residual import auc, features, probe_model


def self_blend(img: Image.Image, rng: np.random.Generator, sharp: bool = False) -> Image.Image:
    """``img`` with a colour-shifted, shifted/scaled, resampled copy of itself blended into a soft
    ellipse around the centre (where a face crop's face is). ``sharp``: the copy is only shifted
    by whole pixels, never resampled, so the blend does not soften the face."""
    w, h = img.size
    src = img
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        src = enhance(src).enhance(rng.uniform(0.9, 1.1))
    s = 1.0 if sharp else rng.uniform(0.96, 1.04)
    dx, dy = rng.uniform(-0.02, 0.02, 2) * (w, h)
    if sharp:
        dx, dy = round(dx), round(dy)
    cx, cy = w / 2, h / 2  # scale about the centre, then shift
    resample = Image.NEAREST if sharp else Image.BILINEAR
    src = src.transform((w, h), Image.AFFINE, (1 / s, 0, cx - cx / s - dx, 0, 1 / s, cy - cy / s - dy), resample)
    if not sharp and rng.random() < 0.5:  # a resampled copy, as a blended-in face usually is
        f = rng.uniform(0.5, 0.9)
        src = src.resize((max(8, int(w * f)), max(8, int(h * f))), Image.BILINEAR).resize((w, h), Image.BILINEAR)
    ex, ey = w * (0.5 + rng.uniform(-0.06, 0.06)), h * (0.5 + rng.uniform(-0.04, 0.08))
    ax, ay = w * rng.uniform(0.14, 0.3), h * rng.uniform(0.16, 0.36)
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).ellipse([ex - ax, ey - ay, ex + ax, ey + ay], fill=int(255 * rng.uniform(0.6, 1.0)))
    mask = mask.filter(ImageFilter.GaussianBlur(w * rng.uniform(0.01, 0.05)))
    return Image.composite(src, img, mask)


def blends(samples, out: Path, seed: int, matched: bool = False, sharp: bool = False):
    """One JPEG self-blend per sample in ``out``, as fake samples (label 1 here). ``matched``: also
    each real re-saved at its blend's JPEG quality, as real samples (label 0), so that a second
    JPEG save is in both classes and only the blend tells them apart."""
    from transferlab.data.index import Sample

    rng = np.random.default_rng(seed)
    made = []
    for k, s in enumerate(samples):
        with Image.open(s.path) as im:
            img = im.convert("RGB")
        q = int(rng.integers(75, 96))
        self_blend(img, rng, sharp).save(out / f"sbi_{k:05d}.jpg", quality=q)
        made.append(Sample(str(out / f"sbi_{k:05d}.jpg"), 1))
        if matched:
            img.save(out / f"real_{k:05d}.jpg", quality=q)
            made.append(Sample(str(out / f"real_{k:05d}.jpg"), 0))
    return made


def main() -> None:
    from transferlab.data.index import Sample, read_manifest
    from transferlab.metrics import guess_positive

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="ciplab,dfdc,tpdne")
    ap.add_argument("--matched", action="store_true", help="the reals re-saved like their blends, in both rows")
    ap.add_argument("--sharp", action="store_true", help="blend a copy shifted by whole pixels, never resampled")
    a = ap.parse_args()
    probe = probe_model()
    sets = a.data.split(",")
    feats, labels = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for ds in sets:
            index = read_manifest(RESULTS / "detect" / ds / "split" / "split.csv")
            pos = guess_positive(index.classes)
            for split in ("train", "test"):
                samples = [Sample(s.path, int(s.label == pos)) for s in index.splits[split]]  # 1 = fake
                f, _, y = features(samples, *probe, residual_too=False)
                feats[ds, split], labels[ds, split] = f, y
            reals = [s for s in index.splits["train"] if s.label != pos]
            (Path(tmp) / ds).mkdir()
            f, _, y = features(blends(reals, Path(tmp) / ds, 0, a.matched, a.sharp), *probe, residual_too=False)
            feats[ds, "sbi"], labels[ds, "sbi"] = f, y
            print(f"{ds}: features of {len(labels[ds, 'train'])} + {len(y)} self-blends", flush=True)
    out = {}
    for ds in sets:
        xtr, ytr, xs, ys = feats[ds, "train"], labels[ds, "train"], feats[ds, "sbi"], labels[ds, "sbi"]
        real = ytr == 0
        train_sets = {} if a.matched or a.sharp else {"plain": (xtr, ytr)}  # the same in every variant
        train_sets |= {
            "plus_sbi": (np.vstack([xtr, xs]), np.r_[ytr, ys]),
            "sbi_only": (np.vstack([xtr[real], xs]), np.r_[ytr[real], ys]),
        }
        out[ds] = {}
        for name, (x, y) in train_sets.items():
            row = {t: auc(x, y, feats[t, "test"], labels[t, "test"]) for t in sets}
            out[ds][name] = row
            print(f"trained on {ds:>7} {name:>8}: " + "  ".join(f"{t} {v:.3f}" for t, v in row.items()), flush=True)
    name = "probe_blend" + ("_matched" if a.matched else "") + ("_sharp" if a.sharp else "")
    print(f"wrote {save(name, out)}")


if __name__ == "__main__":
    main()
