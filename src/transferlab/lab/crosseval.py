"""Cross-source evaluation: train a detector on each of several real/fake data sets and test it on
every one of them. The diagonal is the familiar in-source score; the rest of the matrix is what a
detector is judged on in practice, fakes from sources it never saw.

``crosseval(["data/a", "data/b"], out)`` splits each data set once (seeded, stratified; a groups
file such as ``same_source_pairs.csv`` inside a data folder keeps its pairs on one side), trains one
run per data set with the same settings, evaluates every run on every data set's test split and
writes ``crosseval.json``, ``report.md`` and a self-contained ``report.html`` with the matrices.
Finished runs and evaluations are reused, so an interrupted matrix picks up where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import PAIRS_FILE, ConfigError
from ..data.index import DataError, printable
from ..data.split import SplitSpec
from ..evaluation.scoring import evaluate_run
from ..files import write_text
from ..reports.html import figure, page, table
from ..reports.plots import plot_matrix
from ..rundir import RunFolder, refuse_inside_data
from .compare import prepare_split, train_once

__all__ = ["crosseval", "CrossCell"]

_METRICS = (
    ("roc_auc", "ROC-AUC"),
    ("accuracy", "accuracy (argmax)"),
    ("accuracy_at_threshold", "accuracy at the saved threshold"),
    ("balanced_accuracy", "balanced accuracy"),
)


@dataclass
class CrossCell:
    """One cell: a run trained on ``train`` and tested on ``test``'s test split."""

    train: str
    test: str
    n: int
    accuracy: float
    balanced_accuracy: float
    roc_auc: float | None
    average_precision: float | None
    accuracy_at_threshold: float | None
    roc_auc_ci95: list[float] | None = None  # 95% bootstrap interval of roc_auc


def _log(msg: str) -> None:
    print(printable(msg), flush=True)


def _names(data: Sequence[str | Path]) -> list[str]:
    names = [Path(d).resolve().name for d in data]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"crosseval names each data set by its folder name; {names} repeats one: "
            "give data sets whose folders are named differently"
        )
    return names


def _cell(train_name: str, test_name: str, ev: dict) -> CrossCell:
    b = ev.get("binary") or {}
    return CrossCell(
        train_name,
        test_name,
        ev["n"],
        ev["accuracy"],
        ev["balanced_accuracy"],
        b.get("roc_auc"),
        b.get("average_precision"),
        b.get("accuracy_at_threshold"),
        b.get("roc_auc_ci95"),
    )


def crosseval(
    data: Sequence[str | Path],
    out: str | Path,
    overrides: dict | None = None,
    split: SplitSpec | None = None,
    groups_name: str | None = PAIRS_FILE,
) -> dict:
    """Train on each data set in ``data``, test on all of them; returns (and writes) ``crosseval.json``.

    ``overrides``: training settings shared by every run (the same as ``transferlab train``
    flags). ``split``: how flat folders are split (default 70/15/15, seeded). ``groups_name``: a
    file in a data folder that lists pairs to keep on one side of its split."""
    if len(data) < 2:
        raise ConfigError("crosseval needs two or more data sets (DATA DATA [DATA ...])")
    t0 = time.perf_counter()
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    for k in ("out", "data"):
        if k in overrides:
            raise ConfigError(f"'{k}' is set per data set by crosseval; use --out for the matrix folder")
    names = _names(data)
    for d in data:
        refuse_inside_data(out, d)
    out = Path(out)  # made by the first split: data that cannot be read leaves no folder behind
    spec = split or SplitSpec(seed=int(overrides.get("seed", 0)))
    splits, classes = {}, None
    for name, d in zip(names, data):
        groups = Path(d) / groups_name if groups_name and (Path(d) / groups_name).is_file() else None
        index = prepare_split(d, out / name, spec, groups)
        if classes is not None and index.classes != classes:
            raise DataError(
                f"'{d}' has classes {index.classes}, the first data set {classes}; crosseval needs the "
                "same class folder names in every data set (rename the folders)"
            )
        classes = index.classes
        bare = index.classes_without("test")
        if bare:
            raise DataError(
                f"'{d}' has no test images of {bare} (its split: {out / name / 'split.csv'}); every data set "
                "needs a test split with every class: delete that split.csv and ask for fewer with "
                "--train-per-class, or give a folder that has a test split"
            )
        splits[name] = out / name / "split.csv"
    cells: list[CrossCell] = []
    for i, name in enumerate(names, 1):
        run = out / name / "run"
        train_once(run, {**overrides, "data": str(splits[name])}, f"[{i}/{len(names)}] {name}")
        for test in names:
            target = run if test == name else run / f"eval_{test}"
            if not RunFolder(run).evaluated(target):
                evaluate_run(run, None if test == name else splits[test], target, explain=0)
            cells.append(_cell(name, test, RunFolder(target).read_eval()))
    result = {
        "data": [str(d) for d in data],
        "names": names,
        "classes": classes,
        "overrides": overrides,
        "cells": [c.__dict__ for c in cells],
        "seconds": time.perf_counter() - t0,
    }
    write_text((out / "crosseval.json"), json.dumps(result, indent=2))
    write_reports(out, result)
    _log(render_matrix(result, "roc_auc"))
    _log(f"report: {out / 'report.html'}")
    return result


def _matrix(result: dict, key: str) -> list[list[float | None]]:
    by = {(c["train"], c["test"]): c.get(key) for c in result["cells"]}
    return [[by.get((r, c)) for c in result["names"]] for r in result["names"]]


def _shown(result: dict, key: str) -> list[list[str]]:
    """The cells of one metric as text; ROC-AUC with its 95% interval where the evaluation has one."""
    ci = _matrix(result, "roc_auc_ci95") if key == "roc_auc" else None
    return [
        [
            "-" if v is None else f"{v:.4f}" + (f" ({ci[i][j][0]:.2f}-{ci[i][j][1]:.2f})" if ci and ci[i][j] else "")
            for j, v in enumerate(row)
        ]
        for i, row in enumerate(_matrix(result, key))
    ]


def render_matrix(result: dict, key: str) -> str:
    """One metric's matrix as markdown: rows trained on, columns tested on, plus the mean over
    the other data sets (the cross-source score)."""
    names = result["names"]
    m = _matrix(result, key)
    lines = [
        "| trained on \\ tested on | " + " | ".join(names) + " | mean of the others |",
        "|---" * (len(names) + 2) + "|",
    ]
    for r, row, cells in zip(names, m, _shown(result, key)):
        others = [v for c, v in zip(names, row) if c != r and v is not None]
        mean = f"{sum(others) / len(others):.4f}" if others else "-"
        lines.append(f"| {r} | " + " | ".join(cells) + f" | {mean} |")
    return "\n".join(lines)


def write_reports(out: Path, result: dict) -> None:
    """``report.md`` and the self-contained ``report.html`` of a cross-source matrix."""
    names = result["names"]
    plot_matrix(
        _matrix(result, "roc_auc"),
        names,
        names,
        out / "matrix_roc_auc.png",
        title="ROC-AUC: trained on (rows) x tested on (columns)",
    )
    settings = ", ".join(f"{k}={v}" for k, v in result["overrides"].items()) or "defaults"
    md = [
        f"# Cross-source evaluation: {', '.join(names)}",
        "",
        f"{len(names)} runs, {len(result['cells'])} evaluations, {result['seconds']:.0f} s this call; "
        f"settings: {settings}. Each cell scores the test split of the column's data set. ROC-AUC comes "
        "with its 95% bootstrap interval: a cell whose interval holds 0.5 is not told apart from chance.",
        "",
    ]
    body = [
        "<p>Rows: the data set a run was trained on; columns: the data set whose test split it was scored on. "
        "The diagonal is the in-source score; the rest is how the detector does on fakes from sources it never "
        "saw. ROC-AUC comes with its 95% bootstrap interval: a cell whose interval holds 0.5 is not told apart "
        "from chance.</p>",
        figure(out / "matrix_roc_auc.png", "ROC-AUC matrix"),
    ]
    for key, title in _METRICS:
        md += [f"## {title}", "", render_matrix(result, key), ""]
        body += [
            f"<h2>{title}</h2>",
            table(["trained on \\ tested on", *names], [[r, *row] for r, row in zip(names, _shown(result, key))]),
        ]
    md += ["![matrix](matrix_roc_auc.png)", "", "Runs: " + ", ".join(f"[{n}]({n}/run/report.html)" for n in names)]
    body.append("<p>Run reports: " + ", ".join(f'<a href="{n}/run/report.html">{n}</a>' for n in names) + ".</p>")
    write_text((out / "report.md"), "\n".join(md) + "\n")
    write_text(
        (out / "report.html"), page(f"Cross-source evaluation: {', '.join(names)}", f"settings: {settings}", body)
    )
