"""Classification metrics on predicted probabilities, via scikit-learn.

All functions take ``labels (N,)`` ints and ``probs (N, C)`` floats and return plain
Python data (JSON-ready).
"""

from __future__ import annotations

import re

import numpy as np
from sklearn import metrics as skm

__all__ = [
    "guess_positive",
    "looks_real_fake",
    "binary_scores",
    "auc_interval",
    "equal_error_rate",
    "eer_threshold",
    "between",
    "classification_report",
    "accuracy",
]

_FAKE = re.compile(r"fake|synthetic|generated|manipulated|spoof|forged|(^|[^a-z])gan([^a-z]|$)", re.I)


def guess_positive(classes: list[str], positive: str | None = None) -> int:
    """Index of the positive class for two-class metrics.

    An explicit ``positive`` wins; else a class whose name looks like "fake"/"generated";
    else index 1 (scikit-learn's convention).
    """
    if positive is not None:
        if positive not in classes:
            raise ValueError(f"positive class '{positive}' is not one of {classes}")
        return classes.index(positive)
    hits = [i for i, c in enumerate(classes) if _FAKE.search(c)]
    return hits[0] if len(hits) == 1 else 1


def looks_real_fake(classes: list[str]) -> bool:
    """Two classes, exactly one named like fake/generated/GAN: a real-vs-fake detection task."""
    return len(classes) == 2 and sum(bool(_FAKE.search(c)) for c in classes) == 1


def accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    return float((np.asarray(probs).argmax(1) == np.asarray(labels)).mean()) if len(labels) else 0.0


def equal_error_rate(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """``(eer, threshold)``: the point where false-positive and false-negative rates meet.

    ``y`` is 1 for the positive class, ``score`` its probability.
    """
    fpr, tpr, thr = skm.roc_curve(y, score, drop_intermediate=False)  # every distinct score: see between()
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    eer = float((fpr[i] + fnr[i]) / 2)
    return eer, between(thr, i)


def between(thr: np.ndarray, i: int) -> float:
    """A threshold half-way (in logit space) between ROC threshold ``thr[i]`` and the next lower
    score ``thr[i + 1]``: the same operating point on the data it was chosen on, but not sitting
    on one sample's score (with well-separated validation data ``thr[i]`` can be 1.0 exactly,
    which would call a fake with P = 0.9999 real)."""
    hi = float(min(thr[i], 1.0))
    if i + 1 >= len(thr):
        return hi
    lo = float(thr[i + 1])
    logit = lambda p: np.log(np.clip(p, 1e-7, 1 - 1e-7) / (1 - np.clip(p, 1e-7, 1 - 1e-7)))
    return float(1.0 / (1.0 + np.exp(-(logit(hi) + logit(lo)) / 2)))


def eer_threshold(labels: np.ndarray, probs: np.ndarray, positive: int) -> float:
    """Threshold on P(positive) at the equal-error point, chosen on (validation) data."""
    y = (np.asarray(labels) == positive).astype(int)
    if y.min() == y.max():
        return 0.5
    return equal_error_rate(y, np.asarray(probs)[:, positive])[1]


def auc_interval(
    y: np.ndarray, score: np.ndarray, level: float = 0.95, resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of ROC-AUC over a stratified bootstrap (each resample draws the
    positives and the negatives with replacement, keeping their counts, so every resample has both
    classes). ``y (N,)`` 0/1 with both present, ``score (N,)``. Deterministic for a ``seed``.
    How far a test set's ROC-AUC could move on another draw of the same size: on 150 images
    about +-0.08, which is more than most differences between two recipes."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    n1, n0 = len(pos), len(neg)
    aucs = []
    for start in range(0, resamples, 100):  # 100 resamples at a time: memory stays small for large N
        b = min(100, resamples - start)
        idx = np.concatenate([rng.choice(pos, (b, n1)), rng.choice(neg, (b, n0))], axis=1)
        ranks = rankdata(score[idx], axis=1)  # ties share their mean rank, as in roc_auc_score
        aucs.append((ranks[:, :n1].sum(1) - n1 * (n1 + 1) / 2) / (n1 * n0))  # Mann-Whitney U / (n1 n0)
    lo, hi = np.quantile(np.concatenate(aucs), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def binary_scores(labels: np.ndarray, probs: np.ndarray, positive: int, threshold: float | None = None) -> dict:
    """ROC-AUC (with its 95% bootstrap interval, :func:`auc_interval`), average precision, EER and
    (given ``threshold``) accuracy at that threshold."""
    y = (np.asarray(labels) == positive).astype(int)
    score = np.asarray(probs)[:, positive]
    out: dict = {"positive_class_index": positive}
    if y.min() == y.max():
        out.update(
            roc_auc=None,
            average_precision=None,
            eer=None,
            note="only one class present: ROC-AUC, AP and EER are undefined",
        )
    else:
        eer, eer_thr = equal_error_rate(y, score)
        out.update(
            roc_auc=float(skm.roc_auc_score(y, score)),
            roc_auc_ci95=list(auc_interval(y, score)),
            average_precision=float(skm.average_precision_score(y, score)),
            eer=eer,
            eer_threshold=eer_thr,
        )
    if threshold is not None:
        out["threshold"] = float(threshold)
        out["accuracy_at_threshold"] = float(((score >= threshold).astype(int) == y).mean())
        decided = (score >= threshold).astype(int)
        recalls = [float((decided[y == k] == k).mean()) for k in (0, 1) if (y == k).any()]
        out["balanced_accuracy_at_threshold"] = float(np.mean(recalls)) if recalls else None
    return out


def classification_report(
    labels: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    positive: int | None = None,
    threshold: float | None = None,
) -> dict:
    """Accuracy, per-class accuracy, confusion matrix, precision/recall/F1 and, for two classes,
    :func:`binary_scores`. The confusion matrix is ``cm[true][pred]``."""
    labels = np.asarray(labels)
    probs = np.asarray(probs)
    pred = probs.argmax(1)
    k = list(range(len(classes)))
    cm = skm.confusion_matrix(labels, pred, labels=k)
    p, r, f1, support = skm.precision_recall_fscore_support(labels, pred, labels=k, zero_division=0)
    per_class = {}
    for i, name in enumerate(classes):
        n = int(cm[i].sum())
        per_class[name] = {
            "accuracy": float(cm[i, i] / n) if n else None,
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
    out = {
        "n": int(len(labels)),
        "accuracy": accuracy(labels, probs),
        "balanced_accuracy": float(np.mean([v["accuracy"] for v in per_class.values() if v["accuracy"] is not None]))
        if len(labels)
        else 0.0,
        "macro_f1": float(np.mean(f1)),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
    }
    if len(classes) == 2:
        pos = guess_positive(list(classes)) if positive is None else positive
        out["binary"] = binary_scores(labels, probs, pos, threshold)
        out["positive_class"] = classes[pos]
    return out
