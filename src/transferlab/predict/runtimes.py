"""Running an exported model (``transferlab export``): ONNX through onnxruntime, with no torch at
all, or TorchScript through ``torch.jit``.

Every export sits next to its preprocessing contract, ``<model file>.json``
(:mod:`transferlab.predict.contract`): input size, resize/crop rule, class names, threshold,
temperature. Normalisation and the temperature are inside the exported graph, so the contract's
preprocessing is all a deployment needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.preprocess import Preprocess
from .contract import ContractError, expected_input, load_input, read_contract
from .decision import Prediction, decision, label_for

__all__ = ["ExportedPredictor", "OnnxPredictor", "TorchScriptPredictor", "load_exported"]


class ExportedPredictor:
    """Shared logic of the exported backends: batching with the next batch decoded in a
    background thread, the saved decision rule, and the :class:`Prediction` output format."""

    def __init__(self, model_path: str | Path, batch_size: int = 32):
        self.path = Path(model_path)
        self.contract = read_contract(self.path)
        self.classes = list(self.contract["classes"])
        self.threshold = self.contract.get("threshold")
        self.positive_class = self.contract.get("positive_class")
        self.preprocess = Preprocess.from_dict(self.contract["preprocess"])
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
            decode = lambda idx: [load_input(images[i], self.contract) for i in idx]
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
                        out.append(
                            Prediction(
                                names[i],
                                label_for(p, self.classes, self.threshold, self.positive_class),
                                {c: float(v) for c, v in zip(self.classes, p)},
                            )
                        )
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
            raise ContractError(
                f"{self.path}: not a readable ONNX model ({type(e).__name__}); export it again"
            ) from None
        inputs, outputs = self.session.get_inputs(), {o.name: o for o in self.session.get_outputs()}
        want = expected_input(self.contract)
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != want or "probs" not in outputs:
            raise ContractError(
                f"{self.path}: the model takes {[i.shape for i in inputs]} and gives "
                f"{sorted(outputs)}, its contract says [batch, {', '.join(map(str, want))}] -> probs; "
                "export it again"
            )
        n = outputs["probs"].shape[-1]
        if isinstance(n, int) and n != len(self.classes):
            raise ContractError(
                f"{self.path}: the model scores {n} classes, its contract names {len(self.classes)}; export it again"
            )
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
                raise ContractError(
                    f"{self.path}: not a readable TorchScript model ({type(e).__name__}); export it again"
                ) from None
        probe = np.zeros([1, *expected_input(self.contract)], np.float32)
        try:
            out = self.run(probe)
        except Exception as e:
            raise ContractError(
                f"{self.path}: the model does not take the contract's input "
                f"[batch, {', '.join(map(str, expected_input(self.contract)))}] ({type(e).__name__}); "
                "export it again"
            ) from None
        if out.shape != (1, len(self.classes)):
            raise ContractError(
                f"{self.path}: the model scores {out.shape[-1]} classes, its contract names "
                f"{len(self.classes)}; export it again"
            )

    def run(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.module(self._torch.from_numpy(np.ascontiguousarray(x)))[0].numpy()


def load_exported(model_path: str | Path, batch_size: int = 32) -> ExportedPredictor:
    """The right backend for an exported file, chosen by its contract's ``format``."""
    fmt = read_contract(model_path)["format"]  # validated: onnx or torchscript
    return (OnnxPredictor if fmt == "onnx" else TorchScriptPredictor)(model_path, batch_size)
