"""torch.distributed: shards, 2-process gloo runs on loopback (1 thread per rank, timeouts), the
torchrun CLI, and resume of a killed 2-process run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cli_flags, make_folder
from transferlab import distributed
from transferlab.distributed import ShardedShuffleSampler, ShardSampler

HERE = Path(__file__).parent
PY = sys.executable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank: int, size: int, port: int) -> dict:
    return {
        **os.environ,
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(size),
        "LOCAL_WORLD_SIZE": str(size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "OMP_NUM_THREADS": "1",
        "TRANSFERLAB_DIST_TIMEOUT": "120",
    }


def _two_ranks(*args: str, timeout: int = 240) -> None:
    port = _free_port()
    procs = [
        subprocess.Popen(
            [PY, str(HERE / "dist_worker.py"), *args],
            env=_env(r, 2, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(2)
    ]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            p.kill()
    for p, o in zip(procs, outs):
        assert p.returncode == 0, o[-3000:]


@pytest.mark.parametrize("n", [0, 1, 2, 7, 10])
@pytest.mark.parametrize("size", [2, 3])
def test_evaluation_shards_are_disjoint_and_cover_every_item_once(n, size):
    shards = [list(ShardSampler(n, r, size)) for r in range(size)]
    assert sorted(sum(shards, [])) == list(range(n))
    assert [len(ShardSampler(n, r, size)) for r in range(size)] == [len(s) for s in shards]


@pytest.mark.parametrize("n", [1, 5, 10])
@pytest.mark.parametrize("size", [2, 3])
def test_training_shards_are_equal_length_fixed_and_reshuffled_per_epoch(n, size):
    ds = list(range(n))
    samplers = [ShardedShuffleSampler(ds, num_replicas=size, rank=r, shuffle=True, seed=4) for r in range(size)]
    epochs = []
    for epoch in (0, 1):
        for s in samplers:
            s.set_epoch(epoch)
        epochs.append([list(s) for s in samplers])
    for shards in epochs:
        assert len({len(s) for s in shards}) == 1  # every rank takes the same number of steps
        assert set(sum(shards, [])) == set(range(n))  # covering (padding repeats items)
    for r in range(size):  # a rank keeps its images (its decoded-image cache stays its own) ...
        assert sorted(epochs[0][r]) == sorted(epochs[1][r])
    if n >= 10:  # ... in a new order each epoch
        assert any(epochs[0][r] != epochs[1][r] for r in range(size))
    if n % size == 0:  # no padding needed: disjoint
        assert len(set(sum(epochs[0], []))) == n


def test_helpers_are_no_ops_in_one_process():
    assert distributed.world() == distributed.World(0, 1, 0) and distributed.is_main()
    assert distributed.gather(5) == [5] and distributed.broadcast("x") == "x"
    assert distributed.on_main(lambda a: a + 1, 1) == 2
    assert distributed.train_sampler(list(range(4)), 0) is None
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, torch.device("cpu")) is model


def test_one_two_process_launch_takes_the_sgd_steps_then_trains_like_one_process(tmp_path):
    """One launch (a torch import per rank saved) runs both scenarios in one process group."""
    data = make_folder(tmp_path / "data", n=9)
    (tmp_path / "cfg2.json").write_text(json.dumps(_features_config(data, tmp_path / "run2", tmp_path / "cache2")))
    _two_ranks(str(tmp_path), "3", str(tmp_path / "cfg2.json"))
    _check_sgd_steps(tmp_path, 3)
    _check_features_run(tmp_path, data)


def _check_sgd_steps(tmp_path: Path, steps: int) -> None:
    """The two ranks took the same SGD steps as one process with the doubled batch."""
    r0, r1 = (torch.load(tmp_path / f"sgd_rank{r}.pt") for r in range(2))
    for k in r0["params"]:  # DDP kept both ranks identical
        assert torch.equal(r0["params"][k], r1["params"][k]), k
    assert len(r0["batches"]) == len(r1["batches"]) == steps
    seen = sum(r0["batches"], []) + sum(r1["batches"], [])
    assert sorted(seen) == list(range(len(r0["labels"])))  # disjoint shards covering the data
    torch.manual_seed(0)  # the same initial weights, one process, both halves as one batch
    torch.randn(len(r0["labels"]), 6)
    model = torch.nn.Linear(6, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.0)
    for a, b in zip(r0["batches"], r1["batches"]):
        idx = torch.tensor(a + b)
        loss = torch.nn.functional.cross_entropy(model(r0["feats"][idx]), r0["labels"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(r0["params"][k], v, rtol=1e-5, atol=1e-6)
    before = torch.nn.Linear(6, 2).state_dict()  # and the steps did move the weights
    assert not torch.allclose(before["weight"], v) if k == "weight" else True


def _features_config(data: Path, out: Path, cache: Path) -> dict:
    return {
        "data": str(data),
        "out": str(out),
        "cache_dir": str(cache),
        "model": "efficientnet_lite0",
        "mode": "features",
        "features": "stages",
        "head": "logistic",
        "image_size": 64,
        "feature_views": 1,
        "augment": "light",
        "num_workers": 0,
        "progress": False,
        "batch_size": 4,
    }


def _cached_rows(index_file: Path) -> dict[str, torch.Tensor]:
    """A feature cache read back: content digest -> its rows (views, D)."""
    index = json.loads(index_file.read_text())
    rows = torch.from_numpy(np.fromfile(index_file.with_name("rows.f32"), dtype=np.float32))
    rows = rows[: index["next_row"] * index["shape"][0] * index["shape"][1]].reshape(-1, *index["shape"])
    return {digest: rows[r] for digest, r in index["rows"].items()}


def _check_features_run(tmp_path: Path, data: Path) -> None:
    """The 2-rank features run equals the one-process run, and only rank 0 wrote anything."""
    from transferlab.config import load_config
    from transferlab.training.trainer import train

    rank0, rank1 = (json.loads((tmp_path / f"writes_rank{r}.json").read_text()) for r in range(2))
    assert rank1["writes"] == []  # rank 1 opened nothing for writing in the run folder or the cache
    assert rank0["acc"] == rank1["acc"]

    one = train(load_config(None, _features_config(data, tmp_path / "run1", tmp_path / "cache1")))
    caches = [sorted((tmp_path / c / "features").glob("*/index.json")) for c in ("cache1", "cache2")]
    assert [len(c) for c in caches] == [2, 2]  # training views and validation views
    for a, b in zip(*caches):
        ea, eb = _cached_rows(a), _cached_rows(b)
        assert ea.keys() == eb.keys() and len(ea) > 0  # gathered from both ranks: every image once
        for key in ea:
            torch.testing.assert_close(ea[key], eb[key], rtol=1e-4, atol=1e-4)  # ranks: 1 thread; here: any
    s1 = json.loads((tmp_path / "run1" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "run2" / "summary.json").read_text())
    n_val = sum(1 for line in (tmp_path / "run2" / "split.csv").read_text().splitlines() if line.endswith(",val"))
    assert sum(map(sum, s2["val"]["confusion_matrix"])) == n_val  # each validation image counted once
    assert s2["val"]["accuracy"] == pytest.approx(s1["val"]["accuracy"]) == pytest.approx(one.best_val_acc)
    w1 = torch.load(tmp_path / "run1" / "best.pt", weights_only=False)["model"]
    w2 = torch.load(tmp_path / "run2" / "best.pt", weights_only=False)["model"]
    for k in w1:
        if k.startswith("head"):
            torch.testing.assert_close(w1[k], w2[k], rtol=1e-3, atol=1e-4)


def _scratch_flags(epochs: int) -> list[str]:
    return cli_flags(epochs=epochs, scheduler="cosine")


def test_torchrun_cli_smoke_then_kill_and_resume_a_two_process_run(tmp_path):
    data = make_folder(tmp_path / "data", n=16)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFERLAB_DIST_TIMEOUT": "120"}
    run = tmp_path / "run"
    # the launcher's own form: torchrun --standalone --nproc-per-node 2 -m transferlab train ...
    cmd = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "transferlab"]
    proc = subprocess.Popen(
        [*cmd, "train", str(data), "--out", str(run), *_scratch_flags(16)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = run / "metrics.csv"
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:  # header + 2 epochs
            break
        time.sleep(0.05)
    assert proc.poll() is None, (
        "the 2-process run ended before it could be killed: " + proc.stdout.read().decode()[-2000:]
    )
    os.killpg(proc.pid, signal.SIGKILL)  # every rank and the launcher at once
    proc.wait(timeout=30)
    done = len((run / "metrics.csv").read_text().splitlines()) - 1
    assert 2 <= done < 16 and not (run / "summary.json").exists()

    out = subprocess.run(
        [PY, "-m", "transferlab", "train", "--resume", str(run), "--nproc-per-node", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "resumed from last.pt" in out.stdout and out.stdout.count("best epoch") == 1  # rank 0 alone reports
    epochs = [int(line.split(",")[0]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(1, 17))  # continued, no epoch repeated or lost
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 16


def test_a_failing_rank_stops_the_run_with_its_message_not_a_hang(tmp_path):
    out = subprocess.run(
        [
            PY,
            "-m",
            "transferlab",
            "train",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "r"),
            "--nproc-per-node",
            "2",
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1", "TRANSFERLAB_DIST_TIMEOUT": "60"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert "missing" in out.stderr and "Traceback" not in out.stderr + out.stdout
    assert "the launched run failed: rank" in out.stderr and "DataError" in out.stderr
