"""Prediction from a run folder: ``Predictor.from_run(RUN_DIR).predict(images)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.images import prepare
from ..data.index import Sample, expand_inputs
from ..data.preprocess import Preprocess
from ..data.transforms import eval_transform
from ..models.checkpoint import load_checkpoint, model_from_checkpoint
from ..models.transfer import TransferModel
from ..runtime import resolve_device
from ..training.engine import score_files
from .decision import Prediction, decision, label_for

__all__ = ["Predictor", "Prediction", "Scorer", "expand_inputs"]


class Scorer(nn.Module):
    """``model`` as the predictor uses it: logits divided by the calibration ``temperature``, and
    test-time views ``(B, V, 3, H, W)`` averaged in probability space. Returns log-probabilities,
    so anything that applies softmax to a model's output gets the final probabilities."""

    def __init__(self, model: nn.Module, temperature: float = 1.0, tta: bool = False):
        super().__init__()
        self.model, self.temperature, self.tta = model, float(temperature), tta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, V, 3, H, W) is either test-time views (probabilities averaged here) or the crop views
        # of a crop_views model (features averaged inside the model)
        views = x.shape[1] if x.ndim == 5 and self.tta else 1
        x = x.flatten(0, 1) if views > 1 or (x.ndim == 5 and self.tta) else x
        x = x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x
        logits = self.model(x).float() / self.temperature
        probs = logits.softmax(1).view(-1, views, logits.shape[1]).mean(1)
        return probs.clamp_min(1e-12).log()


class Predictor:
    """A trained model plus its preprocessing, classes, calibration and decision threshold.

    ``temperature``: divides the logits (fitted on validation data at training time).
    ``tta``: average the predictions of test-time views (mirror; corner crops in native mode).
    ``perturb``: a PIL -> PIL degradation applied to every image first (robustness evaluation).
    ``calibration``: how the threshold and temperature were fitted (the checkpoint's record).
    """

    def __init__(
        self,
        model: TransferModel,
        classes: list[str],
        preprocess: Preprocess | dict,
        threshold: float | None = None,
        positive_class: str | None = None,
        device: str = "auto",
        batch_size: int = 32,
        num_workers: int = -1,
        temperature: float = 1.0,
        tta: bool = False,
        perturb: Callable | None = None,
        progress: bool = False,
        calibration: dict | None = None,
    ):
        self.device = resolve_device(device)
        self.classes, self.preprocess = classes, Preprocess.from_dict(preprocess)
        self.model = model.to(self.device).eval()  # Grad-CAM explains this one
        self.model.to(memory_format=torch.channels_last)
        # scored through a twin whose batch norms are folded into the convolutions: 0.89x the time
        self.scorer = Scorer(self.model.folded(self.preprocess.input_size), temperature, tta).eval()
        self.threshold, self.positive_class = threshold, positive_class
        self.tta, self.perturb = tta, perturb
        self.transform = eval_transform(self.preprocess, tta)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.progress = progress  # a bar on a terminal for more than one batch (tqdm: off in pipes)
        self.calibration = calibration or {}  # how the threshold and temperature were fitted

    @property
    def temperature(self) -> float:
        return self.scorer.temperature

    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint: str = "best.pt", **kw) -> Predictor:
        """The predictor a run folder's checkpoint describes (threshold, temperature, preprocessing).
        Process-wide settings (threads, allocator) are the caller's: see :mod:`transferlab.runtime`."""
        return cls.from_checkpoint(load_checkpoint(Path(run_dir) / checkpoint), **kw)

    @classmethod
    def from_checkpoint(cls, ckpt: dict, **kw) -> Predictor:
        """The predictor a loaded checkpoint (:func:`~transferlab.models.checkpoint.load_checkpoint`)
        describes, for callers that also need the checkpoint's other fields."""
        model = model_from_checkpoint(ckpt)
        kw.setdefault("temperature", ckpt.get("temperature") or 1.0)
        kw.setdefault("calibration", ckpt.get("calibration"))
        return cls(
            model, list(ckpt["classes"]), ckpt["preprocess"], ckpt.get("threshold"), ckpt.get("positive_class"), **kw
        )

    def decision(self) -> dict:
        """How a verdict is reached, for reports and JSON output."""
        return decision(self.threshold, self.positive_class, self.temperature, self.tta)

    def _label(self, probs: np.ndarray) -> str:
        return label_for(probs, self.classes, self.threshold, self.positive_class)

    @torch.inference_mode()
    def predict_tensor(self, x: torch.Tensor) -> np.ndarray:
        """Probabilities ``(B, C)`` for preprocessed images ``(B, 3, H, W)``."""
        return self.scorer(x.to(self.device)).exp().cpu().numpy()

    def predict(self, images: Sequence[str | Path | Image.Image]) -> list[Prediction]:
        """Predict PIL images and/or file paths (batched). Unreadable files come back with
        ``label=None`` and ``error`` set, never an exception."""
        pil = [(i, im) for i, im in enumerate(images) if isinstance(im, Image.Image)]
        paths = [(i, str(p)) for i, p in enumerate(images) if not isinstance(p, Image.Image)]
        out: list[Prediction | None] = [None] * len(images)
        for start in range(0, len(pil), self.batch_size):
            chunk = pil[start : start + self.batch_size]
            x = torch.stack(
                [
                    self.transform(prepare(self.perturb(im) if self.perturb else im, self.preprocess.decode_size))
                    for _, im in chunk
                ]
            )
            for (i, _), p in zip(chunk, self.predict_tensor(x)):
                out[i] = self._make(f"<image {i}>", p)
        if paths:
            for (i, _path), pred in zip(paths, self.predict_paths([p for _, p in paths])):
                out[i] = pred
        return [p for p in out if p is not None]

    def predict_paths(self, paths: Sequence[str]) -> list[Prediction]:
        """Predict files in batches; unreadable ones come back with ``error`` set."""
        samples = [Sample(p, 0) for p in paths]
        bar = self.progress and len(paths) > self.batch_size
        res = score_files(
            self.scorer,
            samples,
            self.transform,
            self.preprocess.decode_size,
            self.device,
            self.batch_size,
            self.perturb,
            self.num_workers,
            progress=bar,
        )
        out: list[Prediction] = [Prediction(p, None, {}, "unreadable") for p in paths]
        for idx, reason in res["skipped"]:
            out[idx] = Prediction(paths[idx], None, {}, reason)
        for idx, p in zip(res["indices"], res["probs"]):
            out[int(idx)] = self._make(paths[int(idx)], p)
        return out

    def _make(self, path: str, probs: np.ndarray) -> Prediction:
        return Prediction(path, self._label(probs), {c: float(v) for c, v in zip(self.classes, probs)})
