"""MDM: mean distance to medoid, a diversity measure of the candidate alone.

A candidate whose rows collapse onto a few modes has small within-cluster spread;
the SynQuE paper finds that spread tracks downstream quality. It does not look at
U_r, so it is computed once per candidate, with nothing random but a fixed stream.

The paper's MDM of a sample depends on how many rows the sample has, not only on the
distribution it comes from: each medoid's own distance (0) is one of a small cluster's
few rows, medoids chosen among few rows sit far from the cluster's centre, and they fit
their own rows better than fresh ones. On 16-d Gaussians of one distribution it reads
3.83 / 4.03 / 4.01 at 40 / 100 / 300 rows (sd 0.24 / 0.08 / 0.07; BENCHMARKS.md); with
the medoids left out of the means it falls with size instead: no correction of the
full-sample value is size-free for every distribution. So MDM here is the paper's
MDM of `rows` rows drawn from the candidate, in expectation: the mean of the paper's
MDM over many disjoint blocks of `rows` rows (`mdm_of_rows`, a U-statistic). Each
block is an exact draw of `rows` rows from the candidate, whatever the candidate's size,
so a candidate of 40 rows and one of 3,000 from one distribution have the same
expected MDM; a larger candidate only pins it down more precisely. A candidate of `rows`
rows or fewer cannot be read at that size and gets the paper's MDM on all of its rows.
"""

from __future__ import annotations

from typing import Self

import numpy as np
from pydantic import Field, model_validator

from synque_ray.proxies.base import (CANDIDATE_STREAM, Params, Proxy, ProxyOutput, centred, check_embeddings, halves,
                                     split_rngs)

FIXED_START = 0  # FasterPAM's random_state (it orders the swaps): the same medoids on every run
VALUE_PARTITIONS = 32  # partitions of the candidate's rows into blocks averaged for the point value
REPLICATE_PARTITIONS = 4  # partitions of each replicate's subsample: their spread is measured and taken out


class MdmParams(Params):
    """k: medoids per block. rows: the rows of each block, the size at which every candidate's MDM
    is read; a candidate of `rows` rows or fewer is read on all of its rows (`_compute`)."""

    k: int = Field(3, gt=0)
    rows: int = Field(20, gt=1)

    @model_validator(mode="after")
    def _room_for_clusters(self) -> Self:
        if self.rows <= self.k:
            raise ValueError(f"mdm.rows ({self.rows}) must be more than mdm.k ({self.k}): with as many medoids "
                             "as rows every distance is 0")
        return self

    def min_rows(self) -> tuple[int, str]:
        return self.k, f"mdm.k = {self.k}"


def medoid_distances(embeddings: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """FasterPAM with k medoids: (distance of each row to its medoid, cluster label of each row), each (n,)."""
    embeddings, _ = check_embeddings(embeddings)
    if len(embeddings) < k:
        raise ValueError(f"MDM needs at least k={k} rows, got {len(embeddings)}")
    from scipy.spatial.distance import cdist  # here, not at the top: a config load need not import it

    return _fit(cdist(embeddings, embeddings, metric="euclidean"), k)


def _fit(distances: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(distance of each row to its medoid, label), each (n,), from an (n, n) distance matrix: FasterPAM
    from the BUILD start (deterministic, and near PAM's optimum on the small blocks MDM reads)."""
    import kmedoids  # here, not at the top: a config load need not import it

    result = kmedoids.fasterpam(distances, k, init="build", random_state=FIXED_START, n_cpu=1)
    labels = np.asarray(result.labels)
    medoids = np.asarray(result.medoids)
    return distances[np.arange(len(labels)), medoids[labels]], labels


def mdm_from_distances(distance: np.ndarray, labels: np.ndarray) -> float:
    """Mean over clusters of the mean distance to the medoid; each of (n,), labels 0, 1, ..."""
    counts = np.bincount(labels)
    sums = np.bincount(labels, weights=distance)
    return float(np.mean(sums[counts > 0] / counts[counts > 0]))


def mdm(embeddings: np.ndarray, k: int = 3) -> float:
    """The paper's MDM of these rows: the mean over the k FasterPAM clusters of the mean Euclidean
    distance to the medoid. Shape (n, d) → float. It depends on n (see the module's docstring):
    the proxy reads it on blocks of one size (`mdm_of_rows`)."""
    return mdm_from_distances(*medoid_distances(embeddings, k))


def _blocks(rows: np.ndarray, size: int, partitions: int, rng: np.random.Generator) -> np.ndarray:
    """Shape (partitions · len(rows) // size, size): the row indices of the blocks of `partitions`
    random partitions of `rows` into disjoint blocks of `size` (rows left over from a partition sit
    in none of its blocks)."""
    per = len(rows) // size
    return np.concatenate([rng.permutation(rows)[:per * size].reshape(per, size) for _ in range(partitions)])


def _block_mdms(embeddings: np.ndarray, blocks: np.ndarray, k: int) -> np.ndarray:
    """Shape (blocks,): the paper's MDM of each block's rows of embeddings (n, d)."""
    points = embeddings[blocks]  # (blocks, size, d)
    squares = (points**2).sum(axis=2)
    gram = np.einsum("bid,bjd->bij", points, points)
    distances = np.sqrt(np.clip(squares[:, :, None] + squares[:, None, :] - 2 * gram, 0.0, None))
    distances[:, np.arange(blocks.shape[1]), np.arange(blocks.shape[1])] = 0.0
    return np.array([mdm_from_distances(*_fit(d, k)) for d in distances])


def mdm_of_rows(embeddings: np.ndarray, k: int = 3, rows: int = 20, partitions: int = VALUE_PARTITIONS,
                rng: np.random.Generator | None = None) -> float:
    """MDM at `rows` rows: the mean of the paper's MDM over the blocks of `partitions` random partitions
    of the candidate's rows (n, d) into disjoint blocks of `rows` rows. An unbiased estimate, at every n
    of at least `rows`, of the expected MDM of `rows` rows drawn from the candidate's distribution, so
    candidates of different sizes are compared at one size."""
    return _partition_means(embeddings, k, rows, partitions, rng).mean()


def _partition_means(embeddings: np.ndarray, k: int, rows: int, partitions: int,
                     rng: np.random.Generator | None = None) -> np.ndarray:
    """Shape (partitions,): `mdm_of_rows`' mean over the blocks of each of its partitions."""
    embeddings, _ = check_embeddings(embeddings)
    if len(embeddings) < rows:
        raise ValueError(f"MDM at mdm.rows = {rows} needs at least {rows} rows, got {len(embeddings)}")
    rng = np.random.default_rng([CANDIDATE_STREAM, 1]) if rng is None else rng
    blocks = _blocks(np.arange(len(embeddings)), rows, partitions, rng)
    return _block_mdms(embeddings, blocks, k).reshape(partitions, -1).mean(axis=1)


def subsample_replicates(embeddings: np.ndarray, k: int, rows: int, value: float, resamples: int,
                         value_noise: float = 0.0) -> np.ndarray:
    """Shape (resamples,): MDM at `rows` rows on random subsamples of s = max(rows, n // 2) of the n rows
    (each split into blocks by `REPLICATE_PARTITIONS` partitions), their deviations scaled to the
    full sample and centred on `value`: the delete-d jackknife of a U-statistic. `value_noise`: the
    variance the point value has from its own partitions, added.

    Why: MDM at `rows` rows is a U-statistic, whose variance falls as 1 / n; a subsample of s rows
    deviates from the full sample's value by a variance of V·(n − s) / s where V is the full
    sample's, so the deviations times sqrt(s / (n − s)) have the spread of a fresh candidate's
    value (halves, s = n / 2, need no scaling). The partitions add a spread of their own: it is
    measured from the spread of each subsample's partitions (they differ only by it) and taken
    out of the deviations' variance; the point value's own (`value_noise`) is put in. The halves
    are the candidate halves density and coverage draw (`base.halves` on the candidate's
    stream), so replicate b of every proxy reads the same rows and the ensemble's replicates keep
    the errors its members share. Below 2·rows rows a subsample keeps `rows` rows and the
    replicates are wider than the truth (the terms beyond the linear one, which the jackknife
    counts more than once, weigh most there): cautious. The bootstrap these replace (rows with
    replacement, medoids fixed) counted a drawn-twice row's distance 0 as spread: 1.6-1.8 times
    too wide at 40-50 rows, 0.8-0.95 at 150-300."""
    n = len(embeddings)
    if n <= rows:
        raise ValueError(f"MDM's replicates need more than mdm.rows = {rows} rows, got {n}")
    kept = max(rows, n // 2)
    if kept == n // 2:
        subsamples = [np.flatnonzero(half) for half in halves(n, resamples, split_rngs(0)[1])[0]]
    else:
        picks = np.random.default_rng(CANDIDATE_STREAM)
        subsamples = [picks.choice(n, kept, replace=False) for _ in range(resamples)]
    rng = np.random.default_rng([CANDIDATE_STREAM, 2])  # the partitions of each subsample
    per = kept // rows  # blocks in one partition of a subsample
    blocks = np.concatenate([_blocks(subsample, rows, REPLICATE_PARTITIONS, rng) for subsample in subsamples])
    parts = _block_mdms(embeddings, blocks, k).reshape(resamples, REPLICATE_PARTITIONS, per).mean(axis=2)
    means = parts.mean(axis=1)
    spread = means.var()
    partitioning = parts.var(axis=1, ddof=1).mean() / REPLICATE_PARTITIONS  # what the partitions add to `spread`
    target = max(0.0, spread - partitioning) * kept / (n - kept) + value_noise
    return centred(means * np.sqrt(target / spread) if spread > 0 else means, value)


def jackknife_replicates(embeddings: np.ndarray, k: int, value: float, resamples: int) -> np.ndarray:
    """Shape (resamples,): the delete-1 jackknife of the paper's MDM on every row, as draws: the MDM without
    row i (drawn from the candidate's stream), its deviation from the mean scaled by sqrt(n − 1), centred
    on `value`; their variance is the jackknife's. Empty when n − 1 rows cannot hold k medoids."""
    n = len(embeddings)
    if n - 1 <= k:
        return np.empty(0)
    left_out = np.array([mdm(np.delete(embeddings, i, axis=0), k) for i in range(n)])
    drawn = left_out[np.random.default_rng(CANDIDATE_STREAM).integers(0, n, resamples)]
    return centred(left_out.mean() + np.sqrt(n - 1) * (drawn - left_out.mean()), value)


def _compute(synthetic, real, params: MdmParams, seed: int, resamples: int) -> ProxyOutput:
    """The candidate's MDM at `params.rows` rows and its replicates, from fixed streams (the same on every
    run and seed: MDM never looks at U_r). A candidate of `rows` rows or fewer cannot be read at that
    size: it gets the paper's MDM on all of its rows, which reads lower than a larger candidate's of
    the same distribution (docs/proxies.md), and the delete-1 jackknife."""
    synthetic, _ = check_embeddings(synthetic)
    if len(synthetic) <= params.rows:
        value = mdm(synthetic, params.k)
        return ProxyOutput(value, jackknife_replicates(synthetic, params.k, value, resamples) if resamples else
                           np.empty(0))
    partitions = _partition_means(synthetic, params.k, params.rows, VALUE_PARTITIONS)
    value = float(partitions.mean())
    if resamples == 0:
        return ProxyOutput(value)
    noise = float(partitions.var(ddof=1)) / VALUE_PARTITIONS
    return ProxyOutput(value, subsample_replicates(check_embeddings(synthetic)[0], params.k, params.rows, value,
                                                   resamples, noise))


LEGEND = ("Mean distance of the candidate's rows to their cluster medoid (k-medoids on the embeddings), read on "
          "blocks of mdm.rows rows so that every candidate is measured at one size: how spread out the candidate "
          "is; higher is better. It never looks at U_r, so a varied but off-topic candidate scores well: trust it "
          "only among candidates that are all on the task.")
PROXY = Proxy("mdm", MdmParams, orientation=1.0, compute=_compute, uses_real=False, title="MDM", default=True,
              legend=LEGEND)
