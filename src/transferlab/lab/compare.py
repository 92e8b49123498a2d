"""The comparison lab: train a grid of backbone x mode runs on one split and one seed, evaluate
each on the same test images, and write one report (``report.html`` and ``report.md``).

Finished runs in the output folder are reused and interrupted ones resume from ``last.pt``, so
an interrupted comparison picks up where it stopped.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import distributed
from ..config import DEFAULT_MODEL, ConfigError, TrainConfig, config_to_dict, load_config
from ..data.index import SPLITS, DataIndex, load_index, printable, read_manifest, write_manifest
from ..data.split import SplitSpec, split_folder
from ..evaluation.scoring import evaluate_run
from ..files import write_text
from ..models.registry import get_spec
from ..modes import MODES
from ..reports.html import data_table, figure, machine_table, page, table
from ..reports.plots import plot_compare_curves, plot_confusions
from ..rundir import RunFolder, refuse_inside_data
from ..runtime import resolve_device
from ..training.trainer import train

__all__ = ["grid", "compare", "RunRow"]

SCRATCH_MODEL = "scratch_cnn"  # the small CNN every comparison starts from
DEFAULT_MODES = ("features", "finetune")
_RANDOM_INIT = next(m.name for m in MODES.values() if not m.pretrained)


def grid(
    models: Sequence[str] | None = None, modes: Sequence[str] | None = None, scratch: bool = True
) -> list[tuple[str, str]]:
    """``(backbone, mode)`` pairs: the small CNN from scratch (unless ``scratch`` is False), then
    every model in ``models`` (default: the default backbone) in every mode in ``modes``
    (default: features, finetune). ``scratch_cnn`` has no pretrained weights: only its scratch run."""
    out = [(SCRATCH_MODEL, _RANDOM_INIT)] if scratch else []
    for mode in modes or DEFAULT_MODES:
        if mode not in MODES:
            raise ConfigError(f"unknown mode '{mode}' in --modes ({', '.join(MODES)})")
    for model in models or [DEFAULT_MODEL]:
        for mode in modes or DEFAULT_MODES:
            # a backbone without pretrained weights only trains from random init
            no_weights = get_spec(model).weights.status() == "none"
            pair = (model, _RANDOM_INIT if no_weights else mode)
            if pair not in out:
                out.append(pair)
    return out


def _require_weights(pairs: Sequence[tuple[str, str]]) -> None:
    """Fail before the first run trains when a pretrained run's weights are neither bundled nor
    cached and cannot be downloaded (the error says where to put the file)."""
    for model, mode in pairs:
        w = get_spec(model).weights
        if MODES[mode].pretrained and w.status() == "download":
            w.state_dict(model)  # downloads into the torch cache, or raises WeightsUnavailable


@dataclass
class RunRow:
    """One line of the comparison table."""

    name: str
    backbone: str
    mode: str
    trainable: int
    total: int
    epochs: int
    best_epoch: int
    wall_seconds: float
    time_to_best_seconds: float
    best_val_acc: float
    eval_split: str
    test_acc: float
    test_balanced_acc: float
    roc_auc: float | None
    average_precision: float | None
    per_class: dict[str, float | None]
    reused: bool


def _log(msg: str) -> None:
    if distributed.is_main():
        print(printable(msg), flush=True)


def train_once(run: Path, settings: dict, label: str) -> str:
    """Train the run folder ``run`` with ``settings`` unless it finished earlier (reused) or was
    interrupted (continued from its ``last.pt``). Returns ``reused``, ``resumed`` or ``trained``.
    A folder that holds another backbone or mode (its ``config.yaml``) is refused, finished or not."""
    folder = RunFolder(run)
    # settings leave out what stays at its default (crosseval passes only the flags a user gave)
    model, mode = settings.get("model", TrainConfig.model), settings.get("mode", TrainConfig.mode)
    if folder.is_run():
        saved = folder.read_config()
        if (saved.model, saved.mode) != (model, mode):
            raise ConfigError(f"{run} holds a {saved.model}/{saved.mode} run, not {model}/{mode}; choose another --out")
        # a reused run must have been trained as asked, or the report would credit it with these flags
        # (data and out name the same split and folder; "auto" values were resolved when it trained)
        asked = load_config(None, {**settings, "out": str(run)})
        differ = [
            f"{k}={getattr(saved, k)!r} (asked: {getattr(asked, k)!r})"
            for k in settings
            if k not in ("data", "out") and settings[k] != "auto" and getattr(saved, k) != getattr(asked, k)
        ]
        if differ:
            raise ConfigError(
                f"{run} holds a run trained with {', '.join(differ)}; rerun with its flags to reuse it, "
                "or choose another --out"
            )
    if folder.finished():
        _log(f"{label}: finished earlier, reused ({run})")
        return "reused"
    if folder.last.is_file():
        _log(f"{label}: interrupted earlier, resuming from {folder.last}")
        train(resume=run)
        return "resumed"
    _log(f"{label}: training")
    train(load_config(None, {**settings, "out": str(run)}))
    return "trained"


def prepare_split(data: str | Path, out: Path, spec: SplitSpec, groups: str | Path | None) -> DataIndex:
    """``out/split.csv``, written once: a folder with its own train/val/test folders (or a CSV
    manifest) keeps its split; a flat folder is split stratified and seeded by ``spec``."""
    manifest = out / "split.csv"
    if manifest.is_file():
        _log(f"split: reusing {manifest}")
        return read_manifest(manifest)
    index = load_index(data)
    if len([s for s in SPLITS if index.splits.get(s)]) > 1:
        write_manifest(index, manifest)
        write_text(
            (out / "split.json"),
            json.dumps(
                {"source": str(Path(data).resolve()), "kept": "the data's own split", "counts": index.counts()},
                indent=2,
            ),
        )
        return read_manifest(manifest)
    index, warnings = split_folder(data, out, spec, groups)
    for w in warnings:
        _log(f"warning: {w}")
    return read_manifest(manifest)


def compare(
    data: str | Path,
    out: str | Path,
    models: Sequence[str] | None = None,
    modes: Sequence[str] | None = None,
    scratch: bool = True,
    overrides: dict | None = None,
    split: SplitSpec | None = None,
    groups: str | Path | None = None,
) -> dict:
    """Train and evaluate every run of :func:`grid` on one split; write ``compare.json``,
    ``report.md`` and ``report.html`` in ``out``. ``overrides``: training settings shared by every
    run (epochs, seed, augment ...). Returns the ``compare.json`` dict."""
    t0 = time.perf_counter()
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    for k in ("model", "mode", "out", "data"):
        if k in overrides:
            raise ConfigError(f"'{k}' is set per run by compare; use --models/--modes/--out instead")
    pairs = grid(models, modes, scratch)
    if not overrides.get("weights"):
        _require_weights(pairs)
    refuse_inside_data(out, data)
    out = Path(out)
    # under torchrun every run of the grid trains on all ranks; the main rank writes
    distributed.init(resolve_device(overrides.get("device", "auto")).type)
    spec = split or SplitSpec(seed=int(overrides.get("seed", 0)))
    index = distributed.on_main(prepare_split, data, out, spec, groups)
    rows: list[RunRow] = []
    trained: list[float] = []  # seconds of each run trained here: the ETA of the rest
    for i, (model, mode) in enumerate(pairs, 1):
        if trained:
            left = (len(pairs) - i + 1) * sum(trained) / len(trained)
            _log(f"compare: {i - 1}/{len(pairs)} runs done, {time.perf_counter() - t0:.0f}s so far, ETA ~{left:.0f}s")
        started = time.perf_counter()
        name = f"{model}_{mode}"
        run = out / name
        settings = {**overrides, "data": str(out / "split.csv"), "model": model, "mode": mode}
        reused = train_once(run, settings, f"[{i}/{len(pairs)}] {model}/{mode}") == "reused"
        if not RunFolder(run).evaluated():
            distributed.on_main(evaluate_run, run, explain=0)
        rows.append(_row(name, run, reused))
        if not reused:
            trained.append(time.perf_counter() - started)
    best = max(rows, key=lambda r: (r.best_val_acc, -r.wall_seconds))
    result = {
        "data": str(data),
        "out": str(out.resolve()),
        "classes": index.classes,
        "counts": index.counts(),
        "overrides": overrides,
        "runs": [r.__dict__ for r in rows],
        "best": best.name,
        "best_rule": "highest best-epoch validation accuracy (ties: the faster run)",
        "seconds": time.perf_counter() - t0,
        "seconds_training": sum(r.wall_seconds for r in rows),
    }
    distributed.on_main(write_text, out / "compare.json", json.dumps(result, indent=2))
    distributed.on_main(write_reports, out, result)
    _log(render_table(rows))
    _log(f"best by validation accuracy: {best.name}; report: {out / 'report.html'}")
    return result


def _row(name: str, run: Path, reused: bool) -> RunRow:
    s, ev = RunFolder(run).read_summary(), RunFolder(run).read_eval()
    b = ev.get("binary") or {}
    return RunRow(
        name,
        s["backbone"],
        s["mode"],
        s["params"]["trainable"],
        s["params"]["total"],
        s["epochs_run"],
        s["best_epoch"],
        s["wall_seconds"],
        s.get("time_to_best_seconds", 0.0),
        s["best_val_acc"],
        ev["split"],
        ev["accuracy"],
        ev["balanced_accuracy"],
        b.get("roc_auc"),
        b.get("average_precision"),
        {c: v["accuracy"] for c, v in ev["per_class"].items()},
        reused,
    )


_HEAD = [
    "run",
    "backbone",
    "mode",
    "trainable / total params",
    "epochs",
    "wall s",
    "to best s",
    "best val acc",
    "test acc",
    "test balanced acc",
    "ROC-AUC",
    "AP",
]


def _cells(r: RunRow) -> list:
    return [
        r.name,
        r.backbone,
        r.mode,
        f"{r.trainable:,} / {r.total:,}",
        r.epochs,
        f"{r.wall_seconds:.1f}",
        f"{r.time_to_best_seconds:.1f}",
        r.best_val_acc,
        r.test_acc,
        r.test_balanced_acc,
        r.roc_auc,
        r.average_precision,
        *list(r.per_class.values()),
    ]


def render_table(rows: Sequence[RunRow]) -> str:
    """The comparison table as markdown (``test`` is the run's evaluation split)."""
    classes = list(rows[0].per_class) if rows else []
    head = _HEAD + [f"recall {c}" for c in classes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(
            "| "
            + " | ".join("-" if c is None else f"{c:.4f}" if isinstance(c, float) else str(c) for c in _cells(r))
            + " |"
        )
    return "\n".join(lines)


def write_reports(out: Path, result: dict) -> None:
    """``report.md`` and the self-contained ``report.html`` of a comparison."""
    rows = [RunRow(**r) for r in result["runs"]]
    summaries = {r.name: RunFolder(out / r.name).read_summary() for r in rows}
    evals = {r.name: RunFolder(out / r.name).read_eval() for r in rows}
    classes = result["classes"]
    plot_compare_curves({n: s["history"] for n, s in summaries.items()}, out / "curves.png")
    plot_confusions(
        [(f"{n} ({evals[n]['split']})", e["confusion_matrix"]) for n, e in evals.items()],
        classes,
        out / "confusion_matrices.png",
    )
    best = result["best"]
    split = evals[best]["split"]
    settings = _settings(out, rows)
    skipped = sorted({(s["path"], s["reason"]) for sm in summaries.values() for s in sm["data"].get("skipped", [])})
    machine = next(iter(summaries.values())).get("machine", {})
    wall = (
        f"{len(rows)} runs; training {result['seconds_training']:.0f} s in all, this call "
        f"{result['seconds']:.0f} s"
        + (f" ({sum(r.reused for r in rows)} reused)" if any(r.reused for r in rows) else "")
    )

    md = [
        f"# Comparison: {Path(result['data']).name}",
        "",
        wall,
        "",
        render_table(rows),
        "",
        f"Test columns are on each run's `{split}` split. Best run by validation accuracy: **{best}**.",
        "",
        "![curves](curves.png)",
        "",
        "![confusion matrices](confusion_matrices.png)",
        "",
        f"![best run predictions]({best}/test_predictions.png)",
        f"![most wrong]({best}/most_wrong.png)",
        "",
        "## Settings",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in settings],
        "",
        "## Data",
        "",
        "| split | " + " | ".join(classes) + " |",
        "|---|" + "---|" * len(classes),
        *[f"| {sp} | " + " | ".join(str(c.get(k, 0)) for k in classes) + " |" for sp, c in result["counts"].items()],
        "",
        f"{len(skipped)} unreadable file(s) skipped." if skipped else "No unreadable files.",
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in machine.items()],
    ]
    write_text((out / "report.md"), "\n".join(md) + "\n")

    per_class = [f"recall {c}" for c in classes]
    body = [
        "<h2>Runs</h2>",
        table(_HEAD + per_class, [_cells(r) for r in rows], ["best" if r.name == best else "" for r in rows]),
        f"<p>Test columns are on each run's <code>{html.escape(split)}</code> split; the highlighted row is "
        "the best run by validation accuracy (the test split is never used to choose).</p>",
        "<h2>Curves</h2>",
        figure(out / "curves.png", "validation accuracy and loss per epoch, every run"),
        "<h2>Confusion matrices</h2>",
        figure(out / "confusion_matrices.png", f"{split} split, every run"),
        f"<h2>Best run: {html.escape(best)}</h2>",
        figure(out / best / "test_predictions.png", f"{split} predictions: green right, red wrong"),
        figure(out / best / "most_wrong.png", "most confidently wrong"),
        "<p>Full report of each run: "
        + ", ".join(f'<a href="{html.escape(r.name)}/report.html">{html.escape(r.name)}</a>' for r in rows)
        + ".</p>",
        "<h2>Settings</h2>",
        table(["setting", "value"], settings),
        "<h2>Data</h2>",
        f"<p>Source <code>{html.escape(result['data'])}</code>, split "
        f"<code>{html.escape(str(out / 'split.csv'))}</code>.</p>",
        data_table(classes, result["counts"]),
        table(["file", "reason"], skipped) if skipped else "<p>No unreadable files.</p>",
        "<h2>Machine</h2>",
        machine_table(machine),
    ]
    write_text((out / "report.html"), page(f"Comparison: {Path(result['data']).name}", wall, body))


def _settings(out: Path, rows: Sequence[RunRow]) -> list[tuple[str, str]]:
    """Resolved settings: one value when every run shares it, else ``run: value`` for each run."""
    configs = {r.name: RunFolder(out / r.name).read_config() for r in rows}
    # lr None means "chosen by mode": show the value the run used
    cfgs = {n: {**config_to_dict(c), "lr": c.default_lr() if c.lr is None else c.lr} for n, c in configs.items()}
    keys = [k for k in next(iter(cfgs.values())) if k not in ("out", "extra")]
    res = []
    for k in keys:
        vals = {n: c.get(k) for n, c in cfgs.items()}
        uniq = {json.dumps(v) for v in vals.values()}
        res.append(
            (k, str(next(iter(vals.values()))) if len(uniq) == 1 else "; ".join(f"{n}: {v}" for n, v in vals.items()))
        )
    return res
