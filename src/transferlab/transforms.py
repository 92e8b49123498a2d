"""Preprocessing and augmentation, built from torchvision transforms v2.

The evaluation pipeline is fully described by the plain-data ``preprocess`` dict that every
checkpoint carries (``input_size``, ``resize_size``, ``interpolation``, ``mean``, ``std``), so
prediction and export rebuild exactly what training used.
"""
from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

__all__ = ["eval_transform", "train_transform", "denormalize"]

_INTERP = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
           "nearest": InterpolationMode.NEAREST}


def _to_tensor(pre: dict) -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(pre["mean"], pre["std"])]


def eval_transform(pre: dict) -> v2.Compose:
    """Resize the short side to ``resize_size``, centre-crop ``input_size``, normalise.

    PIL image -> float tensor ``(3, input_size, input_size)``.
    """
    interp = _INTERP[pre["interpolation"]]
    return v2.Compose([v2.Resize(pre["resize_size"], interpolation=interp, antialias=True),
                       v2.CenterCrop(pre["input_size"]), *_to_tensor(pre)])


def train_transform(pre: dict, augment: str = "light", crop_scale_min: float = 0.25) -> v2.Compose:
    """Training pipeline for an augmentation preset.

    ``none``: same as evaluation. ``light``: random resized crop + horizontal flip (the seed
    tutorials' recipe).
    """
    if augment == "none":
        return eval_transform(pre)
    if augment == "light":
        interp = _INTERP[pre["interpolation"]]
        return v2.Compose([
            v2.RandomResizedCrop(pre["input_size"], scale=(crop_scale_min, 1.0), interpolation=interp,
                                 antialias=True),
            v2.RandomHorizontalFlip(),
            *_to_tensor(pre)])
    raise ValueError(f"unknown augmentation preset '{augment}' (none, light)")


def denormalize(x: torch.Tensor, pre: dict) -> torch.Tensor:
    """Undo ``Normalize``: ``(..., 3, H, W)`` -> values in [0, 1] for display."""
    mean = torch.tensor(pre["mean"], dtype=x.dtype).view(3, 1, 1)
    std = torch.tensor(pre["std"], dtype=x.dtype).view(3, 1, 1)
    return (x * std + mean).clamp(0, 1)
