"""RunFolder: the one reader and writer of a run folder's files."""

import os

import pytest

from transferlab.config import TrainConfig
from transferlab.rundir import RunFolder, RunFolderError


def _finished_run(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.write_config(TrainConfig(data="d", out=str(run.path), epochs=3))
    run.write_json(run.summary, {"backbone": "b"})
    return run


def _age(path, seconds):
    t = path.stat().st_mtime - seconds
    os.utime(path, (t, t))


def test_settings_and_config_come_from_the_same_file(tmp_path):
    run = _finished_run(tmp_path)
    assert run.read_settings()["epochs"] == 3 and run.read_config().epochs == 3
    assert run.read_summary() == {"backbone": "b"} and run.read_eval() is None
    empty = RunFolder(tmp_path / "none")
    assert empty.read_settings() == {} and empty.read_summary() == {}
    with pytest.raises(RunFolderError, match="not a run folder"):
        empty.read_config()


def test_an_evaluation_counts_only_when_written_after_the_training(tmp_path):
    run = _finished_run(tmp_path)
    assert not run.evaluated()  # none yet
    run.write_json(run.eval, {"accuracy": 1.0})
    assert run.evaluated() and run.read_eval() == {"accuracy": 1.0}
    _age(run.eval, 60)  # the run was trained again after this evaluation
    assert not run.evaluated()
    other = tmp_path / "eval_other"
    other.mkdir()
    assert not run.evaluated(other)
    RunFolder(other).write_json(RunFolder(other).eval, {"accuracy": 0.5})
    assert run.evaluated(other)
    _age(other / "eval.json", 60)
    assert not run.evaluated(other)
