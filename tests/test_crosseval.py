"""transferlab crosseval: one run per data set, every run scored on every data set's test split."""

import json

import pytest

from conftest import make_folder
from transferlab.cli import main
from transferlab.config import ConfigError
from transferlab.lab.crosseval import crosseval


def test_matrix_of_every_run_on_every_test_split(tmp_path, fast_overrides):
    a = make_folder(tmp_path / "a", n=10)
    b = make_folder(tmp_path / "b", n=10, size=48)
    out = tmp_path / "xe"
    result = crosseval([a, b], out, overrides=fast_overrides)
    cells = {(c["train"], c["test"]): c for c in result["cells"]}
    assert set(cells) == {("a", "a"), ("a", "b"), ("b", "a"), ("b", "b")}
    # each cell is the test split of the column's data set
    for name in ("a", "b"):
        rows = (out / name / "split.csv").read_text().splitlines()
        n_test = sum(r.endswith(",test") for r in rows)
        assert n_test > 0 and cells[("a", name)]["n"] == cells[("b", name)]["n"] == n_test
    ev = json.loads((out / "a" / "run" / "eval_b" / "eval.json").read_text())
    assert ev["split"] == "test" and ev["data"].endswith("b/split.csv")
    assert (out / "report.html").stat().st_size > 5000 and (out / "matrix_roc_auc.png").is_file()
    md = (out / "report.md").read_text()
    assert "| a |" in md
    lo, hi = cells[("a", "b")]["roc_auc_ci95"]  # the interval from the cell's evaluation, shown with it
    assert lo <= cells[("a", "b")]["roc_auc"] <= hi and f"{cells[('a', 'b')]['roc_auc']:.4f} ({lo:.2f}-{hi:.2f})" in md
    mtime = (out / "a" / "run" / "best.pt").stat().st_mtime
    crosseval([a, b], out, overrides=fast_overrides)  # a rerun reuses every finished run
    assert (out / "a" / "run" / "best.pt").stat().st_mtime == mtime


def test_crosseval_refuses_one_data_set_and_different_classes(tmp_path, fast_overrides, capsys):
    a = make_folder(tmp_path / "a", n=6)
    with pytest.raises(ConfigError, match="two or more"):
        crosseval([a], tmp_path / "x")
    c = make_folder(tmp_path / "c", classes=("cats", "dogs"), n=6)
    assert (
        main(
            [
                "crosseval",
                str(a),
                str(c),
                "--out",
                str(tmp_path / "y"),
                "--model",
                "scratch_cnn",
                "--mode",
                "scratch",
                "--epochs",
                "1",
                "--image-size",
                "32",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "same class folder names" in capsys.readouterr().err


def test_crosseval_refuses_a_data_set_without_test_images_of_every_class(tmp_path, fast_overrides):
    from transferlab.data.index import DataError
    from transferlab.data.split import SplitSpec

    a, b = make_folder(tmp_path / "a", n=6), make_folder(tmp_path / "b", n=6)
    with pytest.raises(DataError, match=r"'.*a' has no test images of \['fake', 'real'\]"):
        crosseval([a, b], tmp_path / "x", overrides=fast_overrides, split=SplitSpec(train_per_class=100))
    assert not (tmp_path / "x" / "a" / "run").exists()  # refused before any training
