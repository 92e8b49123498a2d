"""What a prediction is and how a verdict is reached, shared by every backend (PyTorch run
folders, ONNX and TorchScript exports, the web service). Needs neither torch nor onnxruntime."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Prediction", "label_for", "decision"]


@dataclass
class Prediction:
    path: str
    label: str | None  # predicted class; None when the file could not be read
    probs: dict[str, float]
    error: str | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "probs": self.probs, "error": self.error}


def label_for(
    probs: np.ndarray, classes: Sequence[str], threshold: float | None = None, positive_class: str | None = None
) -> str:
    """Two classes with a saved threshold: the positive class when its probability reaches the
    threshold; otherwise the most probable class."""
    if threshold is not None and positive_class is not None and len(classes) == 2:
        pos = list(classes).index(positive_class)
        return classes[pos] if probs[pos] >= threshold else classes[1 - pos]
    return classes[int(np.argmax(probs))]


def decision(threshold: float | None, positive_class: str | None, temperature: float = 1.0, tta: bool = False) -> dict:
    """How a verdict is reached, for reports and JSON output."""
    return {
        "threshold": threshold,
        "positive_class": positive_class,
        "temperature": temperature,
        "tta": tta,
        "rule": "argmax" if threshold is None else f"{positive_class} if P({positive_class}) >= {threshold:.4f}",
    }
