"""Prediction from an exported model (``transferlab export``): ONNX through onnxruntime, with no
torch at all, or TorchScript through ``torch.jit``.

Every export sits next to its preprocessing contract, ``<model file>.json``: input size,
resize/crop rule, interpolation, class names, threshold, temperature. Normalisation and the
temperature are inside the exported graph, so the contract's :func:`preprocess` (PIL and NumPy,
the same decode/shrink/resize/crop steps as the PyTorch pipeline) is all a deployment needs.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .images import ImageReadError, crop_grid, load_rgb, resize_short_side, shrink, to_rgb
from .prediction import Prediction, decision, label_for

__all__ = ["CONTRACT_VERSION", "contract_path", "read_contract", "preprocess", "load_input", "ExportedPredictor",
           "OnnxPredictor", "TorchScriptPredictor", "load_exported", "is_exported_model"]

CONTRACT_VERSION = 1


def contract_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.name + ".json")


def is_exported_model(path: str | Path) -> bool:
    p = Path(path)
    return p.is_file() and contract_path(p).is_file()


def read_contract(model_path: str | Path) -> dict:
    path = contract_path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"{model_path}: no preprocessing contract {path.name} beside it; export the model "
                                "with `transferlab export RUN`, which writes both")
    c = json.loads(path.read_text())
    if c.get("contract_version") != CONTRACT_VERSION:
        raise ValueError(f"{path}: contract version {c.get('contract_version')}, this transferlab reads "
                         f"{CONTRACT_VERSION}; export the model again")
    return c


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
        self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

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
            self.module = torch.jit.load(str(self.path), map_location="cpu").eval()

    def run(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.module(self._torch.from_numpy(np.ascontiguousarray(x)))[0].numpy()


def load_exported(model_path: str | Path, batch_size: int = 32) -> ExportedPredictor:
    """The right backend for an exported file, chosen by its contract's ``format``."""
    fmt = read_contract(model_path)["format"]
    if fmt == "onnx":
        return OnnxPredictor(model_path, batch_size)
    if fmt == "torchscript":
        return TorchScriptPredictor(model_path, batch_size)
    raise ValueError(f"{model_path}: unknown export format '{fmt}' in its contract")
