"""Figures for run folders and reports, drawn with matplotlib's object API (``Figure``, no pyplot):
no display, no backend switch and no global state, so importing this module changes nothing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..files import OutputError

__all__ = [
    "plot_curves",
    "plot_confusion",
    "plot_confusions",
    "plot_roc",
    "plot_prediction_grid",
    "plot_robustness",
    "plot_compare_curves",
    "plot_augment_preview",
    "plot_matrix",
    "figure_path",
]

GREEN, RED = "#1a7f37", "#cf222e"


def _subplots(nrows: int = 1, ncols: int = 1, figsize=None, squeeze: bool = True):
    """``pyplot.subplots`` without pyplot: a standalone :class:`Figure` and its axes."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def figure_path(out: str | Path, default_name: str) -> Path:
    """Where a figure asked for at ``out`` goes: ``out/default_name`` for a folder, ``.png`` added
    to a name without a suffix. A suffix matplotlib cannot write is an :class:`OutputError` that
    names the formats it can, raised before the figure is drawn."""
    out = Path(out)
    if out.is_dir():
        return out / default_name
    if not out.suffix:
        return out.with_suffix(".png")
    formats = Figure().canvas.get_supported_filetypes()
    if out.suffix[1:].lower() not in formats:
        raise OutputError(
            f"cannot write a figure as '{out}': '{out.suffix}' is not an image format; "
            f"name the file with one of {', '.join('.' + f for f in sorted(formats))} (e.g. preview.png)"
        )
    return out


def _save(fig, path: str | Path, margins: dict | None = None) -> Path:
    """Lay out and write ``fig``. ``margins`` (``subplots_adjust`` keywords) for a chart whose
    labels have a known extent; otherwise ``tight_layout``, which measures every text by drawing
    the figure once more (half the time of a small chart)."""
    path = Path(path)
    if margins:
        fig.subplots_adjust(**margins)
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_curves(history: Sequence[dict], path: str | Path) -> Path:
    """Loss and accuracy per epoch, train vs validation."""
    ep = [h["epoch"] for h in history]
    fig, (a, b) = _subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a.plot(ep, [h["val_loss"] for h in history], "o-", label="val")
    a.set(xlabel="epoch", ylabel="loss", title="loss")
    b.plot(ep, [h["train_acc"] for h in history], "o-", label="train")
    b.plot(ep, [h["val_acc"] for h in history], "o-", label="val")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path, {"left": 0.075, "right": 0.985, "bottom": 0.12, "top": 0.92, "wspace": 0.2})


def plot_confusion(
    cm: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path, title: str = "confusion matrix"
) -> Path:
    """Counts with row-normalised shading; rows are true classes."""
    n = len(classes)
    fig, ax = _subplots(figsize=(1.2 * n + 2.5, 1.2 * n + 2))
    _confusion_axes(ax, cm, classes, title)
    return _save(fig, path)


def plot_confusions(
    panels: Sequence[tuple[str, Sequence[Sequence[int]]]], classes: Sequence[str], path: str | Path
) -> Path:
    """Several confusion matrices side by side: ``panels`` is ``(title, matrix)`` pairs."""
    n, k = len(classes), max(len(panels), 1)
    fig, axes = _subplots(1, k, figsize=(k * (1.2 * n + 2.5), 1.2 * n + 2.2), squeeze=False)
    for ax, (title, cm) in zip(axes.flat, panels):
        _confusion_axes(ax, cm, classes, title)
    return _save(fig, path)


def _confusion_axes(ax, cm, classes: Sequence[str], title: str) -> None:
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(classes)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")


def plot_roc(
    fpr: np.ndarray, tpr: np.ndarray, auc: float, path: str | Path, eer: float | None = None, title: str = "ROC"
) -> Path:
    fig, ax = _subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, label=f"AUC = {auc:.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    if eer is not None:
        ax.plot([eer], [1 - eer], "o", color=RED, label=f"EER = {eer:.3f}")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path, {"left": 0.15, "right": 0.96, "bottom": 0.11, "top": 0.93})


def plot_prediction_grid(items: Sequence[tuple], path: str | Path, title: str = "", cols: int = 6) -> Path:
    """Thumbnails titled ``pred (p) / true``: green when right, red when wrong.

    ``items``: ``(image (H,W,3) uint8, true_name, pred_name, prob)`` tuples. The thumbnails are laid
    out on one canvas drawn by one image artist (cells of 2.2 x 2.5 in at 100 dpi): a figure with
    an axes per thumbnail took 1.3 s to lay out and draw for 24 of them, this takes about 0.3 s."""
    from PIL import Image, ImageOps

    n = max(len(items), 1)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    cell_w, cell_h, side, head = 220, 250, 190, (40 if title else 0)  # pixels
    canvas = np.full((rows * cell_h + head, cols * cell_w, 3), 255, np.uint8)
    fig = Figure(figsize=(canvas.shape[1] / 100, canvas.shape[0] / 100))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    for k, (img, true, pred, prob) in enumerate(items):
        r, c = divmod(k, cols)
        thumb = np.asarray(ImageOps.contain(Image.fromarray(np.asarray(img, np.uint8)).convert("RGB"), (side, side)))
        h, w = thumb.shape[:2]
        top = head + r * cell_h + (cell_h - side - 6)
        left = c * cell_w + (cell_w - w) // 2
        canvas[top + (side - h) // 2 : top + (side - h) // 2 + h, left : left + w] = thumb
        caption = f"{pred} ({prob:.2f})\ntrue: {true}"
        colour = GREEN if true == pred else RED
        ax.text(c * cell_w + cell_w / 2, top - 4, caption, ha="center", va="bottom", fontsize=9, color=colour)
    if title:
        ax.text(canvas.shape[1] / 2, 8, title, ha="center", va="top", fontsize=12)
    ax.imshow(canvas, interpolation="none", extent=(0, canvas.shape[1], canvas.shape[0], 0))
    ax.set(xlim=(0, canvas.shape[1]), ylim=(canvas.shape[0], 0))
    path = Path(path)
    fig.savefig(path, dpi=100, pil_kwargs={"compress_level": 1})
    return path


def plot_robustness(rows: Sequence[dict], path: str | Path, title: str = "robustness") -> Path:
    """Grouped bars: accuracy, ROC-AUC and AP per perturbation (``rows``: dicts with ``name``,
    ``accuracy`` and optionally ``roc_auc``, ``average_precision``)."""
    keys = [k for k in ("accuracy", "roc_auc", "average_precision") if any(r.get(k) is not None for r in rows)]
    x = np.arange(len(rows))
    w = 0.8 / max(len(keys), 1)
    fig, ax = _subplots(figsize=(max(5.0, 1.1 * len(rows) + 2), 4))
    for i, k in enumerate(keys):
        vals = [r.get(k) if r.get(k) is not None else 0.0 for r in rows]
        ax.bar(x + (i - (len(keys) - 1) / 2) * w, vals, w, label=k.replace("_", " "))
    ax.set_xticks(x, [r["name"] for r in rows], rotation=30, ha="right")
    ax.set(ylim=(0, 1.02), ylabel="score", title=title)
    ax.axhline(0.5, color="grey", lw=1, ls="--")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_compare_curves(histories: dict[str, Sequence[dict]], path: str | Path) -> Path:
    """Every run on one chart: validation accuracy per epoch (left), and train (dashed) and
    validation (solid) loss per epoch (right), one colour per run."""
    fig, (a, b) = _subplots(1, 2, figsize=(12, 4.5))
    for i, (name, hist) in enumerate(histories.items()):
        c = f"C{i % 10}"
        ep = [h["epoch"] for h in hist]
        a.plot(ep, [h["val_acc"] for h in hist], "o-", color=c, label=name)
        b.plot(ep, [h["val_loss"] for h in hist], "o-", color=c, label=f"{name} val")
        b.plot(ep, [h["train_loss"] for h in hist], "--", color=c, alpha=0.6, label=f"{name} train")
    a.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy", ylim=(0, 1.02))
    b.set(xlabel="epoch", ylabel="loss", title="loss (solid validation, dashed train)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    a.legend(fontsize=8, loc="lower right")
    b.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_augment_preview(rows: Sequence[tuple[str, Sequence[np.ndarray]]], path: str | Path, title: str = "") -> Path:
    """One row per training image: its class name, then each augmented view as the model sees it.

    ``rows``: ``(label, [view (H,W,3) uint8 ...])``; the first view is shown as "original" when
    the caller puts the un-augmented image there."""
    cols = max((len(v) for _, v in rows), default=1)
    fig, axes = _subplots(max(len(rows), 1), cols, figsize=(1.9 * cols, 2.0 * max(len(rows), 1) + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, (label, views) in enumerate(rows):
        for c, img in enumerate(views):
            axes[r, c].imshow(img)
            if c == 0:
                axes[r, c].set_title(label, fontsize=9, loc="left")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_matrix(
    values: Sequence[Sequence[float | None]],
    rows: Sequence[str],
    cols: Sequence[str],
    path: str | Path,
    title: str = "",
    label: str = "ROC-AUC",
) -> Path:
    """A heatmap of ``values[i][j]`` (row: trained on, column: tested on), each cell annotated;
    ``None`` cells are grey."""
    a = np.array([[np.nan if v is None else v for v in r] for r in values], dtype=float)
    fig, ax = _subplots(figsize=(1.6 * len(cols) + 2.5, 1.0 * len(rows) + 1.8))
    im = ax.imshow(a, cmap="RdYlGn", vmin=0.5, vmax=1.0)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            ax.text(
                j,
                i,
                "-" if np.isnan(a[i, j]) else f"{a[i, j]:.3f}",
                ha="center",
                va="center",
                fontweight="bold" if i == j else "normal",
            )
    ax.set_xticks(range(len(cols)), cols, rotation=20, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel="tested on", ylabel="trained on", title=title)
    fig.colorbar(im, ax=ax, label=label, fraction=0.046)
    return _save(fig, path)
