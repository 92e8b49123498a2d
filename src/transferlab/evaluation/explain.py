"""Grad-CAM (Selvaraju et al., ICCV 2017): where in the image the evidence for a class lies.

The target layer is the registry's ``cam_layer`` (the last convolutional block of each
backbone), so every registered backbone is explainable without per-model code:
``GradCAM(model, preprocess)(x)`` for tensors, :meth:`GradCAM.explain_path` for files, and
:func:`overlay` to paint the heatmap over the image the model saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image

from ..data.images import load_rgb, prepare
from ..data.preprocess import Preprocess
from ..data.transforms import denormalize, eval_transform
from ..models.transfer import TransferModel

__all__ = ["GradCAM", "overlay", "save_overlay"]


class GradCAM:
    """Class-activation heatmaps from the gradients at ``model``'s Grad-CAM layer (the registry's
    ``cam_layer``, or the final stage map of a stage-feature model).

    Accepts a :class:`TransferModel` plus its :class:`Preprocess`, or a
    :class:`~transferlab.predict.predictor.Predictor` (whose model and preprocessing it uses).
    """

    def __init__(self, model, preprocess: Preprocess | dict | None = None):
        if preprocess is None:  # a Predictor
            model, preprocess = model.model, model.preprocess
        self.model: TransferModel = model
        self.preprocess = Preprocess.from_dict(preprocess)
        self.transform = eval_transform(self.preprocess)

    def __call__(self, x: torch.Tensor, target: int | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, 3, H, W)`` normalised images -> ``(heat (B, H, W) in [0, 1], probs (B, C))``.

        ``target``: the class to explain (default: each image's predicted class). A map with no
        positive evidence anywhere is all zeros. The model must be in eval mode; nothing about it
        changes here (no hooks left behind, no flags flipped), so several threads may explain
        images with one model at the same time.
        """
        if self.model.training:
            raise RuntimeError("Grad-CAM needs the model in eval mode (model.eval())")
        with torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)
            logits, act = self.model.forward_with_cam(x)
            idx = logits.argmax(1) if target is None else torch.as_tensor(target).expand(len(x))
            score = logits.gather(1, idx.view(-1, 1).to(logits.device)).sum()
            (grad,) = torch.autograd.grad(score, act)
        act, grad = act.detach().float(), grad.float()
        weights = grad.mean(dim=(2, 3), keepdim=True)  # one weight per channel
        cam = F.relu((weights * act).sum(1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        flat = cam.flatten(1)
        lo, hi = flat.min(1).values.view(-1, 1, 1), flat.max(1).values.view(-1, 1, 1)
        span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))  # tiny but real spans still normalise
        heat = torch.where(hi > lo, (cam - lo) / span, torch.zeros_like(cam))
        return heat.detach().cpu(), logits.detach().float().softmax(1).cpu()

    def explain_image(self, im: Image.Image, target: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A PIL image -> ``(heat (S, S) float, the crop the model saw (S, S, 3) uint8, probs (C,))``."""
        x = self.transform(prepare(im, self.preprocess.decode_size))
        x = (x[len(x) // 2] if x.ndim == 4 else x).unsqueeze(0)  # crop views: explain the middle one
        x = x.to(next(self.model.parameters()).device)
        heat, probs = self(x, target)
        seen = (denormalize(x[0].cpu(), self.preprocess).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        return heat[0].numpy(), seen, probs[0].numpy()

    def explain_path(self, path: str | Path, target: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(heat, image as seen)`` for an image file (raises ImageReadError for bad files)."""
        heat, seen, _ = self.explain_image(load_rgb(path), target)
        return heat, seen


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a jet-coloured ``heat (H, W)`` in [0, 1] over ``image (H, W, 3)`` uint8."""
    colour = colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255.0
    return np.clip((1 - alpha) * image.astype(np.float32) + alpha * colour, 0, 255).astype(np.uint8)


def save_overlay(path: str | Path, image: np.ndarray, heat: np.ndarray) -> Path:
    """Write the image and its overlay side by side as a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([image, overlay(image, heat)], axis=1)).save(path)
    return path
