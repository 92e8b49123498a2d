"""Self-describing checkpoints, written atomically.

A checkpoint is a plain dict: ``model`` (state dict), ``classes``, ``backbone``, ``mode``,
``preprocess``, ``config``, ``threshold``, ``positive_class``, plus training state in
``last.pt``. It loads with ``torch.load(weights_only=True)``: no pickled code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import DEFAULT_POOL

__all__ = [
    "save_checkpoint",
    "atomic_save",
    "load_checkpoint",
    "model_from_checkpoint",
    "CheckpointError",
    "FORMAT_VERSION",
]

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write a checkpoint ``payload`` atomically (see :func:`atomic_save`)."""
    return atomic_save({"format_version": FORMAT_VERSION, **payload}, path)


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``, so a
    crash mid-write never leaves a half-written file behind (:func:`transferlab.files.atomic_write`)."""
    from ..files import atomic_write

    return atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors on CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist; is this a transferlab run folder?")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"checkpoint '{path}' cannot be read ({type(e).__name__}): the file is damaged or not a "
            "checkpoint; use the run's other one (--checkpoint last.pt or best.pt) or train again"
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "classes" not in ckpt:
        raise CheckpointError(f"'{path}' is not a transferlab checkpoint (no model/classes)")
    _validate(ckpt, path)
    return ckpt


def _bad(path: Path, field: str, why: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint '{path}': field '{field}' {why}; the file was edited or damaged: "
        "use the run's other checkpoint or train again"
    )


def _validate(ckpt: dict, path: Path) -> None:
    """Every field ``predict``/``evaluate``/``export`` read, checked before any is used."""
    classes = ckpt["classes"]
    if not (
        isinstance(classes, list)
        and len(classes) >= 2
        and all(isinstance(c, str) and c for c in classes)
        and len(set(classes)) == len(classes)
    ):
        raise _bad(path, "classes", f"is {classes!r}, not a list of two or more distinct names")
    if not isinstance(ckpt["model"], dict) or not all(isinstance(v, torch.Tensor) for v in ckpt["model"].values()):
        raise _bad(path, "model", "is not a state dict of tensors")
    if not isinstance(ckpt.get("backbone"), str):
        raise _bad(path, "backbone", f"is {ckpt.get('backbone')!r}, not a backbone name")
    pre = ckpt.get("preprocess")
    if not isinstance(pre, dict):
        raise _bad(path, "preprocess", "is missing")
    for key in ("input_size", "resize_size"):
        if not isinstance(pre.get(key), int) or isinstance(pre.get(key), bool) or pre[key] < 1:
            raise _bad(path, f"preprocess.{key}", f"is {pre.get(key)!r}, not a positive integer")
    for key in ("mean", "std"):
        v = pre.get(key)
        if not (isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v)):
            raise _bad(path, f"preprocess.{key}", f"is {v!r}, not three numbers")
    if any(x <= 0 for x in pre["std"]):
        raise _bad(path, "preprocess.std", "has a value <= 0")
    for key, lo, hi in (("threshold", 0.0, 1.0), ("temperature", 1e-6, 1e6)):
        v = ckpt.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi):
            raise _bad(path, key, f"is {v!r}, not a number in [{lo:g}, {hi:g}]")
    pos = ckpt.get("positive_class")
    if pos is not None and pos not in classes:
        raise _bad(path, "positive_class", f"is {pos!r}, not one of the classes {classes}")
    if ckpt.get("threshold") is not None and (len(classes) != 2 or pos is None):
        raise _bad(path, "threshold", "is set, but a threshold needs two classes and a positive class")


def model_from_checkpoint(ckpt: dict[str, Any]):
    """The :class:`~transferlab.models.transfer.TransferModel` a checkpoint describes, weights loaded.
    Checkpoints written before feature standardisation existed load with the identity."""
    from .registry import get_spec
    from .transfer import create_model

    cfg = ckpt.get("config") or {}
    features = cfg.get("features", "last")
    try:
        get_spec(ckpt["backbone"])
    except KeyError as e:
        raise CheckpointError(f"checkpoint field 'backbone': {e.args[0]}") from None
    model = create_model(
        ckpt["backbone"],
        len(ckpt["classes"]),
        pretrained=False,
        dropout=cfg.get("dropout", 0.0),
        features="last" if features == "auto" else features,
        input=cfg.get("input", "image"),  # written before the input choice existed: the image
        zoom=cfg.get("zoom") or 1,  # written before zoom existed: one view
        centre=cfg.get("centre"),  # written before the centre's fraction existed: 1 / zoom
        parts=cfg.get("parts"),  # written before parts existed: none
        pool=cfg.get("pool") or DEFAULT_POOL,  # written before the pool choice existed: mean and std
    )
    state = dict(ckpt["model"])
    for key, value in model.feature_norm.state_dict().items():
        state.setdefault(f"feature_norm.{key}", value)
    want = model.state_dict()
    missing, unexpected = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint field 'model' does not fit backbone '{ckpt['backbone']}': "
            f"{len(missing)} tensors missing (e.g. {missing[:2]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:2]})"
        )
    for key, t in state.items():
        if tuple(t.shape) != tuple(want[key].shape):
            hint = f" ({len(ckpt['classes'])} classes listed)" if key.startswith("head") else ""
            raise CheckpointError(
                f"checkpoint field 'model.{key}' has shape {tuple(t.shape)}, the model expects "
                f"{tuple(want[key].shape)}{hint}; the file was edited or belongs to another model"
            )
    model.load_state_dict(state)
    return model
