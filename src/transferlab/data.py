"""Finding labelled images: ImageFolder (flat or pre-split) and CSV manifests.

A data source becomes a :class:`DataIndex`: class names, samples per split, and the files
that were skipped with the reason. Nothing here decodes pixels except :class:`ImageDataset`,
which skips unreadable files at load time instead of crashing the epoch.
"""
from __future__ import annotations

import csv
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from .images import ImageReadError, check_image, is_image_name, load_rgb, load_uint8, prepare

__all__ = ["SPLITS", "DataError", "Sample", "DataIndex", "load_index", "read_manifest",
           "write_manifest", "carve_validation", "ImageDataset", "collate_skipping", "make_loader",
           "default_workers", "threaded_batches", "conflicting_copies", "printable"]


def printable(text: str) -> str:
    """``text`` safe to print anywhere: file-name bytes that are not UTF-8 shown as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                  "validation": "val", "test": "test", "testing": "test"}


class DataError(ValueError):
    """A data set that cannot be used as given; the message names the path and the fix."""


@dataclass(frozen=True)
class Sample:
    path: str
    label: int


@dataclass
class DataIndex:
    """Class names, samples per split and skipped files of one data source."""

    root: str
    classes: list[str]
    splits: dict[str, list[Sample]]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class: count}}`` for the summary and the report."""
        out = {}
        for split, samples in self.splits.items():
            c = Counter(s.label for s in samples)
            out[split] = {name: c.get(i, 0) for i, name in enumerate(self.classes)}
        return out

    def all_samples(self) -> list[Sample]:
        return [s for split in SPLITS for s in self.splits.get(split, [])]


def _list_class_dir(folder: Path, skipped: list[tuple[str, str]], verify: bool) -> list[str]:
    """Readable-looking image files in ``folder`` (recursively), sorted; others go to ``skipped``."""
    good = []
    for p in sorted(folder.rglob("*")):
        if p.name.startswith("."):
            continue
        if p.is_symlink() and not p.exists():  # dangling, or a loop (a link to itself)
            skipped.append((str(p), "broken or looping symbolic link"))
            continue
        if not p.is_file():
            continue
        if not is_image_name(p):
            skipped.append((str(p), f"not an image file name (suffix '{p.suffix}')"))
            continue
        if verify:
            try:
                check_image(p)
            except ImageReadError as e:
                skipped.append((str(p), e.reason))
                continue
        good.append(str(p))
    return good


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _scan_folder(root: Path, classes: list[str] | None, skipped, verify) -> tuple[list[str], list[Sample]]:
    dirs = _class_dirs(root)
    names = [d.name for d in dirs] if classes is None else classes
    samples: list[Sample] = []
    for d in dirs:
        if d.name not in names:
            raise DataError(f"class folder '{d}' is not one of the training classes {names}; "
                            "rename it or remove it")
        before = len(skipped)
        files = _list_class_dir(d, skipped, verify)
        if not files:
            bad = [f"{Path(p).name} ({r})" for p, r in skipped[before:]]
            detail = f" ({len(bad)} files skipped: {', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''})" if bad else ""
            raise DataError(f"class folder '{d}' has no readable images{detail}; "
                            "add images or remove the folder")
        samples += [Sample(f, names.index(d.name)) for f in files]
    return names, samples


def load_index(source: str | Path, verify: bool = True) -> DataIndex:
    """Index a data source.

    ``source`` is a flat ImageFolder (``root/<class>/*``), a pre-split one
    (``root/{train,val,test}/<class>/*``) or a CSV manifest (``path,label[,split]``).
    A flat folder puts everything in ``train``. Raises :class:`DataError`.
    """
    src = Path(source)
    if not src.exists():
        raise DataError(f"data path '{src}' does not exist")
    if src.is_file():
        if src.suffix.lower() != ".csv":
            raise DataError(f"'{src}' is a file but not a CSV manifest (path,label[,split])")
        return read_manifest(src, verify=verify)
    skipped: list[tuple[str, str]] = []
    sub = {d.name.lower(): d for d in _class_dirs(src)}
    split_dirs = {_SPLIT_ALIASES[k]: d for k, d in sub.items() if k in _SPLIT_ALIASES}
    if "train" in split_dirs or ("test" in split_dirs and len(split_dirs) == len(sub)):
        classes: list[str] | None = None
        splits: dict[str, list[Sample]] = {}
        for split in SPLITS:
            if split in split_dirs:
                found, samples = _scan_folder(split_dirs[split], classes, skipped, verify)
                classes = classes or found
                splits[split] = samples
        index = DataIndex(str(src), classes or [], splits, skipped)
    else:
        classes, samples = _scan_folder(src, None, skipped, verify)
        index = DataIndex(str(src), classes, {"train": samples}, skipped)
    _check_classes(index)
    return index


def _check_classes(index: DataIndex) -> None:
    if len(index.classes) < 2:
        raise DataError(f"'{index.root}' has {len(index.classes)} class(es) {index.classes}; "
                        "a classifier needs at least two class folders (root/<class>/images)")


def _read_manifest_rows(path: Path) -> tuple[list[tuple[str, str, str]], list[str]]:
    """``(path, label, split)`` rows of a manifest, each file once, and notes (duplicate rows).

    Text that is not UTF-8 (e.g. Latin-1) keeps its bytes through ``surrogateescape``, so file
    names with any bytes a file system allows still find their files."""
    base = path.parent
    rows: dict[str, tuple[str, str, str]] = {}
    notes, dup = [], 0
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            reader = csv.DictReader(f)
            cols = set(reader.fieldnames or [])
            if not {"path", "label"} <= cols:
                raise DataError(f"manifest '{path}' needs a header with columns path,label[,split]; "
                                f"found {sorted(cols)}")
            for n, row in enumerate(reader, start=2):
                raw, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
                if not raw or not label:
                    raise DataError(f"manifest '{path}' line {n}: {'path' if not raw else 'label'} is empty; "
                                    "every row needs path,label[,split]")
                split = _SPLIT_ALIASES.get((row.get("split") or "train").strip().lower())
                if split is None:
                    raise DataError(f"manifest '{path}' line {n}: split '{row.get('split')}' is not "
                                    "train, val or test")
                p = Path(raw)
                full = os.path.normpath(p if p.is_absolute() else base / p)
                if full in rows:
                    if rows[full][1:] != (label, split):
                        raise DataError(f"manifest '{path}' line {n}: '{raw}' is listed again as {label}/{split}, "
                                        f"earlier as {rows[full][1]}/{rows[full][2]}; keep one row per file")
                    dup += 1
                    continue
                rows[full] = (full, label, split)
    except csv.Error as e:
        raise DataError(f"manifest '{path}' is not a readable CSV ({e})") from None
    except UnicodeError as e:
        raise DataError(f"manifest '{path}' cannot be decoded ({e}); save it as UTF-8") from None
    if dup:
        notes.append(f"manifest '{path}': {dup} duplicate row(s) ignored (each file counts once)")
    return list(rows.values()), notes


def read_manifest(path: str | Path, verify: bool = True) -> DataIndex:
    """Read a ``path,label[,split]`` CSV. Relative paths are relative to the CSV's folder."""
    path = Path(path)
    rows, notes = _read_manifest_rows(path)
    classes = sorted({label for _, label, _ in rows})
    skipped: list[tuple[str, str]] = []
    splits: dict[str, list[Sample]] = {}
    for p, label, split in rows:
        if verify:
            try:
                check_image(p)
            except ImageReadError as e:
                skipped.append((p, e.reason))
                continue
        splits.setdefault(split, []).append(Sample(p, classes.index(label)))
    index = DataIndex(str(path), classes, {s: splits[s] for s in SPLITS if s in splits}, skipped, notes)
    _check_classes(index)
    for i, name in enumerate(classes):
        if not any(s.label == i for s in index.all_samples()):
            raise DataError(f"manifest '{path}': class '{name}' has no readable images")
    return index


def conflicting_copies(index: DataIndex) -> list[tuple[str, str, str, str]]:
    """Byte-identical files filed under two different classes: ``(path_a, class_a, path_b, class_b)``.
    Such a pair teaches the model nothing but noise, and usually means a mislabelled copy."""
    import hashlib
    seen: dict[str, tuple[str, int]] = {}
    out = []
    for s in index.all_samples():
        try:
            with open(s.path, "rb") as f:
                h = hashlib.blake2b(f.read(), digest_size=16).hexdigest()
        except OSError:
            continue
        if h in seen and seen[h][1] != s.label:
            out.append((seen[h][0], index.classes[seen[h][1]], s.path, index.classes[s.label]))
        seen.setdefault(h, (s.path, s.label))
    return out


def write_manifest(index: DataIndex, path: str | Path, relative: bool = True) -> None:
    """Write ``path,label,split`` rows; paths relative to the CSV's folder when ``relative``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    # surrogateescape: file names that are not UTF-8 are written back as the same bytes
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for split in SPLITS:
            for s in index.splits.get(split, []):
                p = Path(s.path).resolve()
                shown = Path(_relpath(p, base)) if relative else p
                w.writerow([shown.as_posix(), index.classes[s.label], split])


def _relpath(p: Path, base: Path) -> str:
    try:
        return os.path.relpath(p, base)
    except ValueError:  # different drives on Windows
        return str(p)


def carve_validation(samples: Sequence[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Stratified, seeded split of ``samples`` into (train, val); every class keeps >= 1 train image."""
    rng = random.Random(seed)
    by_class: dict[int, list[Sample]] = defaultdict(list)
    for s in samples:
        by_class[s.label].append(s)
    train, val = [], []
    for label in sorted(by_class):
        items = sorted(by_class[label], key=lambda s: s.path)
        rng.shuffle(items)
        n_val = min(len(items) - 1, max(1, round(fraction * len(items)))) if len(items) > 1 else 0
        val += items[:n_val]
        train += items[n_val:]
    return train, val


class ImageDataset(Dataset):
    """Decodes ``samples`` to uint8 tensors (short side shrunk to ``decode_size``) and applies
    ``transform``.

    ``cache``: a :class:`~transferlab.cache.DecodedImageCache` so each file is decoded once.
    ``seed``: make item ``i``'s random augmentation depend only on ``(seed, i)``, not on
    order or worker (used to extract reproducible augmented views).
    ``perturb``: a PIL -> PIL degradation applied to the full-resolution decoded image before
    anything else (robustness evaluation: ``transferlab evaluate --perturb``).
    An unreadable file yields ``(None, label, index, reason)`` instead of raising, so a
    broken JPEG found mid-epoch is reported by :func:`collate_skipping`, not fatal.
    """

    def __init__(self, samples: Sequence[Sample], transform: Callable | None = None,
                 decode_size: int | None = None, cache=None, seed: int | None = None,
                 perturb: Callable | None = None):
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


def make_loader(samples: "Sequence[Sample] | ImageDataset", transform: Callable | None, batch_size: int, shuffle: bool,
                num_workers: int = -1, seed: int = 0, pin_memory: bool = False,
                decode_size: int | None = None, cache=None, item_seed: int | None = None):
    """A DataLoader over :class:`ImageDataset` that skips unreadable files (see
    :func:`collate_skipping`); seeded shuffling, persistent workers.

    With a decoded-image ``cache`` the data is read in this process (``num_workers`` 0), since
    worker processes would each hold their own copy. ``samples`` may be a ready
    :class:`ImageDataset` (then ``transform``, ``decode_size``, ``cache``, ``item_seed`` are its own).
    """
    from torch.utils.data import DataLoader
    workers = default_workers() if num_workers < 0 else num_workers
    workers = 0 if cache is not None or getattr(samples, "cache", None) is not None else workers
    workers = min(workers, max(1, len(samples) // max(batch_size, 1))) if workers else 0
    g = torch.Generator()
    g.manual_seed(seed)
    ds = samples if isinstance(samples, ImageDataset) else ImageDataset(samples, transform, decode_size, cache,
                                                                         item_seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      collate_fn=collate_skipping, pin_memory=pin_memory,
                      persistent_workers=workers > 0, generator=g, drop_last=False)


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
