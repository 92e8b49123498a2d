"""The public API, name by name: every documented name resolves to what it says."""

import re
import subprocess
import sys

import pytest

import transferlab

EXPECTED = {  # name -> the kind of object it must be
    "TrainConfig": type, "load_config": "function", "MODES": dict, "load_index": "function",
    "split_folder": "function", "SplitSpec": type, "Preprocess": type, "RunFolder": type,
    "create_model": "function", "backbone_names": "function", "train": "function", "Predictor": type,
    "OnnxPredictor": type, "TorchScriptPredictor": type, "load_exported": "function", "evaluate_run": "function",
    "GradCAM": type, "export_run": "function", "create_app": "function", "compare": "function",
    "crosseval": "function", "augment_preview": "function", "Run": type, "Evaluation": type, "Comparison": type,
    "load_run": "function",
}  # fmt: skip


def test_all_lists_exactly_the_documented_names():
    assert set(transferlab.__all__) == {"__version__", *EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_public_name_resolves(name):
    obj = getattr(transferlab, name)
    kind = EXPECTED[name]
    if kind == "function":
        assert callable(obj) and not isinstance(obj, type)
    else:
        assert isinstance(obj, kind)
    assert obj.__doc__ or kind is dict  # documented


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Predicter'"):
        transferlab.Predicter  # noqa: B018


def test_importing_the_package_changes_no_global_state():
    """Importing (even the plotting and image modules) leaves matplotlib's backend, PIL's bomb limit
    and torch's thread count alone: only entry points set those (transferlab.runtime)."""
    code = (
        "import matplotlib, PIL.Image as I, torch; b = matplotlib.get_backend(); p = I.MAX_IMAGE_PIXELS; "
        "t = torch.get_num_threads(); import transferlab.reports.plots, transferlab.data.images, "
        "transferlab.predict.predictor, transferlab.training.trainer; "
        "from transferlab.predict.predictor import Predictor; "
        "assert (matplotlib.get_backend(), I.MAX_IMAGE_PIXELS, torch.get_num_threads()) == (b, p, t); print('ok')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"OMP_NUM_THREADS": "1",
                       "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_predictor_from_run_leaves_threads_alone(tiny_run):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        transferlab.Predictor.from_run(tiny_run)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_run_predict_takes_folders_and_globs_as_the_cli_does(tiny_run, tmp_path):
    from PIL import Image

    from conftest import make_folder

    data = make_folder(tmp_path / "data", n=3)
    run = transferlab.load_run(tiny_run)
    preds = run.predict([data / "fake", str(data / "real" / "*.png"), tmp_path / "missing.jpg"])
    assert [p.path for p in preds[:6]] == sorted(str(p) for p in (data / "fake").glob("*.png")) + sorted(
        str(p) for p in (data / "real").glob("*.png")
    )
    assert all(p.label in run.classes for p in preds[:6])
    assert (preds[6].path, preds[6].label, preds[6].error) == (
        str(tmp_path / "missing.jpg"), None, "no such file, folder or glob match"
    )  # fmt: skip
    (one,) = run.predict([Image.open(next((data / "fake").glob("*.png")))])  # images in memory too
    assert one.label == preds[0].label and one.probs == pytest.approx(preds[0].probs, abs=1e-3)
    with pytest.raises(ValueError, match="explain is a number of images"):
        run.evaluate(explain=-1)


def test_empty_paths_and_folders_that_hold_no_run_are_named(tiny_run, tmp_path, monkeypatch):
    from transferlab.config import ConfigError
    from transferlab.rundir import RunFolderError

    monkeypatch.chdir(tmp_path)  # "" must not mean this folder
    (tmp_path / "stray.png").write_bytes((tiny_run / "curves.png").read_bytes())
    run = transferlab.load_run(tiny_run)
    assert [(p.path, p.label, p.error) for p in run.predict("")] == [("", None, "an empty path (an unset variable?)")]
    for where, says in [
        (tmp_path, "train one with transferlab.train"),
        (tiny_run / "best.pt", re.escape(f"give the run folder, e.g. load_run('{tiny_run}')")),
        ("", "not a finished run folder"),
    ]:
        with pytest.raises(RunFolderError, match=says):
            transferlab.load_run(where)
    with pytest.raises(ConfigError, match="data is not set or an empty path"):
        transferlab.train("", out=str(tmp_path / "r"))
    with pytest.raises(ConfigError, match=r"out: an empty path \(an unset variable\?\)"):
        transferlab.train(tiny_run, out="")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stray.png"]  # nothing written


def test_default_run_folders_count_up_and_never_reuse_a_taken_name(tmp_path):
    from transferlab.rundir import next_run_dir

    assert next_run_dir(tmp_path / "runs" / "run") == tmp_path / "runs" / "run"
    (tmp_path / "runs" / "run").mkdir(parents=True)
    assert next_run_dir(tmp_path / "runs" / "run") == tmp_path / "runs" / "run2"
    (tmp_path / "runs" / "run2").mkdir()
    (tmp_path / "runs" / "run4").mkdir()
    assert next_run_dir(tmp_path / "runs" / "run") == tmp_path / "runs" / "run3"


def test_train_keywords_are_the_cli_flags_and_a_typo_names_the_closest(tmp_path):
    from transferlab.config import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        transferlab.train(tmp_path, epoch=3)
