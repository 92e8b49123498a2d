"""``transferlab export RUN --format onnx|torchscript [--int8]``: the model, its preprocessing
contract beside it, and a parity check against eager PyTorch on real validation images.

The exported graph takes float32 RGB in [0, 1] ``(N, 3, S, S)`` and returns ``probs`` (softmax of
the logits divided by the calibration temperature) and ``logits``: normalisation and temperature
travel inside the model, the resize/crop rule travels in the contract
(:func:`transferlab.predict.contract.preprocess`), so nothing is lost on the way (the failure behind
Ultralytics #5016 and timm #2463).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..data.index import read_manifest
from ..data.preprocess import Preprocess
from ..files import check_writable, write_text
from ..models.checkpoint import load_checkpoint
from ..models.fold import fold_batchnorm
from ..predict.contract import CONTRACT_VERSION, contract_checksum, contract_path, file_sha256, load_input
from ..predict.predictor import Predictor
from ..predict.runtimes import OnnxPredictor, TorchScriptPredictor

__all__ = ["FORMATS", "ExportError", "Deployable", "export_model", "export_run", "parity"]

FORMATS = ("onnx", "torchscript")
_FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}


class ExportError(RuntimeError):
    """An export that failed or disagrees with PyTorch; the message has the numbers."""


class Deployable(nn.Module):
    """Normalise, run the model, divide by the temperature: ``(probs, logits)``."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float], temperature: float = 1.0):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model((x - self.mean) / self.std).float() / self.temperature
        return logits.softmax(1), logits


def export_model(module: nn.Module, fmt: str, path: Path, size: int, views: int = 1) -> Path:
    """Write ``module`` (eval mode, CPU, float32) as ONNX (opset 18, dynamic batch) or TorchScript.
    ``views`` > 1: the input is ``(N, views, 3, size, size)`` crop views. Batch norms are folded
    into their convolutions first (a checked copy): the same numbers, and the ONNX export takes
    0.6x the time (lite0: 11.6 s -> 6.9 s) since the exporter traces and decomposes every op."""
    module = fold_batchnorm(module.eval().cpu().float(), size)
    example = torch.rand(2, 3, size, size) if views == 1 else torch.rand(2, views, 3, size, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "onnx":
        _export_onnx(module, example, tmp)
    elif fmt == "torchscript":
        import warnings

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 marks TorchScript deprecated; it still works
            torch.jit.save(torch.jit.trace(module, example, check_trace=False), str(tmp))
    else:
        raise ExportError(f"unknown format '{fmt}' ({', '.join(FORMATS)})")
    os.replace(tmp, path)
    return path


def _export_onnx(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    """ONNX (opset 18, dynamic batch) by torch's dynamo exporter; a model it cannot take goes
    through the older TorchScript-based exporter. The dynamo exporter is slow (lite0: 8.5 s on one
    thread, 12.4 s with its in-place activations left in place; the old one takes 1 s) but its
    graph is worth it: 161 nodes against 827 for lite0 with stage features, 15-30% faster in
    onnxruntime, and int8 quantisation keeps more predictions (measured: BENCHMARKS.md, "Exports")."""
    import io
    import warnings

    names = {"input_names": ["image"], "output_names": ["probs", "logits"], "opset_version": 18}
    try:
        with contextlib.redirect_stdout(io.StringIO()), _out_of_place(module):  # the exporter narrates every step
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=True,
                verbose=False,
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                external_data=False,
                **names,
            )
        return
    except Exception:  # an operator or construct torch.export cannot trace: the old exporter
        Path(path).unlink(missing_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and tracer notes
        batch = {0: "batch"}
        axes = {"image": batch, "probs": batch, "logits": batch}
        torch.onnx.export(module, (example,), str(path), dynamo=False, dynamic_axes=axes, **names)


@contextlib.contextmanager
def _out_of_place(module: nn.Module):
    """Activations with ``inplace=True`` computed out of place for the duration (restored after).
    Same numbers; torch.export decomposes every in-place op into a functional one, which took a
    third of lite0's export time."""
    switched = [m for m in module.modules() if getattr(m, "inplace", None) is True]
    for m in switched:
        m.inplace = False
    try:
        yield
    finally:
        for m in switched:
            m.inplace = True


def _contract(fmt: str, path: Path, ckpt: dict, temperature: float, extra: dict) -> dict:
    pre = Preprocess.from_dict(ckpt["preprocess"])
    views = [pre.crop_views] if pre.crop_views > 1 else []
    crop = (
        f"centre crop {pre.input_size} x {pre.input_size} (zero-pad if smaller)"
        if pre.crop_views == 1
        else f"{pre.crop_views} crops of {pre.input_size} px on an evenly spaced square grid, corner to corner "
        "(zero-pad if smaller)"
    )
    return {
        "contract_version": CONTRACT_VERSION,
        "format": fmt,
        "file": path.name,
        "sha256": file_sha256(path),
        "backbone": ckpt["backbone"],
        "classes": list(ckpt["classes"]),
        "threshold": ckpt.get("threshold"),
        "positive_class": ckpt.get("positive_class"),
        "temperature": temperature,
        "preprocess": pre.to_dict(),
        "input": {
            "name": "image",
            "shape": ["batch", *views, 3, pre.input_size, pre.input_size],
            "dtype": "float32",
            "values": "RGB scaled to [0, 1]; mean/std normalisation is inside the model",
        },
        "outputs": {"probs": "softmax(logits), the class probabilities", "logits": "logits / temperature"},
        "steps": [
            "decode, apply EXIF orientation, convert to RGB",
            f"shrink the short side to at most {pre.decode_size} (antialiased bilinear)"
            if pre.decode_size
            else "no shrinking",
            f"resize the short side to {pre.resize_size} ({pre.interpolation}, antialiased)"
            if not pre.native
            else "no resizing (native resolution)",
            crop,
            "divide by 255, channels first",
        ],
        "transferlab": __version__,
        **extra,
    }


def _write_contract(model_path: Path, contract: dict) -> None:
    """Write ``<model file>.json`` with the checksum that lets a reader see any later edit."""
    contract = {k: v for k, v in contract.items() if k != "checksum"}
    write_text(contract_path(model_path), json.dumps({**contract, "checksum": contract_checksum(contract)}, indent=2))


def _validation_images(run_dir: Path, limit: int | None) -> list:
    index = read_manifest(run_dir / "split.csv", verify=False)
    samples = index.splits.get("val") or index.splits.get("test") or index.all_samples()
    return samples[:limit] if limit else samples


def _load_inputs(samples, contract: dict, what: str = "validation images") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The readable ``samples`` as a batch of model inputs, with their labels and paths. Only the
    contract's ``preprocess`` is read. None readable is an :class:`ExportError` naming ``what``."""
    loaded = [(s, *load_input(s.path, contract)) for s in samples]
    kept = [(s, x) for s, x, _ in loaded if x is not None]
    if not kept:
        first, _, why = loaded[0] if loaded else (None, None, None)
        raise ExportError(
            f"none of the run's {len(samples)} {what} could be read"
            + (f" (e.g. {first.path}: {why})" if first else "")
            + "; the export's checks need them: put the data back where the run's split.csv lists it"
        )
    return np.stack([x for _, x in kept]), np.asarray([s.label for s, _ in kept]), [s.path for s, _ in kept]


def _batched(fn, x: np.ndarray, bs: int = 32) -> np.ndarray:
    return np.concatenate([fn(x[i : i + bs]) for i in range(0, len(x), bs)])


def parity(reference: np.ndarray, exported: np.ndarray) -> dict:
    """Max absolute probability difference and the share of identical argmax predictions."""
    return {
        "max_abs_diff": float(np.abs(reference - exported).max()),
        "identical_predictions": float((reference.argmax(1) == exported.argmax(1)).mean()),
        "n": len(reference),
    }


def _accuracy(probs: np.ndarray, labels: np.ndarray, contract: dict) -> dict:
    from ..predict.decision import label_for

    classes = contract["classes"]
    at = [
        classes.index(label_for(p, classes, contract.get("threshold"), contract.get("positive_class"))) for p in probs
    ]
    return {
        "accuracy": float((probs.argmax(1) == labels).mean()),
        "accuracy_at_threshold": float((np.asarray(at) == labels).mean()),
    }


def _throughput(fn, x: np.ndarray, bs: int = 32, repeats: int = 2) -> float:
    fn(x[:bs])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        _batched(fn, x, bs)
        best = min(best, time.perf_counter() - t0)
    return len(x) / best


def export_run(
    run_dir: str | Path,
    fmt: str = "onnx",
    out: str | Path | None = None,
    int8: bool = False,
    tolerance: float = 1e-4,
    images: int | None = 200,
    calibration_images: int = 64,
    checkpoint: str = "best.pt",
    pipeline_tolerance: float = 1e-2,
) -> dict:
    """Export ``run_dir/checkpoint`` and check it against eager PyTorch on the run's validation
    images (up to ``images``). Raises :class:`ExportError` when a float export differs by more
    than ``tolerance`` in probability or changes any prediction on identical inputs, or when the
    deployment path from the image files (the contract's PIL preprocessing, then the export)
    differs from PyTorch's own pipeline by more than ``pipeline_tolerance``. ``int8`` (ONNX): also a
    statically quantised model calibrated on ``calibration_images`` training images, with its
    accuracy, size and speed next to the float export's. Returns (and writes) ``export.json``."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format '{fmt}' ({', '.join(FORMATS)})")
    if int8 and fmt != "onnx":
        raise ExportError(
            "--int8 is available for --format onnx (onnxruntime static quantisation); TorchScript "
            "int8 would quantise only the linear head of a CNN"
        )
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "export"
    check_writable(out)  # before the minutes of exporting
    ckpt = load_checkpoint(run_dir / checkpoint)
    pred = Predictor.from_checkpoint(ckpt, device="cpu")  # the contract needs more of it
    pre = Preprocess.from_dict(ckpt["preprocess"])
    module = Deployable(
        pred.model.to(memory_format=torch.contiguous_format),
        pre.mean,
        pre.std,
        pred.temperature,
    ).eval()
    # the check's images first: a run whose data moved fails before a model file without a contract is left
    x, labels, paths = _load_inputs(_validation_images(run_dir, images), {"preprocess": pre.to_dict()})
    t0 = time.perf_counter()
    path = export_model(module, fmt, out / _FILES[fmt], pre.input_size, pre.crop_views)
    seconds = time.perf_counter() - t0
    contract = _contract(fmt, path, ckpt, pred.temperature, {})

    def eager(b: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(b))[0].numpy()

    ref = _batched(eager, x)
    runner = OnnxPredictor if fmt == "onnx" else TorchScriptPredictor
    _write_contract(path, contract)
    backend = runner(path)
    got = _batched(backend.run, x)
    # end to end from the image files: PyTorch's own pipeline vs the contract's PIL/NumPy one
    classes = contract["classes"]
    as_array = lambda preds: np.asarray([[p.probs[c] for c in classes] for p in preds])
    files = parity(as_array(pred.predict_paths(paths)), as_array(backend.predict(paths)))
    check = parity(ref, got)
    report = {
        "run": str(run_dir.resolve()),
        "format": fmt,
        "file": str(path),
        "contract": str(contract_path(path)),
        "export_seconds": seconds,
        "size_mb": path.stat().st_size / 2**20,
        "tolerance": tolerance,
        "parity": check,
        "parity_from_files": files,
        "eager": _accuracy(ref, labels, contract),
        "exported": _accuracy(got, labels, contract),
    }
    # the model must match to `tolerance`; from the files, PIL's resize may differ from torchvision's by
    # one grey level on a few pixels, so a looser bound there still catches a lost preprocessing step
    if (
        check["max_abs_diff"] > tolerance
        or check["identical_predictions"] < 1.0
        or files["max_abs_diff"] > pipeline_tolerance
    ):
        failed = path.with_name(path.name + ".failed")
        os.replace(path, failed)
        contract_path(path).unlink()
        raise ExportError(
            f"{fmt} export disagrees with PyTorch on {check['n']} validation images: max probability "
            f"difference {check['max_abs_diff']:.2e} on the same inputs (tolerance {tolerance:g}), "
            f"{files['max_abs_diff']:.2e} from the image files (tolerance {pipeline_tolerance:g}); "
            f"identical predictions {check['identical_predictions']:.1%}; the file is kept as "
            f"{failed} for inspection"
        )
    if int8:
        report["int8"] = _int8(backend, run_dir, contract, x, labels, got, calibration_images)
    write_text((out / f"export_{fmt}.json"), json.dumps(report, indent=2))
    return report


def _int8(
    fp: OnnxPredictor, run_dir: Path, contract: dict, x: np.ndarray, labels: np.ndarray, fp32: np.ndarray, n_calib: int
) -> dict:
    """Static QDQ quantisation (per-channel int8 weights, uint8 activations) calibrated on
    training images; accuracy, agreement, size and speed against the float ONNX model."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path = fp.path
    index = read_manifest(run_dir / "split.csv", verify=False)
    rng = np.random.default_rng(0)
    train = index.splits.get("train") or index.all_samples()
    picks = [train[i] for i in rng.choice(len(train), size=min(n_calib, len(train)), replace=False)]
    calib, _, _ = _load_inputs(picks, contract, "training images for int8 calibration")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"image": calib[i : i + 8]} for i in range(0, len(calib), 8)])

        def get_next(self):
            return next(self.batches, None)

    prepped = path.with_name(path.stem + ".prep.onnx")
    q = path.with_name(path.stem + ".int8.onnx")
    t0 = time.perf_counter()
    quant_pre_process(str(path), str(prepped), skip_symbolic_shape=True)
    quantize_static(
        str(prepped),
        str(q),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    prepped.unlink()
    seconds = time.perf_counter() - t0
    _write_contract(
        q,
        {
            **contract,
            "file": q.name,
            "sha256": file_sha256(q),
            "quantisation": f"static int8 (QDQ), calibrated on {len(calib)} training images",
        },
    )
    qi = OnnxPredictor(q)
    got = _batched(qi.run, x)
    return {
        "file": str(q),
        "seconds": seconds,
        "calibration_images": len(calib),
        "size_mb": q.stat().st_size / 2**20,
        "size_ratio": q.stat().st_size / path.stat().st_size,
        "parity_vs_float": parity(fp32, got),
        "float": _accuracy(fp32, labels, contract),
        "int8": _accuracy(got, labels, contract),
        "float_images_per_s": _throughput(fp.run, x),
        "int8_images_per_s": _throughput(qi.run, x),
    }
