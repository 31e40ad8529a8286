"""MDM: mean distance to medoid, a diversity measure of the candidate alone.

A candidate whose rows collapse onto a few modes has small within-cluster spread;
the SynQuE paper finds that spread tracks downstream quality.
"""

from __future__ import annotations

import kmedoids
import numpy as np
from scipy.spatial.distance import cdist


def mdm(embeddings: np.ndarray, k: int = 3, seed: int = 0) -> float:
    """Mean over the k FasterPAM clusters of the mean Euclidean distance to the medoid."""
    if len(embeddings) < k:
        raise ValueError(f"MDM needs at least k={k} rows, got {len(embeddings)}")
    distances = cdist(embeddings, embeddings, metric="euclidean")
    result = kmedoids.fasterpam(distances, k, random_state=seed, n_cpu=1)
    labels = np.asarray(result.labels)
    medoids = np.asarray(result.medoids)
    per_cluster = [distances[labels == c, medoids[c]].mean() for c in range(k) if np.any(labels == c)]
    return float(np.mean(per_cluster))
