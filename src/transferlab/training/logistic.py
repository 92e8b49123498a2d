"""A head fitted in seconds: standardisation plus an L2-regularised logistic regression on cached
frozen features, its strength chosen by cross-validation on the training split.

The fit is deterministic (L-BFGS, seeded folds). Views of one image (augmented copies, crops)
stay in one fold, and so do the images of one group (a fake and the photo it was made from, as
the split's manifest names them), so the validation folds never see a copy of a training image
nor the other half of a pair (split pairs read as the opposite label's twin; on the face-swap
set they made cross-validation choose a 10x stronger regularisation than the data needs). The fitted
mean/scale go into the model's ``feature_norm`` and the coefficients into its linear head, so
``predict``, ``evaluate``, ``export`` and ``serve`` use the result like any other head.

Stage features come in blocks of very different widths (efficientnet_lite0: 32 to 2560 columns
per stage), and with every standardised column alike under the L2 penalty the widest block, the
final ImageNet-semantic map, holds most of the prior. ``blocks`` gives each block an equal share
instead: its columns are scaled by ``sqrt(D / (n_blocks * width))`` (the total prior variance is
unchanged), and the factor is folded into ``feature_norm.scale``, so the model is the same shape.

The augmented views (blur, JPEG re-compression, noise, crops) say what should not change a
verdict, but fitting on them only shows the head more rows. ``invariance`` also puts a prior
against weight along the directions those views move an image's standardised features: the
penalty is ``w' (I + lam * Sigma) w`` instead of ``w' w``, with ``Sigma`` the covariance of
every view's difference from its image's plain view (a generalised ridge, as in Tikhonov
regularisation; ``lam`` is ``invariance`` times ``D / trace(Sigma)``, so 1 adds on average as
much again to the prior). It is fitted as a plain L2 logistic regression on the columns times
``(I + lam * Sigma)^(-1/2)`` and the coefficients mapped back, so the head stays one weight per
column. ``Sigma`` uses no label; the cross-validation folds see the same transformed columns.

With more columns than rows (stage features of several views: 25,152 columns for 3,000 rows), the
fit runs on the rows' coordinates in an orthonormal basis of their span instead: an L2 penalty is
unchanged by a rotation, and a weight outside the rows' span scores no row but costs penalty, so
the optimum, and every fold's, lies in it (the representer theorem). Same head, to the solver's
tolerance, at the rows' count of columns instead of the features'.

``heads`` fits groups of columns as separate heads, each with its own ``C``, and fuses them into
the one linear layer (a sum of linear heads on disjoint columns is a linear head): zoom's two
views, then the face's parts (``--parts face``). One head over both gave the parts' 36 blocks two
thirds of the prior and one ``C``; it raised ciplab's ROC-AUC but lowered the face swaps' and every
transfer to another source, where a probe's separately fitted parts head, added to the default's
with each divided by its spread, raised both sets (BENCHMARKS.md, "Face parts"). How much each
head counts is learnt the way stacking learns it (Wolpert 1992): a logistic fit on the heads'
out-of-fold scores (each row scored by the model of the cross-validation fold that did not see
it, at the head's ``C``), its factors kept positive, so a head that adds nothing gets none and the
sum's probabilities are calibrated (over five splits: ciplab +1.0, face swaps +0.2 against the
views' head alone; equal shares gave +1.8 and -0.7). With more than two classes each head is
divided by the spread of its scores instead.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..models.transfer import TransferModel

__all__ = ["LogisticFit", "fit_logistic", "block_weights", "C_GRID"]

C_GRID = tuple(float(c) for c in np.logspace(-5, 1, 13))  # inverse regularisation strengths tried


@dataclass
class LogisticFit:
    """What :func:`fit_logistic` found: the chosen ``C``, the cross-validated log loss per ``C``,
    and the training accuracy of the final fit."""

    C: float
    folds: int
    fold_units: int = 0  # images, or groups of images, that the folds kept whole
    blocks: int = 1  # feature blocks given an equal share of the L2 prior (1: every feature alike)
    invariance: float = 0.0  # strength of the prior against the augmented views' directions (0: none)
    cv_log_loss: dict[str, float] = field(default_factory=dict)
    train_accuracy: float = 0.0
    train_log_loss: float = 0.0
    seconds: float = 0.0
    heads: list[dict] = field(default_factory=list)  # separately fitted heads (columns, C, curve); [] for one
    fusion: list[float] = field(default_factory=list)  # each head's factor, then the shift; [] for one head
    fused_by: str = ""  # how the factors were found: "stacking", "spread"; "" for one head

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def block_weights(blocks: Sequence[int] | None, dim: int) -> np.ndarray:
    """``(dim,)`` factors on the standardised columns that give each block of ``blocks`` (widths
    in column order) an equal share of the L2 prior, ``sqrt(dim / (n_blocks * width))``; all ones
    for no blocks or one."""
    if not blocks or len(blocks) == 1:
        return np.ones(dim)
    if sum(blocks) != dim or min(blocks) < 1:
        raise ValueError(f"feature blocks {list(blocks)} do not tile {dim} columns")
    return np.concatenate([np.full(w, np.sqrt(dim / (len(blocks) * w))) for w in blocks])


def _invariance_basis(z: np.ndarray, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """The directions along which the augmented views of an image move its standardised features
    (``z (N, V, D)``, view 0 the plain one), and the factors ``(1 + lam * s^2)^(-1/2) - 1`` of the
    prior ``I + lam * Sigma`` that penalises a weight along them (``Sigma`` the covariance of the
    view-minus-plain differences, ``lam = strength * D / trace(Sigma)``)."""
    n, v, d = z.shape
    delta = (z[:, 1:] - z[:, :1]).reshape(-1, d) / np.sqrt(n * (v - 1))
    _, s, vt = np.linalg.svd(delta, full_matrices=False)
    lam = strength * d / max(float((s**2).sum()), 1e-12)
    return vt, (1.0 + lam * s**2) ** -0.5 - 1.0


def _whiten(z: np.ndarray, vt: np.ndarray, f: np.ndarray) -> np.ndarray:
    """``z @ P^(-1/2)`` for the prior ``P`` of :func:`_invariance_basis` (in place)."""
    z += ((z @ vt.T) * f) @ vt
    return z


def _row_basis(z: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """For ``z (n, D)`` with ``D > n``: the rows' coordinates ``(n, r)`` in an orthonormal basis
    of their span, and ``m (n, r)`` with ``basis = m.T @ z``, so a weight ``beta`` on the
    coordinates is ``(beta @ m.T) @ z`` on the columns. ``None`` where ``D <= n``. From the rows'
    Gram matrix; directions with eigenvalues below ``1e-10`` of the largest (numerically not in the
    span) are dropped."""
    n, d = z.shape
    if d <= n:
        return None
    lam, u = np.linalg.eigh(z @ z.T)
    keep = lam > max(float(lam[-1]), 1e-300) * 1e-10
    root = np.sqrt(lam[keep])
    return u[:, keep] * root, u[:, keep] / root


def _folds(labels: np.ndarray, groups: np.ndarray, seed: int):
    from sklearn.model_selection import StratifiedGroupKFold

    per_class = np.bincount(labels[np.unique(groups, return_index=True)[1]])
    k = int(min(5, per_class[per_class > 0].min()))
    if k < 2:
        return None, 0
    return list(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(labels, labels, groups)), k


def fit_logistic(
    model: TransferModel,
    feats: torch.Tensor,
    labels: torch.Tensor,
    seed: int = 0,
    grid: tuple[float, ...] = C_GRID,
    balanced: bool = False,
    fit_norm: bool = True,
    groups: list[str] | None = None,
    blocks: Sequence[int] | None = None,
    invariance: float = 0.0,
    heads: Sequence[int] | None = None,
) -> LogisticFit:
    """Fit ``model.feature_norm`` and the linear head on ``feats (N, V, D)`` (V views per image)
    with ``labels (N,)``; ``balanced`` weighs each class by its inverse frequency (imbalanced
    data). ``fit_norm=False`` keeps a ``feature_norm`` already fitted on these rows (the trainer
    fits it while the features stream in). ``groups`` names each image's group ("" for none):
    a group stays in one cross-validation fold. ``blocks``: widths of the feature blocks (in
    column order, summing to D) that get an equal share of the prior (see the module's note); the
    factor is folded into ``feature_norm.scale``, so call this once per fitted ``feature_norm``.
    ``heads``: widths of column groups (in order, summing to D, each a whole number of blocks)
    fitted as separate heads and fused (see the module's note); None: one head.
    Returns the :class:`LogisticFit` summary; the model is changed in place."""
    t0 = time.perf_counter()
    n, v, d = feats.shape
    num_classes = model.linear_layer().out_features
    x = feats.reshape(n * v, d)
    if fit_norm:
        model.feature_norm.fit(x)
    widths = list(heads or [d])
    if sum(widths) != d or min(widths) < 1:  # a short sum would leave columns out of every head
        raise ValueError(f"head widths {widths} do not tile {d} columns")
    per_head = _split_blocks(blocks, widths)
    share = np.concatenate([block_weights(b, w) for b, w in zip(per_head, widths)])
    z = model.feature_norm(x).double().numpy()
    z *= share  # in place: z is a fresh array, and a scaled copy would double the head's memory
    y = labels.repeat_interleave(v).numpy()
    if groups is not None and len(groups) != n:
        raise ValueError(f"{len(groups)} group names for {n} images")
    units = {}  # an image with no group is its own unit
    unit = [units.setdefault(g or ("", i), len(units)) for i, g in enumerate(groups or [""] * n)]
    row_units = np.repeat(np.asarray(unit), v)
    missing = sorted(set(range(num_classes)) - set(np.unique(y).tolist()))
    if missing:
        raise ValueError(f"no training images of class index {missing}: the logistic head needs every class")
    folds, k = _folds(y, row_units, seed)
    edges = np.cumsum([0, *widths])
    fits = [
        _fit_columns(z[:, a:b], (n, v), y, folds, grid, balanced, invariance, len(widths) > 1)
        for a, b in zip(edges[:-1], edges[1:])
    ]
    coef, intercept, score, fusion, fused_by = _fused(fits, y, balanced)
    w = torch.from_numpy(coef).float()
    b = torch.from_numpy(intercept).float()
    if num_classes == 2:  # sklearn's one score z for class 1: logits (-z/2, z/2) give softmax = sigmoid(z)
        w, b = torch.cat([-w / 2, w / 2]), torch.cat([-b / 2, b / 2])
    layer = model.linear_layer()
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.bias.copy_(b)
        model.feature_norm.scale.div_(torch.from_numpy(share).float())
    p = np.clip(_proba(score), 1e-12, 1.0)
    return LogisticFit(
        C=fits[0].C,
        folds=k,
        fold_units=len(units),
        blocks=len(blocks) if blocks else 1,
        invariance=invariance if fits[0].whitened else 0.0,
        cv_log_loss=fits[0].curve,
        train_accuracy=float((p.argmax(1) == y).mean()),
        train_log_loss=float(-np.log(p[np.arange(len(y)), y]).mean()),
        seconds=time.perf_counter() - t0,
        heads=[f.summary() for f in fits] if len(fits) > 1 else [],
        fusion=fusion,
        fused_by=fused_by,
    )


def _split_blocks(blocks: Sequence[int] | None, widths: list[int]) -> list[list[int] | None]:
    """``blocks`` cut at the heads' edges (``widths``), one list per head; None for no blocks.
    One head takes them all (:func:`block_weights` checks that they tile its columns)."""
    if not blocks or len(widths) == 1:
        return [blocks] * len(widths)
    out, rest = [], list(blocks)
    for width in widths:
        cut = int(np.searchsorted(np.cumsum(rest), width)) + 1
        if sum(rest[:cut]) != width:
            raise ValueError(f"head widths {widths} do not fall on the edges of feature blocks {list(blocks)}")
        out.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        raise ValueError(f"head widths {widths} leave feature blocks {rest} over")
    return out


@dataclass
class _HeadFit:
    """One head of :func:`fit_logistic`: its coefficients on the plain (standardised, shared)
    columns, its score on every training row, and the out-of-fold scores at its ``C``."""

    columns: int
    C: float
    curve: dict[str, float]
    coef: np.ndarray  # (1 or K, columns)
    intercept: np.ndarray  # (1 or K,)
    score: np.ndarray  # (rows, 1 or K) on the training rows
    held_out: np.ndarray | None  # (rows, 1 or K) from the fold models; None without folds or fusion
    whitened: bool

    def summary(self) -> dict:
        return {"columns": self.columns, "C": self.C, "cv_log_loss": self.curve}


def _fit_columns(z, shape, y, folds, grid, balanced, invariance, held_out) -> _HeadFit:
    """An L2 logistic regression on the columns ``z (rows, columns)`` (changed in place), ``C``
    chosen by log loss over ``folds``; ``held_out``: also each row's score from the model fitted
    without its fold, at that ``C``."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from threadpoolctl import threadpool_limits

    n, v = shape
    basis = _invariance_basis(z.reshape(n, v, -1), invariance) if invariance > 0 and v > 1 else None
    if basis is not None:
        z = _whiten(z, *basis)
    columns, rows = z, _row_basis(z)
    if rows is not None:
        z = rows[0]  # fit on the rows' coordinates; the columns' weights are mapped back below
    weight = "balanced" if balanced else None
    scores = None
    # one BLAS thread: L-BFGS on a few thousand rows makes matrix-vector products too small to
    # share, and OpenBLAS's threads made the fit 3-4x slower on two cores (same result)
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore")  # convergence chatter at the weakest regularisation, API transition notes
        if folds is None:  # a class with one image: nothing to cross-validate on
            clf = LogisticRegression(C=1.0, max_iter=2000, class_weight=weight).fit(z, y)
            c, curve = 1.0, {}
        else:
            clf = LogisticRegressionCV(
                Cs=list(grid), cv=folds, scoring="neg_log_loss", max_iter=2000, class_weight=weight
            ).fit(z, y)
            c = float(np.ravel(clf.C_)[0])
            cv = np.mean(list(clf.scores_.values()), axis=0)  # (folds, Cs)
            curve = {f"{cv_c:.3g}": float(-m) for cv_c, m in zip(clf.Cs_, cv.mean(0))}
            if held_out:
                scores = np.zeros((len(y), clf.coef_.shape[0]))
                for train, test in folds:
                    fold = LogisticRegression(C=c, max_iter=2000, class_weight=weight).fit(z[train], y[train])
                    scores[test] = fold.decision_function(z[test]).reshape(len(test), -1)
    coef = clf.coef_ if rows is None else (clf.coef_ @ rows[1].T) @ columns
    coef = coef if basis is None else _whiten(coef.copy(), *basis)  # back to the plain columns
    score = clf.decision_function(z).reshape(len(y), -1)
    return _HeadFit(columns.shape[1], c, curve, coef, clf.intercept_, score, scores, basis is not None)


def _fused(
    fits: list[_HeadFit], y: np.ndarray, balanced: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float], str]:
    """One linear head from separately fitted ones: the coefficients side by side and the
    intercepts summed, each head's times its factor. With two classes the factors and a shift are
    a logistic fit on the heads' out-of-fold scores (stacking, each factor kept positive); otherwise
    each head is divided by the spread of its scores. Returns the coefficients, the intercept, the
    training rows' score, ``[factor per head..., shift]`` and how the factors were found
    (``"stacking"`` or ``"spread"``); one head comes back as it is."""
    if len(fits) == 1:
        f = fits[0]
        return f.coef, f.intercept, f.score, [], ""
    if all(f.held_out is not None for f in fits) and fits[0].score.shape[1] == 1:
        factor, shift = _stacked(np.concatenate([f.held_out for f in fits], 1), y, balanced)
        how = "stacking"
    else:  # no folds to learn the factors on, or more than two classes
        factor, shift = [1.0 / (float(np.std(f.score)) or 1.0) for f in fits], 0.0
        how = "spread"
    coef = np.concatenate([f.coef * k for f, k in zip(fits, factor)], axis=1)
    intercept = sum(f.intercept * k for f, k in zip(fits, factor)) + shift
    score = sum(f.score * k for f, k in zip(fits, factor)) + shift
    return coef, intercept, score, [*factor, shift], how


def _stacked(held_out: np.ndarray, y: np.ndarray, balanced: bool) -> tuple[list[float], float]:
    """Factors (one per column of ``held_out (rows, heads)``, the heads' out-of-fold scores) and a
    shift from an (all but) unregularised logistic fit of ``y`` on them. A head whose factor comes
    out zero or negative (it adds nothing the others lack) is dropped and the rest fitted again."""
    from sklearn.linear_model import LogisticRegression

    keep = list(range(held_out.shape[1]))
    while True:
        stack = LogisticRegression(C=1e6, max_iter=1000, class_weight="balanced" if balanced else None)
        stack.fit(held_out[:, keep], y)
        w = stack.coef_[0]
        if len(keep) == 1 or (w > 0).all():
            break
        keep = [k for k, wk in zip(keep, w) if wk > 0] or keep[:1]
    factor = [0.0] * held_out.shape[1]
    for k, wk in zip(keep, w):
        factor[k] = float(wk)
    return factor, float(stack.intercept_[0])


def _proba(score: np.ndarray) -> np.ndarray:
    """Class probabilities from sklearn-style scores: one column (two classes) or one per class."""
    from scipy.special import expit, softmax

    if score.shape[1] == 1:
        p1 = expit(score[:, 0])
        return np.stack([1.0 - p1, p1], 1)
    return softmax(score, axis=1)
