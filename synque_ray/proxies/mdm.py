"""MDM: mean distance to medoid, a diversity measure of the candidate alone.

A candidate whose rows collapse onto a few modes has small within-cluster spread;
the SynQuE paper finds that spread tracks downstream quality. It does not look at
U_r, so it is computed once per candidate with a fixed FasterPAM start.

MDM grows with the number of rows it is computed on: medoids chosen among few rows sit
close to them (each medoid's own distance, 0, is a larger share of a small cluster). On
16-d Gaussians of one distribution it reads 3.88 / 4.01 / 4.03 at 40 / 100 / 300 rows
(sd .14 / .09 / .07), so a small candidate loses for its size alone. `rows: auto` (the
default) computes every candidate's MDM on the same number of rows, the run's smallest
candidate's: a candidate with more rows is the mean over `SUBSAMPLES` seeded subsamples of
that size, so the comparison is between equals.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal, Self

import numpy as np
from pydantic import Field, StrictInt

from synque_ray.proxies.base import Params, Proxy, ProxyOutput, centred, check_embeddings, resample_weights

FIXED_START = 0  # FasterPAM's random_state: the same medoids for a candidate on every run
SUBSAMPLES = 5  # subsamples of a larger candidate averaged under a run-wide size


class MdmParams(Params):
    """k: medoids. rows: the rows each candidate's MDM is computed on; `auto`: the run's smallest
    candidate's size, resolved once per run (`for_run`); `all`: every row (the paper's, and MDM
    before a run-wide size); an int: that many (a candidate with fewer is computed on all of its)."""

    k: int = Field(3, gt=0)
    rows: Literal["auto", "all"] | Annotated[StrictInt, Field(ge=2)] = "auto"

    def min_rows(self) -> tuple[int, str]:
        return self.k, f"mdm.k = {self.k}"

    def for_run(self, candidate_rows: Iterable[int], real_rows: Iterable[int]) -> Self:
        """`rows: auto` resolved to the run's smallest candidate (at least k), so every candidate's
        MDM is on as many rows; the resolved value keys the results."""
        sizes = list(candidate_rows)
        if self.rows != "auto" or not sizes:
            return self
        return self.model_copy(update={"rows": max(min(sizes), self.k)})


def medoid_distances(embeddings: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """FasterPAM with k medoids: (distance of each row to its medoid, cluster label of each row), each (n,)."""
    embeddings, _ = check_embeddings(embeddings)
    if len(embeddings) < k:
        raise ValueError(f"MDM needs at least k={k} rows, got {len(embeddings)}")
    import kmedoids  # here, not at the top: a config load need not import it
    from scipy.spatial.distance import cdist

    distances = cdist(embeddings, embeddings, metric="euclidean")
    result = kmedoids.fasterpam(distances, k, random_state=FIXED_START, n_cpu=1)
    labels = np.asarray(result.labels)
    medoids = np.asarray(result.medoids)
    return distances[np.arange(len(labels)), medoids[labels]], labels


def mdm_from_distances(distance: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean over clusters of the (weighted) mean distance to the medoid; empty clusters are left out."""
    weights = np.ones_like(distance) if weights is None else weights
    means = [np.average(distance[labels == c], weights=weights[labels == c])
             for c in np.unique(labels) if weights[labels == c].sum() > 0]
    return float(np.mean(means))


def mdm(embeddings: np.ndarray, k: int = 3) -> float:
    """Mean over the k FasterPAM clusters of the mean Euclidean distance to the medoid. Shape (n, d) → float."""
    return mdm_from_distances(*medoid_distances(embeddings, k))


def _one_mdm(embeddings: np.ndarray, k: int, rng: np.random.Generator, resamples: int) -> tuple[float, np.ndarray]:
    """(MDM of these rows, its bootstrap replicates (resamples,)) from one FasterPAM fit."""
    distance, labels = medoid_distances(embeddings, k)
    weights = resample_weights(len(distance), resamples, rng)
    return mdm_from_distances(distance, labels), np.array([mdm_from_distances(distance, labels, w) for w in weights])


def _compute(synthetic, real, params: MdmParams, seed: int, resamples: int) -> ProxyOutput:
    rows = max(params.rows, params.k) if isinstance(params.rows, int) else len(synthetic)
    if rows >= len(synthetic):
        value, replicates = _one_mdm(synthetic, params.k, np.random.default_rng(seed), resamples)
        return ProxyOutput(value, centred(replicates, value))
    # A run-wide size: the mean over subsamples drawn the same way for this candidate on every run and
    # seed (MDM never looks at U_r), each with its own replicates, averaged draw by draw.
    draws = np.random.default_rng(FIXED_START)
    parts = [_one_mdm(synthetic[draws.choice(len(synthetic), rows, replace=False)], params.k,
                      np.random.default_rng([seed, i]), resamples) for i in range(SUBSAMPLES)]
    value = float(np.mean([v for v, _ in parts]))
    return ProxyOutput(value, centred(np.mean([r for _, r in parts], axis=0), value))


PROXY = Proxy("mdm", MdmParams, orientation=1.0, compute=_compute, uses_real=False)
