"""Reproducible, stratified, group-aware train/val/test splits written as a manifest.

Images are never copied: the result is a ``split.csv`` (``path,label,split``) that
:func:`transferlab.data.load_index` reads like any data folder.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from ..files import write_text
from .audit import metadata_shortcuts
from .index import (
    SPLITS,
    DataError,
    DataIndex,
    Sample,
    conflict_note,
    file_digest,
    fill_quotas,
    group_units,
    imbalance_note,
    load_index,
    write_manifest,
)

__all__ = ["SplitSpec", "make_split", "split_folder", "read_groups", "name_groups", "duplicate_files"]


@dataclass
class SplitSpec:
    """How many images per class go to train and val; the rest go to test.

    Give counts (``train_per_class``) or fractions (``train_fraction``), not both.
    """

    train_per_class: int | None = None
    val_per_class: int | None = None
    train_fraction: float | None = None
    val_fraction: float | None = None
    seed: int = 0

    def quotas(self, n: int) -> dict[str, int]:
        if self.train_per_class is not None and self.train_fraction is not None:
            raise DataError("give either --train-per-class or --train-fraction, not both")
        if self.val_per_class is not None and self.val_fraction is not None:
            raise DataError("give either --val-per-class or --val-fraction, not both")
        if self.train_per_class is not None and self.train_per_class < 1:
            raise DataError(f"--train-per-class must be 1 or more, got {self.train_per_class}")
        if self.val_per_class is not None and self.val_per_class < 0:
            raise DataError(f"--val-per-class must be 0 or more, got {self.val_per_class}")
        for name, frac in (("--train-fraction", self.train_fraction), ("--val-fraction", self.val_fraction)):
            if frac is not None and not 0.0 <= frac <= 1.0:
                raise DataError(f"{name} must be between 0 and 1, got {frac}")
        if (self.train_fraction or 0.0) + (self.val_fraction or 0.0) > 1.0:
            raise DataError(f"--train-fraction + --val-fraction is over 1: {self.train_fraction} + {self.val_fraction}")
        if self.train_fraction == 0.0:
            raise DataError("--train-fraction 0 leaves nothing to train on")
        if self.train_per_class is not None:
            train = self.train_per_class
        else:
            train = round((0.7 if self.train_fraction is None else self.train_fraction) * n)
        if self.val_per_class is not None:
            val = self.val_per_class
        else:
            frac = (
                self.val_fraction
                if self.val_fraction is not None
                else (0.15 if self.train_per_class is None and self.train_fraction is None else 0.0)
            )
            val = round(frac * n)
        return {"train": min(train, n), "val": max(0, min(val, n - min(train, n)))}


def read_groups(path: str | Path, root: str | Path) -> list[set[str]]:
    """Groups of files that must stay on one side of the split.

    The CSV's first two columns (``file_a,file_b``, header optional) name files relative to
    ``root``; pairs sharing a file merge into one group.
    """
    root = Path(root)
    pairs = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                if len(row) < 2 or not row[0].strip():
                    continue
                a, b = row[0].strip(), row[1].strip()
                if (a, b) == ("file_a", "file_b") or a.lower() == "path":
                    continue
                pairs.append((str((root / a).resolve()), str((root / b).resolve())))
    except (OSError, UnicodeError, csv.Error) as e:
        why = "not UTF-8 text" if isinstance(e, UnicodeError) else getattr(e, "strerror", None) or str(e)
        raise DataError(f"--groups '{path}' cannot be read ({why}); give a CSV of pairs file_a,file_b") from None
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[find(a)] = find(b)
    groups: dict[str, set[str]] = defaultdict(set)
    for x in list(parent):
        groups[find(x)].add(x)
    return list(groups.values())


def name_groups(samples: list[Sample], groups: list[set[str]]) -> list[Sample]:
    """``samples`` with each member of a group (resolved paths, as :func:`read_groups` gives them)
    named ``g0``, ``g1``, ... by the group's first path; the others unchanged."""
    member_of = {p: gi for gi, g in enumerate(sorted(groups, key=min)) for p in g}
    named = []
    for s in samples:
        gi = member_of.get(str(Path(s.path).resolve()))
        named.append(s if gi is None else replace(s, group=f"g{gi}"))
    return named


def make_split(
    samples: list[Sample], n_classes: int, spec: SplitSpec, groups: list[set[str]] | None = None
) -> dict[str, list[Sample]]:
    """Assign every sample to train, val or test.

    Per-class quotas come from ``spec``; members of one group always land in one split
    (a group may span classes, e.g. a fake and the real photo it was edited from), and carry the
    group's name (``g0``, ``g1``, ...) so that training can keep them in one cross-validation fold
    too. Deterministic for a given ``spec.seed``.
    """
    rng = random.Random(spec.seed)
    order = group_units(name_groups(samples, groups or []))
    rng.shuffle(order)
    order.sort(key=len, reverse=True)  # place groups first so they fit the quotas exactly
    per_class = Counter(s.label for s in samples)
    room = {split: {c: spec.quotas(per_class[c])[split] for c in range(n_classes)} for split in ("train", "val")}
    out = fill_quotas(order, room, "test")
    return {k: sorted(out[k], key=lambda s: s.path) for k in SPLITS if out[k]}


def duplicate_files(splits: dict[str, list[Sample]]) -> list[tuple[str, str, str, str]]:
    """Byte-identical files that sit in two different splits: ``(path_a, split_a, path_b, split_b)``."""
    seen: dict[str, tuple[str, str]] = {}
    dups = []
    for split in SPLITS:
        for s in splits.get(split, []):
            h = file_digest(s.path)
            if h in seen and seen[h][1] != split:
                dups.append((seen[h][0], seen[h][1], s.path, split))
            seen.setdefault(h, (s.path, split))
    return dups


def _groups_outside(groups: list[set[str]], samples: list[Sample], groups_file, src) -> list[str]:
    """The warning when some of the files ``groups`` name are not among ``samples``; an error
    when none of them are (the CSV's paths are then relative to another folder)."""
    named = {p for g in groups for p in g}
    missing = named - {str(Path(s.path).resolve()) for s in samples}
    if missing == named:
        raise DataError(
            f"--groups '{groups_file}' names none of the images in '{src}'; its paths must be relative to {src}"
        )
    if not missing:
        return []
    return [
        f"{len(missing)} of the {len(named)} files --groups '{groups_file}' names are not images in '{src}' "
        f"(e.g. {min(missing)}); their pairs cannot be kept together"
    ]


def _no_test_note(index: DataIndex, spec: SplitSpec) -> list[str]:
    """Warnings for classes the split left without test images, unless the fractions asked for no
    test split (``--train-fraction`` + ``--val-fraction`` = 1)."""
    if spec.train_fraction is not None and spec.train_fraction + (spec.val_fraction or 0.0) >= 1.0:
        return []
    counts = index.counts()
    out = []
    for c in index.classes_without("test"):
        train, val = counts.get("train", {}).get(c, 0), counts.get("val", {}).get(c, 0)
        out.append(
            f"class '{c}' has no test images: all {train + val} went to train ({train}) and val ({val}), "
            "so test figures will lack it; ask for fewer with --train-per-class / --val-per-class"
        )
    return out


def split_folder(
    src: str | Path, out: str | Path, spec: SplitSpec, groups_file: str | Path | None = None
) -> tuple[DataIndex, list[str]]:
    """Split the images under ``src`` and write ``out/split.csv`` plus ``out/split.json``.

    Returns the new index and a list of warnings (e.g. byte-identical files across splits).
    """
    index = load_index(src)
    samples = index.all_samples()
    groups = read_groups(groups_file, src) if groups_file else None
    warnings = _groups_outside(groups, samples, groups_file, src) if groups else []
    splits = make_split(samples, len(index.classes), spec, groups)
    result = DataIndex(index.root, index.classes, splits, index.skipped)
    warnings += _no_test_note(result, spec)
    warnings += [
        f"byte-identical files in two splits: {a} ({sa}) == {b} ({sb})" for a, sa, b, sb in duplicate_files(splits)
    ]
    clash = conflict_note(index)
    if clash:
        warnings.append(clash)
    skew = imbalance_note(samples, index.classes)
    if skew:
        warnings.append(skew)
    warnings += [cut.text() for cut in metadata_shortcuts(samples, index.classes)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(result, out / "split.csv")
    info = {
        "source": str(Path(src).resolve()),
        "seed": spec.seed,
        "spec": spec.__dict__,
        "groups_file": str(groups_file) if groups_file else None,
        "groups": len(groups or []),
        "counts": result.counts(),
        "skipped": [{"path": p, "reason": r} for p, r in index.skipped],
        "warnings": warnings,
    }
    write_text((out / "split.json"), json.dumps(info, indent=2))
    return result, warnings
