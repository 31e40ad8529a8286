"""Density and coverage (Naeem et al. 2020): does the candidate stay on the real
manifold, and does it cover all of it.

Each U_r row gets a ball reaching its k-th nearest U_r neighbour. Density counts, per
candidate row, the balls it falls in (divided by k, averaged): about 1 for a candidate
from U_r's distribution, below 1 off it. Coverage is the share of U_r rows whose ball
holds at least one candidate row: a candidate that collapses onto a few modes covers
little even when every row is realistic.

Replicates come from random halves of the candidate and of U_r, with each U_r half's balls
drawn again from its own rows: the balls' radii vary with U_r as much as their centres, so a
replicate that kept them fixed missed part of the spread, and one that resampled rows with
replacement counted a ball hit by a row drawn twice. Coverage reads both halves together
(`base.half_sample_replicates`). Density adds the two errors read apart
(`base.two_sample_replicates`): the candidate's half in the balls of all of U_r, and all of the
candidate in the balls of U_r's half. Why apart: density is a mean over candidate rows, so a
candidate half in U_r's own balls is the delete-half jackknife of that mean, right at every size;
counted in a U_r half's wider balls, the rows' counts vary less from row to row, so the joint
half read the candidate's error too small for small candidates (BENCHMARKS.md, "Density's
replicates: the candidate's error and U_r's read apart").
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from synque_ray.proxies.base import (HALVES, Params, Proxy, ProxyOutput, check_embeddings, half_sample_replicates,
                                     halves, split_rngs, two_sample_replicates)


class NeighbourParams(Params):
    k: int = Field(5, gt=0)

    def min_rows(self) -> tuple[int, str]:
        return 2, HALVES

    def min_real_rows(self) -> tuple[int, str]:
        """Each half of U_r holds its own balls: k neighbours and the row itself."""
        return 2 * (self.k + 1), f"{self.k} nearest neighbours in each of the {HALVES}"


def _distances(synthetic: np.ndarray, real: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(candidate-to-U_r distances (n, m), U_r-to-U_r distances (m, m)), after the checks."""
    synthetic, real = check_embeddings(synthetic, real)
    if len(real) <= k:
        raise ValueError(f"density/coverage need more than k={k} real rows, got {len(real)}")
    from scipy.spatial.distance import cdist  # here, not at the top: a config load need not import it

    return cdist(synthetic, real), cdist(real, real)


def _inside(across: np.ndarray, within_real: np.ndarray, k: int) -> np.ndarray:
    """Shape (n, m) bool from the distances: row i strictly inside U_r row j's k-NN ball, the radius
    being row j's distance to its k-th nearest other U_r row (column 0 of the sorted row is itself)."""
    radius = np.partition(within_real, k, axis=1)[:, k]
    return across < radius[None, :]  # strict, as the reference code counts: the boundary is out


def ball_membership(synthetic: np.ndarray, real: np.ndarray, k: int = 5) -> np.ndarray:
    """Shape (n, m): True where candidate row i lies strictly inside U_r row j's k-NN ball
    (closer to row j than row j's k-th nearest U_r neighbour is)."""
    return _inside(*_distances(synthetic, real, k), k)


def density(synthetic: np.ndarray, real: np.ndarray, k: int = 5) -> float:
    """Mean over candidate rows of the number of U_r k-NN balls holding the row, over k."""
    return _density_of(ball_membership(synthetic, real, k), k)


def coverage(synthetic: np.ndarray, real: np.ndarray, k: int = 5) -> float:
    """Share of U_r rows whose k-NN ball holds at least one candidate row."""
    return _coverage_of(ball_membership(synthetic, real, k), k)


def _density_of(inside: np.ndarray, k: int) -> float:
    return float(inside.sum(axis=1).mean() / k)


def _coverage_of(inside: np.ndarray, k: int) -> float:
    return float(inside.any(axis=0).mean())


def _halves_of_both(across: np.ndarray, within_real: np.ndarray, seed: int, resamples: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(candidate halves (resamples, n), U_r halves (resamples, m)), bool masks from `base.halves` on
    the candidate's stream and U_r's (`base.split_rngs`): the rows replicate b of every proxy reads."""
    rng_real, rng_synthetic = split_rngs(seed)
    return halves(len(across), resamples, rng_synthetic)[0], halves(len(within_real), resamples, rng_real)[0]


def _density(synthetic, real, params: NeighbourParams, seed: int, resamples: int) -> ProxyOutput:
    """Density on the rows, and its replicates: the candidate's error (each candidate half counted in the
    balls of all of U_r) plus U_r's (all of the candidate counted in each U_r half's own balls), read
    apart and added (`base.two_sample_replicates`)."""
    k = params.k
    across, within_real = _distances(synthetic, real, k)
    inside = _inside(across, within_real, k)
    value = _density_of(inside, k)
    if resamples == 0:
        return ProxyOutput(value)
    candidate_halves, real_halves = _halves_of_both(across, within_real, seed, resamples)
    on_candidate_halves = np.array([_density_of(inside[rows], k) for rows in candidate_halves])
    on_real_halves = np.array([_density_of(_inside(across[:, cols], within_real[cols][:, cols], k), k)
                               for cols in real_halves])
    return ProxyOutput(value, two_sample_replicates(on_candidate_halves, on_real_halves, value))


def _coverage(synthetic, real, params: NeighbourParams, seed: int, resamples: int) -> ProxyOutput:
    """Coverage on the rows, and its replicates: coverage on random halves of both samples
    (`base.half_sample_replicates`), each U_r half holding the balls of its own rows and each
    candidate half counted in them. Not read apart as density is: coverage is not a mean over
    candidate rows (a ball is covered by its first row), so a candidate half is no jackknife of it."""
    k = params.k
    across, within_real = _distances(synthetic, real, k)
    value = _coverage_of(_inside(across, within_real, k), k)
    if resamples == 0:
        return ProxyOutput(value)
    candidate_halves, real_halves = _halves_of_both(across, within_real, seed, resamples)
    on_halves = [_coverage_of(_inside(across[rows][:, cols], within_real[cols][:, cols], k), k)
                 for rows, cols in zip(candidate_halves, real_halves, strict=True)]
    return ProxyOutput(value, half_sample_replicates(np.array(on_halves), value))


DENSITY_LEGEND = ("How crowded U_r's neighbourhoods are with the candidate's rows (Naeem et al.'s density): fidelity to"
                  " the real data; higher is better. It rewards rows packed where U_r is common, not variety: read it "
                  "beside coverage.")
DENSITY = Proxy("density", NeighbourParams, orientation=1.0, compute=_density, title="density",
                legend=DENSITY_LEGEND)
COVERAGE_LEGEND = ("Share of U_r rows with a candidate row among their nearest neighbours: how much of the "
                   "real data the candidate reaches; higher is better, 1 at most. It says nothing of rows far "
                   "from U_r: read it beside density.")
COVERAGE = Proxy("coverage", NeighbourParams, orientation=1.0, compute=_coverage, title="coverage",
                 legend=COVERAGE_LEGEND)
