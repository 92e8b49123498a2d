"""kill -9 at any moment, then ``--resume``: the finished run equals an uninterrupted one.

Each trial runs ``transferlab train`` in a process of its own, kills it with SIGKILL at a chosen
point (early in the run, in the middle of an epoch, right after an epoch's checkpoint, while the
run finishes), resumes it (the same command when nothing was written yet) and compares
``metrics.csv`` (without the timings), the best epoch, the decision threshold and every weight
with the uninterrupted run's. The processes are forked from a server that has imported the
library once (``multiprocessing``'s forkserver), so each starts in milliseconds instead of paying
seconds for importing torch; each is still a separate process that SIGKILL ends at once.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import cli_flags, make_folder

ARGS = cli_flags(epochs=4, augment="light")
SERVER = multiprocessing.get_context("forkserver")
SERVER.set_forkserver_preload(["transferlab.cli", "transferlab.training.trainer"])


def _argv(data: Path, out: Path) -> list[str]:
    return ["train", str(data), "--out", str(out), *ARGS]


def _cli(argv: list[str], log: str) -> None:
    """In the forked process: ``transferlab ARGV`` with its output line by line in ``log``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = sys.stderr = open(1, "w", buffering=1, closefd=False)
    from transferlab.cli import main

    code = main(argv)
    sys.stdout.flush()  # os._exit skips the interpreter's own flush
    os._exit(code)


def _start(argv: list[str], log: Path):
    p = SERVER.Process(target=_cli, args=(argv, str(log)))
    p.start()
    return p


def _finish(argv: list[str], log: Path) -> None:
    p = _start(argv, log)
    p.join(300)
    assert p.exitcode == 0, log.read_text()[-2000:]


def _kill_after(argv: list[str], log: Path, marker: str | None, delay: float) -> None:
    """Start ``argv``; once a line of its output contains ``marker`` (or at once), wait ``delay`` s and SIGKILL it."""
    p = _start(argv, log)
    try:
        if marker is not None:
            deadline = time.monotonic() + 240
            while marker not in (log.read_text() if log.is_file() else "") and p.is_alive():
                assert time.monotonic() < deadline, f"no {marker!r} in the output after 240 s"
                time.sleep(0.005)
            assert marker in log.read_text(), f"the run never printed {marker!r}: the kill point was not reached"
        time.sleep(delay)
        p.kill()
    finally:
        p.join(60)
    assert p.exitcode == -signal.SIGKILL, f"the run ended ({p.exitcode}) before the kill at {marker!r}"


def _resume(data: Path, out: Path) -> list[str]:
    """What a user runs after a crash: --resume, or the same command when nothing was written."""
    if (out / "config.yaml").is_file():
        return ["train", "--resume", str(out)]
    return _argv(data, out)


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
    """The uninterrupted run, by the same command in the same kind of process."""
    tmp = tmp_path_factory.mktemp("resume")
    data = make_folder(tmp / "data", n=16)
    _finish(_argv(data, tmp / "ref"), tmp / "ref.log")
    return data, _result(tmp / "ref")


# (marker in the training log to wait for, then extra seconds): random points across the run's life
POINTS = [
    (None, 0.05),
    ("model:", 0.0),
    ("epoch   2/4", 0.0),
    ("epoch   3/4", 0.02),
    ("epoch   4/4", 0.0),
    ("epoch   4/4", 0.1),  # while the run finishes: calibration, summary, figures (0.5-0.7 s here)
]


@pytest.mark.parametrize("trial", range(3))
def test_killed_and_resumed_run_equals_the_uninterrupted_one(trial, reference, tmp_path):
    data, ref = reference
    rng = random.Random(trial)
    out = tmp_path / "run"
    kills = rng.sample(POINTS, 2 if trial == 2 else 1)  # the last trial is killed twice (the resume, too)
    marker, delay = kills[0]
    _kill_after(_argv(data, out), tmp_path / "log0", marker, delay + rng.uniform(0, 0.05))
    for i, (marker, delay) in enumerate(kills[1:], 1):
        _kill_after(_resume(data, out), tmp_path / f"log{i}", marker, delay)
    _finish(_resume(data, out), tmp_path / "log_resume")
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
