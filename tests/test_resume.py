"""kill -9 at any moment, then ``--resume``: the finished run equals an uninterrupted one.

Each trial starts ``transferlab train`` in a subprocess, kills it with SIGKILL at a chosen point
(before anything is written, in the middle of an epoch, right after an epoch's checkpoint, while
the run finishes), resumes it (the same command when nothing was written yet) and compares
``metrics.csv`` (without the timings), the best epoch, the decision threshold and every weight
with the uninterrupted run's.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import cli_flags, make_folder

ARGS = cli_flags(epochs=4, augment="light")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _argv(data: Path, out: Path) -> list[str]:
    return ["train", str(data), "--out", str(out), *ARGS]


def _train(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "transferlab", *_argv(data, out)]


def _finish(cmd: list[str]) -> None:
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def _kill_after(cmd: list[str], marker: str | None, delay: float) -> None:
    """Start ``cmd``; once a stdout line contains ``marker`` (or at once), wait ``delay`` s and SIGKILL it."""
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        if marker is not None:
            seen = None
            for line in p.stdout:
                if marker in line:
                    seen = line
                    break
            assert seen is not None, f"the run never printed {marker!r}: the kill point was not reached"
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait(60)
        p.stdout.close()


def _resume(data: Path, out: Path) -> list[str]:
    """What a user runs after a crash: --resume, or the same command when nothing was written."""
    if (out / "config.yaml").is_file():
        return [sys.executable, "-m", "transferlab", "train", "--resume", str(out)]
    return _train(data, out)


def _result(run: Path) -> dict:
    with open(run / "metrics.csv", newline="") as f:
        rows = [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]
    best = torch.load(run / "best.pt", weights_only=True)
    last = torch.load(run / "last.pt", weights_only=True)
    return {
        "rows": rows,
        "best_epoch": best["epoch"],
        "threshold": best["threshold"],
        "temperature": best["temperature"],
        "best": best["model"],
        "last": last["model"],
        "last_threshold": last["threshold"],
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, by the same command in this process (no torch import to pay for):
    ``train`` sets the same thread count a subprocess gets (``runtime.set_threads``)."""
    from transferlab.cli import main

    tmp = tmp_path_factory.mktemp("resume")
    data = make_folder(tmp / "data", n=16)
    assert main(_argv(data, tmp / "ref")) == 0
    return data, _result(tmp / "ref")


# (marker in the training log to wait for, then extra seconds): random points across the run's life
POINTS = [
    (None, 0.3),
    ("model:", 0.0),
    ("epoch   2/4", 0.0),
    ("epoch   3/4", 0.02),
    ("epoch   4/4", 0.0),
    ("decision:", 0.0),
]


@pytest.mark.parametrize("trial", range(3))
def test_killed_and_resumed_run_equals_the_uninterrupted_one(trial, reference, tmp_path):
    data, ref = reference
    rng = random.Random(trial)
    out = tmp_path / "run"
    kills = rng.sample(POINTS, 2 if trial == 2 else 1)  # the last trial is killed twice (the resume, too)
    marker, delay = kills[0]
    _kill_after(_train(data, out), marker, delay + rng.uniform(0, 0.05))
    for marker, delay in kills[1:]:
        _kill_after(_resume(data, out), marker, delay)
    _finish(_resume(data, out))
    got = _result(out)
    assert got["rows"] == ref["rows"] and len(got["rows"]) == 4  # no duplicated or missing epoch
    assert (got["best_epoch"], got["threshold"], got["temperature"]) == (
        ref["best_epoch"],
        ref["threshold"],
        ref["temperature"],
    )
    assert got["last_threshold"] == ref["threshold"]  # the decision is in both checkpoints
    for key in ("best", "last"):
        assert got[key].keys() == ref[key].keys()
        assert all(torch.equal(got[key][k], ref[key][k]) for k in ref[key]), key
    assert not list(out.glob(".*.tmp"))  # half-written files of the killed process are gone
