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
VARIANCE_PARTITIONS = 128  # the value's partitions and 96 more: the jackknife of the value's variance reads them
REPLICATE_PARTITIONS = 4  # partitions of each replicate's subsample into blocks


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
    return float(_partition_means(_partition_blocks(embeddings, k, rows, partitions, rng)[1], partitions).mean())


def _partition_means(values: np.ndarray, partitions: int) -> np.ndarray:
    """Shape (partitions,): the mean MDM of each partition's blocks, from `values`, each block's MDM
    partition by partition (`_partition_blocks`)."""
    return values.reshape(partitions, -1).mean(axis=1)


def _partition_blocks(embeddings: np.ndarray, k: int, rows: int, partitions: int,
                      rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(blocks, values): the row indices of the blocks of `partitions` random partitions of the candidate's
    rows (n, d) into disjoint blocks of `rows` rows, shape (partitions · n // rows, rows), partition by
    partition, and the paper's MDM of each block, shape (partitions · n // rows,)."""
    embeddings, _ = check_embeddings(embeddings)
    if len(embeddings) < rows:
        raise ValueError(f"MDM at mdm.rows = {rows} needs at least {rows} rows, got {len(embeddings)}")
    rng = np.random.default_rng([CANDIDATE_STREAM, 1]) if rng is None else rng
    blocks = _blocks(np.arange(len(embeddings)), rows, partitions, rng)
    return blocks, _block_mdms(embeddings, blocks, k)


def u_statistic_variance(n: int, blocks: np.ndarray, values: np.ndarray, centre: float) -> float:
    """The delete-1 jackknife variance of U, the mean of h over every r-row subset of n rows (a
    U-statistic of order r; Arvesen's jackknife), estimated from h on the blocks of random
    partitions of the rows: `blocks` (partitions, per, r) row indices, each partition's `per`
    blocks disjoint; `values` (partitions, per) h of each block; at least two partitions. `centre`:
    a number near U (the point value), taken off for precision only.

    Why this estimator: MDM at r rows is such a U-statistic (r = 20), read on as few as r + 1
    rows. Its variance is Σ_j C(r, j)² / C(n, j) · δ_j² (Hoeffding; δ_j² the variance of its
    j-th order part). The delete-1 jackknife counts the j-th term (n − 1) j / (n − j) times, so
    the first exactly and the second about twice; the delete-half jackknife on halves that MDM
    used before counts it about 2^j − 1 times. MDM has a large high-order part (a block's medoids
    are a property of its exact rows: two blocks of 20 Gaussian rows sharing 2 to 15 rows covary
    by about the same amount per shared row, as a mean of rows would, two identical blocks by
    twice that per row; BENCHMARKS.md), which weighs little in the truth at 40-50 rows but made
    the halves' replicates 1.4-1.7 times too wide there.
    For U the jackknife has a closed form in h̄ᵢ, the mean of h over the subsets holding row i:
    U₍₋ᵢ₎ − U = r (U − h̄ᵢ) / (n − r), so v = (n − 1) / n · r² / (n − r)² · Σᵢ (h̄ᵢ − U)², which
    is exact for a mean of rows. A block holding row i is a random r-subset holding it, so h of
    row i's block in two different partitions are independent draws with mean h̄ᵢ given the rows:
    their product, averaged over the pairs of partitions holding row i, estimates (h̄ᵢ − c)²
    without the blocks' own spread; the products of two partitions' means estimate (U − c)²
    likewise, and Σᵢ (h̄ᵢ − c)² − n (U − c)² is Σᵢ (h̄ᵢ − U)² for any c. Below 2r rows no
    estimate of U's variance is unbiased (Hoeffding): the jackknife is then wider than the truth
    by its higher-order terms, the cautious side. A sampling-noise estimate below 0 reads 0."""
    partitions, per, r = blocks.shape
    if partitions < 2 or values.shape != (partitions, per):
        raise ValueError(f"the jackknife of MDM's blocks needs values (partitions, per) of at least two partitions, "
                         f"got blocks {blocks.shape} and values {values.shape}")
    deviations = values - centre
    by_row = np.zeros((partitions, n))  # h of row i's block in partition p, less the centre (0: in no block)
    held = np.zeros((partitions, n), dtype=bool)
    for p in range(partitions):
        by_row[p, blocks[p].ravel()] = np.repeat(deviations[p], r)
        held[p, blocks[p].ravel()] = True
    pairs = held.sum(axis=0)
    read = pairs >= 2  # rows in the blocks of at least two partitions (with many partitions, every row)
    squares = (by_row.sum(axis=0) ** 2 - (by_row**2).sum(axis=0))[read] / (pairs[read] * (pairs[read] - 1.0))
    means = deviations.mean(axis=1)
    centre_square = (means.sum() ** 2 - (means**2).sum()) / (partitions * (partitions - 1))
    spread = squares.sum() * n / max(int(read.sum()), 1) - n * centre_square
    return max(0.0, (n - 1) / n * r**2 / (n - r) ** 2 * spread)


def subsample_replicates(embeddings: np.ndarray, k: int, rows: int, value: float, resamples: int,
                         variance: float) -> np.ndarray:
    """Shape (resamples,): MDM at `rows` rows on random subsamples of s = max(rows, n // 2) of the n rows
    (each split into blocks by `REPLICATE_PARTITIONS` partitions), centred on `value` and scaled so
    that their variance is `variance`, the point value's (`_compute`: the jackknife of
    `u_statistic_variance` and the partitions' own noise).

    Why: a subsample's deviation from the others is a draw of the candidate's own sampling error, made
    of the rows it holds. At n ≥ 2·rows the subsamples are the candidate halves density and coverage
    draw (`base.halves` on the candidate's stream), so replicate b of every proxy reads the same rows
    and the ensemble's replicates keep the errors its members share. How far they spread is set
    apart: the halves' own spread, scaled to full size (the delete-half jackknife, what MDM used
    before), counts MDM's higher-order terms many times over (1.4-1.7 times the truth at 40-50
    rows). Below 2·rows rows a half cannot hold a block: the subsamples are random draws of `rows`
    rows from the candidate's stream."""
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
    blocks = np.concatenate([_blocks(subsample, rows, REPLICATE_PARTITIONS, rng) for subsample in subsamples])
    means = _block_mdms(embeddings, blocks, k).reshape(resamples, -1).mean(axis=1)
    spread = means.var()
    return centred(means * np.sqrt(variance / spread) if spread > 0 else means, value)


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
    n, rows = len(synthetic), params.rows
    blocks, values = _partition_blocks(synthetic, params.k, rows, VALUE_PARTITIONS)
    partitions = _partition_means(values, VALUE_PARTITIONS)
    value = float(partitions.mean())
    if resamples == 0:
        return ProxyOutput(value)
    more_blocks, more_values = _partition_blocks(synthetic, params.k, rows, VARIANCE_PARTITIONS - VALUE_PARTITIONS,
                                                 np.random.default_rng([CANDIDATE_STREAM, 3]))
    jackknife = u_statistic_variance(n, np.concatenate([blocks, more_blocks]).reshape(VARIANCE_PARTITIONS, -1, rows),
                                     np.concatenate([values, more_values]).reshape(VARIANCE_PARTITIONS, -1), value)
    # the value's variance over fresh candidates: U's (the jackknife) and what its 32 partitions add given the rows
    noise = float(partitions.var(ddof=1)) / VALUE_PARTITIONS
    return ProxyOutput(value, subsample_replicates(synthetic, params.k, rows, value, resamples, jackknife + noise))


LEGEND = ("Mean distance of the candidate's rows to their cluster medoid (k-medoids on the embeddings), read on "
          "blocks of mdm.rows rows so that every candidate is measured at one size: how spread out the candidate "
          "is; higher is better. It never looks at U_r, so a varied but off-topic candidate scores well: trust it "
          "only among candidates that are all on the task.")
PROXY = Proxy("mdm", MdmParams, orientation=1.0, compute=_compute, uses_real=False, title="MDM", default=True,
              legend=LEGEND)
