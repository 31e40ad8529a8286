"""MMD²: how far the candidate's embedding distribution is from the real sample's.

The paper's estimator is biased (every pair, diagonal included): its expected value
for two samples of one distribution is about (mean k(x,x) − mean k(x,x')) (1/n + 1/m),
so it falls as a candidate grows and a large candidate wins for its size alone. The
unbiased estimator leaves the diagonal out and has expected value 0 for any sizes.

Replicates (for rank intervals) come from half-samples (`base.split_replicates`) rescaled to
MMD²'s own variance. Why rescaled: by Hoeffding's decomposition MMD² is a first-order part
(a mean over rows, variance ∝ 1/size, zero when the distributions are equal) plus a
degenerate second-order part (variance ∝ 1/size²). Halves read the first part right and
the second twice too large, so between equal distributions their spread is √2 too wide;
the second-order variance is estimated from the doubly centred kernel matrices and the
excess is taken off.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from synque_ray.proxies.base import (HALVES, Params, Proxy, ProxyOutput, check_embeddings, halves, split_count,
                                     split_replicates, split_rngs)

SPREAD_SPLITS = 200  # the fewest half-sample splits the variance of the replicates is measured on
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
        """A half-sample needs a pair of rows for the unbiased estimator (the diagonal is left out),
        one row for the biased one."""
        return (4, f"mmd's unbiased estimator on {HALVES}") if self.estimator == "unbiased" else (2, HALVES)

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


def _second_order_moments(k_ss: np.ndarray, k_rr: np.ndarray, k_sr: np.ndarray) -> tuple[float, float, float]:
    """Mean squares of the doubly centred kernels (within the candidate, within U_r, across),
    estimates of E[k̄(x, x')²], E[k̄(y, y')²], E[k̄(x, y)²] where k̄ is k with both arguments'
    means taken out: the size of MMD²'s degenerate second-order part. Within a sample the
    diagonal is left out of the means (k(x, x) is no pair and, for the polynomial kernel,
    far larger than the rest)."""
    def within(kernel: np.ndarray) -> float:
        n = len(kernel)
        off = ~np.eye(n, dtype=bool)
        rows = (kernel.sum(axis=1) - np.diag(kernel)) / (n - 1)
        centred_kernel = kernel - rows[:, None] - rows[None, :] + rows.mean()
        return float((centred_kernel[off] ** 2).mean())

    across = k_sr - k_sr.mean(axis=1, keepdims=True) - k_sr.mean(axis=0, keepdims=True) + k_sr.mean()
    return within(k_ss), within(k_rr), float((across ** 2).mean())


def second_order_variance(moments: tuple[float, float, float], n: int, m: int, unbiased: bool) -> float:
    """Variance of MMD²'s second-order Hoeffding part for n candidate and m U_r rows: the three
    degenerate sums (within, within, across) are uncorrelated, each pair term has variance
    E[k̄²]; a within sum over n(n − 1) ordered pairs has 2·n(n − 1)·E[k̄²] / pairs², where pairs
    is n(n − 1) (unbiased) or n² (biased), and the cross term, weighted −2 / (n m), 4·E[k̄²] / (n m)."""
    within_s, within_r, across = moments
    pairs_s, pairs_r = (n * (n - 1), m * (m - 1)) if unbiased else (n * n, m * m)
    return (2 * n * (n - 1) * within_s / pairs_s ** 2 + 2 * m * (m - 1) * within_r / pairs_r ** 2
            + 4 * across / (n * m))


def _diagonal_variance(kernel: np.ndarray) -> float:
    """Variance of the biased MMD²'s own per-row term at these sizes, Var(k(x, x) − 2 μ(x)) / n³
    (μ(x) the mean of k(x, ·) over the sample): what the diagonal adds to the unbiased
    estimate, (mean k(x, x) − U) / n, reads each row through it. It is a mean over rows
    weighted 1/n², so its variance falls as 1/n³, and a half-sample reads it 4 times too
    large (8 at half size, halved): `_compute` takes the 3 extra parts off."""
    n = len(kernel)
    rows = (kernel.sum(axis=1) - np.diag(kernel)) / (n - 1)
    return float(np.var(np.diag(kernel) - 2 * rows, ddof=1) / n ** 3)


def _compute(synthetic, real, params: MmdParams, seed: int, resamples: int) -> ProxyOutput:
    """The MMD² and its replicates: half-sample deviations rescaled to the variance of the estimate
    over fresh candidate and U_r rows, (first-order part) + (second-order part at full size).

    The halves' mean square deviation D estimates V(n/2, m/2) / 2 = first-order part (its
    variance doubles at half size, then is halved) + half of the second-order part at half
    size; so the target is D − second(n/2, m/2) / 2 + second(n, m). Between equal
    distributions the first two terms cancel up to noise. That noise is kept, not clipped
    at 0 (clipping made the replicates 10% too wide there); only a target below half of
    second(n, m), far under any true variance, is raised to it. D is measured on at least
    SPREAD_SPLITS splits (one weighted sum over each kernel matrix per split), since the
    target is the small difference of D and an estimate of most of it."""
    kernels = kernel_matrices(synthetic, real, params.kernel, params.degree, params.coef0, params.gamma)
    unbiased = params.estimator == "unbiased"
    n, m = len(kernels[0]), len(kernels[1])
    value = float(mmd_from_kernels(*kernels, np.ones((1, n)), np.ones((1, m)), unbiased)[0])
    if resamples == 0:
        return ProxyOutput(value)
    rng_real, rng_synthetic = split_rngs(seed)
    splits = max(split_count(resamples), SPREAD_SPLITS)
    first_s, second_s = halves(n, splits, rng_synthetic)
    first_r, second_r = halves(m, splits, rng_real)
    first = mmd_from_kernels(*kernels, first_s.astype(np.float64), first_r.astype(np.float64), unbiased)
    second = mmd_from_kernels(*kernels, second_s.astype(np.float64), second_r.astype(np.float64), unbiased)
    spread = float(np.mean(((first - second) / 2) ** 2))
    moments = _second_order_moments(*kernels)
    at_full = second_order_variance(moments, n, m, unbiased)
    target = spread - second_order_variance(moments, n // 2, m // 2, unbiased) / 2 + at_full
    if not unbiased:
        target -= 3 * (_diagonal_variance(kernels[0]) + _diagonal_variance(kernels[1]))
    target = max(target, at_full / 2)
    scale = float(np.sqrt(target / spread)) if spread > 0 else 0.0
    used = split_count(resamples)
    return ProxyOutput(value, split_replicates(first[:used], second[:used], value, resamples, scale))


LEGEND = ("Squared maximum mean discrepancy between the candidate's embeddings and U_r's (score = −MMD²): how "
          "far the two distributions are apart; closer to 0 is better. Noisy when U_r has few rows, and its "
          "scale depends on the kernel (mmd.kernel), so compare it only within one run.")
PROXY = Proxy("mmd", MmdParams, orientation=-1.0, compute=_compute, title="MMD²", legend=LEGEND,
              default=True)
