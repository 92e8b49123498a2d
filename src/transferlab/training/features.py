"""Feature caching for ``features`` mode: run the frozen backbone once, then train only the head.

Each image passes through the frozen body once for its evaluation view and once for each of
``views`` augmented views; the ``(1 + views, D)`` features are cached on disk keyed by file
content, backbone weights, preprocessing and augmentation, so a second run reuses them.
The head then trains on these tensors in milliseconds per epoch.

The cache is one float32 file of rows per key, written as the backbone produces them, and an
index from file content to row. A feature set that fits the memory budget (``image_cache_mb``)
is read into memory; a larger one stays on disk and the head reads its rows batch by batch, so
memory stays flat however many images there are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .. import distributed
from ..config import DEFAULT_POOL, TrainConfig
from ..data.index import Sample, file_digest
from ..data.loading import cache_or_stream, choose_sampler, collate_skipping, make_loader
from ..data.preprocess import Preprocess
from ..data.transforms import AugmentSpec, eval_transform, train_transform
from ..models.transfer import TransferModel

__all__ = [
    "FeatureSet",
    "extract_features",
    "FeatureDataset",
    "StoredFeatureDataset",
    "feature_loader",
    "cache_key",
    "FeatureCache",
    "default_cache_dir",
]


class FeatureCache:
    """Features ``(views, D)`` per file content: rows of one float32 file (``rows.f32``) and an
    index from content digest to row (``index.json``, replaced atomically after the rows it
    names are written). Rows are read on demand; :meth:`locked` serialises writers (other runs,
    other test workers) so that two never append to the same rows."""

    def __init__(self, root: str | Path, key: dict):
        self.key = key
        self._key_text = json.dumps(key, sort_keys=True)
        digest = hashlib.sha256(self._key_text.encode()).hexdigest()[:20]
        self.dir = Path(root) / "features" / f"{key.get('backbone', 'model')}-{digest}"
        self.path = self.dir / "index.json"
        self.rows_path = self.dir / "rows.f32"
        self._fd: int | None = None
        self._load()
        self.loaded = len(self.index)

    def _load(self) -> None:
        self.index: dict[str, int] = {}
        self.shape: tuple[int, int] | None = None  # (views, D) of every row
        self.next_row = 0
        try:
            data = json.loads(self.path.read_text())
            shape = tuple(int(s) for s in data["shape"])
            rows = {str(d): int(r) for d, r in data["rows"].items()}
            size = self.rows_path.stat().st_size
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return  # no cache yet, or a damaged one: rebuilt, never trusted
        if data.get("key") != self._key_text or len(shape) != 2 or min(shape) < 1:
            return
        nxt = int(data.get("next_row", 0))
        if size < nxt * shape[0] * shape[1] * 4 or any(not 0 <= r < nxt for r in rows.values()):
            return  # rows missing (the rows file was cut short): never read past them
        self.index, self.shape, self.next_row = rows, shape, nxt

    @contextlib.contextmanager
    def locked(self) -> Iterator[FeatureCache]:
        """Hold the cache's lock file (re-reading the index under it) while appending."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "lock", "a+b") as lock:
            try:
                import fcntl

                fcntl.flock(lock, fcntl.LOCK_EX)
            except ImportError:  # no flock (Windows): one writer at a time is up to the user
                pass
            self._load()
            yield self

    def _file(self) -> int:
        if self._fd is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.rows_path, os.O_RDWR | os.O_CREAT, 0o666)
        return self._fd

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def row(self, digest: str | None) -> int | None:
        return None if digest is None else self.index.get(digest)

    def get(self, digest: str) -> torch.Tensor | None:
        r = self.row(digest)
        return None if r is None else self.read([r])[0]

    def read(self, rows: Sequence[int]) -> torch.Tensor:
        """Rows ``(len(rows), views, D)``, in the order given."""
        v, d = self.shape or (1, 0)
        out = np.empty((len(rows), v, d), dtype=np.float32)
        size = v * d * 4
        for k, r in enumerate(rows):
            out[k] = np.frombuffer(os.pread(self._file(), size, r * size), dtype=np.float32).reshape(v, d)
        return torch.from_numpy(out)

    def read_view(self, row: int, view: int) -> torch.Tensor:
        """One view's features ``(D,)`` of one row."""
        v, d = self.shape
        data = os.pread(self._file(), d * 4, (row * v + view) * d * 4)
        return torch.from_numpy(np.frombuffer(data, dtype=np.float32).copy())

    def reserve(self, n: int, shape: tuple[int, int]) -> int:
        """The first of ``n`` new rows of ``shape (views, D)``."""
        if self.shape is None:
            self.shape = tuple(shape)
        elif tuple(shape) != self.shape:
            raise ValueError(f"feature cache {self.dir}: rows are {self.shape}, got {tuple(shape)}")
        first, self.next_row = self.next_row, self.next_row + n
        return first

    def write(self, row: int, view: int, feats: torch.Tensor) -> None:
        """Write one view ``(D,)`` of a reserved row."""
        v, d = self.shape
        data = feats.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
        os.pwrite(self._file(), data, (row * v + view) * d * 4)

    def put(self, digest: str, feats: torch.Tensor) -> None:
        """Store ``feats (views, D)`` for ``digest`` (indexed by the next :meth:`save`)."""
        r = self.reserve(1, tuple(feats.shape))
        for v in range(feats.shape[0]):
            self.write(r, v, feats[v])
        self.index[digest] = r

    def save(self) -> None:
        """Make the rows durable, then replace the index that names them."""
        from ..files import write_text

        if self._fd is not None:
            os.fsync(self._fd)
        body = {"key": self._key_text, "shape": list(self.shape or (1, 1)), "next_row": self.next_row}
        write_text(self.path, json.dumps({**body, "rows": self.index}))


@dataclass
class FeatureSet:
    feats: torch.Tensor | None  # (N, 1 + views, D), view 0 the evaluation view; None: rows of `store`
    labels: torch.Tensor  # (N,)
    positions: list[int]  # index into the input samples of each row (unreadable ones dropped)
    skipped: list[tuple[int, str]]
    computed: int  # images that went through the backbone in this call
    seconds: float
    store: FeatureCache | None = None  # where the rows are, when they stay on disk
    rows: list[int] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        if self.feats is not None:
            return tuple(self.feats.shape)
        return (len(self.labels), *self.store.shape)

    def tensor(self) -> torch.Tensor:
        """All features in memory ``(N, 1 + views, D)`` (read from disk when they stay there)."""
        return self.feats if self.feats is not None else self.store.read(self.rows)

    def chunks(self, size: int = 1024) -> Iterator[torch.Tensor]:
        """Every view of every row as ``(n, D)`` chunks, without holding them all in memory."""
        for i in range(0, len(self), size):
            part = self.feats[i : i + size] if self.feats is not None else self.store.read(self.rows[i : i + size])
            yield part.reshape(-1, part.shape[-1])


def cache_key(model: TransferModel, cfg: TrainConfig, pre: Preprocess, views: int) -> dict:
    """What the cached features depend on (besides file content)."""
    floats = [v for v in model.body.state_dict().values() if v.dtype.is_floating_point]
    # a cheap fingerprint of the body's weights: sum and norm of every float tensor
    fp = torch.stack([torch.stack([v.double().sum(), v.double().norm()]) for v in floats])
    return {
        "version": 4,
        "backbone": model.backbone_name,
        "features": model.features,
        "input": model.input,
        "zoom": model.zoom,
        **({"centre": model.centre} if model.centre is not None else {}),  # keys made before it stay valid
        **({"parts": model.parts} if model.parts is not None else {}),
        **({"pool": model.pool} if model.pool != DEFAULT_POOL else {}),
        "weights": f"{fp.sum().item():.10e}:{fp.norm().item():.10e}",
        "preprocess": pre.to_dict(),
        "views": views,
        "augment": dataclasses.asdict(AugmentSpec.from_config(cfg)) if views else None,
        "seed": cfg.seed,
    }


Sink = Callable[[int, list[int], torch.Tensor], None]  # (view, sample positions, features (B, D))


@torch.inference_mode()
def _forward_views(
    model: TransferModel,
    samples: Sequence[Sample],
    pre: Preprocess,
    cfg: TrainConfig,
    views: int,
    device: torch.device,
    sink: Sink,
) -> list[tuple[int, str]]:
    """Features of every view of each readable sample, handed to ``sink`` batch by batch;
    returns the unreadable positions with their reasons."""
    model.eval()
    skipped: dict[int, str] = {}
    # every view re-reads the same files: decode each once (in this process) when they fit
    images, _ = cache_or_stream(samples, pre.decode_size, cfg.image_cache_mb, passes=1 + views)
    for v in range(1 + views):
        tf = eval_transform(pre) if v == 0 else train_transform(pre, AugmentSpec.from_config(cfg))
        loader = make_loader(
            samples,
            tf,
            cfg.batch_size,
            False,
            cfg.num_workers,
            cfg.seed,
            device.type == "cuda",
            pre.decode_size,
            images,
            item_seed=cfg.seed * 100 + v,
            shard="eval",  # distributed: each rank embeds its share, gathered below
        )
        mine: dict[int, torch.Tensor] = {}
        for batch in loader:
            skipped.update(dict(batch["skipped"]))
            if batch["image"] is None:
                continue
            x = batch["image"].to(device)
            if cfg.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            f = model.forward_features(x).float().cpu()  # (B, K, 3, S, S) crop views: averaged
            if distributed.world().distributed:
                mine.update(zip(batch["index"].tolist(), f))
            else:
                sink(v, batch["index"].tolist(), f)
        if distributed.world().distributed:
            for part, part_skipped in distributed.gather((mine, skipped)):
                skipped.update(part_skipped)
                if part:
                    sink(v, list(part), torch.stack(list(part.values())))
    return sorted(skipped.items())


def extract_features(
    model: TransferModel,
    samples: Sequence[Sample],
    pre: Preprocess,
    cfg: TrainConfig,
    views: int,
    device: torch.device,
    cache: FeatureCache | None = None,
    memory_mb: float | None = None,
) -> FeatureSet:
    """Backbone features of ``samples``, from ``cache`` where present, computed (and cached)
    otherwise. With a cache, a set larger than ``memory_mb`` stays on disk (``FeatureSet.feats``
    is None; read it through :func:`feature_loader` or :meth:`FeatureSet.chunks`)."""
    t0 = time.perf_counter()
    dist = distributed.world().distributed
    lock = cache.locked() if cache is not None and distributed.is_main() else contextlib.nullcontext()
    with lock:
        # content digests are cache keys only: no cache, no need to read every file's bytes
        digests = [file_digest(s.path) for s in samples] if cache is not None else [None] * len(samples)
        hits = {i: cache.row(d) for i, d in enumerate(digests) if cache is not None and cache.row(d) is not None}
        if dist:  # the main rank's cache decides, so every rank embeds the same images
            hits = distributed.broadcast(hits)
        todo = [i for i in range(len(samples)) if i not in hits]
        shape = (1 + views, model.feature_dim)
        store = rows = None
        run = (model, samples, todo, hits, pre, cfg, views, device)
        if cache is not None and not dist:  # written straight into the cache, row by row, as they come
            first = cache.reserve(len(todo), shape) if todo else 0  # computed item j -> row first + j

            def sink(v: int, js: list[int], f: torch.Tensor) -> None:
                for j, row in zip(js, f):
                    cache.write(first + j, v, row)

            skipped, kept = _compute(*run, sink)
            feats, store, rows = _rows_on_disk(cache, digests, todo, hits, kept, first, shape, memory_mb)
        else:  # gathered in memory (under torchrun every rank gets them all), cached afterwards
            buffer = torch.empty(len(todo), *shape)

            def sink(v: int, js: list[int], f: torch.Tensor) -> None:
                buffer[js, v] = f

            skipped, kept = _compute(*run, sink)
            feats = _rows_in_memory(cache, digests, todo, hits, kept, buffer)
    return FeatureSet(
        feats,
        torch.tensor([samples[i].label for i in kept], dtype=torch.long),
        kept,
        [(todo[j], r) for j, r in skipped],
        len(todo),
        time.perf_counter() - t0,
        store,
        rows,
    )


def _compute(
    model: TransferModel,
    samples: Sequence[Sample],
    todo: list[int],
    hits: dict[int, int],
    pre: Preprocess,
    cfg: TrainConfig,
    views: int,
    device: torch.device,
    sink: Sink,
) -> tuple[list[tuple[int, str]], list[int]]:
    """Run the (folded) body over the samples at positions ``todo``, handing features to ``sink``.
    Returns the unreadable ones ``(index into todo, reason)`` and the positions kept: every cache
    hit and every readable computed sample, in input order."""
    skipped = []
    if todo:
        folded = model.eval().folded(pre.input_size)
        skipped = _forward_views(folded, [samples[i] for i in todo], pre, cfg, views, device, sink)
    bad = {todo[j] for j, _ in skipped}
    return skipped, [i for i in range(len(samples)) if i in hits or (i not in bad)]


def _rows_on_disk(
    cache: FeatureCache,
    digests: list[str | None],
    todo: list[int],
    hits: dict[int, int],
    kept: list[int],
    first: int,
    shape: tuple[int, int],
    memory_mb: float | None,
) -> tuple[torch.Tensor | None, FeatureCache | None, list[int] | None]:
    """Index the computed rows (written from row ``first`` on) and make them durable; returns
    ``(features, None, None)`` when the kept rows fit ``memory_mb``, else ``(None, cache, rows)``."""
    slot = {i: j for j, i in enumerate(todo)}  # sample position -> position among the computed
    for i in kept:
        if i not in hits:
            cache.index[digests[i]] = first + slot[i]
    if todo:
        cache.save()
    rows = [hits[i] if i in hits else first + slot[i] for i in kept]
    if memory_mb is None or len(rows) * shape[0] * shape[1] * 4 <= memory_mb * 2**20:
        return (cache.read(rows) if rows else torch.zeros(0, *shape)), None, None
    return None, cache, rows


def _rows_in_memory(
    cache: FeatureCache | None,
    digests: list[str | None],
    todo: list[int],
    hits: dict[int, int],
    kept: list[int],
    buffer: torch.Tensor,
) -> torch.Tensor:
    """The kept rows ``(len(kept), views, D)``: cache hits (read by the main rank, broadcast)
    and computed rows from ``buffer``; the computed ones are then cached, once, by the main rank."""
    slot = {i: j for j, i in enumerate(todo)}
    mine = cache.read([hits[i] for i in kept if i in hits]) if hits and distributed.is_main() else None
    from_cache = distributed.broadcast(mine)  # the main rank's cache, on every rank
    feats = torch.empty(len(kept), *buffer.shape[1:])
    k_hit = 0
    for k, i in enumerate(kept):
        if i in hits:
            feats[k], k_hit = from_cache[k_hit], k_hit + 1
        else:
            feats[k] = buffer[slot[i]]
    if cache is not None and todo:

        def persist() -> None:
            for k, i in enumerate(kept):
                if i not in hits:
                    cache.put(digests[i], feats[k])
            cache.save()

        distributed.on_main(persist)  # one cache, written once
    return feats


class FeatureDataset(Dataset):
    """Rows of a feature matrix as ``(feature (D,), label, index, None)`` items."""

    def __init__(self, feats: torch.Tensor, labels: torch.Tensor):
        self.feats, self.labels = feats, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.feats[i], int(self.labels[i]), i, None


class StoredFeatureDataset(Dataset):
    """:class:`FeatureDataset`'s items read from a feature cache on disk: item ``k`` is view
    ``views[k % len(views)]`` of row ``rows[k // len(views)]``."""

    def __init__(self, store: FeatureCache, rows: list[int], labels: torch.Tensor, views: list[int]):
        self.store, self.rows, self.labels, self.views = store, rows, labels, views

    def __len__(self) -> int:
        return len(self.rows) * len(self.views)

    def __getitem__(self, k: int):
        i, v = divmod(k, len(self.views))
        return self.store.read_view(self.rows[i], self.views[v]), int(self.labels[i]), k, None


def feature_loader(
    fs: FeatureSet, all_views: bool, batch_size: int, shuffle: bool, seed: int, balanced: bool = False
) -> DataLoader:
    """Training: every view is a sample. Validation: the evaluation view only. ``balanced``:
    every class drawn equally often (:func:`~transferlab.data.loading.balanced_sampler`)."""
    n_views = fs.shape[1] if all_views else 1
    labels = fs.labels.repeat_interleave(n_views)
    if fs.feats is None:
        ds = StoredFeatureDataset(fs.store, fs.rows, fs.labels, list(range(n_views)))
    elif all_views:
        ds = FeatureDataset(fs.feats.reshape(-1, fs.feats.shape[-1]), labels)
    else:
        ds = FeatureDataset(fs.feats[:, 0], labels)
    g = torch.Generator()
    g.manual_seed(seed)
    sampler = choose_sampler(ds, labels, "train" if shuffle else "eval", balanced and shuffle, seed, g)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        collate_fn=collate_skipping,
        generator=g,
    )


def default_cache_dir() -> Path:
    """``$TRANSFERLAB_CACHE`` or ``~/.cache/transferlab``."""
    return Path(os.environ.get("TRANSFERLAB_CACHE", Path.home() / ".cache" / "transferlab"))
