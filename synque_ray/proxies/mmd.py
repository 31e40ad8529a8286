"""MMD²: how far the candidate's embedding distribution is from the real sample's."""

from __future__ import annotations

import numpy as np
from sklearn.metrics.pairwise import pairwise_kernels

KERNELS = ("polynomial", "rbf", "laplacian", "linear", "sigmoid")


def _kernel_params(kernel: str, degree: int, coef0: float, gamma: float | None) -> dict:
    params: dict = {}
    if kernel in ("polynomial", "rbf", "laplacian", "sigmoid"):
        params["gamma"] = gamma
    if kernel in ("polynomial", "sigmoid"):
        params["coef0"] = coef0
    if kernel == "polynomial":
        params["degree"] = degree
    return params


def mmd_squared(
    synthetic: np.ndarray,
    real: np.ndarray,
    kernel: str = "polynomial",
    degree: int = 3,
    coef0: float = 1.0,
    gamma: float | None = None,
) -> float:
    """Biased estimator: mean k(x,x') + mean k(y,y') - 2 mean k(x,y), all pairs included.

    Kernels and their defaults are scikit-learn's (`gamma=None` means 1 / n_features).
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; use one of {KERNELS}")
    params = _kernel_params(kernel, degree, coef0, gamma)
    k_ss = pairwise_kernels(synthetic, metric=kernel, **params).mean()
    k_rr = pairwise_kernels(real, metric=kernel, **params).mean()
    k_sr = pairwise_kernels(synthetic, real, metric=kernel, **params).mean()
    return float(k_ss + k_rr - 2.0 * k_sr)
