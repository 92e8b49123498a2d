"""Figures for run folders and reports (matplotlib, no display needed)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_curves", "plot_confusion", "plot_roc", "plot_prediction_grid", "plot_robustness"]

GREEN, RED = "#1a7f37", "#cf222e"


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_curves(history: Sequence[dict], path: str | Path) -> Path:
    """Loss and accuracy per epoch, train vs validation."""
    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a.plot(ep, [h["val_loss"] for h in history], "o-", label="val")
    a.set(xlabel="epoch", ylabel="loss", title="loss")
    b.plot(ep, [h["train_acc"] for h in history], "o-", label="train")
    b.plot(ep, [h["val_acc"] for h in history], "o-", label="val")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_confusion(cm: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path,
                   title: str = "confusion matrix") -> Path:
    """Counts with row-normalised shading; rows are true classes."""
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.2 * n + 2))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black")
    return _save(fig, path)


def plot_roc(fpr: np.ndarray, tpr: np.ndarray, auc: float, path: str | Path,
             eer: float | None = None, title: str = "ROC") -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, label=f"AUC = {auc:.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    if eer is not None:
        ax.plot([eer], [1 - eer], "o", color=RED, label=f"EER = {eer:.3f}")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_prediction_grid(items: Sequence[tuple], path: str | Path, title: str = "",
                         cols: int = 6) -> Path:
    """Thumbnails titled ``pred (p) / true``: green when right, red when wrong.

    ``items``: ``(image (H,W,3) uint8, true_name, pred_name, prob)`` tuples.
    """
    n = max(len(items), 1)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows + (0.4 if title else 0)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (img, true, pred, prob) in zip(axes.flat, items):
        ax.imshow(img)
        ax.set_title(f"{pred} ({prob:.2f})\ntrue: {true}", fontsize=9,
                     color=GREEN if true == pred else RED)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_robustness(rows: Sequence[dict], path: str | Path, title: str = "robustness") -> Path:
    """Grouped bars: accuracy, ROC-AUC and AP per perturbation (``rows``: dicts with ``name``,
    ``accuracy`` and optionally ``roc_auc``, ``average_precision``)."""
    keys = [k for k in ("accuracy", "roc_auc", "average_precision") if any(r.get(k) is not None for r in rows)]
    x = np.arange(len(rows))
    w = 0.8 / max(len(keys), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(rows) + 2), 4))
    for i, k in enumerate(keys):
        vals = [r.get(k) if r.get(k) is not None else 0.0 for r in rows]
        ax.bar(x + (i - (len(keys) - 1) / 2) * w, vals, w, label=k.replace("_", " "))
    ax.set_xticks(x, [r["name"] for r in rows], rotation=30, ha="right")
    ax.set(ylim=(0, 1.02), ylabel="score", title=title)
    ax.axhline(0.5, color="grey", lw=1, ls="--")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)
