"""What the backbone looks at: the image itself, or its neighbouring-pixel residual.

Generators and face-swap pipelines upsample: every output pixel is interpolated from its
neighbours, and that leaves a local correlation between adjacent pixels that camera images do
not have in the same form. Tan et al. ("NPR", CVPR 2024) expose it by subtracting from the image
its own 2x nearest-neighbour re-upsampling: ``r = x - up(x[::2, ::2])``. An ImageNet backbone fed
``r`` (scaled and centred like an image) sees those traces instead of the face.

The filter is the model's first layer, so ``predict``, ``evaluate``, ``export``, ``serve`` and
Grad-CAM take the same preprocessed image whichever input the model was trained on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["INPUTS", "make_input", "NeighbourResidual"]

INPUTS = ("image", "residual")


class NeighbourResidual(nn.Module):
    """``(B, 3, H, W)`` normalised image -> ``(B, 3, H, W)`` its neighbouring-pixel residual,
    normalised the same way: back to [0, 1] pixels, minus their 2x nearest re-upsampling of every
    second pixel, times ``gain``, plus 0.5, clamped to [0, 1], normalised again. No weights:
    ``mean``/``std`` are the backbone's and are not saved in the state dict."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], gain: float = 4.0):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        img = x * self.std + self.mean
        h, w = img.shape[-2:]
        up = F.interpolate(img[..., ::2, ::2], scale_factor=2.0, mode="nearest")[..., :h, :w]
        r = ((img - up) * self.gain + 0.5).clamp(0, 1)
        return (r - self.mean) / self.std


def make_input(kind: str, mean: tuple[float, ...], std: tuple[float, ...]) -> nn.Module:
    """The model's input layer for ``kind`` (one of :data:`INPUTS`)."""
    if kind == "image":
        return nn.Identity()
    if kind == "residual":
        return NeighbourResidual(mean, std)
    raise ValueError(f"input='{kind}' is not one of {', '.join(INPUTS)}")
