"""``evaluate_run``: score a trained run on its test split or on another data set.

Writes ``eval.json``, ``report.md``, ``confusion_matrix_eval.png``, ``roc.png`` (two classes)
and ``most_wrong.png`` (the most confidently wrong images).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from .data import DataError, DataIndex, Sample, load_index, read_manifest
from .inference import Predictor
from .metrics import classification_report, eer_threshold
from .plots import plot_confusion, plot_prediction_grid, plot_roc
from .training import thumbnails

__all__ = ["evaluate_run", "select_eval_split"]


def select_eval_split(index: DataIndex, classes: list[str], own: bool) -> tuple[str, list[Sample]]:
    """Which samples to score, relabelled to the run's class order.

    The run's own data: its test split, else its validation split. Other data: its test split,
    else everything in it (a flat folder is all "train").
    """
    missing = [c for c in index.classes if c not in classes]
    if missing:
        raise DataError(f"classes {missing} in '{index.root}' are not among the model's classes {classes}; "
                        "rename the folders to match")
    remap = {i: classes.index(c) for i, c in enumerate(index.classes)}
    if "test" in index.splits:
        name, samples = "test", index.splits["test"]
    elif own:
        name, samples = "val", index.splits.get("val", [])
    else:
        name, samples = "all", index.all_samples()
    return name, [Sample(s.path, remap[s.label]) for s in samples]


def _probs(pred: Predictor, samples: list[Sample]) -> tuple[np.ndarray, np.ndarray, list[Sample], list]:
    preds = pred.predict_paths([s.path for s in samples])
    keep = [(s, p) for s, p in zip(samples, preds) if p.label is not None]
    skipped = [(p.path, p.error) for p in preds if p.label is None]
    probs = np.array([[p.probs[c] for c in pred.classes] for _, p in keep]).reshape(-1, len(pred.classes))
    labels = np.array([s.label for s, _ in keep], dtype=int)
    return probs, labels, [s for s, _ in keep], skipped


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, out: str | Path | None = None,
                 checkpoint: str = "best.pt", **predictor_kw) -> dict:
    """Evaluate ``run_dir/checkpoint`` and write the report files.

    ``data``: another data set (class names must match); default: the run's own test split
    (or validation split when it has no test split). For two classes the decision threshold is
    chosen on the run's validation split (equal-error point) and the accuracy at that threshold
    is reported next to argmax accuracy. Returns the ``eval.json`` content.
    """
    run_dir = Path(run_dir)
    pred = Predictor.from_run(run_dir, checkpoint, **predictor_kw)
    own = read_manifest(run_dir / "split.csv", verify=False)
    index = own if data is None else load_index(data)
    split, samples = select_eval_split(index, pred.classes, own=data is None)
    if not samples:
        raise DataError(f"nothing to evaluate in '{index.root}' (split '{split}' is empty)")
    out = Path(out) if out else (run_dir if data is None else run_dir / f"eval_{Path(data).stem}")
    out.mkdir(parents=True, exist_ok=True)

    positive = pred.classes.index(pred.positive_class) if pred.positive_class else None
    threshold = None
    if len(pred.classes) == 2 and own.splits.get("val"):
        vp, vl, _, _ = _probs(pred, own.splits["val"])
        threshold = eer_threshold(vl, vp, positive)
    probs, labels, kept, skipped = _probs(pred, samples)
    report = classification_report(labels, probs, pred.classes, positive, threshold)
    report.update(run=str(run_dir.resolve()), data=str(index.root), split=split,
                  threshold_source="validation split, equal-error point" if threshold is not None else None,
                  skipped=[{"path": p, "reason": r} for p, r in skipped])
    plot_confusion(report["confusion_matrix"], pred.classes, out / "confusion_matrix_eval.png",
                   title=f"{split} ({len(labels)} images)")
    if len(pred.classes) == 2 and report["binary"].get("roc_auc") is not None:
        b = report["binary"]
        pos = b["positive_class_index"]
        fpr, tpr, _ = roc_curve((labels == pos).astype(int), probs[:, pos])
        plot_roc(fpr, tpr, b["roc_auc"], out / "roc.png", b["eer"], title=f"ROC, positive = {pred.classes[pos]}")
    _wrong_grid(out / "most_wrong.png", pred.classes, kept, labels, probs)
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(render_markdown(report))
    return report


def _wrong_grid(path: Path, classes: list[str], samples: list[Sample], labels: np.ndarray,
                probs: np.ndarray, n: int = 12) -> None:
    pred = probs.argmax(1) if len(probs) else np.zeros(0, int)
    wrong = np.flatnonzero(pred != labels)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]])][:n] if len(wrong) else wrong
    imgs = thumbnails([samples[i].path for i in wrong])
    items = [(img, classes[labels[i]], classes[pred[i]], float(probs[i, pred[i]])) for img, i in zip(imgs, wrong)]
    title = "most confidently wrong" if items else "no wrong predictions"
    plot_prediction_grid(items, path, title=title)


def render_markdown(r: dict) -> str:
    """A short human-readable report of an ``eval.json`` dict."""
    lines = [f"# Evaluation: {Path(r['run']).name}", "",
             f"- data: `{r['data']}` (split: {r['split']}, {r['n']} images, {len(r['skipped'])} skipped)",
             f"- accuracy: **{r['accuracy']:.4f}** (balanced {r['balanced_accuracy']:.4f}, macro F1 {r['macro_f1']:.4f})"]
    b = r.get("binary")
    if b and b.get("roc_auc") is not None:
        lines += [f"- positive class: {r['positive_class']}; ROC-AUC **{b['roc_auc']:.4f}**, "
                  f"average precision {b['average_precision']:.4f}, EER {b['eer']:.4f}"]
        if "threshold" in b:
            lines += [f"- threshold {b['threshold']:.4f} ({r['threshold_source']}): "
                      f"accuracy {b['accuracy_at_threshold']:.4f}"]
    lines += ["", "| class | accuracy | precision | recall | F1 | n |", "|---|---|---|---|---|---|"]
    for name, c in r["per_class"].items():
        acc = "-" if c["accuracy"] is None else f"{c['accuracy']:.4f}"
        lines.append(f"| {name} | {acc} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |")
    lines += ["", "Confusion matrix (rows true, columns predicted): " + json.dumps(r["confusion_matrix"]), "",
              "![confusion](confusion_matrix_eval.png)"]
    if b and b.get("roc_auc") is not None:
        lines.append("![roc](roc.png)")
    lines.append("![most wrong](most_wrong.png)")
    if r["skipped"]:
        lines += ["", "Skipped files:"] + [f"- `{s['path']}`: {s['reason']}" for s in r["skipped"]]
    return "\n".join(lines) + "\n"
