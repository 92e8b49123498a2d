"""TensorBoard and MLflow: off unless asked for (not even imported), and what they log reads back
equal to the run folder's own metrics.csv. No network, no server: event files and a local store."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from conftest import make_folder


def _train(tmp_path, fast_overrides, **extra):
    from transferlab.config import load_config
    from transferlab.training.trainer import train

    data = make_folder(tmp_path / "data", n=8)
    cfg = load_config(
        None, {**fast_overrides, "epochs": 3, "data": str(data), "out": str(tmp_path / "runs" / "r"), **extra}
    )
    return train(cfg)


def _metrics(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_run_without_the_flags_imports_neither_tracker(tmp_path):
    data = make_folder(tmp_path / "data", n=6)
    code = (
        "import sys; from transferlab.cli import main; "
        f"rc = main(['train', {str(data)!r}, '--out', {str(tmp_path / 'r')!r}, '--model', 'scratch_cnn', "
        "'--mode', 'scratch', '--image-size', '32', '--epochs', '1', '--num-workers', '0', '--no-progress']); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('mlflow', 'tensorboard', 'tensorboardX') "
        "or m.startswith('torch.utils.tensorboard')]; print('IMPORTED', bad); sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "IMPORTED []" in out.stdout
    assert not (tmp_path / "r" / "tensorboard").exists() and not (tmp_path / "mlruns").exists()


def test_tensorboard_event_files_hold_the_metrics_pr_curve_and_figures(tmp_path, fast_overrides):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _train(tmp_path, fast_overrides, tensorboard=True)
    acc = EventAccumulator(str(run.run_dir / "tensorboard"), size_guidance={"images": 0, "tensors": 0}).Reload()
    rows = _metrics(run.run_dir)
    for key in ("train_loss", "val_acc", "val_loss", "lr"):
        events = acc.Scalars(key)
        assert [e.step for e in events] == [int(r["epoch"]) for r in rows]
        assert [e.value for e in events] == pytest.approx([float(r[key]) for r in rows], rel=1e-6)
    assert {"val/val_predictions", "val/confusion_matrix"} <= set(acc.Tags()["images"])
    assert "val/pr_curve" in acc.Tags()["tensors"] and acc.Tensors("val/pr_curve")  # the PR curve plugin


def test_mlflow_run_holds_the_config_metrics_artifacts_and_a_registered_model(tmp_path, fast_overrides):
    import mlflow

    from transferlab.evaluation.scoring import evaluate_run

    run = _train(tmp_path, fast_overrides, mlflow="auto")
    store = tmp_path / "runs" / "mlruns"  # beside the run folder
    assert store.is_dir()
    state = json.loads((run.run_dir / "tracking.json").read_text())
    mlflow.set_tracking_uri(store.as_uri())
    client = mlflow.tracking.MlflowClient()
    got = client.get_run(state["mlflow_run_id"])
    assert got.data.params["model"] == "scratch_cnn" and got.data.params["epochs"] == "3"
    rows = _metrics(run.run_dir)
    history = client.get_metric_history(got.info.run_id, "val_acc")
    assert [(m.step, m.value) for m in history] == [(int(r["epoch"]), pytest.approx(float(r["val_acc"]))) for r in rows]
    files = {f.path for f in client.list_artifacts(got.info.run_id, "run")}
    assert {"run/best.pt", "run/report.html", "run/summary.json", "run/model_contract.json"} <= files
    version = client.get_model_version("transferlab", state["mlflow_model_version"])
    assert json.loads(version.tags["classes"]) == ["fake", "real"]
    assert json.loads(version.tags["preprocess"])["input_size"] == 32

    report = evaluate_run(run.run_dir, explain=0)  # the evaluation joins the same MLflow run
    files = {f.path for f in client.list_artifacts(got.info.run_id, "run")}
    assert "run/eval.json" in files
    logged = client.get_run(got.info.run_id).data.metrics
    assert logged[f"eval_{report['split']}_accuracy"] == pytest.approx(report["accuracy"])


@pytest.mark.parametrize(
    ("argv", "expected"), [([], None), (["--mlflow"], "auto"), (["--mlflow", "file:/x"], "file:/x")]
)
def test_mlflow_flag_stands_alone_or_takes_a_uri(argv, expected):
    from transferlab.cli import build_parser

    a = build_parser().parse_args(["train", "data", *argv])
    assert a.mlflow == expected
