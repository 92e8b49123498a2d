"""Prediction grids: thumbnails of images with their true and predicted class (green right, red wrong)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.images import ImageReadError, load_rgb
from .plots import plot_prediction_grid

__all__ = ["thumbnails", "sample_grid"]


def thumbnails(paths: list[str], size: int = 112) -> list[np.ndarray]:
    """Square centre-cropped thumbnails ``(size, size, 3)`` uint8 for prediction grids."""
    from PIL import ImageOps

    out = []
    for p in paths:
        try:
            out.append(np.asarray(ImageOps.fit(load_rgb(p), (size, size))))
        except ImageReadError:
            out.append(np.zeros((size, size, 3), np.uint8))
    return out


def sample_grid(
    path: Path, samples: list, classes: list[str], labels: np.ndarray, probs: np.ndarray, title: str, n: int = 24
) -> None:
    """A seeded random sample of ``n`` predictions as thumbnails, green right, red wrong."""
    if not len(samples):
        return
    pick = np.random.default_rng(0).choice(len(samples), size=min(n, len(samples)), replace=False)
    imgs = thumbnails([samples[i].path for i in pick])
    items = [
        (img, classes[int(labels[i])], classes[int(probs[i].argmax())], float(probs[i].max()))
        for img, i in zip(imgs, pick)
    ]
    plot_prediction_grid(items, path, title=title)
