"""MAUVE on precomputed embeddings: p = the real sample, q = the candidate."""

from __future__ import annotations

import numpy as np


def mauve_score(synthetic: np.ndarray, real: np.ndarray, scaling_factor: float = 5.0, seed: int = 25) -> float:
    import mauve  # imported lazily: it pulls faiss, which is slow to load

    result = mauve.compute_mauve(
        p_features=np.asarray(real, dtype=np.float32),
        q_features=np.asarray(synthetic, dtype=np.float32),
        mauve_scaling_factor=scaling_factor,
        seed=seed,
        verbose=False,
        num_buckets="auto",
    )
    return float(result.mauve)
