"""``transferlab show``: training images exactly as the model sees them after augmentation.

Each row is one training image: first the evaluation view (no augmentation), then several
augmented views drawn by the same decode -> augment -> normalise pipeline that training uses,
turned back into pixels. What you see is what the network gets.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..config import load_config
from ..data.index import DataError, load_index
from ..data.loading import ImageDataset
from ..data.preprocess import Preprocess
from ..data.transforms import AugmentSpec, denormalize, eval_transform, train_transform
from ..files import check_writable_file
from ..models.registry import get_spec
from ..reports.plots import figure_path, plot_augment_preview
from ..training.recipe import resolve

__all__ = ["augment_preview", "preview_rows"]


def _pixels(x: torch.Tensor, pre: Preprocess) -> np.ndarray:
    return (denormalize(x, pre) * 255).round().byte().permute(1, 2, 0).numpy()


def preview_rows(
    data: str | Path, n: int = 8, views: int = 5, overrides: dict | None = None
) -> tuple[list[tuple[str, list[np.ndarray]]], str, str]:
    """``n`` training images (classes taken in turn, seeded), each as ``(label, [plain view,
    augmented view x views])`` of uint8 ``(H, W, 3)`` arrays. ``overrides``: training settings
    that shape the pipeline (``augment``, ``model``, ``image_size``, ``crop``, the preset knobs,
    ``seed``). Returns the rows, the preset used and a title."""
    if n < 1 or views < 0:
        raise ValueError(f"a preview needs 1 or more images and 0 or more augmented views; got n={n}, views={views}")
    cfg = load_config(None, {**(overrides or {}), "data": str(data)})
    index = load_index(data)
    samples = index.splits.get("train") or index.all_samples()
    if not samples:
        raise DataError(f"'{data}' has no images to preview")
    cfg, _ = resolve(cfg, index.classes)  # what training would use: the recipe's augmentation and zoom
    preset, spec = cfg.augment, AugmentSpec.from_config(cfg)
    pre = get_spec(cfg.model).preprocess(cfg.image_size, cfg.crop, zoom=cfg.zoom)
    rng = random.Random(cfg.seed)
    by_class = [[s for s in samples if s.label == c] for c in range(len(index.classes))]
    for group in by_class:
        rng.shuffle(group)
    picked = [g[i] for i in range(max(map(len, by_class))) for g in by_class if i < len(g)][:n]
    plain = ImageDataset(picked, eval_transform(pre), pre.decode_size)
    augmented = ImageDataset(picked, train_transform(pre, spec), pre.decode_size)
    torch.manual_seed(cfg.seed)
    rows = []
    for i, s in enumerate(picked):
        x, _, _, err = plain[i]
        if x is None:
            rows.append((f"{index.classes[s.label]}: {Path(s.path).name} unreadable ({err})", []))
            continue
        rows.append(
            (
                f"{index.classes[s.label]}: {Path(s.path).name}",
                [_pixels(x, pre)] + [_pixels(augmented[i][0], pre) for _ in range(views)],
            )
        )
    title = (
        f"augment={preset}, {cfg.model} input {pre.input_size} px ({cfg.crop}): "
        f"first column without augmentation, then {views} augmented views"
    )
    return rows, preset, title


def augment_preview(
    data: str | Path, out: str | Path = "augment_preview.png", n: int = 8, views: int = 5, overrides: dict | None = None
) -> tuple[Path, str]:
    """Write the :func:`preview_rows` grid to ``out`` (a folder gets ``augment_preview.png``, a
    name without a suffix ``.png``); returns the file and the preset used."""
    out = figure_path(out, "augment_preview.png")
    check_writable_file(out)  # before the images are read
    rows, preset, title = preview_rows(data, n, views, overrides)
    return plot_augment_preview(rows, out, title), preset
