"""A candidate's size must not buy or cost it rank (docs/proxies.md).

Samples of one distribution at very different sizes: under the new defaults
(cross-fitted, class-balanced PAD; unbiased MMD²) the expected score does not move
with size; the paper's definitions drift as the issue measured.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from synque_ray.proxies.mmd import mmd_squared
from synque_ray.proxies.pad import pad, pad_probabilities

DRAWS = 6


def _mean_over_draws(function, n_synthetic: int, n_real: int, dims: int = 8) -> float:
    values = []
    for draw in range(DRAWS):
        rng = np.random.default_rng(100 + draw)
        values.append(function(rng.normal(size=(n_synthetic, dims)), rng.normal(size=(n_real, dims)), draw))
    return float(np.mean(values))


def test_cross_fitted_balanced_pad_does_not_move_with_size_and_the_papers_does():
    new = {sizes: _mean_over_draws(lambda s, r, d: pad(s, r, seed=d), *sizes) for sizes in [(30, 30), (300, 30)]}
    assert abs(new[(30, 30)]) < 0.15 and abs(new[(300, 30)]) < 0.15
    assert abs(new[(300, 30)] - new[(30, 30)]) < 0.15
    paper = _mean_over_draws(lambda s, r, d: pad(s, r, seed=d, folds=0, holdout=0.2, balanced=False,
                                                 train_rows="all"), 300, 30)
    share = 300 / 330
    assert paper == pytest.approx(1 - 4 * share * (1 - share), abs=0.15)  # ≈ .67: size alone makes it "separable"


def test_unbiased_mmd_does_not_move_with_size_and_the_biased_one_falls():
    unbiased = {n: _mean_over_draws(lambda s, r, d: mmd_squared(s, r, estimator="unbiased"), n, 40) for n in (20, 400)}
    biased = {n: _mean_over_draws(lambda s, r, d: mmd_squared(s, r, estimator="biased"), n, 40) for n in (20, 400)}
    spread = biased[400]  # the biased estimator's floor at the larger size
    assert abs(unbiased[20]) < spread and abs(unbiased[400]) < spread
    assert biased[20] > 2 * biased[400] > 0


def test_out_of_fold_probabilities_match_a_hand_built_cross_fit():
    rng = np.random.default_rng(7)
    synthetic, real = rng.normal(0.5, 1, size=(40, 2)), rng.normal(-0.5, 1, size=(25, 2))
    # the classifier's own cross-fit, without the support gate (tests/test_pad_support.py)
    probability, labels = pad_probabilities(synthetic, real, classifier="logistic", folds=5, seed=3, support_gate=False)
    x, y = np.vstack([synthetic, real]), np.r_[np.ones(40), np.zeros(25)]
    expected = np.empty(65)
    raw = np.empty(65)
    for train, test in StratifiedKFold(5, shuffle=True, random_state=3).split(x, y):
        raw[test] = LogisticRegression(max_iter=1000, random_state=3).fit(x[train], y[train]).predict_proba(
            x[test])[:, 1]
        # balanced: the odds divided by the fold's training odds of synthetic, so equal classes read as ½
        odds = raw[test] / (1 - raw[test]) / (y[train].mean() / (1 - y[train].mean()))
        expected[test] = odds / (1 + odds)
    assert np.allclose(probability, expected) and (labels == y).all()
    error_s, error_r = np.mean(1 - expected[:40]), np.mean(expected[40:])
    # every training row (`all`): one model per fold; the default's fixed training size has its own test
    assert pad(synthetic, real, classifier="logistic", folds=5, seed=3, train_rows="all",
               support_gate=False) == pytest.approx(
        1 - (error_s + error_r))
    unbalanced, _ = pad_probabilities(synthetic, real, classifier="logistic", folds=5, seed=3, balanced=False,
                                      support_gate=False)
    assert np.allclose(unbalanced, raw)
    plain = 1 - 2 * np.mean(np.abs(raw - y))
    assert pad(synthetic, real, classifier="logistic", folds=5, seed=3, balanced=False,
               train_rows="all", support_gate=False) == pytest.approx(plain)
