"""Image degradations an image meets on its way through the internet: JPEG re-compression,
blur, downscaling, sensor noise.

The same functions serve two purposes: random robustness augmentation in training
(:class:`~transferlab.data.transforms.RandomDegrade`) and fixed perturbations in evaluation
(``transferlab evaluate RUN --perturb jpeg:75,blur:1``), so what a model is trained to
withstand and what it is tested on are the same operation.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["jpeg", "blur", "noise", "saltpepper", "resize", "Perturbation", "parse_perturbations", "PERTURBATIONS"]


def jpeg(im: Image.Image, quality: int) -> Image.Image:
    """Re-encode as JPEG at ``quality`` (1-100) with 4:2:0 chroma subsampling, as web uploads are."""
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=int(quality))
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out


def blur(im: Image.Image, sigma: float) -> Image.Image:
    """Gaussian blur with standard deviation ``sigma`` pixels (PIL's radius is the sigma)."""
    return im.filter(ImageFilter.GaussianBlur(float(sigma))) if sigma > 0 else im


def noise(im: Image.Image, std: float, rng: np.random.Generator | None = None) -> Image.Image:
    """Additive Gaussian noise, ``std`` as a fraction of the full 0-255 range."""
    rng = rng or np.random.default_rng(0)
    a = np.asarray(im.convert("RGB"), dtype=np.float32)
    a = a + rng.normal(0.0, std * 255.0, a.shape).astype(np.float32)
    return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8))


def saltpepper(im: Image.Image, amount: float, rng: np.random.Generator | None = None) -> Image.Image:
    """Salt-and-pepper noise: a fraction ``amount`` of the pixels set to black or white (half each)."""
    rng = rng or np.random.default_rng(0)
    a = np.array(im.convert("RGB"), dtype=np.uint8)
    hit = rng.random(a.shape[:2]) < amount
    a[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255).astype(np.uint8)[:, None]
    return Image.fromarray(a)


def resize(im: Image.Image, factor: float) -> Image.Image:
    """Downscale (or upscale) both sides by ``factor`` with antialiased bilinear resampling."""
    size = (max(1, round(im.width * factor)), max(1, round(im.height * factor)))
    return im.resize(size, Image.BILINEAR, reducing_gap=None)


@dataclass(frozen=True)
class Perturbation:
    """One named evaluation perturbation, e.g. ``jpeg:75``; call it on a PIL image."""

    kind: str
    value: float

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.value:g}"

    def __call__(self, im: Image.Image) -> Image.Image:
        if self.kind in ("noise", "sp"):  # a fixed seed: the same noise for every evaluation
            return PERTURBATIONS[self.kind][0](im, self.value, np.random.default_rng(0))
        return PERTURBATIONS[self.kind][0](im, self.value)


# kind -> (function, check on the value, what the value means)
PERTURBATIONS: dict[str, tuple[Callable, Callable[[float], bool], str]] = {
    "jpeg": (jpeg, lambda v: 1 <= v <= 100 and float(v).is_integer(), "JPEG quality 1-100"),
    "blur": (blur, lambda v: 0 <= v <= 50, "Gaussian sigma in pixels, 0-50"),
    "noise": (noise, lambda v: 0 <= v <= 1, "noise std as a fraction of 255, 0-1"),
    "sp": (saltpepper, lambda v: 0 <= v <= 1, "fraction of pixels set to black or white, 0-1"),
    "resize": (resize, lambda v: 0.05 <= v <= 4, "scale factor, 0.05-4"),
}


def parse_perturbations(text: str | None) -> list[Perturbation]:
    """``"jpeg:90,blur:1,resize:0.5,noise:0.02"`` -> perturbations; a clear ValueError otherwise."""
    out = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        kind, _, value = item.partition(":")
        if kind not in PERTURBATIONS:
            raise ValueError(
                f"unknown perturbation '{kind}' in '{item}'; use "
                + ", ".join(f"{k}:VALUE ({v[2]})" for k, v in PERTURBATIONS.items())
            )
        try:
            v = float(value)
        except ValueError:
            raise ValueError(
                f"perturbation '{item}' needs a number after the colon, e.g. {kind}:"
                f"{ {'jpeg': 75, 'blur': 1, 'noise': 0.02, 'sp': 0.01, 'resize': 0.5}[kind] }"
            ) from None
        if not PERTURBATIONS[kind][1](v):
            raise ValueError(f"perturbation '{item}': value out of range ({PERTURBATIONS[kind][2]})")
        out.append(Perturbation(kind, v))
    return out
