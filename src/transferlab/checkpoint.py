"""Self-describing checkpoints, written atomically.

A checkpoint is a plain dict: ``model`` (state dict), ``classes``, ``backbone``, ``mode``,
``preprocess``, ``config``, ``threshold``, ``positive_class``, plus training state in
``last.pt``. It loads with ``torch.load(weights_only=True)``: no pickled code.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["save_checkpoint", "atomic_save", "load_checkpoint", "model_from_checkpoint", "CheckpointError",
           "FORMAT_VERSION"]

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write a checkpoint ``payload`` atomically (see :func:`atomic_save`)."""
    return atomic_save({"format_version": FORMAT_VERSION, **payload}, path)


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``, so a
    crash mid-write never leaves a half-written file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors on CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist; is this a transferlab run folder?")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint '{path}' cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "classes" not in ckpt:
        raise CheckpointError(f"'{path}' is not a transferlab checkpoint (no model/classes)")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]):
    """The :class:`~transferlab.backbones.TransferModel` a checkpoint describes, weights loaded.
    Checkpoints written before feature standardisation existed load with the identity."""
    from .backbones import create_model
    cfg = ckpt.get("config") or {}
    features = cfg.get("features", "last")
    model = create_model(ckpt["backbone"], len(ckpt["classes"]), pretrained=False, dropout=cfg.get("dropout", 0.0),
                         features="last" if features == "auto" else features)
    state = dict(ckpt["model"])
    for key, value in model.feature_norm.state_dict().items():
        state.setdefault(f"feature_norm.{key}", value)
    model.load_state_dict(state)
    return model
