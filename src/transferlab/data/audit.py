"""Shortcuts in how the files were saved: traits of the file, not of the picture, that one class
has and the others lack.

A detector trained on such data can score well by learning how its files were saved (a second
JPEG save with other quantisation tables, another pixel size, a colour profile) instead of what
they show, and then fails on files saved any other way. ``ciplab_real_and_fake_face`` is the
example in ``../shared/data``: all its real photos share one set of JPEG tables, and a quarter
of its fakes were re-saved by Photoshop with others. A probe of hand-made features that see the
JPEG grid scored +3.4 points ROC-AUC fused with the default detector, all of it on those
re-saved fakes (BENCHMARKS.md, "Probe: forensic noise and JPEG-grid features").

:func:`file_traits` reads the header only (no pixels decoded); :func:`metadata_shortcuts` names
every trait value that only one class's files have, when enough of that class has it to matter.
Torch-free.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image, JpegImagePlugin

from .index import Sample

__all__ = ["TRAITS", "Shortcut", "file_traits", "metadata_shortcuts", "jpeg_quality"]

# trait -> how a message names it
TRAITS = {
    "format": "file format",
    "size": "pixel size",
    "mode": "colour mode",
    "jpeg_tables": "JPEG quantisation tables",
    "jpeg_sampling": "JPEG chroma subsampling",
    "progressive": "progressive JPEG",
    "exif": "EXIF metadata",
    "icc": "ICC colour profile",
}

# The IJG standard luminance table (quality 50); a file's table is this scaled by its quality.
_IJG_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip


def jpeg_quality(luma: Sequence[int]) -> int:
    """The IJG quality (1-100) whose luminance table is closest in scale to ``luma`` (64 values,
    in any order: only their sum is used). An estimate for messages, not a decoder's truth."""
    scale = 100.0 * sum(luma) / sum(_IJG_LUMA)  # IJG: table = std * scale / 100
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return int(min(100, max(1, round(quality))))


def file_traits(path: str) -> dict[str, str]:
    """The header traits of one file (see :data:`TRAITS`); ``{}`` when it cannot be opened
    (reading images is not this module's job: the loaders report such files)."""
    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: only the header is read
            out = {
                "format": str(im.format),
                "size": f"{im.size[0]}x{im.size[1]}",
                "mode": im.mode,
                "exif": "yes" if im.info.get("exif") else "no",
                "icc": "yes" if im.info.get("icc_profile") else "no",
            }
            if im.format == "JPEG":
                tables = getattr(im, "quantization", None) or {}
                text = ";".join(f"{k}:{','.join(map(str, v))}" for k, v in sorted(tables.items()))
                quality = f"quality ~{jpeg_quality(tables[0])}" if 0 in tables and len(tables[0]) == 64 else "?"
                out["jpeg_tables"] = f"{quality} [{hashlib.sha1(text.encode()).hexdigest()[:8]}]"
                out["progressive"] = "yes" if im.info.get("progressive") else "no"
                out["jpeg_sampling"] = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(
                    JpegImagePlugin.get_sampling(im), "other"
                )
            return out
    except Exception:  # PIL raises many types for broken headers
        return {}


@dataclass(frozen=True)
class Shortcut:
    """``count`` of the ``total`` files of class ``cls`` (``paths``) have a ``trait`` value
    (``values``, the commonest first) that no file of another class has."""

    trait: str
    cls: str
    count: int
    total: int
    values: tuple[str, ...]
    paths: tuple[str, ...] = field(repr=False)

    @property
    def example(self) -> str:
        return self.paths[0]

    @property
    def share(self) -> float:
        return self.count / self.total

    def text(self) -> str:
        shown = ", ".join(self.values[:3]) + (f" and {len(self.values) - 3} more" if len(self.values) > 3 else "")
        return (
            f"{self.count} of {self.total} '{self.cls}' files ({self.share:.0%}) have {TRAITS[self.trait]} "
            f"that no other class has ({shown}; e.g. {self.example}): a model can tell them by how the "
            "files were saved, not by what they show; re-save every class the same way, or judge the "
            "model on data saved alike"
        )


def metadata_shortcuts(
    samples: Sequence[Sample],
    classes: Sequence[str],
    min_share: float = 0.05,
    min_files: int = 3,
) -> list[Shortcut]:
    """Trait values held by one class only, when those values together cover at least
    ``min_share`` of the class: per trait, the class with the largest such share. Traits only
    some formats have (JPEG tables) are compared among the classes whose files have them. A
    value counts only if ``min_files`` files share it, so that one-off values (a photo
    collection's many pixel sizes) are not called a pattern. The largest share first. Needs two
    or more classes; files that cannot be opened are left out."""
    per_value: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    paths: dict[tuple[str, str, int], list[str]] = defaultdict(list)
    totals: Counter = Counter()
    for s in samples:
        traits = file_traits(s.path)
        if not traits:
            continue
        totals[s.label] += 1
        for trait, value in traits.items():
            per_value[trait][value][s.label] += 1
            paths[trait, value, s.label].append(s.path)
    if len(totals) < 2:
        return []
    found = []
    for trait, values in per_value.items():
        having = Counter()  # files per class that have the trait at all (JPEG traits: JPEG files)
        for by_class in values.values():
            having.update(by_class)
        best = None
        for label, total in totals.items():
            if not any(n for other, n in having.items() if other != label):
                continue  # no other class to compare with (e.g. the only class with JPEG files)
            own = [
                (by_class[label], value)
                for value, by_class in values.items()
                if by_class[label] >= min_files and sum(by_class.values()) == by_class[label]
            ]
            count = sum(n for n, _ in own)
            if count and count >= min_share * total:
                own.sort(key=lambda nv: (-nv[0], nv[1]))
                shown = tuple(f"{v} ({n})" for n, v in own)
                files = tuple(p for _, v in own for p in paths[trait, v, label])
                cut = Shortcut(trait, classes[label], count, total, shown, files)
                best = cut if best is None or cut.share > best.share else best
        if best:  # one finding per trait: two classes with a format each are one fact
            found.append(best)
    return sorted(found, key=lambda f: (-f.share, f.trait, f.cls))
