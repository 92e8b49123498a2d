"""The preprocessing contract of an exported model (``<model file>.json``): its schema, its
integrity checks (the model file's sha256, a checksum of the contract itself) and the torch-free
preprocessing it describes (PIL and NumPy: the same decode/shrink/resize/crop steps as the
PyTorch pipeline)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..data.images import ImageReadError, crop_grid, load_rgb, resize_short_side, shrink, to_rgb
from ..data.preprocess import Preprocess

__all__ = [
    "CONTRACT_VERSION",
    "Contract",
    "ContractError",
    "contract_path",
    "read_contract",
    "contract_checksum",
    "file_sha256",
    "preprocess",
    "load_input",
    "is_exported_model",
    "expected_input",
]


CONTRACT_VERSION = 2  # 2: the model file's sha256 and a checksum of the contract itself


class ContractError(ValueError):
    """An exported model or its contract that cannot be trusted; one line says which and the fix."""


class _Preprocess(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_size: int = Field(gt=0, le=8192)
    resize_size: int = Field(gt=0, le=16384)
    decode_size: int | None = Field(default=None, gt=0)
    crop: Literal["resize", "native"] = "resize"
    crop_views: int = Field(default=1, ge=1, le=64)
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    mean: list[float] = Field(min_length=3, max_length=3)
    std: list[float] = Field(min_length=3, max_length=3)

    @field_validator("std")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(x <= 0 for x in v):
            raise ValueError("every std must be > 0")
        return v


class Contract(BaseModel):
    """The schema of ``<model file>.json``: what a deployment needs besides the model file."""

    model_config = ConfigDict(extra="allow")
    contract_version: Literal[2]
    format: Literal["onnx", "torchscript"]
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    checksum: str = Field(pattern=r"^[0-9a-f]{64}$")
    backbone: str
    classes: list[str] = Field(min_length=2)
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    positive_class: str | None = None
    temperature: float = Field(default=1.0, gt=0.0)
    preprocess: _Preprocess

    @model_validator(mode="after")
    def _consistent(self) -> Contract:
        if len(set(self.classes)) != len(self.classes) or not all(self.classes):
            raise ValueError(f"classes {self.classes} must be distinct, non-empty names")
        if self.positive_class is not None and self.positive_class not in self.classes:
            raise ValueError(f"positive_class '{self.positive_class}' is not one of the classes {self.classes}")
        if self.threshold is not None and (len(self.classes) != 2 or self.positive_class is None):
            raise ValueError("a threshold needs two classes and a positive_class")
        return self


def contract_checksum(contract: dict) -> str:
    """sha256 of the contract's canonical JSON without its ``checksum``: any edit after export shows."""
    body = {k: v for k, v in contract.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8", "surrogateescape")).hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def contract_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.name + ".json")


def is_exported_model(path: str | Path) -> bool:
    p = Path(path)
    return p.is_file() and contract_path(p).is_file()


def read_contract(model_path: str | Path) -> dict:
    """The validated contract of an exported model. Raises :class:`ContractError` naming the bad
    field when the contract is missing, not JSON, of another version, edited after export, or does
    not belong to this model file (sha256)."""
    path = contract_path(model_path)
    fix = "export the model again with `transferlab export RUN`"
    if not Path(model_path).is_file():
        raise ContractError(f"{model_path}: no such model file")
    if not path.is_file():
        raise ContractError(f"{model_path}: no preprocessing contract {path.name} beside it; {fix}, which writes both")
    try:
        raw = json.loads(path.read_text(encoding="utf-8", errors="surrogateescape"))
    except (json.JSONDecodeError, OSError) as e:
        raise ContractError(f"{path}: not a readable JSON contract ({e}); {fix}") from None
    if not isinstance(raw, dict):
        raise ContractError(f"{path}: not a JSON object; {fix}")
    if raw.get("contract_version") != CONTRACT_VERSION:
        raise ContractError(
            f"{path}: contract version {raw.get('contract_version')!r}, this transferlab reads "
            f"{CONTRACT_VERSION}; {fix}"
        )
    try:
        Contract.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "contract"
        raise ContractError(f"{path}: field '{where}': {err['msg']}; {fix}") from None
    if contract_checksum(raw) != raw["checksum"]:
        raise ContractError(f"{path}: the contract was edited after export (its checksum does not match); {fix}")
    if raw["file"] != Path(model_path).name or file_sha256(model_path) != raw["sha256"]:
        raise ContractError(
            f"{model_path}: the model file is not the one this contract was written for (sha256 differs); {fix}"
        )
    return raw


def expected_input(contract: dict) -> list:
    """The model input's shape after the batch axis: ``[3, S, S]`` or ``[K, 3, S, S]``."""
    pre = Preprocess.from_dict(contract["preprocess"])
    return [*([pre.crop_views] if pre.crop_views > 1 else []), 3, pre.input_size, pre.input_size]


def _crops(a: np.ndarray, size: int, views: int = 1) -> list[np.ndarray]:
    """``views`` crops (:func:`~transferlab.data.images.crop_grid`; one view: the centre crop) of
    ``(H, W, 3)``, zero-padding a smaller image first (as torchvision's CenterCrop does)."""
    h, w = a.shape[:2]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        a = np.pad(a, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
        h, w = a.shape[:2]
    return [a[t : t + size, le : le + size] for t, le in crop_grid(h, w, size, views)]


def preprocess(im: Image.Image, contract: dict) -> np.ndarray:
    """PIL image -> ``(3, S, S)`` float32 RGB in [0, 1], the exported model's input
    (``(K, 3, S, S)`` for a model with ``crop_views`` K > 1).

    ``resize``: shrink the short side to ``decode_size``, resize the short side to
    ``resize_size`` (antialiased), centre crop ``input_size``. ``native``: crops only."""
    pre = Preprocess.from_dict(contract["preprocess"])
    size, views = pre.input_size, pre.crop_views
    im = shrink(to_rgb(im), pre.decode_size)
    if not pre.native:
        im = resize_short_side(im, pre.resize_size, pre.interpolation)
    crops = [
        (c.astype(np.float32) / 255.0).transpose(2, 0, 1) for c in _crops(np.asarray(im, dtype=np.uint8), size, views)
    ]
    return crops[0] if views == 1 else np.stack(crops)


def load_input(item: str | Path | Image.Image, contract: dict) -> tuple[np.ndarray | None, str | None]:
    """A file path or PIL image -> ``(model input, None)``, or ``(None, reason)`` when the file
    cannot be read."""
    try:
        im = item if isinstance(item, Image.Image) else load_rgb(item)
        return preprocess(im, contract), None
    except ImageReadError as e:
        return None, e.reason
