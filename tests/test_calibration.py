import numpy as np
import pytest

from transferlab.training.calibration import (
    apply_temperature,
    calibrate,
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    nll,
)


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.fixture
def overconfident():
    """Labels drawn from softmax(z); the model reports softmax(3 z): over-confident by T = 3."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, (4000, 2))
    labels = np.array([rng.choice(2, p=p) for p in _softmax(z)])
    return labels, _softmax(3 * z)


def test_temperature_recovers_the_overconfidence(overconfident):
    labels, probs = overconfident
    t = fit_temperature(labels, probs)
    assert 2.6 < t < 3.4
    cal = apply_temperature(probs, t)
    assert nll(labels, cal) < nll(labels, probs)
    assert expected_calibration_error(labels, cal) < 0.5 * expected_calibration_error(labels, probs)
    assert (cal.argmax(1) == probs.argmax(1)).all()  # ranking never changes


def test_ece_of_perfect_and_wrong_predictions():
    labels = np.array([0, 1, 0, 1])
    sure_right = np.eye(2)[labels]
    assert expected_calibration_error(labels, sure_right) == pytest.approx(0.0)
    assert expected_calibration_error(labels, 1 - sure_right) == pytest.approx(1.0)


def test_threshold_rules():
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(500, int), np.ones(500, int)]
    score = np.r_[rng.normal(0.35, 0.15, 500), rng.normal(0.65, 0.15, 500)].clip(0, 1)
    probs = np.c_[1 - score, score]
    assert choose_threshold(labels, probs, 1, "argmax") is None
    eer = choose_threshold(labels, probs, 1, "eer")
    assert 0.45 < eer < 0.55
    t = choose_threshold(labels, probs, 1, "fpr", 0.05)
    fpr = ((score >= t) & (labels == 0)).sum() / 500
    assert fpr <= 0.05 and t > eer
    out = calibrate(labels, probs, ["real", "fake"], 1, "fpr", 0.05)
    assert out["threshold_rule"] == "fpr:0.05" and out["positive_class"] == "fake"
    assert {"temperature", "ece_before", "ece_after", "nll_before", "nll_after"} <= set(out)


def test_a_threshold_fitted_on_perturbed_copies_pools_their_scores():
    """A perturbation that lowers every P(fake) (as blur and noise do to face swaps): the pooled
    equal-error threshold moves down with it, the clean one is kept beside it, and the
    temperature is still fitted on the clean scores alone."""
    rng = np.random.default_rng(2)
    labels = np.r_[np.zeros(300, int), np.ones(300, int)]
    score = np.r_[rng.normal(0.35, 0.12, 300), rng.normal(0.65, 0.12, 300)].clip(0.01, 0.99)
    probs = np.c_[1 - score, score]
    shifted = (score - 0.15).clip(0.01, 0.99)
    moved = np.c_[1 - shifted, shifted]
    clean = calibrate(labels, probs, ["real", "fake"], 1, "eer", None)
    out = calibrate(labels, probs, ["real", "fake"], 1, "eer", None, perturbed=[("blur:1", labels, moved)])
    assert "threshold_clean" not in clean and out["threshold_clean"] == clean["threshold"]
    assert out["temperature"] == clean["temperature"] and out["threshold_fitted_on"] == ["clean", "blur:1"]
    t = out["temperature"]
    pooled = np.concatenate([apply_temperature(probs, t), apply_temperature(moved, t)])
    assert out["threshold"] == choose_threshold(np.r_[labels, labels], pooled, 1, "eer")
    assert out["threshold"] < clean["threshold"] - 0.03

    # the pooled threshold keeps more of the shifted copies right, at a small cost on the clean ones
    def acc(p, thr):
        return ((apply_temperature(p, t)[:, 1] >= thr) == labels).mean()

    assert acc(moved, out["threshold"]) > acc(moved, clean["threshold"]) + 0.05
    assert acc(probs, out["threshold"]) > acc(probs, clean["threshold"]) - 0.1
