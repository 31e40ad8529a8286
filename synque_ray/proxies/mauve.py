"""MAUVE on precomputed embeddings: p = the real sample, q = the candidate.

MAUVE clusters both sets once and compares the two histograms of cluster labels.
Resampling rows with the clustering kept is resampling the label counts, a
multinomial draw from each histogram, so its rank interval costs no re-clustering.
A redrawn histogram is noisier than the one it came from, which lowers MAUVE on
average (point .995, draws' mean .96 for one distribution), so the replicates are
`centred` on the point value.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from synque_ray.proxies.base import Params, Proxy, ProxyOutput, centred, check_embeddings

CURVE_POINTS = 25  # mauve-text's default discretisation of the divergence curve


class MauveParams(Params):
    scaling_factor: float = Field(5.0, gt=0)


def mauve_from_histograms(p_hist: np.ndarray, q_hist: np.ndarray, scaling_factor: float) -> float:
    """The area under the divergence frontier of two histograms, as mauve-text computes it."""
    from mauve.compute_mauve import get_divergence_curve_for_multinomials
    from sklearn.metrics import auc

    weights = np.linspace(1e-6, 1 - 1e-6, CURVE_POINTS)
    x, y = get_divergence_curve_for_multinomials(p_hist, q_hist, weights, scaling_factor).T
    by_x, by_y = np.argsort(x), np.argsort(y)
    return float(0.5 * (auc(x[by_x], y[by_x]) + auc(y[by_y], x[by_y])))


def mauve_run(synthetic: np.ndarray, real: np.ndarray, scaling_factor: float = 5.0, seed: int = 25):
    """mauve-text's result (fields mauve, p_hist, q_hist) for synthetic (n, d) against real (m, d)."""
    import mauve  # imported lazily: it pulls faiss, which is slow to load

    synthetic, real = check_embeddings(synthetic, real)
    return mauve.compute_mauve(p_features=real.astype(np.float32), q_features=synthetic.astype(np.float32),
                               mauve_scaling_factor=scaling_factor, seed=seed, verbose=False, num_buckets="auto")


def mauve_score(synthetic: np.ndarray, real: np.ndarray, scaling_factor: float = 5.0, seed: int = 25) -> float:
    """MAUVE in [0, 1]: 1 when the candidate's embedding distribution matches U_r's."""
    return float(mauve_run(synthetic, real, scaling_factor, seed).mauve)


def _compute(synthetic, real, params: MauveParams, seed: int, resamples: int) -> ProxyOutput:
    result = mauve_run(synthetic, real, params.scaling_factor, seed)
    rng = np.random.default_rng(seed)
    p_counts = rng.multinomial(len(real), result.p_hist, size=resamples) / len(real)
    q_counts = rng.multinomial(len(synthetic), result.q_hist, size=resamples) / len(synthetic)
    replicates = np.array([mauve_from_histograms(p, q, params.scaling_factor) for p, q in zip(p_counts, q_counts)])
    return ProxyOutput(float(result.mauve), centred(replicates, float(result.mauve)))


PROXY = Proxy("mauve", MauveParams, orientation=1.0, compute=_compute)
