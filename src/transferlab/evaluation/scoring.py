"""``evaluate_run``: score a trained run on its test split or on another data set.

Writes ``eval.json``, ``report.md``, ``confusion_matrix_eval.png``, ``roc.png`` (two classes)
and ``most_wrong.png`` (the most confidently wrong images).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from ..data.audit import metadata_shortcuts
from ..data.index import DataError, DataIndex, Sample, load_index, read_manifest
from ..data.perturb import Perturbation, parse_perturbations
from ..files import write_text
from ..metrics import binary_scores, classification_report, eer_threshold
from ..predict.predictor import Predictor
from ..reports.grids import sample_grid, thumbnails
from ..reports.html import run_report
from ..reports.plots import plot_confusion, plot_prediction_grid, plot_robustness, plot_roc
from ..rundir import RunFolder, refuse_inside_data
from ..training.calibration import fitted_on

__all__ = ["evaluate_run", "select_eval_split", "parse_class_map", "robustness", "saved_differently"]


def parse_class_map(text: str | None) -> dict[str, str]:
    """``"real=0_real,fake=1_fake"`` -> ``{"real": "0_real", "fake": "1_fake"}`` (model class =
    data folder)."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        model_cls, sep, data_cls = item.partition("=")
        if not sep or not model_cls.strip() or not data_cls.strip():
            raise DataError(f"--classes item '{item}' is not MODEL_CLASS=DATA_FOLDER (e.g. real=0_real,fake=1_fake)")
        if model_cls.strip() in out:
            raise DataError(f"--classes maps '{model_cls.strip()}' twice: give each model class one data folder")
        out[model_cls.strip()] = data_cls.strip()
    return out


def select_eval_split(
    index: DataIndex, classes: list[str], own: bool, class_map: dict[str, str] | None = None
) -> tuple[str, list[Sample]]:
    """Which samples to score, relabelled to the run's class order.

    The run's own data: its test split, else its validation split. Other data: its test split,
    else everything in it (a flat folder is all "train"). ``class_map``: model class -> the
    data set's folder name, for data sets that name their classes differently.
    """
    class_map = class_map or {}
    unknown = [m for m in class_map if m not in classes]
    if unknown:
        raise DataError(f"--classes names {unknown}, which are not the model's classes {classes}")
    shared = sorted({d for d in class_map.values() if list(class_map.values()).count(d) > 1})
    if shared:
        both = [m for m, d in class_map.items() if d in shared]
        raise DataError(f"--classes maps {both} to the same data folder {shared}: each class needs its own folder")
    to_model = {d: m for m, d in class_map.items()}
    missing = [c for c in index.classes if to_model.get(c, c) not in classes]
    if missing:
        hint = ",".join(f"{m}={d}" for m, d in zip(classes, missing))
        raise DataError(
            f"classes {missing} in '{index.root}' are not among the model's classes {classes}; "
            f"map them with --classes {hint} or rename the folders"
        )
    remap = {i: classes.index(to_model.get(c, c)) for i, c in enumerate(index.classes)}
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
    if not keep:
        path, why = skipped[0]
        raise DataError(
            f"none of the {len(samples)} images to score could be read (e.g. {path}: {why}); if the data "
            "moved, put it back where the run's split.csv lists it, or score images the run never saw "
            "with transferlab evaluate RUN DATA"
        )
    probs = np.array([[p.probs[c] for c in pred.classes] for _, p in keep]).reshape(-1, len(pred.classes))
    labels = np.array([s.label for s, _ in keep], dtype=int)
    return probs, labels, [s for s, _ in keep], skipped


def evaluate_run(
    run_dir: str | Path,
    data: str | Path | None = None,
    out: str | Path | None = None,
    checkpoint: str = "best.pt",
    perturb: str | Sequence[Perturbation] | None = None,
    tta: bool = False,
    class_map: dict[str, str] | None = None,
    explain: int = 6,
    **predictor_kw,
) -> dict:
    """Evaluate ``run_dir/checkpoint`` and write the report files.

    ``data``: another data set (class names must match, or be mapped by ``class_map``: model
    class -> data folder); default: the run's own test split (or validation split when it has no
    test split). Two classes: the decision threshold saved with the model at training time is
    used (older runs without one: chosen here on the run's validation split, equal-error point),
    and accuracy at that threshold is reported next to argmax accuracy. ``perturb``: also score
    the data under each perturbation (e.g. ``"jpeg:75,blur:1"``); ``tta``: average test-time views;
    ``explain``: Grad-CAM heatmaps for this many right and wrong images. Returns ``eval.json``.
    """
    if explain < 0:
        raise ValueError(f"explain is a number of images (0: none), got {explain}")
    run_dir = Path(run_dir)
    if data is not None and out is not None:
        refuse_inside_data(out, data)
    pred = Predictor.from_run(run_dir, checkpoint, tta=tta, **predictor_kw)
    perturbations = parse_perturbations(perturb) if isinstance(perturb, str) or perturb is None else list(perturb)
    own = read_manifest(run_dir / "split.csv", verify=False)
    index = own if data is None else load_index(data)
    split, samples = select_eval_split(index, pred.classes, own=data is None, class_map=class_map)
    if not samples:
        raise DataError(f"nothing to evaluate in '{index.root}' (split '{split}' is empty)")
    out = Path(out) if out else (run_dir if data is None else run_dir / f"eval_{Path(data).stem}")
    out.mkdir(parents=True, exist_ok=True)

    positive = pred.classes.index(pred.positive_class) if pred.positive_class else None
    threshold, source = pred.threshold, None
    if threshold is not None:
        cal = pred.calibration
        source = f"saved with the model ({cal.get('threshold_rule', 'eer')} on {fitted_on(cal)})"
    elif len(pred.classes) == 2 and own.splits.get("val"):
        vp, vl, _, _ = _probs(pred, own.splits["val"])
        threshold, source = eer_threshold(vl, vp, positive), "validation split, equal-error point (chosen now)"
    probs, labels, kept, skipped = _probs(pred, samples)
    report = classification_report(labels, probs, pred.classes, positive, threshold)
    if positive is not None:
        report["saved_differently"] = saved_differently(kept, labels, probs, pred.classes, positive, threshold)
    report.update(
        run=str(run_dir.resolve()),
        data=str(index.root),
        split=split,
        threshold_source=source,
        decision=pred.decision(),
        class_map=class_map or None,
        skipped=[{"path": p, "reason": r} for p, r in skipped],
    )
    _figures(out, report, pred.classes, split, kept, labels, probs)
    if perturbations:
        report["robustness"] = robustness(
            pred,
            samples,
            perturbations,
            positive,
            threshold,
            report,
            dict(zip((s.path for s in kept), probs.argmax(1))),
        )
        plot_robustness(report["robustness"], out / "robustness.png", title=f"{split}: robustness to perturbations")
    if explain:
        report["explained"] = _explain_grid(out / "gradcam.png", pred, kept, labels, probs, explain)
    target = RunFolder(out)
    target.write_json(target.eval, report)
    write_text((out / "report.md"), render_markdown(report))
    if (run_dir / "tracking.json").is_file() or (run_dir / "tensorboard").is_dir():
        from ..training.tracking import log_evaluation

        log_evaluation(run_dir, report, target.eval)
    if out.resolve() == run_dir.resolve() and RunFolder(run_dir).finished():
        run_report(run_dir)  # report.html now includes this evaluation
    return report


def saved_differently(
    samples: Sequence[Sample],
    labels: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    positive: int,
    threshold: float | None,
) -> list[dict]:
    """For each way a share of one class's files was saved and no other class's was
    (:func:`~transferlab.data.audit.metadata_shortcuts`: JPEG tables, format, pixel size, ...),
    the scores again ``without`` those files, and with ``only`` them against the other classes:
    how much of the figure rests on how the files were saved rather than what they show."""
    out = []
    for cut in metadata_shortcuts(samples, classes):
        flagged = np.isin([s.path for s in samples], cut.paths)
        row = {"trait": cut.trait, "class": cut.cls, "count": cut.count, "total": cut.total, "text": cut.text()}
        others = labels != classes.index(cut.cls)
        for name, keep in (("without", ~flagged), ("only", flagged | others)):
            b = binary_scores(labels[keep], probs[keep], positive, threshold)
            row[name] = {
                "n": int(keep.sum()),
                **{k: b.get(k) for k in ("roc_auc", "roc_auc_ci95", "accuracy_at_threshold")},
            }
        out.append(row)
    return out


def _figures(
    out: Path, report: dict, classes: list[str], split: str, kept: list, labels: np.ndarray, probs: np.ndarray
) -> None:
    """The evaluation's figures in ``out``: confusion matrix, ROC (two classes), the most confident
    mistakes and a grid of predictions (green right, red wrong)."""
    plot_confusion(
        report["confusion_matrix"], classes, out / "confusion_matrix_eval.png", title=f"{split} ({len(labels)} images)"
    )
    b = report.get("binary") or {}
    if len(classes) == 2 and b.get("roc_auc") is not None:
        pos = b["positive_class_index"]
        fpr, tpr, _ = roc_curve((labels == pos).astype(int), probs[:, pos])
        plot_roc(fpr, tpr, b["roc_auc"], out / "roc.png", b["eer"], title=f"ROC, positive = {classes[pos]}")
    _wrong_grid(out / "most_wrong.png", classes, kept, labels, probs)
    title = f"{split} predictions (green right, red wrong)"
    sample_grid(out / "test_predictions.png", kept, classes, labels, probs, title)


def _row(name: str, r: dict) -> dict:
    b = r.get("binary") or {}
    return {
        "name": name,
        "n": r["n"],
        "accuracy": r["accuracy"],
        "balanced_accuracy": r["balanced_accuracy"],
        "roc_auc": b.get("roc_auc"),
        "average_precision": b.get("average_precision"),
        "accuracy_at_threshold": b.get("accuracy_at_threshold"),
    }


def robustness(
    pred: Predictor,
    samples: list[Sample],
    perturbations: Sequence[Perturbation],
    positive: int | None,
    threshold: float | None,
    clean: dict,
    clean_pred: dict[str, int] | None = None,
) -> list[dict]:
    """One row per perturbation (and ``clean`` first): accuracy, balanced accuracy, ROC-AUC, AP
    and accuracy at the decision threshold, with the drops from clean accuracy (``accuracy_drop``:
    argmax; ``threshold_drop``: at the saved threshold, the verdict ``predict`` gives). With
    ``clean_pred`` (path -> clean argmax class): how many predictions the perturbation changed,
    right -> wrong and wrong -> right; the accuracy drop is the difference of the two, which can
    hide many changes that cancel out."""
    rows = [_row("clean", clean)]
    if clean_pred is not None:
        rows[0].update(changed=0, right_to_wrong=0, wrong_to_right=0)
    saved = pred.perturb
    try:
        for k, p in enumerate(perturbations, 1):
            print(f"perturbation {k}/{len(perturbations)}: {p.name}", file=sys.stderr, flush=True)
            pred.perturb = p
            probs, labels, kept, _ = _probs(pred, samples)
            row = _row(p.name, classification_report(labels, probs, pred.classes, positive, threshold))
            if clean_pred is not None:
                now = probs.argmax(1)
                before = np.asarray([clean_pred.get(s.path, -1) for s in kept])
                both = before >= 0
                row.update(
                    changed=int((now != before)[both].sum()),
                    right_to_wrong=int(((before == labels) & (now != labels))[both].sum()),
                    wrong_to_right=int(((before != labels) & (now == labels))[both].sum()),
                )
            rows.append(row)
    finally:
        pred.perturb = saved
    at_clean = rows[0]["accuracy_at_threshold"]
    for r in rows:
        r["accuracy_drop"] = rows[0]["accuracy"] - r["accuracy"]
        r["threshold_drop"] = None if at_clean is None else at_clean - r["accuracy_at_threshold"]
    return rows


def _explain_grid(
    path: Path, pred: Predictor, samples: list[Sample], labels: np.ndarray, probs: np.ndarray, n: int
) -> list[dict]:
    """Grad-CAM overlays for up to ``n`` right and ``n`` wrong images (most confident first)."""
    from .explain import GradCAM, overlay

    p = probs.argmax(1) if len(probs) else np.zeros(0, int)
    conf = probs.max(1) if len(probs) else np.zeros(0)
    right = [i for i in np.argsort(-conf) if p[i] == labels[i]][:n]
    wrong = [i for i in np.argsort(-conf) if p[i] != labels[i]][:n]
    picks = list(right) + list(wrong)
    if not picks:
        return []
    cam = GradCAM(pred)
    items, listed = [], []
    for i in picks:
        heat, img = cam.explain_path(samples[i].path, target=int(p[i]))
        items.append((overlay(img, heat), pred.classes[labels[i]], pred.classes[p[i]], float(conf[i])))
        listed.append({"path": samples[i].path, "true": pred.classes[labels[i]], "pred": pred.classes[p[i]]})
    plot_prediction_grid(items, path, title="Grad-CAM: where the model looked (green right, red wrong)")
    return listed


def _wrong_grid(
    path: Path, classes: list[str], samples: list[Sample], labels: np.ndarray, probs: np.ndarray, n: int = 12
) -> None:
    pred = probs.argmax(1) if len(probs) else np.zeros(0, int)
    wrong = np.flatnonzero(pred != labels)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]])][:n] if len(wrong) else wrong
    imgs = thumbnails([samples[i].path for i in wrong])
    items = [(img, classes[labels[i]], classes[pred[i]], float(probs[i, pred[i]])) for img, i in zip(imgs, wrong)]
    title = "most confidently wrong" if items else "no wrong predictions"
    plot_prediction_grid(items, path, title=title)


def _interval(b: dict) -> str:
    ci = b.get("roc_auc_ci95")  # eval.json files written before the interval existed have none
    return f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""


def render_markdown(r: dict) -> str:
    """A short human-readable report of an ``eval.json`` dict."""
    lines = [
        f"# Evaluation: {Path(r['run']).name}",
        "",
        f"- data: `{r['data']}` (split: {r['split']}, {r['n']} images, {len(r['skipped'])} skipped)",
        f"- accuracy: **{r['accuracy']:.4f}** (balanced {r['balanced_accuracy']:.4f}, macro F1 {r['macro_f1']:.4f})",
    ]
    b = r.get("binary")
    if b and b.get("roc_auc") is not None:
        lines += [
            f"- positive class: {r['positive_class']}; ROC-AUC **{b['roc_auc']:.4f}**{_interval(b)}, "
            f"average precision {b['average_precision']:.4f}, EER {b['eer']:.4f}"
        ]
        if "threshold" in b:
            lines += [
                f"- threshold {b['threshold']:.4f} ({r['threshold_source']}): accuracy {b['accuracy_at_threshold']:.4f}"
            ]
    for cut in r.get("saved_differently") or []:
        lines += [f"- **saved differently**: {cut['text']}"]
        for name, what in (("without", "without those files"), ("only", "those files alone against the rest")):
            c = cut[name]
            if c["roc_auc"] is not None:
                at = c.get("accuracy_at_threshold")
                lines += [
                    f"  - {what} ({c['n']} images): ROC-AUC {c['roc_auc']:.4f}"
                    + (f", accuracy at the threshold {at:.4f}" if at is not None else "")
                ]
    lines += ["", "| class | accuracy | precision | recall | F1 | n |", "|---|---|---|---|---|---|"]
    for name, c in r["per_class"].items():
        acc = "-" if c["accuracy"] is None else f"{c['accuracy']:.4f}"
        lines.append(f"| {name} | {acc} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |")
    lines += [
        "",
        "Confusion matrix (rows true, columns predicted): " + json.dumps(r["confusion_matrix"]),
        "",
        "![confusion](confusion_matrix_eval.png)",
    ]
    if b and b.get("roc_auc") is not None:
        lines.append("![roc](roc.png)")
    lines += ["![predictions](test_predictions.png)", "![most wrong](most_wrong.png)"]
    if r.get("robustness"):
        lines += [
            "",
            "## Robustness",
            "",
            "| perturbation | accuracy | drop | balanced acc. | ROC-AUC | AP | acc. at threshold | drop at threshold | "
            "changed (right -> wrong / wrong -> right) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        f = lambda v: "-" if v is None else f"{v:.4f}"
        for row in r["robustness"]:
            flips = f"{row['changed']} ({row['right_to_wrong']} / {row['wrong_to_right']})" if "changed" in row else "-"
            lines.append(
                f"| {row['name']} | {f(row['accuracy'])} | {f(row['accuracy_drop'])} | "
                f"{f(row['balanced_accuracy'])} | {f(row['roc_auc'])} | {f(row['average_precision'])} | "
                f"{f(row['accuracy_at_threshold'])} | {f(row.get('threshold_drop'))} | {flips} |"
            )
        lines += ["", "![robustness](robustness.png)"]
    if r.get("explained"):
        lines += ["", "## Explanations", "", "![Grad-CAM](gradcam.png)"]
    if r["skipped"]:
        lines += ["", "Skipped files:"] + [f"- `{s['path']}`: {s['reason']}" for s in r["skipped"]]
    return "\n".join(lines) + "\n"
