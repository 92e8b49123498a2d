"""One rank of the 2-process test in test_distributed.py: ``python dist_worker.py OUT STEPS CONFIG.json``
takes ``STEPS`` SGD steps (:func:`sgd_steps`), then trains with the settings in CONFIG.json (:func:`train_run`),
with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set by the test (loopback, a free port).

Every file a rank other than 0 opens for writing, renames, removes or creates is recorded by an
audit hook and saved (by that rank, outside the watched folders) to ``OUT/writes_rank{R}.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

WATCHED: list[str] = []
WRITES: list[str] = []


def _audit(event: str, args) -> None:
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path, mode, flags = args[0], args[1], args[2] if len(args) > 2 else 0
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        )
        if writing:
            WRITES.append(os.fsdecode(path))
    elif event in ("os.rename", "os.remove", "os.mkdir", "os.replace", "shutil.rmtree") and args:
        WRITES.append(os.fsdecode(args[0]) if isinstance(args[0], (str, bytes, os.PathLike)) else str(args[0]))


def sgd_steps(out: Path, steps: int) -> None:
    """``steps`` plain-SGD steps of a small linear model on fixed data through the library's
    sampler, DDP wrapper and ``train_one_epoch``; saves the parameters and the batches drawn."""
    from transferlab import distributed
    from transferlab.config import TrainConfig
    from transferlab.training.engine import train_one_epoch
    from transferlab.training.features import FeatureDataset

    world = distributed.init("cpu")
    torch.manual_seed(0)
    feats, labels = torch.randn(4 * steps * world.size, 6), torch.arange(4 * steps * world.size) % 2
    model = torch.nn.Linear(6, 2)
    ds = FeatureDataset(feats, labels)
    sampler = distributed.train_sampler(ds, seed=3)
    from transferlab.data.loading import collate_skipping

    loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=sampler, collate_fn=collate_skipping)
    sampler.set_epoch(1)
    batches = [b["index"].tolist() for b in loader]
    net = distributed.wrap(model, torch.device("cpu"))
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.0)
    cfg = TrainConfig(data="x", progress=False, amp=False, channels_last=False)
    train_one_epoch(net, loader, opt, None, torch.device("cpu"), cfg)
    torch.save(
        {"params": model.state_dict(), "batches": batches, "feats": feats, "labels": labels},
        out / f"sgd_rank{world.rank}.pt",
    )


def train_run(out: Path, config: str) -> None:
    """The library's ``train`` on every rank, with the settings in the JSON file ``config``."""
    from transferlab import distributed
    from transferlab.config import load_config
    from transferlab.training.trainer import train

    cfg = load_config(None, json.loads(Path(config).read_text()))
    WATCHED.extend([str(Path(cfg.out).resolve()), str(Path(cfg.cache_dir).resolve())])
    world = distributed.init("cpu")
    if world.rank != 0:
        sys.addaudithook(_audit)
    result = train(cfg)
    distributed.shutdown()
    ours = [p for p in WRITES if any(str(Path(p).resolve()).startswith(w) for w in WATCHED)]
    (out / f"writes_rank{world.rank}.json").write_text(json.dumps({"writes": ours, "acc": result.best_val_acc}))


if __name__ == "__main__":
    torch.set_num_threads(1)
    folder = Path(sys.argv[1])
    sgd_steps(folder, int(sys.argv[2]))
    train_run(folder, sys.argv[3])  # in the same process group: one torch import per rank for both
