import json

import pytest

from transferlab.config import load_config
from transferlab.data import DataError
from transferlab.evaluation import evaluate_run, select_eval_split
from transferlab.training import train

from conftest import make_folder


@pytest.fixture
def trained_run(presplit_folder, tmp_path_factory, fast_overrides):
    out = tmp_path_factory.mktemp("eval") / "run"
    train(load_config(None, {**fast_overrides, "data": str(presplit_folder), "out": str(out), "epochs": 3}))
    return out


def test_evaluate_own_test_split_writes_report(trained_run):
    r = evaluate_run(trained_run)
    assert r["split"] == "test" and r["n"] == 16
    for f in ("eval.json", "report.md", "roc.png", "confusion_matrix_eval.png", "most_wrong.png"):
        assert (trained_run / f).exists(), f
    b = r["binary"]
    assert {"roc_auc", "average_precision", "eer", "threshold", "accuracy_at_threshold"} <= set(b)
    assert r["positive_class"] == "fake" and "validation" in r["threshold_source"]
    assert sum(map(sum, r["confusion_matrix"])) == 16
    assert json.loads((trained_run / "eval.json").read_text())["accuracy"] == r["accuracy"]
    assert "ROC-AUC" in (trained_run / "report.md").read_text()


def test_evaluate_other_data_maps_classes_by_name(trained_run, tmp_path):
    other = make_folder(tmp_path / "other", classes=("real", "fake"), n=5)  # same names, other order on disk
    r = evaluate_run(trained_run, other)
    assert r["split"] == "all" and r["n"] == 10
    assert (trained_run / "eval_other" / "eval.json").exists()


def test_evaluate_other_data_with_unknown_class_fails(trained_run, tmp_path):
    other = make_folder(tmp_path / "o2", classes=("cats", "dogs"), n=2)
    with pytest.raises(DataError, match="not among the model's classes"):
        evaluate_run(trained_run, other)


def test_select_eval_split_prefers_test():
    from transferlab.data import DataIndex, Sample
    idx = DataIndex("x", ["b", "a"], {"train": [Sample("t", 0)], "val": [Sample("v", 1)]})
    name, samples = select_eval_split(idx, ["a", "b"], own=True)
    assert name == "val" and samples[0].label == 0  # relabelled to the model's class order
