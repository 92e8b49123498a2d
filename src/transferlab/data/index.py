"""Finding labelled images: ImageFolder (flat or pre-split) and CSV manifests.

A data source becomes a :class:`DataIndex`: class names, samples per split, and the files
that were skipped with the reason. Nothing here decodes pixels except :class:`ImageDataset`,
which skips unreadable files at load time instead of crashing the epoch.
"""

from __future__ import annotations

import csv
import glob
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..files import EMPTY_PATH
from .images import ImageReadError, check_image, is_image_name

__all__ = [
    "SPLITS",
    "DataError",
    "Sample",
    "DataIndex",
    "load_index",
    "read_manifest",
    "write_manifest",
    "carve_validation",
    "group_units",
    "fill_quotas",
    "conflicting_copies",
    "conflict_note",
    "imbalance_note",
    "printable",
    "file_digest",
    "expand_inputs",
]


def printable(text: str) -> str:
    """``text`` safe to print anywhere: file-name bytes that are not UTF-8 shown as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


SPLITS = ("train", "val", "test")
BROKEN_LINK = "broken or looping symbolic link"
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


class DataError(ValueError):
    """A data set that cannot be used as given; the message names the path and the fix."""


@dataclass(frozen=True)
class Sample:
    path: str
    label: int
    group: str = ""  # files sharing a group (e.g. a fake and the photo it came from) are never split apart


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

    def classes_without(self, split: str) -> list[str]:
        """The classes with no images in ``split`` (all of them when there is no such split)."""
        counts = self.counts().get(split, {})
        return [c for c in self.classes if not counts.get(c)]

    def all_samples(self) -> list[Sample]:
        return [s for split in SPLITS for s in self.splits.get(split, [])]


def _walk(folder: Path, skipped: list[tuple[str, str]]) -> list[str]:
    """Every file under ``folder``, recursively (``os.scandir``: no ``stat`` beyond what the
    directory listing gives; symlinked folders are not followed), sorted. Dangling or looping
    links and unlistable folders go to ``skipped``."""
    found, stack = [], [str(folder)]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as entries:
                for e in entries:
                    if e.name.startswith("."):
                        continue
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
                    elif e.is_symlink() and not os.path.exists(e.path):  # dangling, or a loop
                        skipped.append((e.path, BROKEN_LINK))
                    elif e.is_file():
                        found.append(e.path)
        except OSError as err:
            skipped.append((d, f"cannot list folder ({err.strerror})"))
    return sorted(found, key=lambda p: p.split(os.sep))  # the order Path objects sort in (part by part)


def _header_problem(path: str) -> str | None:
    try:
        check_image(path)
    except ImageReadError as e:
        return e.reason
    return None


PARALLEL_CHECKS = 2000  # from this many files on, header checks run in one process per core


def _check_headers(paths: list[str]) -> list[str | None]:
    """:func:`~transferlab.data.images.check_image` of every path (the reason, or None when
    fine), in order; spread over the cores for large folders (forked workers, Linux)."""
    import multiprocessing

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if len(paths) < PARALLEL_CHECKS or cores < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [_header_problem(p) for p in paths]
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=cores, mp_context=ctx) as pool:
        return list(pool.map(_header_problem, paths, chunksize=256))


def _list_class_dir(folder: Path, skipped: list[tuple[str, str]], verify: bool) -> list[str]:
    """Readable-looking image files in ``folder`` (recursively), sorted; others go to ``skipped``."""
    files = []
    for p in _walk(folder, skipped):
        if is_image_name(p):
            files.append(p)
        else:
            skipped.append((p, f"not an image file name (suffix '{os.path.splitext(p)[1]}')"))
    if not verify:
        return files
    good = []
    for p, problem in zip(files, _check_headers(files)):
        if problem is None:
            good.append(p)
        else:
            skipped.append((p, problem))
    return good


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _loose_images(root: Path) -> list[str]:
    """Image files directly in ``root``, outside any class folder, sorted."""
    return sorted(str(p) for p in root.iterdir() if p.is_file() and is_image_name(p)) if root.is_dir() else []


def _scan_folder(root: Path, classes: list[str] | None, skipped, verify) -> tuple[list[str], list[Sample]]:
    dirs = _class_dirs(root)
    names = [d.name for d in dirs] if classes is None else classes
    if dirs:
        skipped += [(p, "outside the class folders: move it into one to use it") for p in _loose_images(root)]
    samples: list[Sample] = []
    for d in dirs:
        if d.name not in names:
            raise DataError(
                f"class folder '{_show(d)}' is not one of the training classes {names}; rename it or remove it"
            )
        before = len(skipped)
        files = _list_class_dir(d, skipped, verify)
        if not files:
            bad = [f"{Path(p).name} ({r})" for p, r in skipped[before:]]
            detail = (
                f" ({len(bad)} files skipped: {', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''})" if bad else ""
            )
            raise DataError(
                f"class folder '{_show(d)}' has no readable images{detail}; add images or remove the folder"
            )
        samples += [Sample(f, names.index(d.name)) for f in files]
    return names, samples


def load_index(source: str | Path, verify: bool = True) -> DataIndex:
    """Index a data source.

    ``source`` is a flat ImageFolder (``root/<class>/*``), a pre-split one
    (``root/{train,val,test}/<class>/*``) or a CSV manifest (``path,label[,split]``).
    A flat folder puts everything in ``train``. Raises :class:`DataError`.
    """
    if str(source) == "":  # Path("") is the current folder
        raise DataError(f"data: {EMPTY_PATH}; give an image folder or a CSV manifest")
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
        loose = len(_loose_images(Path(index.root)))
        hint = (
            f"; its {loose} image(s) sit directly in it, as in one class's folder: give the folder above, "
            "which holds one folder per class"
            if loose
            else ""
        )
        raise DataError(
            f"'{index.root}' has {len(index.classes)} class(es) {index.classes}; "
            f"a classifier needs at least two class folders (root/<class>/images){hint}"
        )


def _read_manifest_rows(path: Path) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """``(path, label, split, group)`` rows of a manifest, each file once, and notes (duplicate rows).

    Text that is not UTF-8 (e.g. Latin-1) keeps its bytes through ``surrogateescape``, so file
    names with any bytes a file system allows still find their files."""
    base = path.parent
    rows: dict[str, tuple[str, str, str, str]] = {}
    notes, dup = [], 0
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            reader = csv.DictReader(f)
            cols = set(reader.fieldnames or [])
            if not {"path", "label"} <= cols:
                raise DataError(
                    f"manifest '{path}' needs a header with columns path,label[,split]; found {sorted(cols)}"
                )
            for n, row in enumerate(reader, start=2):
                raw, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
                if "\x00" in raw:
                    raise DataError(f"manifest '{path}' line {n}: the path holds a NUL character; fix the row")
                if not raw or not label:
                    raise DataError(
                        f"manifest '{path}' line {n}: {'path' if not raw else 'label'} is empty; "
                        "every row needs path,label[,split]"
                    )
                split = _SPLIT_ALIASES.get((row.get("split") or "train").strip().lower())
                if split is None:
                    raise DataError(
                        f"manifest '{path}' line {n}: split '{_show(row.get('split'))}' is not train, val or test"
                    )
                p = Path(raw)
                full = os.path.normpath(p if p.is_absolute() else base / p)
                if full in rows:
                    if rows[full][1:3] != (label, split):
                        raise DataError(
                            f"manifest '{path}' line {n}: '{_show(raw)}' is listed again as {_show(label)}/{split}, "
                            f"earlier as {_show(rows[full][1])}/{rows[full][2]}; keep one row per file"
                        )
                    dup += 1
                    continue
                rows[full] = (full, label, split, (row.get("group") or "").strip())
    except csv.Error as e:
        raise DataError(f"manifest '{path}' is not a readable CSV ({e})") from None
    except UnicodeError as e:
        raise DataError(f"manifest '{path}' cannot be decoded ({e}); save it as UTF-8") from None
    if dup:
        notes.append(f"manifest '{path}': {dup} duplicate row(s) ignored (each file counts once)")
    return list(rows.values()), notes


def _show(value: object) -> str:
    """A manifest field in a one-line message: control characters (a newline in a quoted field) escaped."""
    return repr(str(value))[1:-1]


def read_manifest(path: str | Path, verify: bool = True) -> DataIndex:
    """Read a ``path,label[,split[,group]]`` CSV. Relative paths are relative to the CSV's folder;
    ``group`` names files that belong together (see :mod:`transferlab.data.split`)."""
    path = Path(path)
    rows, notes = _read_manifest_rows(path)
    classes = sorted({row[1] for row in rows})
    skipped: list[tuple[str, str]] = []
    splits: dict[str, list[Sample]] = {}
    for p, label, split, group in rows:
        if verify:
            try:
                check_image(p)
            except ImageReadError as e:
                skipped.append((p, e.reason))
                continue
        splits.setdefault(split, []).append(Sample(p, classes.index(label), group))
    index = DataIndex(str(path), classes, {s: splits[s] for s in SPLITS if s in splits}, skipped, notes)
    _check_classes(index)
    for i, name in enumerate(classes):
        if not any(s.label == i for s in index.all_samples()):
            raise DataError(f"manifest '{path}': class '{_show(name)}' has no readable images")
    return index


IMBALANCE_WARN = 3.0  # warn when the largest class has more than this many times the smallest's images


def imbalance_note(samples: Sequence[Sample], classes: list[str], limit: float = IMBALANCE_WARN) -> str | None:
    """A warning when the classes of ``samples`` differ in size by more than ``limit`` times,
    saying what to use; None when they are balanced enough."""
    counts = Counter(s.label for s in samples)
    sizes = [counts.get(i, 0) for i in range(len(classes))]
    if not samples or min(sizes) == 0 or max(sizes) <= limit * min(sizes):
        return None
    listed = ", ".join(f"{c} {n}" for c, n in zip(classes, sizes))
    return (
        f"classes are imbalanced ({listed}: {max(sizes) / min(sizes):.1f} to 1); train with --class-weights auto "
        "or --sampler balanced, and judge runs by balanced accuracy"
    )


def conflicting_copies(index: DataIndex) -> list[tuple[str, str, str, str]]:
    """Byte-identical files filed under two different classes: ``(path_a, class_a, path_b, class_b)``.
    Such a pair teaches the model nothing but noise, and usually means a mislabelled copy."""
    seen: dict[str, tuple[str, int]] = {}
    out = []
    for s in index.all_samples():
        try:
            h = file_digest(s.path)
        except OSError:
            continue
        if h in seen and seen[h][1] != s.label:
            out.append((seen[h][0], index.classes[seen[h][1]], s.path, index.classes[s.label]))
        seen.setdefault(h, (s.path, s.label))
    return out


def conflict_note(index: DataIndex) -> str | None:
    """One line on the files of ``index`` that have the same bytes under two classes, or ``None``."""
    clash = conflicting_copies(index)
    if not clash:
        return None
    a, ca, b, cb = clash[0]
    return (
        f"{len(clash)} file(s) have the same bytes under two classes, e.g. {a} ({ca}) == {b} ({cb}); "
        "remove or relabel the copy"
    )


def write_manifest(index: DataIndex, path: str | Path, relative: bool = True) -> None:
    """Write ``path,label,split`` rows (and ``group`` when any sample has one); paths relative to
    the CSV's folder when ``relative``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    # surrogateescape: file names that are not UTF-8 are written back as the same bytes
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        w = csv.writer(f)
        grouped = any(s.group for s in index.all_samples())
        w.writerow(["path", "label", "split", *(["group"] if grouped else [])])
        for split in SPLITS:
            for s in index.splits.get(split, []):
                p = Path(s.path).resolve()
                shown = Path(_relpath(p, base)) if relative else p
                w.writerow([shown.as_posix(), index.classes[s.label], split, *([s.group] if grouped else [])])


def _relpath(p: Path, base: Path) -> str:
    try:
        return os.path.relpath(p, base)
    except ValueError:  # different drives on Windows
        return str(p)


def carve_validation(samples: Sequence[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Stratified, seeded split of ``samples`` into (train, val); every class keeps >= 1 train image.
    Samples that share a ``group`` land on one side (then the per-class counts are the same
    targets, filled greedily by whole groups)."""
    if any(s.group for s in samples):
        return _carve_grouped(samples, fraction, seed)
    rng = random.Random(seed)
    by_class: dict[int, list[Sample]] = defaultdict(list)
    for s in samples:
        by_class[s.label].append(s)
    train, val = [], []
    for label in sorted(by_class):
        items = sorted(by_class[label], key=lambda s: s.path)
        rng.shuffle(items)
        n_val = _val_count(len(items), fraction)
        val += items[:n_val]
        train += items[n_val:]
    return train, val


def _val_count(n: int, fraction: float) -> int:
    """Validation images carved from a class of ``n``: at least one, and at least one left to train."""
    return min(n - 1, max(1, round(fraction * n))) if n > 1 else 0


def group_units(samples: Sequence[Sample]) -> list[list[Sample]]:
    """``samples`` by path, gathered into the units a split moves whole: the members of a group
    together, every other sample alone."""
    units: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for s in sorted(samples, key=lambda s: s.path):
        units[(s.group, "") if s.group else ("", s.path)].append(s)
    return list(units.values())


def _carve_grouped(samples: Sequence[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    rng = random.Random(seed)
    order = group_units(samples)
    rng.shuffle(order)
    room = {c: _val_count(n, fraction) for c, n in Counter(s.label for s in samples).items()}
    out = fill_quotas(order, {"val": room}, "train")
    return sorted(out["train"], key=lambda s: s.path), sorted(out["val"], key=lambda s: s.path)


def fill_quotas(units: list[list[Sample]], room: dict[str, dict[int, int]], rest: str) -> dict[str, list[Sample]]:
    """Deal ``units`` in order, each whole, to the first split in ``room`` whose per-class room
    still takes all of it (that room shrinks), else to ``rest``."""
    out: dict[str, list[Sample]] = {split: [] for split in (*room, rest)}
    for unit in units:
        need = Counter(s.label for s in unit)
        target = next((k for k, left in room.items() if all(left.get(c, 0) >= n for c, n in need.items())), rest)
        if target != rest:
            for c, n in need.items():
                room[target][c] -= n
        out[target] += unit
    return out


_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> digest, for this process


def file_digest(path: str | Path) -> str:
    """Content hash of a file (same bytes -> same key, wherever the file lives). Remembered per
    path, size and modification time, so the copy check, the split check and the feature cache
    read each file once between them."""
    import hashlib

    st = os.stat(path)
    key = (os.fspath(path), st.st_size, st.st_mtime_ns)
    digest = _DIGESTS.get(key)
    if digest is None:
        digest = hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()
        if len(_DIGESTS) >= 1_000_000:  # a long-lived process: start over rather than grow
            _DIGESTS.clear()
        _DIGESTS[key] = digest
    return digest


def expand_inputs(items: Iterable[str | Path]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files, folders (recursive, image suffixes) and globs -> (unique files, problems). An empty
    string is a problem, not the current folder that ``Path("")`` means."""
    files, problems = [], []
    for item in items:
        p = Path(item)
        if str(item) == "":
            problems.append(("", EMPTY_PATH))
        elif p.is_dir():
            found, broken = [], []
            for f in p.rglob("*"):
                if is_image_name(f) and f.is_file():
                    found.append(str(f))
                elif is_image_name(f) and f.is_symlink() and not f.exists():
                    broken.append((str(f), BROKEN_LINK))
            files += sorted(found)
            problems += sorted(broken)
            if not found and not broken:
                problems.append((str(p), "folder has no image files"))
        elif p.is_file():
            files.append(str(p))
        elif p.is_symlink():
            problems.append((str(p), BROKEN_LINK))
        else:
            matched = sorted(f for f in glob.glob(str(item), recursive=True) if Path(f).is_file())
            files += matched
            if not matched:
                problems.append((str(item), "no such file, folder or glob match"))
    return list(dict.fromkeys(files)), list(dict.fromkeys(problems))  # each once, first-seen order
