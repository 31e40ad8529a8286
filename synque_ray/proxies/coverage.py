"""Density and coverage (Naeem et al. 2020): does the candidate stay on the real
manifold, and does it cover all of it.

Each U_r row gets a ball reaching its k-th nearest U_r neighbour. Density counts, per
candidate row, the balls it falls in (divided by k, averaged): about 1 for a candidate
from U_r's distribution, below 1 off it. Coverage is the share of U_r rows whose ball
holds at least one candidate row: a candidate that collapses onto a few modes covers
little even when every row is realistic.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from synque_ray.proxies.base import Params, Proxy, ProxyOutput, centred, check_embeddings, resample_weights


class NeighbourParams(Params):
    k: int = Field(5, gt=0)

    def min_real_rows(self) -> tuple[int, str]:
        return self.k + 1, f"{self.k} nearest neighbours"


def ball_membership(synthetic: np.ndarray, real: np.ndarray, k: int = 5) -> np.ndarray:
    """Shape (n, m): True where candidate row i lies strictly inside U_r row j's k-NN ball
    (closer to row j than row j's k-th nearest U_r neighbour is)."""
    synthetic, real = check_embeddings(synthetic, real)
    if len(real) <= k:
        raise ValueError(f"density/coverage need more than k={k} real rows, got {len(real)}")
    from scipy.spatial.distance import cdist  # here, not at the top: a config load need not import it

    within_real = cdist(real, real)
    radius = np.sort(within_real, axis=1)[:, k]  # column 0 is the row itself
    return cdist(synthetic, real) < radius[None, :]  # strict, as the reference code counts: the boundary is out


def density(synthetic: np.ndarray, real: np.ndarray, k: int = 5) -> float:
    """Mean over candidate rows of the number of U_r k-NN balls holding the row, over k."""
    return float(ball_membership(synthetic, real, k).sum(axis=1).mean() / k)


def coverage(synthetic: np.ndarray, real: np.ndarray, k: int = 5) -> float:
    """Share of U_r rows whose k-NN ball holds at least one candidate row."""
    return float(ball_membership(synthetic, real, k).any(axis=0).mean())


def _density(synthetic, real, params: NeighbourParams, seed: int, resamples: int) -> ProxyOutput:
    per_row = ball_membership(synthetic, real, params.k).sum(axis=1) / params.k
    weights = resample_weights(len(per_row), resamples, np.random.default_rng(seed))
    value = float(per_row.mean())
    return ProxyOutput(value, centred(weights @ per_row / len(per_row), value))


def _coverage(synthetic, real, params: NeighbourParams, seed: int, resamples: int) -> ProxyOutput:
    inside = ball_membership(synthetic, real, params.k).astype(np.float64)
    rng = np.random.default_rng(seed)
    weights_s, weights_r = resample_weights(len(synthetic), resamples, rng), resample_weights(len(real), resamples, rng)
    covered = (weights_s @ inside) > 0  # (B, m): a U_r row is covered when a drawn candidate row is in its ball
    replicates = (covered * weights_r).sum(axis=1) / len(real)
    value = float(inside.any(axis=0).mean())
    return ProxyOutput(value, centred(replicates, value))


DENSITY = Proxy("density", NeighbourParams, orientation=1.0, compute=_density)
COVERAGE = Proxy("coverage", NeighbourParams, orientation=1.0, compute=_coverage)
