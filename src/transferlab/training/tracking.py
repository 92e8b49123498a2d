"""Experiment tracking, off unless asked for: TensorBoard event files (``--tensorboard``) and
MLflow (``--mlflow [URI]``). ``metrics.csv`` stays the run folder's own record either way.

Neither ``tensorboard`` nor ``mlflow`` is imported unless its flag is on. The MLflow default is a
local file store ``mlruns/`` beside the run folder: no server, no account. A resumed run goes on
logging into the same MLflow run (its id is kept in ``RUN/tracking.json``); ``evaluate_run`` adds
``eval.json`` and the test figures to it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..config import TrainConfig, config_to_dict
from ..files import write_text

__all__ = ["Trackers", "open_trackers", "log_evaluation", "mlflow_uri"]

SCALARS = ("train_loss", "train_acc", "val_loss", "val_acc", "val_metric", "lr")
REGISTERED_MODEL = "transferlab"


class _TensorBoard:
    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def epoch(self, record: dict) -> None:
        for k in SCALARS:
            if record.get(k) is not None:
                self.writer.add_scalar(k, float(record[k]), int(record["epoch"]))
        self.writer.flush()

    def finish(self, run_dir: Path, summary: dict, val: dict) -> None:
        from PIL import Image

        cal = summary.get("calibration") or {}
        classes = summary["data"]["classes"]
        if len(classes) == 2 and len(val["labels"]):
            pos = classes.index(cal["positive_class"]) if cal.get("positive_class") in classes else 1
            self.writer.add_pr_curve("val/pr_curve", np.asarray(val["labels"]) == pos, val["probs"][:, pos], 0)
        for name in ("val_predictions", "confusion_matrix"):
            png = run_dir / f"{name}.png"
            if png.is_file():
                with Image.open(png) as im:
                    self.writer.add_image(f"val/{name}", np.asarray(im.convert("RGB")), 0, dataformats="HWC")
        self.writer.add_scalar("val/best_accuracy", float(summary["best_val_acc"]), summary["best_epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def mlflow_uri(setting: str, run_dir: Path) -> str:
    """``auto`` (or empty): a file store ``mlruns/`` beside the run folder; else the URI as given."""
    if setting in ("", "auto"):
        return (run_dir.resolve().parent / "mlruns").as_uri()
    return setting


def _mlflow(uri: str):
    # MLflow 3 keeps the file store in maintenance mode behind this switch; a local file store is
    # what needs no server and no database driver (sqlite needs SQLAlchemy, which we do not ask for)
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow


class _MLflow:
    def __init__(self, cfg: TrainConfig, run_dir: Path):
        self.run_dir = run_dir
        self.mlflow = _mlflow(mlflow_uri(cfg.mlflow or "", run_dir))
        self.client = self.mlflow.tracking.MlflowClient()
        state = _read_state(run_dir)
        if state.get("mlflow_run_id"):  # a resumed run logs on into its MLflow run
            self.run_id = state["mlflow_run_id"]
            return
        exp = self.client.get_experiment_by_name("transferlab")
        exp_id = exp.experiment_id if exp else self.client.create_experiment("transferlab")
        run = self.client.create_run(exp_id, run_name=run_dir.name, tags={"run_dir": str(run_dir.resolve())})
        self.run_id = run.info.run_id
        params = {k: json.dumps(v) if isinstance(v, (dict, list)) else str(v) for k, v in config_to_dict(cfg).items()}
        self.client.log_batch(self.run_id, params=[self.mlflow.entities.Param(k, v[:6000]) for k, v in params.items()])
        _write_state(run_dir, {**state, "mlflow_run_id": self.run_id, "mlflow_uri": self.mlflow.get_tracking_uri()})

    def epoch(self, record: dict) -> None:
        for k in SCALARS:
            if record.get(k) is not None:
                self.client.log_metric(self.run_id, k, float(record[k]), step=int(record["epoch"]))

    def finish(self, run_dir: Path, summary: dict, val: dict) -> None:
        for name in ("best.pt", "report.html", "summary.json", "config.yaml", "metrics.csv"):
            if (run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(run_dir / name), artifact_path="run")
        contract = {
            "classes": summary["data"]["classes"],
            "preprocess": summary["preprocess"],
            "threshold": (summary.get("calibration") or {}).get("threshold"),
            "positive_class": (summary.get("calibration") or {}).get("positive_class"),
            "temperature": (summary.get("calibration") or {}).get("temperature"),
            "backbone": summary["backbone"],
            "checkpoint": "run/best.pt",
        }
        write_text(run_dir / "model_contract.json", json.dumps(contract, indent=2))
        self.client.log_artifact(self.run_id, str(run_dir / "model_contract.json"), artifact_path="run")
        try:
            self.client.get_registered_model(REGISTERED_MODEL)
        except self.mlflow.exceptions.MlflowException:  # the first run registers the name
            self.client.create_registered_model(REGISTERED_MODEL)
        source = f"{self.client.get_run(self.run_id).info.artifact_uri}/run"
        tags = {k: json.dumps(v) for k, v in contract.items()}
        version = self.client.create_model_version(REGISTERED_MODEL, source, run_id=self.run_id, tags=tags)
        self.client.log_metric(self.run_id, "best_val_acc", float(summary["best_val_acc"]))
        self.client.set_terminated(self.run_id)
        state = _read_state(run_dir)
        _write_state(run_dir, {**state, "mlflow_model": REGISTERED_MODEL, "mlflow_model_version": version.version})

    def close(self) -> None:
        return None


def _read_state(run_dir: Path) -> dict:
    p = run_dir / "tracking.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def _write_state(run_dir: Path, state: dict) -> None:
    write_text(run_dir / "tracking.json", json.dumps(state, indent=2))


class Trackers:
    """The trackers a run asked for (none: every call does nothing)."""

    def __init__(self, items: list):
        self.items = items

    def epoch(self, record: dict) -> None:
        for t in self.items:
            t.epoch(record)

    def finish(self, run_dir: Path, summary: dict, val: dict) -> None:
        for t in self.items:
            t.finish(run_dir, summary, val)
            t.close()


def open_trackers(cfg: TrainConfig, run_dir: Path) -> Trackers:
    from ..config import ConfigError

    items: list = []
    for wanted, make, package in (
        (cfg.tensorboard, _TensorBoard, "tensorboard"),
        (cfg.mlflow is not None, _MLflow, "mlflow"),
    ):
        if not wanted:
            continue
        try:
            items.append(make(run_dir) if make is _TensorBoard else make(cfg, run_dir))
        except ImportError:
            raise ConfigError(
                f"--{package} needs the {package} package: pip install 'transferlab[track]' (or train without the flag)"
            ) from None
    return Trackers(items)


def log_evaluation(run_dir: Path, report: dict, eval_json: Path) -> None:
    """Add an evaluation to the run's MLflow run and TensorBoard log, where the run has them."""
    state = _read_state(run_dir)
    prefix = "eval_" + "".join(c if c.isalnum() else "_" for c in str(report.get("split", "test")))
    b = report.get("binary") or {}
    figures = {"accuracy": report["accuracy"], "balanced_accuracy": report["balanced_accuracy"], **b}
    figures = {k: float(v) for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if state.get("mlflow_run_id"):
        mlflow = _mlflow(state["mlflow_uri"])
        client = mlflow.tracking.MlflowClient()
        for k, v in figures.items():
            client.log_metric(state["mlflow_run_id"], f"{prefix}_{k}", v)
        client.log_artifact(state["mlflow_run_id"], str(eval_json), artifact_path="run")
    if (run_dir / "tensorboard").is_dir():
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=str(run_dir / "tensorboard")) as w:
            for k, v in figures.items():
                w.add_scalar(f"{prefix}/{k}", v, 0)
