"""The short Python API: keyword arguments named like the CLI flags, results as typed objects.

    run = transferlab.train("data/", mode="features", epochs=8)   # -> Run (runs/run, runs/run2, ...)
    ev = run.evaluate()                                           # -> Evaluation (ev.accuracy, ev.roc_auc)
    preds = transferlab.Predictor.from_run(run.dir).predict(["a.jpg"])
    cmp = transferlab.compare("data/", modes=["features", "finetune"], epochs=4)   # -> Comparison

Every keyword is a :class:`~transferlab.config.TrainConfig` field (``transferlab train --help``
lists them with the same names, ``-`` for ``_``); a misspelt one fails naming the closest. The
library functions underneath (:func:`transferlab.training.trainer.train`,
:func:`transferlab.evaluation.scoring.evaluate_run`, :func:`transferlab.lab.compare.compare`)
stay available for code that wants the dicts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import TrainConfig, load_config
from .rundir import next_run_dir

__all__ = ["train", "compare", "Run", "Evaluation", "Comparison", "load_run"]


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a run (``eval.json`` as attributes)."""

    split: str
    n: int
    accuracy: float
    balanced_accuracy: float
    recall: dict[str, float]  # per class
    confusion_matrix: list[list[int]]  # [true][predicted]
    roc_auc: float | None = None  # two classes
    average_precision: float | None = None
    eer: float | None = None
    threshold: float | None = None  # the decision saved with the model
    accuracy_at_threshold: float | None = None
    balanced_accuracy_at_threshold: float | None = None
    robustness: list[dict] = field(default_factory=list)  # one row per --perturb setting
    path: Path | None = None  # eval.json
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_report(cls, report: dict, path: Path | None = None) -> Evaluation:
        b = report.get("binary") or {}
        return cls(
            split=report.get("split", ""),
            n=report["n"],
            accuracy=report["accuracy"],
            balanced_accuracy=report["balanced_accuracy"],
            recall={c: v["recall"] for c, v in report["per_class"].items()},
            confusion_matrix=report["confusion_matrix"],
            roc_auc=b.get("roc_auc"),
            average_precision=b.get("average_precision"),
            eer=b.get("eer"),
            threshold=b.get("threshold"),
            accuracy_at_threshold=b.get("accuracy_at_threshold"),
            balanced_accuracy_at_threshold=b.get("balanced_accuracy_at_threshold"),
            robustness=list(report.get("robustness") or []),
            path=path,
            raw=report,
        )


@dataclass(frozen=True)
class Run:
    """A finished run folder: its figures as attributes, and what to do next with it."""

    dir: Path
    classes: list[str]
    backbone: str
    mode: str
    best_epoch: int
    best_val_acc: float
    val_balanced_acc: float
    threshold: float | None  # two classes: P(positive) >= threshold decides; None: argmax
    positive_class: str | None
    wall_seconds: float
    summary: dict = field(repr=False)

    @property
    def run_dir(self) -> Path:  # the name the lower-level RunResult uses
        return self.dir

    @property
    def config(self) -> TrainConfig:
        return load_config(self.dir / "config.yaml")

    @classmethod
    def load(cls, run_dir: str | Path) -> Run:
        """A finished run folder (one with ``summary.json``)."""
        from .rundir import RunFolder, RunFolderError

        folder = RunFolder(run_dir)
        if not folder.finished():
            if Path(run_dir).is_file():
                hint = f"give the run folder, e.g. load_run('{Path(run_dir).parent}')"
            elif folder.is_run():
                hint = f"it has not finished: continue it with `transferlab train --resume {run_dir}`"
            else:
                hint = "train one with transferlab.train(DATA, out=...)"
            raise RunFolderError(f"'{run_dir}' is not a finished run folder (no summary.json); {hint}")
        s = folder.read_summary()
        cal = s.get("calibration") or {}
        return cls(
            dir=folder.path,
            classes=s["data"]["classes"],
            backbone=s["backbone"],
            mode=s["mode"],
            best_epoch=s["best_epoch"],
            best_val_acc=s["best_val_acc"],
            val_balanced_acc=s["val"]["balanced_accuracy"],
            threshold=cal.get("threshold"),
            positive_class=cal.get("positive_class"),
            wall_seconds=s["wall_seconds"],
            summary=s,
        )

    def evaluate(
        self,
        data: str | Path | None = None,
        *,
        perturb: str | None = None,
        tta: bool = False,
        classes: str | dict | None = None,
        explain: int = 0,
        out: str | Path | None = None,
    ) -> Evaluation:
        """Score the run on its own test (else validation) split, or on ``data``; the keywords are
        ``transferlab evaluate``'s flags (``perturb="jpeg:75,blur:1"``)."""
        from .evaluation.scoring import evaluate_run, parse_class_map

        kwargs: dict[str, Any] = {"tta": tta, "explain": explain, "perturb": perturb}
        if data is not None:
            kwargs["data"] = str(data)
        if out is not None:
            kwargs["out"] = str(out)
        if classes:
            kwargs["class_map"] = parse_class_map(classes) if isinstance(classes, str) else dict(classes)
        report = evaluate_run(self.dir, **kwargs)
        return Evaluation.from_report(report, Path(out or self.dir) / "eval.json")

    def predictor(self, **kwargs):
        """A :class:`~transferlab.predict.predictor.Predictor` for this run (``best.pt``)."""
        from .predict.predictor import Predictor

        return Predictor.from_run(self.dir, **kwargs)

    def predict(self, paths, **kwargs) -> list:
        """Predictions for image paths (files, folders, globs), as ``transferlab predict`` lists
        them; a path that names no image comes back with ``label=None`` and ``error`` set. Images
        already in memory (PIL) are predicted as they are."""
        from .data.index import expand_inputs
        from .predict.decision import Prediction

        items = [paths] if isinstance(paths, (str, Path)) else list(paths)
        if not all(isinstance(p, (str, Path)) for p in items):
            return self.predictor(**kwargs).predict(items)
        files, problems = expand_inputs(items)
        found = self.predictor(**kwargs).predict_paths(files) if files else []
        return found + [Prediction(path, None, {}, error=why) for path, why in problems]


def load_run(run_dir: str | Path) -> Run:
    """The :class:`Run` of a finished run folder (e.g. one trained from the CLI)."""
    return Run.load(run_dir)


def _config(data, config, settings: dict) -> TrainConfig:
    if isinstance(data, TrainConfig):
        base = dataclasses.replace(data)
        return load_config(config, settings, base=base) if (config or settings) else base.validate()
    values = dict(settings)
    if data is not None:
        values["data"] = str(data)
    if "out" not in values:  # like Ultralytics: runs/run, runs/run2, ... never an earlier run
        values["out"] = str(next_run_dir())
    return load_config(config, values)


def train(
    data: str | Path | TrainConfig | None = None,
    *,
    config: str | Path | None = None,
    resume: str | Path | None = None,
    overwrite: bool = False,
    **settings: Any,
) -> Run:
    """Train on ``data`` (an ImageFolder or a CSV manifest) and return the finished :class:`Run`.

    ``settings`` are the ``transferlab train`` flags as keywords (``mode="features"``,
    ``epochs=8``, ``model="resnet18"``, ``class_weights="auto"`` ...); ``config``: a YAML file
    layered under them. Without ``out=`` the run goes to the next free ``runs/run``, ``runs/run2``
    ... ``resume=RUN_DIR`` continues a run (``settings`` may raise ``epochs``). ``data`` may also
    be a ready :class:`~transferlab.config.TrainConfig`."""
    from .training.trainer import train as _train

    if resume is not None:
        result = _train(resume=resume, overrides=settings or None)
    else:
        result = _train(_config(data, config, settings), overwrite=overwrite)
    return Run.load(result.run_dir)


@dataclass(frozen=True)
class Comparison:
    """A ``compare`` folder: one row per run (figures as attributes) and the best by validation."""

    dir: Path
    runs: list  # transferlab.lab.compare.RunRow
    best: str
    seconds: float
    raw: dict = field(repr=False)

    def table(self) -> str:
        """The comparison as a markdown table (what ``transferlab compare`` prints)."""
        from .lab.compare import render_table

        return render_table(self.runs)

    def run(self, name: str) -> Run:
        return Run.load(self.dir / name)


def compare(
    data: str | Path,
    out: str | Path | None = None,
    *,
    models: list[str] | None = None,
    modes: list[str] | None = None,
    scratch: bool = True,
    train_per_class: int | None = None,
    val_per_class: int | None = None,
    groups: str | Path | None = None,
    **settings: Any,
) -> Comparison:
    """Train scratch / features / finetune (or ``models`` x ``modes``) on one split and return the
    :class:`Comparison`; ``settings`` are shared training flags (``epochs=4``, ``seed=1`` ...)."""
    from .data.split import SplitSpec
    from .lab.compare import RunRow
    from .lab.compare import compare as _compare

    out = Path(out) if out is not None else next_run_dir("runs/compare")
    spec = SplitSpec(train_per_class, val_per_class, seed=int(settings.get("seed", 0)))
    result = _compare(data, out, models, modes, scratch, settings, spec, groups)
    rows = [RunRow(**r) for r in result["runs"]]
    return Comparison(Path(result["out"]), rows, result["best"], result["seconds"], result)
