"""The run folder: one type that knows every file a run writes and reads, so no other module
spells a file name or parses a file on its own.

A run folder holds ``config.yaml`` (the resolved config), ``split.csv`` (exactly which files were
used), ``metrics.csv`` (one row per epoch), ``best.pt`` and ``last.pt`` (self-describing
checkpoints, both with the decision threshold once training has finished), ``summary.json``,
``eval.json`` (after ``transferlab evaluate``) and the figures and ``report.html``. Every file is
written atomically (:mod:`transferlab.files`).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, TrainConfig, config_to_dict, load_config
from .files import OutputError, check_writable, clean_temporaries, write_text

__all__ = ["next_run_dir", "RunFolder", "RunFolderError", "METRIC_FIELDS", "refuse_inside_data"]

METRIC_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_metric", "lr", "seconds"]


def next_run_dir(base: str | Path = "runs/run") -> Path:
    """``base`` if it is free, else ``base2``, ``base3``, ...: the first name not taken (how
    Ultralytics names ``runs/train``, ``runs/train2``), so a default never lands on an earlier run."""
    base = Path(base)
    if not base.exists():
        return base
    n = 2
    while (candidate := base.with_name(f"{base.name}{n}")).exists():
        n += 1
    return candidate


class RunFolderError(ConfigError):
    """A run folder that cannot be used as asked (exists already, or is not a run folder)."""


def refuse_inside_data(out: str | Path, data: str | Path) -> None:
    """A :class:`RunFolderError` when ``out`` lies inside the image folder ``data``: the charts
    and grids written there would be read as images of a class the next time the data is indexed.
    A manifest (CSV) lists its files, so a run beside it is harmless."""
    root = Path(data).resolve()
    if not root.is_dir():
        return
    where = Path(out).resolve()
    if where == root or root in where.parents:
        raise RunFolderError(
            f"--out '{out}' is inside the data folder '{data}': the images written there (curves, "
            "grids, heatmaps) would be read as training images the next time; choose --out outside it"
        )


@dataclass(frozen=True)
class RunFolder:
    """Paths and readers/writers of one run folder."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    # -- file names -------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def split(self) -> Path:
        return self.path / "split.csv"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def eval(self) -> Path:
        return self.path / "eval.json"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    def file(self, name: str) -> Path:
        return self.path / name

    # -- state --------------------------------------------------------------------------------
    def is_run(self) -> bool:
        """Whether the folder holds a run (a config was written)."""
        return self.config.is_file()

    def finished(self) -> bool:
        return self.summary.is_file()

    def prepare_new(self, overwrite: bool = False) -> None:
        """Make the folder ready for a new run: refuse one that holds a run (unless ``overwrite``,
        which deletes it) or any other files; check that it can be written."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise RunFolderError(f"--out '{p}' is a file, not a folder; choose another --out")
        if p.is_dir() and any(p.iterdir()):
            if not self.is_run():
                raise RunFolderError(
                    f"--out '{p}' exists and is not empty (and is not a run folder); choose a new folder for the run"
                )
            if not overwrite:
                raise RunFolderError(
                    f"'{p}' holds a run already; continue it with --resume {p}, replace it with "
                    "--overwrite, or choose another --out"
                )
            try:
                shutil.rmtree(p)
            except OSError as e:
                raise OutputError(e.errno or 0, f"cannot clear '{p}' for --overwrite: {e.strerror}") from None
        check_writable(p)

    def clean_temporaries(self) -> None:
        """Remove half-written temporary files an interrupted run left behind."""
        clean_temporaries(self.path)

    # -- config and split ---------------------------------------------------------------------
    def write_config(self, cfg: TrainConfig) -> None:
        write_text(self.config, yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True))

    def read_config(self, overrides: dict | None = None) -> TrainConfig:
        if not self.config.is_file():
            raise RunFolderError(
                f"'{self.path}' is not a run folder (no config.yaml); give the data and --out to start a run"
            )
        return load_config(None, overrides or {}, base=TrainConfig(**self.read_settings()))

    def read_settings(self) -> dict:
        """The saved config as written, unchecked (for display); empty when there is none."""
        if not self.config.is_file():
            return {}
        return yaml.safe_load(self.config.read_text(encoding="utf-8", errors="surrogateescape")) or {}

    def write_split(self, index) -> None:
        from .data.index import write_manifest

        write_manifest(index, self.split, relative=False)

    def read_split(self, verify: bool = True):
        from .data.index import read_manifest

        return read_manifest(self.split, verify=verify)

    # -- per-epoch metrics ----------------------------------------------------------------------
    def write_metrics(self, history: Sequence[dict]) -> None:
        """``metrics.csv`` rewritten whole from the history (kept in ``last.pt``), so a run killed
        between two writes never shows an epoch twice or misses one after ``--resume``."""
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, extrasaction="ignore")
        w.writeheader()
        for row in history:
            w.writerow(row)
        write_text(self.metrics, buf.getvalue())

    def read_metrics(self) -> list[dict[str, str]]:
        with open(self.metrics, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    # -- json files --------------------------------------------------------------------------
    def write_json(self, path: Path, data: Any) -> None:
        write_text(path, json.dumps(data, indent=2))

    def read_summary(self) -> dict:
        return json.loads(self.summary.read_text()) if self.summary.is_file() else {}

    def read_eval(self) -> dict | None:
        return json.loads(self.eval.read_text()) if self.eval.is_file() else None

    def evaluated(self, out: str | Path | None = None) -> bool:
        """Whether an evaluation of this run (``eval.json`` in ``out``, default this folder) was
        written after the training finished, so it is of the model the folder holds now."""
        ev = RunFolder(out).eval if out is not None else self.eval
        return ev.is_file() and self.summary.is_file() and ev.stat().st_mtime >= self.summary.stat().st_mtime
