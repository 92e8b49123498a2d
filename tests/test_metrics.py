import numpy as np
import pytest

from transferlab.metrics import (
    accuracy,
    binary_scores,
    classification_report,
    eer_threshold,
    equal_error_rate,
    guess_positive,
)


def test_guess_positive():
    assert guess_positive(["fake", "real"]) == 0
    assert guess_positive(["0_real", "1_fake"]) == 1
    assert guess_positive(["ants", "bees"]) == 1
    assert guess_positive(["organ", "piano"]) == 1  # "gan" inside a word is not a GAN
    assert guess_positive(["ants", "bees"], "ants") == 0
    with pytest.raises(ValueError):
        guess_positive(["a", "b"], "c")


def test_report_confusion_orientation_and_per_class():
    labels = np.array([0, 0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.1, 0.9]])
    r = classification_report(labels, probs, ["a", "b"], positive=1)
    assert r["confusion_matrix"] == [[2, 1], [0, 2]]  # rows true, columns predicted
    assert r["accuracy"] == pytest.approx(0.8)
    assert r["per_class"]["a"]["accuracy"] == pytest.approx(2 / 3)
    assert r["per_class"]["b"]["accuracy"] == 1.0
    assert r["binary"]["roc_auc"] == pytest.approx(5 / 6)  # the 0.7 negative outranks the 0.6 positive


def test_eer_of_separable_and_random_scores():
    y = np.array([0] * 50 + [1] * 50)
    eer, thr = equal_error_rate(y, np.r_[np.linspace(0, 0.4, 50), np.linspace(0.6, 1, 50)])
    assert eer == 0.0 and 0.4 <= thr <= 0.6
    rng = np.random.default_rng(0)
    eer, _ = equal_error_rate(rng.integers(0, 2, 4000), rng.random(4000))
    assert 0.45 < eer < 0.55


def test_threshold_from_validation_changes_accuracy():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.2, 0.8], [0.3, 0.7], [0.1, 0.9], [0.05, 0.95]])  # all argmax 1, but separable at .85
    assert accuracy(labels, probs) == 0.5
    thr = eer_threshold(labels, probs, positive=1)
    assert 0.8 < thr <= 0.9
    assert binary_scores(labels, probs, 1, thr)["accuracy_at_threshold"] == 1.0


def test_single_class_binary_scores_are_undefined_not_crashing():
    r = binary_scores(np.array([1, 1]), np.array([[0.2, 0.8], [0.4, 0.6]]), 1)
    assert r["roc_auc"] is None and "undefined" in r["note"]
