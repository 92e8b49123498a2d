"""What a prediction is and how a verdict is reached, shared by every backend (PyTorch run
folders, ONNX and TorchScript exports, the web service). Needs neither torch nor onnxruntime."""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .images import is_image_name

__all__ = ["Prediction", "expand_inputs", "label_for", "decision"]


@dataclass
class Prediction:
    path: str
    label: str | None             # predicted class; None when the file could not be read
    probs: dict[str, float]
    error: str | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "probs": self.probs, "error": self.error}


def label_for(probs: np.ndarray, classes: Sequence[str], threshold: float | None = None,
              positive_class: str | None = None) -> str:
    """Two classes with a saved threshold: the positive class when its probability reaches the
    threshold; otherwise the most probable class."""
    if threshold is not None and positive_class is not None and len(classes) == 2:
        pos = list(classes).index(positive_class)
        return classes[pos] if probs[pos] >= threshold else classes[1 - pos]
    return classes[int(np.argmax(probs))]


def decision(threshold: float | None, positive_class: str | None, temperature: float = 1.0,
             tta: bool = False) -> dict:
    """How a verdict is reached, for reports and JSON output."""
    return {"threshold": threshold, "positive_class": positive_class, "temperature": temperature, "tta": tta,
            "rule": "argmax" if threshold is None else
            f"{positive_class} if P({positive_class}) >= {threshold:.4f}"}


def expand_inputs(items: Iterable[str | Path]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files, folders (recursive, image suffixes) and globs -> (unique files, problems)."""
    files, problems = [], []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and is_image_name(f))
            files += found
            if not found:
                problems.append((str(p), "folder has no image files"))
        elif p.is_file():
            files.append(str(p))
        else:
            matched = sorted(f for f in glob.glob(str(item), recursive=True) if Path(f).is_file())
            files += matched
            if not matched:
                problems.append((str(item), "no such file, folder or glob match"))
    return list(dict.fromkeys(files)), problems  # each file once, first-seen order
