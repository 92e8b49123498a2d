"""Feature caching for ``features`` mode: run the frozen backbone once, then train only the head.

Each image passes through the frozen body once for its evaluation view and once for each of
``views`` augmented views; the ``(1 + views, D)`` features are cached on disk keyed by file
content, backbone weights, preprocessing and augmentation, so a second run reuses them.
The head then trains on these tensors in milliseconds per epoch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from .. import distributed
from ..config import TrainConfig
from ..data.index import Sample, file_digest
from ..data.loading import cache_or_stream, choose_sampler, collate_skipping, make_loader
from ..data.preprocess import Preprocess
from ..data.transforms import AugmentSpec, eval_transform, train_transform
from ..models.transfer import TransferModel

__all__ = [
    "FeatureSet",
    "extract_features",
    "FeatureDataset",
    "feature_loader",
    "cache_key",
    "FeatureCache",
    "default_cache_dir",
]


@dataclass
class FeatureSet:
    feats: torch.Tensor  # (N, 1 + views, D): view 0 is the evaluation view
    labels: torch.Tensor  # (N,)
    positions: list[int]  # index into the input samples of each row (unreadable ones dropped)
    skipped: list[tuple[int, str]]
    computed: int  # images that went through the backbone in this call
    seconds: float


def cache_key(model: TransferModel, cfg: TrainConfig, pre: Preprocess, views: int) -> dict:
    """What the cached features depend on (besides file content)."""
    floats = [v for v in model.body.state_dict().values() if v.dtype.is_floating_point]
    # a cheap fingerprint of the body's weights: sum and norm of every float tensor
    fp = torch.stack([torch.stack([v.double().sum(), v.double().norm()]) for v in floats])
    return {
        "version": 3,
        "backbone": model.backbone_name,
        "features": model.features,
        "weights": f"{fp.sum().item():.10e}:{fp.norm().item():.10e}",
        "preprocess": pre.to_dict(),
        "views": views,
        "augment": dataclasses.asdict(AugmentSpec.from_config(cfg)) if views else None,
        "seed": cfg.seed,
    }


@torch.inference_mode()
def _forward_views(
    model: TransferModel, samples: Sequence[Sample], pre: Preprocess, cfg: TrainConfig, views: int, device: torch.device
) -> tuple[dict[int, torch.Tensor], list[tuple[int, str]]]:
    """Features ``(1 + views, D)`` for each readable sample position."""
    model.eval()
    per_view: list[dict[int, torch.Tensor]] = []
    skipped: dict[int, str] = {}
    # every view re-reads the same files: decode each once (in this process)
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
        out: dict[int, torch.Tensor] = {}
        for batch in loader:
            skipped.update(dict(batch["skipped"]))
            if batch["image"] is None:
                continue
            x = batch["image"].to(device)
            if cfg.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            f = model.forward_features(x).float().cpu()  # (B, K, 3, S, S) crop views: averaged
            out.update(zip(batch["index"].tolist(), f))
        if distributed.world().distributed:
            for part_out, part_skipped in distributed.gather((out, skipped)):
                out.update(part_out)
                skipped.update(part_skipped)
        per_view.append(out)
    feats = {}  # popped view by view: the per-view copies are freed as the stacked ones are made
    for i in list(per_view[0]):
        rows = [pv.pop(i, None) for pv in per_view]
        if all(r is not None for r in rows):
            feats[i] = torch.stack(rows)
    return feats, sorted(skipped.items())


def extract_features(
    model: TransferModel,
    samples: Sequence[Sample],
    pre: Preprocess,
    cfg: TrainConfig,
    views: int,
    device: torch.device,
    cache: FeatureCache | None = None,
) -> FeatureSet:
    """Backbone features of ``samples``, from ``cache`` where present, computed (and cached) otherwise."""
    t0 = time.perf_counter()
    # content digests are cache keys only: no cache, no need to read every file's bytes
    digests = [file_digest(s.path) for s in samples] if cache is not None else [None] * len(samples)
    todo = [i for i, d in enumerate(digests) if cache is None or cache.get(d) is None]
    computed, skipped = _forward_views(model, [samples[i] for i in todo], pre, cfg, views, device) if todo else ({}, [])
    skipped = [(todo[j], r) for j, r in skipped]
    slot = {i: j for j, i in enumerate(todo)}  # sample position -> position in the computed batch
    rows, labels, positions = [], [], []
    for i, d in enumerate(digests):
        f = cache.get(d) if cache is not None else None
        if f is None and i in slot:
            f = computed.get(slot[i])
            if f is not None and cache is not None:
                cache.put(d, f)
        if f is not None:
            rows.append(f)
            labels.append(samples[i].label)
            positions.append(i)
    if cache is not None and todo:
        distributed.on_main(cache.save)  # one cache, written once
    feats = torch.stack(rows) if rows else torch.zeros(0, 1 + views, model.feature_dim)
    return FeatureSet(
        feats, torch.tensor(labels, dtype=torch.long), positions, skipped, len(todo), time.perf_counter() - t0
    )


class FeatureDataset(Dataset):
    """Rows of a feature matrix as ``(feature (D,), label, index, None)`` items."""

    def __init__(self, feats: torch.Tensor, labels: torch.Tensor):
        self.feats, self.labels = feats, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.feats[i], int(self.labels[i]), i, None


def feature_loader(
    fs: FeatureSet, all_views: bool, batch_size: int, shuffle: bool, seed: int, balanced: bool = False
) -> DataLoader:
    """Training: every view is a sample. Validation: the evaluation view only. ``balanced``:
    every class drawn equally often (:func:`~transferlab.data.loading.balanced_sampler`)."""
    if all_views:
        feats = fs.feats.reshape(-1, fs.feats.shape[-1])
        labels = fs.labels.repeat_interleave(fs.feats.shape[1])
    else:
        feats, labels = fs.feats[:, 0], fs.labels
    g = torch.Generator()
    g.manual_seed(seed)
    ds = FeatureDataset(feats, labels)
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


class FeatureCache:
    """Features ``(views, D)`` per file content, in one file per model/preprocessing key."""

    def __init__(self, root: str | Path, key: dict):
        self.key = key
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        self.path = Path(root) / "features" / f"{key.get('backbone', 'model')}-{digest}.pt"
        self.entries: dict[str, torch.Tensor] = {}
        if self.path.is_file():
            try:
                data = torch.load(self.path, map_location="cpu", weights_only=True)
                if data.get("key") == key:
                    self.entries = dict(data["features"])
            except Exception:  # a damaged cache is rebuilt, never trusted
                self.entries = {}
        self.loaded = len(self.entries)

    def get(self, digest: str) -> torch.Tensor | None:
        return self.entries.get(digest)

    def put(self, digest: str, feats: torch.Tensor) -> None:
        t = feats.detach().to("cpu", torch.float32)  # no copy when it is one already (shared, not cloned)
        self.entries[digest] = t if t.is_contiguous() and t.storage_offset() == 0 else t.clone()

    def save(self) -> None:
        from ..models.checkpoint import atomic_save

        atomic_save({"key": self.key, "features": self.entries}, self.path)
