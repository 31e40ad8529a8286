"""MMD²: how far the candidate's embedding distribution is from the real sample's.

The paper's estimator is biased (every pair, diagonal included): its expected value
for two samples of one distribution is about (mean k(x,x) − mean k(x,x')) (1/n + 1/m),
so it falls as a candidate grows and a large candidate wins for its size alone. The
unbiased estimator leaves the diagonal out and has expected value 0 for any sizes.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from synque_ray.proxies.base import Params, Proxy, ProxyOutput, centred, check_embeddings, resample_weights

KERNELS = ("polynomial", "rbf", "laplacian", "linear", "sigmoid")
# kernel → the scikit-learn parameters it takes
_KERNEL_PARAMS = {
    "polynomial": ("gamma", "coef0", "degree"), "rbf": ("gamma",), "laplacian": ("gamma",),
    "sigmoid": ("gamma", "coef0"), "linear": (),
}


class MmdParams(Params):
    kernel: Literal["polynomial", "rbf", "laplacian", "linear", "sigmoid"] = "polynomial"
    degree: int = Field(3, gt=0)
    coef0: float = 1.0
    gamma: float | None = Field(None, gt=0)  # None: scikit-learn's default, 1 / n_features
    estimator: Literal["biased", "unbiased"] = "unbiased"

    def min_rows(self) -> tuple[int, str]:
        """The unbiased estimator leaves the diagonal out: a sample needs two rows for a pair."""
        return (2, "mmd's unbiased estimator") if self.estimator == "unbiased" else (1, "scoring")

    def min_real_rows(self) -> tuple[int, str]:
        """A U_r sample needs as many rows as a candidate."""
        return self.min_rows()


def _mean(kernel: np.ndarray, weights_a: np.ndarray, weights_b: np.ndarray, same: bool, unbiased: bool) -> np.ndarray:
    """Weighted mean of a kernel matrix for each row of weights (shape (B, n)): Σ w_i w_j K_ij / Σ w_i w_j,
    without the i = j terms when `same` and `unbiased`."""
    total = ((weights_a @ kernel) * weights_b).sum(axis=1)
    pairs = weights_a.sum(axis=1) * weights_b.sum(axis=1)
    if same and unbiased:
        total = total - (weights_a * weights_b) @ np.diag(kernel)
        pairs = pairs - (weights_a * weights_b).sum(axis=1)
    return total / pairs


def kernel_matrices(synthetic: np.ndarray, real: np.ndarray, kernel: str = "polynomial", degree: int = 3,
                    coef0: float = 1.0, gamma: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K(synthetic, synthetic) (n, n), K(real, real) (m, m), K(synthetic, real) (n, m)."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; use one of {KERNELS}")
    synthetic, real = check_embeddings(synthetic, real)
    given = {"gamma": gamma, "coef0": coef0, "degree": degree}
    params = {name: given[name] for name in _KERNEL_PARAMS[kernel]}
    from sklearn.metrics.pairwise import pairwise_kernels  # here, not at the top: a config load need not import it

    return (pairwise_kernels(synthetic, metric=kernel, **params), pairwise_kernels(real, metric=kernel, **params),
            pairwise_kernels(synthetic, real, metric=kernel, **params))


def mmd_from_kernels(k_ss, k_rr, k_sr, weights_s: np.ndarray, weights_r: np.ndarray, unbiased: bool) -> np.ndarray:
    """MMD² for each resample: weights of shape (B, n) and (B, m) (all ones: the plain estimate)."""
    if unbiased and (len(k_ss) < 2 or len(k_rr) < 2):
        raise ValueError("the unbiased MMD² needs at least 2 rows on each side")
    return (_mean(k_ss, weights_s, weights_s, True, unbiased) + _mean(k_rr, weights_r, weights_r, True, unbiased)
            - 2.0 * _mean(k_sr, weights_s, weights_r, False, unbiased))


def mmd_squared(synthetic: np.ndarray, real: np.ndarray, kernel: str = "polynomial", degree: int = 3,
                coef0: float = 1.0, gamma: float | None = None, estimator: str = "unbiased") -> float:
    """MMD² between synthetic (n, d) and real (m, d) embeddings; about 0 when they come from one
    distribution. The default estimator is the config's (`MmdParams`), so a caller of this
    function and a job get the same number.

    biased: mean k(x,x') + mean k(y,y') − 2 mean k(x,y) over all pairs (the paper's);
    unbiased: the same with the i = j terms of the first two means left out.
    Kernels and their defaults are scikit-learn's (`gamma=None` means 1 / n_features).
    """
    if estimator not in ("biased", "unbiased"):
        raise ValueError(f"unknown MMD² estimator {estimator!r}; use 'biased' or 'unbiased'")
    k_ss, k_rr, k_sr = kernel_matrices(synthetic, real, kernel, degree, coef0, gamma)
    ones_s, ones_r = np.ones((1, len(k_ss))), np.ones((1, len(k_rr)))
    return float(mmd_from_kernels(k_ss, k_rr, k_sr, ones_s, ones_r, estimator == "unbiased")[0])


def _compute(synthetic, real, params: MmdParams, seed: int, resamples: int) -> ProxyOutput:
    kernels = kernel_matrices(synthetic, real, params.kernel, params.degree, params.coef0, params.gamma)
    unbiased = params.estimator == "unbiased"
    value = mmd_from_kernels(*kernels, np.ones((1, len(synthetic))), np.ones((1, len(real))), unbiased)[0]
    rng = np.random.default_rng(seed)
    weights_s, weights_r = resample_weights(len(synthetic), resamples, rng), resample_weights(len(real), resamples, rng)
    # a row drawn twice adds its own k(x, x) term to the biased estimate, so its replicates sit above it: centred
    return ProxyOutput(float(value), centred(mmd_from_kernels(*kernels, weights_s, weights_r, unbiased), value))


PROXY = Proxy("mmd", MmdParams, orientation=-1.0, compute=_compute)
