"""MMD² against an explicit double sum of the kernel, its shape and its estimator default."""

import numpy as np
import pytest

from synque_ray.proxies.mmd import mmd_squared


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


def test_mmd_function_defaults_to_the_configs_estimator():
    import inspect

    from synque_ray.proxies.mmd import MmdParams

    assert inspect.signature(mmd_squared).parameters["estimator"].default == MmdParams().estimator == "unbiased"
