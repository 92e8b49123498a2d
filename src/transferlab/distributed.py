"""Multi-process training on ``torch.distributed``, as launched by ``torchrun``.

Nothing here starts processes: ``torchrun`` (or ``transferlab train --nproc-per-node N``, which
runs it) sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT`` and
:func:`init` joins the group. One process and no launcher is the plain case: every helper is then
a no-op, so the single-process code path is the distributed one with ``size == 1``.

Rules the rest of the package follows:
- every rank computes (its shard of the training batches, of the validation set, of the images to
  embed); results are gathered with :func:`gather` so each rank sees the whole set;
- only the main rank writes files (checkpoints, metrics, figures, caches), between barriers;
- a failure on one rank ends all of them: ``torchrun`` stops the others when a rank exits with an
  error, and every collective has a timeout (``TRANSFERLAB_DIST_TIMEOUT``, seconds) instead of a hang.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler
from torch.utils.data.distributed import DistributedSampler


class LaunchError(RuntimeError):
    """A rank of a launched run failed (its own message is printed by that rank), or another rank
    stopped this one by failing."""


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched() -> bool:
    """Whether a launcher (``torchrun``) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def timeout() -> _dt.timedelta:
    return _dt.timedelta(seconds=float(os.environ.get("TRANSFERLAB_DIST_TIMEOUT", "600")))


def init(device_type: str = "cpu") -> World:
    """Join the process group that ``torchrun`` describes in the environment (gloo on CPU, nccl on
    CUDA); a no-op in a single process or when the group exists already."""
    if launched() and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" and dist.is_nccl_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=timeout())
    return world()


def world() -> World:
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def is_main() -> bool:
    return world().main


def barrier() -> None:
    if world().distributed:
        dist.barrier()


def gather(obj) -> list:
    """``obj`` from every rank, in rank order (``[obj]`` in a single process)."""
    w = world()
    if not w.distributed:
        return [obj]
    out: list = [None] * w.size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj, src: int = 0):
    """The main rank's ``obj`` on every rank."""
    if not world().distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def agree(ok: bool, message: str) -> None:
    """Raise on every rank when any rank is not ``ok`` (so no rank waits in a collective for a
    rank that already failed)."""
    bad = [m for m in gather(None if ok else message) if m is not None]
    if bad:
        raise LaunchError(bad[0])


def on_main(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on the main rank only (the writes), then every rank continues with
    its result; a failure there is raised on every rank (the main rank's own exception there, a
    ``RuntimeError`` naming it elsewhere) instead of leaving the others waiting."""
    if not world().distributed:
        return fn(*args, **kwargs)
    result, error = None, None
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except Exception as e:  # shared with the other ranks, then raised here
            error = e
    failure = broadcast(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    if failure is not None:
        raise LaunchError(f"stopped: rank 0 failed ({failure})")
    return broadcast(result)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class ShardSampler(Sampler[int]):
    """Positions ``rank, rank + size, ...`` of a dataset of ``n`` items: disjoint shards that
    together cover every item exactly once (unlike ``DistributedSampler``, which pads the last
    shard with duplicates; evaluation must count each image once)."""

    def __init__(self, n: int, rank: int | None = None, size: int | None = None):
        w = world()
        self.n = n
        self.rank = w.rank if rank is None else rank
        self.size = w.size if size is None else size

    def __iter__(self):
        return iter(range(self.rank, self.n, self.size))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.size))


def train_sampler(dataset, seed: int):
    """A :class:`ShardedShuffleSampler` when distributed, else ``None`` (the loader's own seeded
    shuffling)."""
    w = world()
    if not w.distributed:
        return None
    return ShardedShuffleSampler(dataset, num_replicas=w.size, rank=w.rank, shuffle=True, seed=seed)


class ShardedShuffleSampler(DistributedSampler):
    """A ``DistributedSampler`` (equal shard lengths, padded by repeating items, so every rank
    takes the same number of steps; ``set_epoch`` each epoch) whose shards stay fixed across
    epochs and are shuffled within each epoch. Each rank therefore decodes (and keeps in its
    decoded-image cache) only its own shard: the cache is sharded, not copied on every rank."""

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed)
        order = torch.randperm(len(self.dataset), generator=g).tolist()
        while len(order) < self.total_size:
            order += order[: self.total_size - len(order)]
        mine = order[self.rank : self.total_size : self.num_replicas]
        rng = np.random.default_rng([self.seed, self.epoch])  # SeedSequence: nearby epochs, unrelated orders
        return iter([mine[i] for i in rng.permutation(len(mine)).tolist()])


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel`` around ``model`` when distributed and it has trainable
    parameters (gradients averaged across ranks, parameters broadcast from rank 0 first)."""
    if not world().distributed or not any(p.requires_grad for p in model.parameters()):
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def launch(
    argv: list[str],
    nproc_per_node: int,
    nnodes: str = "1",
    rdzv_endpoint: str | None = None,
    rdzv_id: str = "transferlab",
) -> None:
    """Run ``python -m transferlab ARGV`` in ``nproc_per_node`` processes per machine with
    ``torchrun`` (``torch.distributed.run``, in this process: no home-made process pool).

    One machine: ``--standalone`` (a free local port). Several: ``nnodes`` (``N`` or ``MIN:MAX``)
    and the c10d rendezvous at ``rdzv_endpoint`` (``host:port`` of any one of them), the same
    command on every machine. When a rank fails, torchrun stops the others; this raises
    :class:`LaunchError` naming the rank and exit code."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if nproc_per_node < 1:
        raise ValueError(f"--nproc-per-node must be at least 1, not {nproc_per_node}")
    opts = [f"--nproc-per-node={nproc_per_node}"]
    if rdzv_endpoint:
        opts += [
            f"--nnodes={nnodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rdzv_endpoint}",
            f"--rdzv-id={rdzv_id}",
        ]
    elif str(nnodes) not in ("1", "1:1"):
        raise ValueError("--nnodes above 1 needs --rdzv-endpoint HOST:PORT (the same on every machine)")
    else:
        opts.append("--standalone")
    args = get_args_parser().parse_args([*opts, "--module", "transferlab", *argv])
    from .runtime import cpu_count  # each rank's threads: set_threads shares the cores out

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cpu_count() // nproc_per_node)))
    try:
        run(args)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        raise LaunchError(
            f"the launched run failed: rank {rank} exited with code {failure.exitcode} (the first error is above)"
        ) from None
