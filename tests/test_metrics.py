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


def test_auc_interval_is_the_bootstrap_of_roc_auc_and_narrows_with_more_data():
    from sklearn.metrics import roc_auc_score

    from transferlab.metrics import auc_interval

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(60), np.zeros(90)].astype(int)
    score = np.round(y * 0.8 + rng.normal(size=150), 1)  # rounded: ties, which ranks must share
    lo, hi = auc_interval(y, score, resamples=200, seed=3)
    # the same resamples by hand, each scored by scikit-learn
    rng = np.random.default_rng(3)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    idx = np.concatenate([rng.choice(pos, (100, 60)), rng.choice(neg, (100, 90))], 1)
    idx = np.concatenate([idx, np.concatenate([rng.choice(pos, (100, 60)), rng.choice(neg, (100, 90))], 1)])
    by_hand = [roc_auc_score(y[i], score[i]) for i in idx]
    assert (lo, hi) == pytest.approx(tuple(np.quantile(by_hand, [0.025, 0.975])), abs=1e-12)
    assert lo < roc_auc_score(y, score) < hi and 0.05 < hi - lo < 0.3
    big = np.tile(np.arange(150), 16)  # the same scores, 16 times as many images: about a quarter as wide
    lo16, hi16 = auc_interval(y[big], score[big])
    assert 0.15 < (hi16 - lo16) / (hi - lo) < 0.4
    assert auc_interval(y, y.astype(float)) == (1.0, 1.0)  # perfectly separated: no doubt left


def test_binary_scores_carry_the_interval():
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    probs = np.stack([1 - np.linspace(0.1, 0.9, 8), np.linspace(0.1, 0.9, 8)], 1)
    b = binary_scores(y, probs, positive=1)
    lo, hi = b["roc_auc_ci95"]
    assert lo <= b["roc_auc"] <= hi <= 1.0
    assert "roc_auc_ci95" not in binary_scores(np.zeros(4, int), probs[:4], positive=1)
