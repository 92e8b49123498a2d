"""Prediction from an exported model (``transferlab export``): ONNX through onnxruntime, with no
torch at all, or TorchScript through ``torch.jit``.

Every export sits next to its preprocessing contract, ``<model file>.json``: input size,
resize/crop rule, interpolation, class names, threshold, temperature. Normalisation and the
temperature are inside the exported graph, so the contract's :func:`preprocess` (PIL and NumPy,
the same decode/shrink/resize/crop steps as the PyTorch pipeline) is all a deployment needs.
"""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .images import ImageReadError, crop_grid, load_rgb, resize_short_side, shrink, to_rgb
from .prediction import Prediction, decision, label_for

__all__ = ["CONTRACT_VERSION", "Contract", "ContractError", "contract_path", "read_contract", "contract_checksum",
           "file_sha256", "preprocess", "load_input", "ExportedPredictor", "OnnxPredictor", "TorchScriptPredictor",
           "load_exported", "is_exported_model"]

CONTRACT_VERSION = 2  # 2: the model file's sha256 and a checksum of the contract itself


class ContractError(ValueError):
    """An exported model or its contract that cannot be trusted; one line says which and the fix."""


class _Preprocess(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_size: int = Field(gt=0, le=8192)
    resize_size: int = Field(gt=0, le=16384)
    decode_size: Optional[int] = Field(default=None, gt=0)
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
    threshold: Optional[float] = Field(default=None, ge=0.0, le=1.0)
    positive_class: Optional[str] = None
    temperature: float = Field(default=1.0, gt=0.0)
    preprocess: _Preprocess

    @model_validator(mode="after")
    def _consistent(self) -> "Contract":
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
        raise ContractError(f"{path}: contract version {raw.get('contract_version')!r}, this transferlab reads "
                            f"{CONTRACT_VERSION}; {fix}")
    try:
        Contract.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "contract"
        raise ContractError(f"{path}: field '{where}': {err['msg']}; {fix}") from None
    if contract_checksum(raw) != raw["checksum"]:
        raise ContractError(f"{path}: the contract was edited after export (its checksum does not match); {fix}")
    if raw["file"] != Path(model_path).name or file_sha256(model_path) != raw["sha256"]:
        raise ContractError(f"{model_path}: the model file is not the one this contract was written for (sha256 "
                            f"differs); {fix}")
    return raw


def _expected_input(contract: dict) -> list:
    pre = contract["preprocess"]
    views = [pre["crop_views"]] if pre.get("crop_views", 1) > 1 else []
    return [*views, 3, pre["input_size"], pre["input_size"]]


def _crops(a: np.ndarray, size: int, views: int = 1) -> list[np.ndarray]:
    """``views`` crops (:func:`~transferlab.images.crop_grid`; one view: the centre crop) of
    ``(H, W, 3)``, zero-padding a smaller image first (as torchvision's CenterCrop does)."""
    h, w = a.shape[:2]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        a = np.pad(a, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
        h, w = a.shape[:2]
    return [a[t:t + size, le:le + size] for t, le in crop_grid(h, w, size, views)]


def preprocess(im: Image.Image, contract: dict) -> np.ndarray:
    """PIL image -> ``(3, S, S)`` float32 RGB in [0, 1], the exported model's input
    (``(K, 3, S, S)`` for a model with ``crop_views`` K > 1).

    ``resize``: shrink the short side to ``decode_size``, resize the short side to
    ``resize_size`` (antialiased), centre crop ``input_size``. ``native``: crops only."""
    pre = contract["preprocess"]
    size, views = pre["input_size"], pre.get("crop_views", 1)
    im = shrink(to_rgb(im), pre.get("decode_size"))
    if pre.get("crop", "resize") != "native":
        im = resize_short_side(im, pre["resize_size"], pre["interpolation"])
    crops = [(c.astype(np.float32) / 255.0).transpose(2, 0, 1) for c in _crops(np.asarray(im, dtype=np.uint8), size,
                                                                                views)]
    return crops[0] if views == 1 else np.stack(crops)


def load_input(item: str | Path | Image.Image, contract: dict) -> tuple[np.ndarray | None, str | None]:
    """A file path or PIL image -> ``(model input, None)``, or ``(None, reason)`` when the file
    cannot be read."""
    try:
        im = item if isinstance(item, Image.Image) else load_rgb(item)
        return preprocess(im, contract), None
    except ImageReadError as e:
        return None, e.reason


class ExportedPredictor:
    """Shared logic of the exported backends: batching with the next batch decoded in a
    background thread, the saved decision rule, and the :class:`Prediction` output format."""

    def __init__(self, model_path: str | Path, batch_size: int = 32):
        self.path = Path(model_path)
        self.contract = read_contract(self.path)
        self.classes = list(self.contract["classes"])
        self.threshold = self.contract.get("threshold")
        self.positive_class = self.contract.get("positive_class")
        self.preprocess = self.contract["preprocess"]
        self.batch_size = batch_size

    @property
    def temperature(self) -> float:
        return float(self.contract.get("temperature") or 1.0)

    def decision(self) -> dict:
        return decision(self.threshold, self.positive_class, self.temperature, False)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``(B, C)`` for inputs ``(B, 3, S, S)`` float32 in [0, 1]."""
        raise NotImplementedError


    def predict(self, images: Sequence[str | Path | Image.Image]) -> list[Prediction]:
        """Predict file paths and/or PIL images; unreadable files come back with ``error`` set."""
        names = [f"<image {i}>" if isinstance(im, Image.Image) else str(im) for i, im in enumerate(images)]
        chunks = [list(range(i, min(i + self.batch_size, len(images)))) for i in range(0, len(images), self.batch_size)]
        out: list[Prediction] = []
        with ThreadPoolExecutor(1) as pool:
            decode = lambda idx: [load_input(images[i], self.contract) for i in idx]  # noqa: E731
            pending = pool.submit(decode, chunks[0]) if chunks else None
            for k, idx in enumerate(chunks):
                decoded = pending.result()
                if k + 1 < len(chunks):
                    pending = pool.submit(decode, chunks[k + 1])
                ok = [j for j, (x, _) in enumerate(decoded) if x is not None]
                probs = self.run(np.stack([decoded[j][0] for j in ok])) if ok else np.zeros((0, len(self.classes)))
                by_pos = dict(zip(ok, probs))
                for j, i in enumerate(idx):
                    if j in by_pos:
                        p = by_pos[j]
                        out.append(Prediction(names[i], label_for(p, self.classes, self.threshold, self.positive_class),
                                              {c: float(v) for c, v in zip(self.classes, p)}))
                    else:
                        out.append(Prediction(names[i], None, {}, decoded[j][1]))
        return out

    predict_paths = predict


class OnnxPredictor(ExportedPredictor):
    """An ONNX export run by onnxruntime on the CPU (or CUDA when onnxruntime-gpu is installed)."""

    def __init__(self, model_path: str | Path, batch_size: int = 32, threads: int | None = None):
        super().__init__(model_path, batch_size)
        import onnxruntime as ort
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for unreadable models
            raise ContractError(f"{self.path}: not a readable ONNX model ({type(e).__name__}); export it again") from None
        inputs, outputs = self.session.get_inputs(), {o.name: o for o in self.session.get_outputs()}
        want = _expected_input(self.contract)
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != want or "probs" not in outputs:
            raise ContractError(f"{self.path}: the model takes {[i.shape for i in inputs]} and gives "
                                f"{sorted(outputs)}, its contract says [batch, {', '.join(map(str, want))}] -> probs; "
                                "export it again")
        n = outputs["probs"].shape[-1]
        if isinstance(n, int) and n != len(self.classes):
            raise ContractError(f"{self.path}: the model scores {n} classes, its contract names {len(self.classes)}; "
                                "export it again")
        self.input_name = inputs[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(["probs"], {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]


class TorchScriptPredictor(ExportedPredictor):
    """A TorchScript export loaded with ``torch.jit.load`` (no transferlab model code needed)."""

    def __init__(self, model_path: str | Path, batch_size: int = 32):
        super().__init__(model_path, batch_size)
        import warnings

        import torch
        self._torch = torch
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecated in torch 2.14, still supported
            try:
                # torch.jit.load has no safe mode: only load TorchScript files you trust (the sha256 in
                # the contract proves the file is the exported one, not that the exporter was honest)
                self.module = torch.jit.load(str(self.path), map_location="cpu").eval()
            except Exception as e:
                raise ContractError(f"{self.path}: not a readable TorchScript model ({type(e).__name__}); "
                                    "export it again") from None
        probe = np.zeros([1, *_expected_input(self.contract)], np.float32)
        try:
            out = self.run(probe)
        except Exception as e:
            raise ContractError(f"{self.path}: the model does not take the contract's input "
                                f"[batch, {', '.join(map(str, _expected_input(self.contract)))}] ({type(e).__name__}); "
                                "export it again") from None
        if out.shape != (1, len(self.classes)):
            raise ContractError(f"{self.path}: the model scores {out.shape[-1]} classes, its contract names "
                                f"{len(self.classes)}; export it again")

    def run(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.module(self._torch.from_numpy(np.ascontiguousarray(x)))[0].numpy()


def load_exported(model_path: str | Path, batch_size: int = 32) -> ExportedPredictor:
    """The right backend for an exported file, chosen by its contract's ``format``."""
    fmt = read_contract(model_path)["format"]  # validated: onnx or torchscript
    return (OnnxPredictor if fmt == "onnx" else TorchScriptPredictor)(model_path, batch_size)
