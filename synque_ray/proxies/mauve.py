"""MAUVE on precomputed embeddings: p = the real sample, q = the candidate.

MAUVE clusters both sets once and compares the two histograms of cluster labels.
Its replicates split each set's rows into two disjoint halves with the clustering kept
(`base.split_replicates`): a half's label counts are a multivariate hypergeometric draw
from the histogram's counts, so a rank interval costs no re-clustering. Between
distributions that differ their spread is that of MAUVE over fresh samples (ratio
0.8–1.2); between equal ones it is still 2 to 4 times too wide (BENCHMARKS.md, "Replicates
as wide as the truth"; the bootstrap's was 2.4–4.1). There MAUVE sits near its ceiling,
the fresh clustering of a new sample is not reproduced, and a half's few rows per cluster
move MAUVE more than a fresh sample's; the metric on single halves around their mean (as
density and coverage use) was wider still.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys

import numpy as np
from pydantic import Field

from synque_ray.proxies.base import (HALVES, Params, Proxy, ProxyOutput, check_embeddings, split_count,
                                     split_replicates, split_rngs)

CURVE_POINTS = 25  # mauve-text's default discretisation of the divergence curve


class MauveParams(Params):
    scaling_factor: float = Field(5.0, gt=0)

    def min_rows(self) -> tuple[int, str]:
        return 2, HALVES

    def min_real_rows(self) -> tuple[int, str]:
        return 2, HALVES


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


def half_histograms(hist: np.ndarray, rows: int, splits: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(first, second), each (splits, k): the cluster histograms of two disjoint random halves of the
    `rows` rows whose histogram (k,) is `hist`, each half `rows // 2` rows drawn without replacement
    (a multivariate hypergeometric draw of the label counts, so no re-clustering)."""
    counts = np.rint(np.asarray(hist) * rows).astype(np.int64)
    half = rows // 2
    first = rng.multivariate_hypergeometric(counts, half, size=splits)
    second = np.stack([rng.multivariate_hypergeometric(left, half) for left in counts - first])
    return first / half, second / half


def _compute(synthetic, real, params: MauveParams, seed: int, resamples: int) -> ProxyOutput:
    result = mauve_run(synthetic, real, params.scaling_factor, seed)
    value = float(result.mauve)
    if resamples == 0:
        return ProxyOutput(value)
    rng_real, rng_synthetic = split_rngs(seed)
    p_first, p_second = half_histograms(result.p_hist, len(real), split_count(resamples), rng_real)
    q_first, q_second = half_histograms(result.q_hist, len(synthetic), split_count(resamples), rng_synthetic)
    first = mauve_of_histograms(p_first, q_first, params.scaling_factor)
    second = mauve_of_histograms(p_second, q_second, params.scaling_factor)
    return ProxyOutput(value, split_replicates(first, second, value, resamples))


LEGEND = ("MAUVE between U_r and the candidate, from clustered embeddings: how much the two distributions "
          "overlap, 0 to 1; higher is better. It needs hundreds of rows per side to be stable.")
PROXY = Proxy("mauve", MauveParams, orientation=1.0, compute=_compute, title="MAUVE", legend=LEGEND,
              default=True)
