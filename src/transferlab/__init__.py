"""transferlab: transfer learning for small labelled image folders.

The public API, one import away (``import transferlab``)::

    run = transferlab.train("data/", mode="features", epochs=8)   # a Run     (transferlab.api)
    run.evaluate()                               # an Evaluation    (eval.json as attributes)
    transferlab.Predictor.from_run(run.dir)      # PyTorch           (transferlab.predict.predictor)
    transferlab.evaluate_run(run_dir)            # eval.json as a dict (transferlab.evaluation.scoring)
    transferlab.OnnxPredictor(model.onnx)        # no torch needed   (transferlab.predict.runtimes)
    transferlab.export_run(run_dir, "onnx")      # model + contract  (transferlab.deploy.export)
    transferlab.compare(data, epochs=4)          # a Comparison: scratch/features/finetune grid (transferlab.api)
    transferlab.crosseval([a, b], out)           # cross-source matrix (transferlab.lab.crosseval)

Names are imported on first use, so ``transferlab.OnnxPredictor`` works on a machine without torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute)
_API = {
    "TrainConfig": ("config", "TrainConfig"),
    "load_config": ("config", "load_config"),
    "MODES": ("modes", "MODES"),
    "load_index": ("data.index", "load_index"),
    "split_folder": ("data.split", "split_folder"),
    "SplitSpec": ("data.split", "SplitSpec"),
    "Preprocess": ("data.preprocess", "Preprocess"),
    "RunFolder": ("rundir", "RunFolder"),
    "create_model": ("models.transfer", "create_model"),
    "backbone_names": ("models.registry", "names"),
    "train": ("api", "train"),
    "Run": ("api", "Run"),
    "Evaluation": ("api", "Evaluation"),
    "Comparison": ("api", "Comparison"),
    "load_run": ("api", "load_run"),
    "Predictor": ("predict.predictor", "Predictor"),
    "OnnxPredictor": ("predict.runtimes", "OnnxPredictor"),
    "TorchScriptPredictor": ("predict.runtimes", "TorchScriptPredictor"),
    "load_exported": ("predict.runtimes", "load_exported"),
    "evaluate_run": ("evaluation.scoring", "evaluate_run"),
    "GradCAM": ("evaluation.explain", "GradCAM"),
    "export_run": ("deploy.export", "export_run"),
    "create_app": ("deploy.serve", "create_app"),
    "compare": ("api", "compare"),
    "crosseval": ("lab.crosseval", "crosseval"),
    "augment_preview": ("lab.preview", "augment_preview"),
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'transferlab' has no attribute '{name}'")
    module, attr = _API[name]
    return getattr(importlib.import_module(f".{module}", __name__), attr)


def __dir__() -> list[str]:
    return sorted(__all__)
