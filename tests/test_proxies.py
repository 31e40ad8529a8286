"""The proxy math against independent computations on small inputs."""

import subprocess
import sys

import numpy as np
import pytest

from synque_ray.proxies.mauve import mauve_score
from synque_ray.proxies.mdm import mdm
from synque_ray.proxies.mmd import mmd_squared
from synque_ray.proxies.pad import min_rows_for_holdout, pad


def explicit_mmd(x, y, kernel):
    def mean_k(a, b):
        return np.mean([[kernel(u, v) for v in b] for u in a])

    return mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y)


@pytest.mark.parametrize(
    "name, params, kernel",
    [
        ("polynomial", {"degree": 3, "coef0": 1.0}, lambda u, v: (u @ v / 4 + 1.0) ** 3),
        ("polynomial", {"degree": 2, "coef0": 0.5, "gamma": 0.3}, lambda u, v: (0.3 * (u @ v) + 0.5) ** 2),
        ("rbf", {"gamma": 0.7}, lambda u, v: np.exp(-0.7 * np.sum((u - v) ** 2))),
        ("laplacian", {"gamma": 0.2}, lambda u, v: np.exp(-0.2 * np.sum(np.abs(u - v)))),
        ("linear", {}, lambda u, v: u @ v),
        ("sigmoid", {"gamma": 0.1, "coef0": 0.3}, lambda u, v: np.tanh(0.1 * (u @ v) + 0.3)),
    ],
)
def test_mmd_matches_explicit_double_sum(name, params, kernel):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 4)), rng.normal(0.5, 1.0, size=(5, 4))
    biased = mmd_squared(x, y, kernel=name, estimator="biased", **params)
    assert biased == pytest.approx(explicit_mmd(x, y, kernel), rel=1e-10)


def test_mmd_is_zero_for_identical_sets_and_grows_with_shift():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 8))
    assert mmd_squared(x, x, estimator="biased") == pytest.approx(0.0, abs=1e-12)
    near, far = mmd_squared(x, x + 0.2, estimator="biased"), mmd_squared(x, x + 2.0, estimator="biased")
    assert 0 < near < far


def test_mmd_rejects_unknown_kernel():
    with pytest.raises(ValueError, match="unknown kernel 'cosine'"):
        mmd_squared(np.ones((2, 2)), np.ones((2, 2)), kernel="cosine")


@pytest.mark.parametrize("classifier", ["xgboost", "logistic"])
def test_pad_is_one_for_separable_sets(classifier):
    rng = np.random.default_rng(2)
    synthetic = rng.normal(5.0, 0.1, size=(100, 6))
    real = rng.normal(-5.0, 0.1, size=(100, 6))
    assert pad(synthetic, real, classifier=classifier) > 0.95


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


def test_mdm_on_hand_made_clusters():
    # Three tight clusters; each point sits at distance 1 from its cluster centre, which is a row.
    centres = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    offsets = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    points = np.vstack([c + offsets for c in centres])
    # medoid = centre row; mean distance to it = (0 + 1 + 1 + 1 + 1) / 5 per cluster
    assert mdm(points, k=3) == pytest.approx(0.8)


def test_mdm_uses_unequal_cluster_sizes_as_mean_of_cluster_means():
    a = np.array([[0.0], [2.0], [-2.0]])  # medoid 0, mean distance 4/3
    b = np.array([[50.0], [51.0]])  # medoid either, mean distance 1/2
    value = mdm(np.vstack([a, b]), k=2)
    assert value == pytest.approx((4 / 3 + 1 / 2) / 2)


def test_mdm_needs_k_rows():
    with pytest.raises(ValueError, match="at least k=3 rows"):
        mdm(np.ones((2, 3)), k=3)


def test_mauve_is_one_for_identical_sets_and_lower_for_shifted():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(300, 16)).astype(np.float32)
    same = mauve_score(real.copy(), real)
    shifted = mauve_score(real + 1.5, real)
    assert same == pytest.approx(1.0, abs=0.02)
    assert shifted < same - 0.3


def test_mauve_of_histograms_equals_mauve_text_pair_by_pair():
    from mauve.compute_mauve import get_divergence_curve_for_multinomials
    from sklearn.metrics import auc

    from synque_ray.proxies.mauve import CURVE_POINTS, mauve_of_histograms, mauve_run

    def one(p, q, s):  # mauve-text's own steps, one pair at a time
        x, y = get_divergence_curve_for_multinomials(p, q, np.linspace(1e-6, 1 - 1e-6, CURVE_POINTS), s).T
        by_x, by_y = np.argsort(x), np.argsort(y)
        return 0.5 * (auc(x[by_x], y[by_x]) + auc(y[by_y], x[by_y]))

    rng = np.random.default_rng(3)
    counts = rng.multinomial(30, np.full(8, 1 / 8), size=(2, 40)).astype(float)  # zeros in p, q or both
    p, q = counts[0] / 30, counts[1] / 30
    for s in (1.0, 5.0):
        expected = [one(a, b, s) for a, b in zip(p, q)]
        assert mauve_of_histograms(p, q, s) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # and the point value mauve-text reports for a real pair of embedding sets
    real = rng.normal(size=(120, 16)).astype(np.float32)
    result = mauve_run(real[:60] + 0.3, real[60:], 5.0, seed=1)
    assert mauve_of_histograms(result.p_hist[None], result.q_hist[None], 5.0)[0] == pytest.approx(result.mauve,
                                                                                                  rel=1e-12)


def test_mauve_never_imports_the_text_featurizer():
    """mauve-text imports torch and transformers only to embed raw text; a fresh proxy worker
    must not pay for them (6 of its 7.5 s of imports), and importing them later still works."""
    code = ("import sys, numpy as np\n"
            "from synque_ray.proxies.mauve import mauve_score\n"
            "x = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)\n"
            "assert 0 <= mauve_score(x[:30], x[30:]) <= 1\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
            "import torch\n"
            "print(torch.ones(2).sum().item())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "2.0"]


def test_mmd_function_defaults_to_the_configs_estimator():
    import inspect

    from synque_ray.proxies.mmd import MmdParams

    assert inspect.signature(mmd_squared).parameters["estimator"].default == MmdParams().estimator == "unbiased"
