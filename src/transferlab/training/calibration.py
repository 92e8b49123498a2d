"""Calibrated decisions, fitted on validation data and saved with the model.

- :func:`fit_temperature`: temperature scaling (Guo et al., ICML 2017): one scalar ``T`` that
  divides the logits, chosen to minimise the validation negative log-likelihood. It changes
  how confident the probabilities are, never which class ranks first.
- :func:`expected_calibration_error`: the gap between confidence and accuracy, 15 equal bins.
- :func:`choose_threshold`: the two-class decision threshold on P(positive): the equal-error
  point, or the lowest threshold whose false-positive rate stays within a budget; optionally
  fitted on the validation scores pooled with those of perturbed copies (JPEG, blur, noise), so
  that a verdict does not flip when an image is re-saved (BENCHMARKS.md, "The detect
  recipe's views and threshold").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import roc_curve

from ..config import ConfigError
from ..data.perturb import Perturbation, parse_perturbations
from ..metrics import eer_threshold

__all__ = [
    "fit_temperature",
    "apply_temperature",
    "expected_calibration_error",
    "nll",
    "choose_threshold",
    "calibrate",
    "threshold_perturbations",
]


def _logp(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / T)``: the same as dividing the logits by ``T``."""
    z = _logp(probs) / temperature
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def nll(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class."""
    labels = np.asarray(labels, dtype=int)
    return float(-_logp(probs)[np.arange(len(labels)), labels].mean()) if len(labels) else float("nan")


def fit_temperature(labels: np.ndarray, probs: np.ndarray) -> float:
    """The ``T`` in [0.05, 20] minimising the NLL of ``apply_temperature(probs, T)``."""
    if len(labels) == 0:
        return 1.0
    res = minimize_scalar(
        lambda log_t: nll(labels, apply_temperature(probs, float(np.exp(log_t)))),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(res.x))


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Weighted mean |accuracy - confidence| over equal-width confidence bins (top-1)."""
    probs, labels = np.asarray(probs), np.asarray(labels, dtype=int)
    if len(labels) == 0:
        return float("nan")
    conf, pred = probs.max(1), probs.argmax(1)
    correct = (pred == labels).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def choose_threshold(
    labels: np.ndarray, probs: np.ndarray, positive: int, rule: str, rate: float | None = None
) -> float | None:
    """Threshold on P(positive). ``rule``: ``eer`` (false-positive = false-negative rate),
    ``fpr`` (lowest threshold with false-positive rate <= ``rate``), ``argmax`` (None)."""
    if rule == "argmax":
        return None
    if rule == "eer":
        return eer_threshold(labels, probs, positive)
    if rule == "fpr":
        y = (np.asarray(labels) == positive).astype(int)
        if y.min() == y.max():
            return 0.5
        fpr, _, thr = roc_curve(y, np.asarray(probs)[:, positive])
        i = int(np.flatnonzero(fpr <= rate)[-1])
        return float(min(thr[i], 1.0))  # the highest score still inside the budget: the safe side
    raise ValueError(f"unknown threshold rule '{rule}'")


def calibrate(
    labels: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    positive: int | None,
    rule: str,
    rate: float | None,
    temperature: bool = True,
    perturbed: Sequence[tuple[str, np.ndarray, np.ndarray]] = (),
) -> dict:
    """Fit the temperature and the threshold on validation ``probs``; returns what is saved
    with the model and reported (temperature, threshold, ECE and NLL before and after).

    ``perturbed``: ``(name, labels, probs)`` of the validation images under a perturbation. Their
    scores (temperature-scaled like the clean ones) join the clean scores in the threshold's fit;
    the temperature stays fitted on the clean scores alone. ``threshold_clean`` keeps the
    threshold the clean scores alone give."""
    perfect = len(labels) > 0 and bool((np.asarray(probs).argmax(1) == np.asarray(labels)).all())
    # with no validation mistakes the NLL only falls as T -> 0: nothing to calibrate against
    t = fit_temperature(labels, probs) if temperature and not perfect else 1.0
    cal = apply_temperature(probs, t)
    out = {
        "temperature": t,
        "temperature_note": "not fitted: every validation prediction is right" if temperature and perfect else None,
        "ece_before": expected_calibration_error(labels, probs),
        "ece_after": expected_calibration_error(labels, cal),
        "nll_before": nll(labels, probs),
        "nll_after": nll(labels, cal),
        "n": int(len(labels)),
        "threshold": None,
        "threshold_rule": rule,
        "positive_class": None,
    }
    if len(classes) == 2 and positive is not None:
        out["threshold"] = choose_threshold(labels, cal, positive, rule, rate)
        if perturbed and out["threshold"] is not None:
            out["threshold_clean"] = out["threshold"]
            out["threshold_fitted_on"] = ["clean", *(name for name, _, _ in perturbed)]
            pooled_labels = np.concatenate([np.asarray(labels), *(y for _, y, _ in perturbed)])
            pooled = np.concatenate([cal, *(apply_temperature(p, t) for _, _, p in perturbed)])
            out["threshold"] = choose_threshold(pooled_labels, pooled, positive, rule, rate)
        out["threshold_rule"] = rule if rule != "fpr" else f"fpr:{rate:g}"
        out["positive_class"] = classes[positive]
    return out


def fitted_on(calibration: dict) -> str:
    """What a saved threshold was fitted on, in words: ``"the validation split"``, and with
    perturbed copies ``"the validation split, clean + jpeg:75, blur:1"`` (the training log and
    ``evaluate`` say it the same way)."""
    copies = calibration.get("threshold_fitted_on") or []
    return "the validation split" + (f", clean + {', '.join(copies[1:])}" if copies else "")


def threshold_perturbations(spec: str | None) -> list[Perturbation]:
    """A config's ``threshold_perturb`` parsed: ``[]`` for ``none`` or unset, a ConfigError
    naming the setting for anything :func:`~transferlab.data.perturb.parse_perturbations` refuses."""
    if spec is None or str(spec).strip().lower() in ("", "none"):
        return []
    try:
        return parse_perturbations(str(spec))
    except ValueError as e:
        raise ConfigError(f"threshold_perturb: {e}") from None
