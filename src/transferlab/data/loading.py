"""Feeding images to a model: a dataset that decodes (and skips what cannot be decoded), loaders,
a bounded in-memory cache of decoded images, and a prefetch thread for prediction."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset

from .. import distributed
from .images import ImageReadError, load_rgb, load_uint8, prepare
from .index import Sample

__all__ = [
    "DecodedImageCache",
    "ImageDataset",
    "collate_skipping",
    "make_loader",
    "default_workers",
    "threaded_batches",
    "cache_or_stream",
    "decoded_size_estimate",
    "balanced_sampler",
    "choose_sampler",
]


class DecodedImageCache:
    """Path -> uint8 tensor, never holding more than ``budget_bytes``.

    Items that would exceed the budget are returned but not kept (streaming fallback).
    """

    def __init__(self, budget_bytes: int):
        self.budget = int(budget_bytes)
        self.bytes = 0
        self.hits = self.misses = self.refused = 0
        self._store: dict[str, torch.Tensor] = {}

    def get(self, key: str, load: Callable[[], torch.Tensor]) -> torch.Tensor:
        t = self._store.get(key)
        if t is not None:
            self.hits += 1
            return t
        self.misses += 1
        t = load()
        size = t.numel() * t.element_size()
        if self.bytes + size <= self.budget:
            self._store[key] = t
            self.bytes += size
        else:
            self.refused += 1
        return t

    def __len__(self) -> int:
        return len(self._store)

    def stats(self) -> dict:
        return {
            "items": len(self),
            "bytes": self.bytes,
            "budget": self.budget,
            "hits": self.hits,
            "misses": self.misses,
            "not_cached": self.refused,
        }


def decoded_size_estimate(samples: Sequence[Sample], decode_size: int | None, probe: int = 32) -> int:
    """Bytes the decoded uint8 images of ``samples`` would take (short side shrunk to
    ``decode_size``), estimated from the headers of up to ``probe`` evenly spread files."""
    from PIL import Image

    if not samples:
        return 0
    picks = samples[:: max(1, len(samples) // probe)][:probe]
    sizes = []
    for s in picks:
        try:
            with Image.open(s.path) as im:
                w, h = im.size
        except Exception:  # unreadable: reported when it is loaded; not part of the estimate
            continue
        if decode_size and min(w, h) > decode_size:
            w, h = round(w * decode_size / min(w, h)), round(h * decode_size / min(w, h))
        sizes.append(3 * w * h)
    return int(len(samples) * sum(sizes) / max(1, len(sizes)))


def cache_or_stream(
    samples: Sequence[Sample], decode_size: int | None, budget_mb: int, passes: int = 2
) -> tuple[DecodedImageCache | None, str | None]:
    """A :class:`DecodedImageCache` when the decoded set fits ``budget_mb`` and is read more than
    once (``passes``); else ``None`` (stream from disk with worker processes, each file decoded
    on every pass) and a note saying why."""
    if budget_mb <= 0 or passes < 2:
        return None, None
    need = decoded_size_estimate(samples, decode_size)
    if need > budget_mb * 2**20:
        return None, (
            f"decoded images (~{need / 2**20:,.0f} MB) exceed the cache budget ({budget_mb} MB, "
            "--image-cache-mb): streaming from disk with worker processes"
        )
    return DecodedImageCache(budget_mb * 2**20), None


class ImageDataset(Dataset):
    """Decodes ``samples`` to uint8 tensors (short side shrunk to ``decode_size``) and applies
    ``transform``.

    ``cache``: a :class:`~transferlab.data.loading.DecodedImageCache` so each file is decoded once.
    ``seed``: make item ``i``'s random augmentation depend only on ``(seed, i)``, not on
    order or worker (used to extract reproducible augmented views).
    ``perturb``: a PIL -> PIL degradation applied to the full-resolution decoded image before
    anything else (robustness evaluation: ``transferlab evaluate --perturb``).
    An unreadable file yields ``(None, label, index, reason)`` instead of raising, so a
    broken JPEG found mid-epoch is reported by :func:`collate_skipping`, not fatal.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable | None = None,
        decode_size: int | None = None,
        cache=None,
        seed: int | None = None,
        perturb: Callable | None = None,
    ):
        self.samples = list(samples)
        self.transform = transform
        self.decode_size, self.cache, self.seed, self.perturb = decode_size, cache, seed, perturb

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, path: str) -> torch.Tensor:
        if self.perturb is not None:
            return prepare(self.perturb(load_rgb(path)), self.decode_size)
        if self.cache is None:
            return load_uint8(path, self.decode_size)
        return self.cache.get(path, lambda: load_uint8(path, self.decode_size))

    def __getitem__(self, i: int):
        s = self.samples[i]
        try:
            img = self._load(s.path)
        except ImageReadError as e:
            return None, s.label, i, e.reason
        if self.transform is None:
            return img, s.label, i, None
        if self.seed is None:
            return self.transform(img), s.label, i, None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + i)
            return self.transform(img), s.label, i, None


def collate_skipping(items) -> dict:
    """Batch the readable items; returns ``image (B,C,H,W)``, ``label (B,)``, ``index (B,)`` and
    ``skipped``: a list of ``(dataset index, reason)`` for the items that could not be read."""
    good = [it for it in items if it[0] is not None]
    skipped = [(it[2], it[3]) for it in items if it[0] is None]
    if not good:
        return {"image": None, "label": None, "index": None, "skipped": skipped}
    return {
        "image": torch.stack([it[0] for it in good]),
        "label": torch.tensor([it[1] for it in good], dtype=torch.long),
        "index": torch.tensor([it[2] for it in good], dtype=torch.long),
        "skipped": skipped,
    }


def default_workers() -> int:
    """Decode in as many worker processes as there are cores (at most 4)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(4, n)


def make_loader(
    samples: Sequence[Sample] | ImageDataset,
    transform: Callable | None,
    batch_size: int,
    shuffle: bool,
    num_workers: int = -1,
    seed: int = 0,
    pin_memory: bool = False,
    decode_size: int | None = None,
    cache=None,
    item_seed: int | None = None,
    shard: str | None = None,
    balanced: bool = False,
):
    """A DataLoader over :class:`ImageDataset` that skips unreadable files (see
    :func:`collate_skipping`); seeded shuffling, persistent workers.

    With a decoded-image ``cache`` the data is read in this process (``num_workers`` 0), since
    worker processes would each hold their own copy. ``samples`` may be a ready
    :class:`ImageDataset` (then ``transform``, ``decode_size``, ``cache``, ``item_seed`` are its own).
    ``shard``: under ``torch.distributed``, ``"train"`` gives this rank its shuffled shard of equal
    length (:class:`~transferlab.distributed.ShardedShuffleSampler`), ``"eval"`` its share of the items,
    each item on exactly one rank (:class:`~transferlab.distributed.ShardSampler`); one process: ignored.
    ``balanced``: draw every class equally often (:func:`balanced_sampler`) instead of shuffling.
    """
    from torch.utils.data import DataLoader

    workers = default_workers() if num_workers < 0 else num_workers
    workers = 0 if cache is not None or getattr(samples, "cache", None) is not None else workers
    workers = min(workers, max(1, len(samples) // max(batch_size, 1))) if workers else 0
    g = torch.Generator()
    g.manual_seed(seed)
    ds = (
        samples
        if isinstance(samples, ImageDataset)
        else ImageDataset(samples, transform, decode_size, cache, item_seed)
    )
    sampler = choose_sampler(ds, [s.label for s in ds.samples], shard, balanced, seed, g)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_skipping,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        generator=g,
        drop_last=False,
    )


def choose_sampler(dataset, labels, shard: str | None, balanced: bool, seed: int, generator: torch.Generator):
    """The sampler of a loader (None: the loader's own order): ``balanced`` draws every class
    equally often; under ``torch.distributed``, ``shard="train"`` gives this rank its shuffled
    shard and ``shard="eval"`` its share of the items, each on exactly one rank."""
    if balanced:
        return balanced_sampler(labels, generator)
    if shard == "train":
        return distributed.train_sampler(dataset, seed)
    if shard == "eval" and distributed.world().distributed:
        return distributed.ShardSampler(len(dataset))
    return None


def balanced_sampler(labels, generator: torch.Generator):
    """Draw ``len(labels)`` items per epoch with replacement, each class equally likely (weights
    1/count), from ``generator`` (reseeded per epoch). Not sharded: one process only."""
    from torch.utils.data import WeightedRandomSampler

    if distributed.world().distributed:
        raise ValueError("--sampler balanced runs in one process; with torchrun use --class-weights auto instead")
    labels = torch.as_tensor(list(labels), dtype=torch.long)
    counts = torch.bincount(labels).double()
    weights = (1.0 / counts)[labels]
    return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=generator)


def threaded_batches(dataset: Dataset, batch_size: int):
    """Yield :func:`collate_skipping` batches in order, building the next batch in a background
    thread while the caller runs the model on the current one.

    Decoding and resizing release the GIL, so on a small CPU this overlaps input work with the
    forward pass without the cost of worker processes (which, measured on 2 cores, made
    prediction slower, not faster).
    """
    from concurrent.futures import ThreadPoolExecutor

    def build(start: int) -> dict:
        return collate_skipping([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])

    starts = range(0, len(dataset), batch_size)
    if not len(starts):
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(build, starts[0])
        for nxt in list(starts[1:]) + [None]:
            batch = pending.result()
            pending = pool.submit(build, nxt) if nxt is not None else None
            yield batch
