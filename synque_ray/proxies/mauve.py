"""MAUVE on precomputed embeddings: p = the real sample, q = the candidate.

MAUVE clusters both sets together (k-means on their principal components) and compares
the two histograms of cluster labels. The value is mauve-text's, to the last bit: its
steps are repeated here (`projected`, `cluster_labels`) only to keep each row's label.

Its replicates carry the two parts of its error, each measured at full size (`_compute`):
- the clustering's: k-means from another seed on the same rows moves MAUVE about as
  much as fresh rows do (about half its variance between 16-d Gaussians), so a pair is
  clustered CLUSTERINGS times and their spread is added;
- the rows': disjoint halves of both samples, read under every clustering, rescaled by a
  size exponent measured on disjoint quarters (`rate_scale`). Between equal distributions
  MAUVE sits near its ceiling 1 and its variance falls far faster than 1 / size, which is
  why plain halves (the replicates before) were 1.8 to 3.9 times too wide there.
Their sd is within 0.77–1.22 of the sd of MAUVE over fresh pairs (a fresh candidate and a
fresh U_r, each clustered from its own seed) in every setting measured: Gaussians in 16
and 32 dimensions, equal or shifted, 30 to 500 rows, and real headlines (BENCHMARKS.md,
"MAUVE's replicates: the clustering's error and the rows' at full size").
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys

import numpy as np
from pydantic import Field

from synque_ray.proxies.base import (Params, Proxy, ProxyOutput, centred, check_embeddings, disjoint_parts,
                                     split_count, split_replicates, split_rngs)

QUARTERS = "MAUVE's quarter-sample replicates"  # the reason for the rows a sample needs
CURVE_POINTS = 25  # mauve-text's default discretisation of the divergence curve


class MauveParams(Params):
    scaling_factor: float = Field(5.0, gt=0)

    def min_rows(self) -> tuple[int, str]:
        return 4, QUARTERS

    def min_real_rows(self) -> tuple[int, str]:
        return 4, QUARTERS


def mauve_of_histograms(p_hists: np.ndarray, q_hists: np.ndarray, scaling_factor: float) -> np.ndarray:
    """MAUVE of each pair of histograms, (r, k) and (r, k) → (r,), as mauve-text computes it for one.

    The divergence frontier at CURVE_POINTS mixtures R = w·P + (1 − w)·Q is the points
    (exp(−s·KL(Q‖R)), exp(−s·KL(P‖R))), closed by (1, 0) and (0, 1); MAUVE is the mean of
    its two areas, integrated along x and along y. All pairs at once: the replicates of a
    rank interval cost one array operation instead of a Python loop per draw.
    """
    p, q = np.asarray(p_hists, dtype=np.float64), np.asarray(q_hists, dtype=np.float64)
    weights = np.linspace(1e-6, 1 - 1e-6, CURVE_POINTS)[:, None, None]  # (w, 1, 1)
    mixtures = weights * p + (1 - weights) * q  # (w, r, k); 0 only where p and q are both 0

    def kl(a: np.ndarray) -> np.ndarray:  # KL(a ‖ mixture) per (w, r), terms where a = 0 count 0
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(a > 0, a * np.log(a / mixtures), 0.0)
        return terms.sum(axis=-1)

    x = np.exp(-scaling_factor * kl(q)).T  # (r, w)
    y = np.exp(-scaling_factor * kl(p)).T
    ones, zeros = np.ones((len(x), 1)), np.zeros((len(x), 1))
    x, y = np.hstack([ones, x, zeros]), np.hstack([zeros, y, ones])

    def area(u: np.ndarray, v: np.ndarray) -> np.ndarray:  # ∫ v du with the points sorted by u
        order = np.argsort(u, axis=1)
        return np.trapezoid(np.take_along_axis(v, order, axis=1), np.take_along_axis(u, order, axis=1), axis=1)

    return 0.5 * (area(x, y) + area(y, x))


class _HideTextModels(importlib.abc.MetaPathFinder):
    """Makes `import torch` / `import transformers` fail while mauve-text is imported."""

    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in ("torch", "transformers"):
            raise ModuleNotFoundError(f"{name} is not needed for MAUVE on precomputed features")
        return None


def _mauve_module():
    """mauve-text's `compute_mauve` module, imported without torch and transformers where they are
    not loaded yet: mauve-text needs them only to featurize raw text, and importing them costs
    each fresh Ray worker about 6 s of its 7.5 s (BENCHMARKS.md, "The test loop")."""
    if "mauve.compute_mauve" not in sys.modules:
        hide = _HideTextModels()
        sys.meta_path.insert(0, hide)
        try:
            importlib.import_module("mauve")
        finally:
            sys.meta_path.remove(hide)
    return sys.modules["mauve.compute_mauve"]


def mauve_run(synthetic: np.ndarray, real: np.ndarray, scaling_factor: float = 5.0, seed: int = 25):
    """mauve-text's result (fields mauve, p_hist, q_hist) for synthetic (n, d) against real (m, d)."""
    synthetic, real = check_embeddings(synthetic, real)
    return _mauve_module().compute_mauve(p_features=real.astype(np.float32), q_features=synthetic.astype(np.float32),
                                         mauve_scaling_factor=scaling_factor, seed=seed, verbose=False,
                                         num_buckets="auto")


def mauve_score(synthetic: np.ndarray, real: np.ndarray, scaling_factor: float = 5.0, seed: int = 25) -> float:
    """MAUVE in [0, 1]: 1 when the candidate's embedding distribution matches U_r's."""
    return float(mauve_run(synthetic, real, scaling_factor, seed).mauve)


CLUSTERINGS = 4  # k-means runs per pair: the value's own and 3 more, for the clustering's share of the error
RATE_SPLITS = 50  # the fewest splits the spread at half and quarter size is measured on
EXPLAINED_VARIANCE = 0.9  # mauve-text's default: the principal components kept for k-means


def buckets(synthetic_rows: int, real_rows: int) -> int:
    """mauve-text's `num_buckets="auto"`: a cluster per 10 rows of the smaller sample, at least 2."""
    return max(2, int(round(min(synthetic_rows, real_rows) / 10)))


def projected(synthetic: np.ndarray, real: np.ndarray, seed: int) -> np.ndarray:
    """(n + m, c) float32: the candidate's rows then U_r's, l2-normalised and projected on the principal
    components that explain 90% of their variance, as mauve-text prepares them for k-means."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import normalize

    data = normalize(np.vstack([synthetic, real]).astype(np.float32), norm="l2", axis=1)
    pca = PCA(n_components=None, whiten=False, random_state=seed + 1).fit(data)
    keep = int(np.argmax(np.cumsum(pca.explained_variance_ratio_) >= EXPLAINED_VARIANCE)) + 1
    return pca.transform(data)[:, :keep].astype(np.float32)


def cluster_labels(data: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """(rows,) the k-means cluster of each row of `data` (rows, c) float32, with mauve-text's settings
    (faiss, 500 iterations, the best of 5 starts, its seed + 2): with `projected` and the same seed,
    the labels mauve-text's histograms count."""
    import faiss

    kmeans = faiss.Kmeans(data.shape[1], clusters, niter=500, verbose=False, nredo=5, update_index=True,
                          seed=seed + 2)
    kmeans.train(data)
    return kmeans.index.search(data, 1)[1].reshape(-1)


def label_histograms(labels: np.ndarray, masks: np.ndarray, clusters: int) -> np.ndarray:
    """(..., clusters): the share of each cluster among the rows each mask (..., rows) selects (0/1,
    float32: the counts are whole numbers well inside its exact range, at half the memory)."""
    counts = (masks @ np.eye(clusters, dtype=np.float32)[labels]).astype(np.float64)
    return counts / counts.sum(axis=-1, keepdims=True)


def clustering_seeds(seed: int) -> list[int]:
    """The k-means seeds of a pair's CLUSTERINGS: mauve-text's `seed` first (the value's), then
    seeds far from any other pair's."""
    return [(seed + 7919 * j) % 2 ** 31 for j in range(CLUSTERINGS)]


def rate_scale(half_var: float, quarter_var: float) -> float:
    """The factor that takes the deviations of two disjoint halves, (T₁ − T₂) / 2, to MAUVE's spread at
    full size, from the variance of the metric at half size and at quarter size.

    Why: half-sample deviations are right for a statistic whose variance falls as 1 / size
    (they have variance Var(T at n/2) / 2). MAUVE's does not: between equal distributions
    it sits near its ceiling 1, and 1 − MAUVE grows about as the square of the histograms'
    χ² noise, whose size falls as 1 / size, so its variance falls up to 1 / size⁴ and the
    halves read it 2 to 3 times too wide; between distributions that differ it falls as
    1 / size. So the exponent is measured (Bertail, Politis and Romano's subsampling with an
    estimated rate): with Var(T at size s) ∝ s^(−2α), Var(at n) = Var(at n/2)² / Var(at n/4),
    and the factor is √(Var(n/2)/Var(n/4) · 2). α is held within [1/4, 2] (the factor within
    [√2/4, √2]), beyond which it is the noise of the two estimates: the square of a χ² noise
    settles at 1/n², and no smooth statistic settles much slower than a mean's 1/√n; the
    bound sits below that 1/2 so that the noise around it (distributions that differ) is
    not cut on one side only, which made the replicates 10% narrow there (BENCHMARKS.md).
    A metric that does not move (both variances 0) keeps the factor 1."""
    if quarter_var <= 0:
        return 1.0
    return float(np.sqrt(np.clip(2 * half_var / quarter_var, 1 / 8, 2)))


def rows_variance(differences: np.ndarray) -> float:
    """E (T₁ − T₂)² of MAUVE averaged over every clustering, the clustering's own noise taken out, from
    `differences` (clusterings, splits): per clustering, the metric on two disjoint parts of the
    rows minus each other, the same parts under every clustering.

    Why: the same rows under another clustering read another partition of them, so the
    difference of one clustering holds the rows' share and a share of the clustering's
    own noise; the mean over c clusterings still holds 1/c of that share, estimated from
    the spread across clusterings within each split (its sample variance over c) and taken
    off. What is left is the rows' share alone, the error a fresh sample would bring with
    the clustering averaged out (its own error is added separately, at full size)."""
    clusterings = differences.shape[0]
    total = float(np.mean(differences.mean(axis=0) ** 2))
    within = float(np.mean(differences.var(axis=0, ddof=1))) if clusterings > 1 else 0.0
    return max(total - within / clusterings, 0.0)


def _compute(synthetic, real, params: MauveParams, seed: int, resamples: int) -> ProxyOutput:
    """MAUVE (mauve-text's value: its clustering with this seed) and its replicates: value + data
    deviation + clustering deviation, centred.

    Two sources of error, measured separately because they scale differently:
    - the clustering: k-means from another seed on the same rows moves MAUVE by as much as
      fresh rows do (about half its variance between 16-d Gaussians, equal or not), and a
      fixed clustering's replicates never see it. CLUSTERINGS runs on the same projection
      give that spread (their sample variance); replicate b draws the deviation of run b mod
      CLUSTERINGS from their mean, rescaled to that variance.
    - the rows: two disjoint halves of both samples (`disjoint_parts`, U_r's the same rows for
      every candidate of a seed, the candidate's the same rows in every seed), their label
      histograms under every clustering (no re-clustering), the metric averaged over the
      clusterings and the share of their noise the average still holds taken off
      (`rows_variance`: only the rows' share is read, not the clustering's again),
      mirror-paired deviations (`split_replicates`) rescaled by the rate measured on
      disjoint quarters (`rate_scale`).
    """
    synthetic, real = check_embeddings(synthetic, real)
    n, m = len(synthetic), len(real)
    clusters, seeds = buckets(n, m), clustering_seeds(seed)
    data = projected(synthetic, real, seed)
    runs = CLUSTERINGS if resamples else 1
    labels = [cluster_labels(data, clusters, s) for s in seeds[:runs]]

    def metric(masks_synthetic: np.ndarray, masks_real: np.ndarray) -> np.ndarray:
        """MAUVE per clustering and pair of masks (pairs, rows), (runs, pairs): U_r is p, the candidate q."""
        masks_synthetic, masks_real = masks_synthetic.astype(np.float32), masks_real.astype(np.float32)
        return np.stack([mauve_of_histograms(label_histograms(lab[n:], masks_real, clusters),
                                             label_histograms(lab[:n], masks_synthetic, clusters),
                                             params.scaling_factor) for lab in labels])

    values = metric(np.ones((1, n), dtype=bool), np.ones((1, m), dtype=bool))[:, 0]
    value = float(values[0])
    if resamples == 0:
        return ProxyOutput(value)
    rng_real, rng_synthetic = split_rngs(seed)
    splits = max(split_count(resamples), RATE_SPLITS)
    # every part of every split in one call per clustering: 2 halves × splits, then 4 quarters × RATE_SPLITS
    parts = [np.concatenate([disjoint_parts(rows, 2, splits, rng).reshape(-1, rows),
                             disjoint_parts(rows, 4, RATE_SPLITS, rng).reshape(-1, rows)])
             for rows, rng in ((n, rng_synthetic), (m, rng_real))]
    readings = metric(*parts)
    on_halves = readings[:, :splits] - readings[:, splits:2 * splits]  # per clustering, T₁ − T₂: (runs, splits)
    quarters = readings[:, 2 * splits:].reshape(runs, 4, RATE_SPLITS)
    on_quarters = np.concatenate([quarters[:, 0] - quarters[:, 1], quarters[:, 2] - quarters[:, 3]], axis=1)
    half_var, quarter_var = rows_variance(on_halves), rows_variance(on_quarters)
    averaged = on_halves.mean(axis=0)
    read = float(np.mean(averaged ** 2))  # what the averaged differences hold, the clustering's 1/runs share too
    scale = rate_scale(half_var, quarter_var) * (np.sqrt(half_var / read) if read > 0 else 1.0)
    used = split_count(resamples)
    of_rows = split_replicates(averaged[:used], np.zeros(used), value, resamples, scale)
    of_clustering = (values - values.mean()) * np.sqrt(CLUSTERINGS / (CLUSTERINGS - 1))
    return ProxyOutput(value, centred(of_rows + of_clustering[np.arange(resamples) % CLUSTERINGS], value))


LEGEND = ("MAUVE between U_r and the candidate, from clustered embeddings: how much the two distributions "
          "overlap, 0 to 1; higher is better. It needs hundreds of rows per side to be stable.")
PROXY = Proxy("mauve", MauveParams, orientation=1.0, compute=_compute, title="MAUVE", legend=LEGEND,
              default=True)
