"""Caches that make repeated epochs cheap: decoded images (memory) and backbone features (disk).

``DecodedImageCache`` keeps uint8 tensors up to a byte budget and streams the rest.
``FeatureCache`` stores frozen-backbone features keyed by file content, model and preprocessing,
so a second run on the same data skips the backbone entirely.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import torch

__all__ = ["DecodedImageCache", "FeatureCache", "file_digest", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$TRANSFERLAB_CACHE`` or ``~/.cache/transferlab``."""
    return Path(os.environ.get("TRANSFERLAB_CACHE", Path.home() / ".cache" / "transferlab"))


def file_digest(path: str | Path) -> str:
    """Content hash of a file (same bytes -> same key, wherever the file lives)."""
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


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
        return {"items": len(self), "bytes": self.bytes, "budget": self.budget, "hits": self.hits,
                "misses": self.misses, "not_cached": self.refused}


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
        self.entries[digest] = feats.detach().to("cpu", torch.float32).clone()

    def save(self) -> None:
        from .checkpoint import atomic_save
        atomic_save({"key": self.key, "features": self.entries}, self.path)
