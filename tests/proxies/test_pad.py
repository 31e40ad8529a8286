"""PAD's classifier error and holdout sizes on small hand-made inputs."""

import numpy as np
import pytest

from synque_ray.proxies.pad import min_rows_for_holdout, pad


@pytest.mark.parametrize("classifier", ["xgboost", "logistic"])
def test_pad_is_one_for_separable_sets(classifier):
    rng = np.random.default_rng(2)
    synthetic = rng.normal(5.0, 0.1, size=(100, 6))
    real = rng.normal(-5.0, 0.1, size=(100, 6))
    assert pad(synthetic, real, classifier=classifier, support_gate=False) > 0.95
    # The support gate reads U_r's own outskirts as synthetic at its rate: there its only errors, so
    # separable sets read 1 − that share of U_r's held-out rows (80 training rows: ⌈.85 × 81⌉ = 69th of
    # 80, exceeded by a fresh row with chance 12 / 81).
    assert pad(synthetic, real, classifier=classifier) == pytest.approx(1 - 12 / 81, abs=0.04)


@pytest.mark.parametrize("classifier", ["xgboost", "logistic"])
def test_pad_is_near_zero_for_one_distribution(classifier):
    rng = np.random.default_rng(3)
    synthetic, real = rng.normal(size=(400, 4)), rng.normal(size=(400, 4))
    assert abs(pad(synthetic, real, classifier=classifier)) < 0.2


def test_pad_uses_mean_absolute_error_of_probabilities():
    # Logistic regression on 1-D data: recompute 1 - 2 * mean|p - y| by hand on the same split, for
    # the paper's PAD (one model on every training row, no support gate; the default trains on a fixed
    # number per side).
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(4)
    synthetic, real = rng.normal(0.8, 1, size=(60, 1)), rng.normal(-0.8, 1, size=(40, 1))
    x = np.vstack([synthetic, real])
    y = np.r_[np.ones(60), np.zeros(40)]
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, stratify=y, random_state=9)
    p = LogisticRegression(max_iter=1000, random_state=9).fit(xtr, ytr).predict_proba(xte)[:, 1]
    expected = 1 - 2 * np.mean(np.abs(p - yte))
    assert pad(synthetic, real, classifier="logistic", holdout=0.25, seed=9, folds=0, balanced=False,
               train_rows="all", support_gate=False) == pytest.approx(expected)


def test_min_rows_for_holdout():
    assert min_rows_for_holdout(0.2) == 5
    assert min_rows_for_holdout(0.5) == 2
    assert min_rows_for_holdout(0.9) == 10
