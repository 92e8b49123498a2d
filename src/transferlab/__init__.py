"""transferlab: transfer learning for small labelled image folders.

Public API: ``train``, ``evaluate_run``, ``Predictor``, ``split_folder``, ``create_model``,
``load_index``, ``TrainConfig``, ``export_run``, ``OnnxPredictor`` (and ``transferlab.compare.compare``).

Names are imported on first use, so ``transferlab.onnx_backend`` (prediction from an ONNX
export) works on a machine without torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "train": "training", "evaluate_run": "evaluation", "Predictor": "inference", "split_folder": "split",
    "SplitSpec": "split", "create_model": "backbones", "backbone_names": ("backbones", "names"),
    "load_index": "data", "TrainConfig": "config", "load_config": "config",
    "export_run": "export", "OnnxPredictor": "onnx_backend",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'transferlab' has no attribute '{name}'")
    module, attr = _API[name] if isinstance(_API[name], tuple) else (_API[name], name)
    return getattr(importlib.import_module(f".{module}", __name__), attr)
