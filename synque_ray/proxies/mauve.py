"""MAUVE on precomputed embeddings: p = the real sample, q = the candidate.

MAUVE clusters both sets once and compares the two histograms of cluster labels.
Resampling rows with the clustering kept is resampling the label counts, a
multinomial draw from each histogram, so its rank interval costs no re-clustering.
A redrawn histogram is noisier than the one it came from, which lowers MAUVE on
average (point .995, draws' mean .96 for one distribution), so the replicates are
`centred` on the point value.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys

import numpy as np
from pydantic import Field

from synque_ray.proxies.base import Params, Proxy, ProxyOutput, centred, check_embeddings

CURVE_POINTS = 25  # mauve-text's default discretisation of the divergence curve


class MauveParams(Params):
    scaling_factor: float = Field(5.0, gt=0)


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


def _compute(synthetic, real, params: MauveParams, seed: int, resamples: int) -> ProxyOutput:
    result = mauve_run(synthetic, real, params.scaling_factor, seed)
    rng = np.random.default_rng(seed)
    p_counts = rng.multinomial(len(real), result.p_hist, size=resamples) / len(real)
    q_counts = rng.multinomial(len(synthetic), result.q_hist, size=resamples) / len(synthetic)
    replicates = mauve_of_histograms(p_counts, q_counts, params.scaling_factor)
    return ProxyOutput(float(result.mauve), centred(replicates, float(result.mauve)))


PROXY = Proxy("mauve", MauveParams, orientation=1.0, compute=_compute)
