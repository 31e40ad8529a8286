"""Per-row signals of a candidate that are not proxies: how close each row is to U_r,
and which rows are near-copies of each other. They tell a user *which* rows make a
candidate rank low (row_scores.parquet, the report, `synque select --drop-rows`)."""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist

DUPLICATE_COSINE = 0.95  # rows at least this similar (cosine of embeddings) are near-duplicates
_CHUNK = 1024  # rows compared at a time, so memory stays O(chunk x n) on large candidates


def nearest_real_distance(synthetic: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Shape (n,): Euclidean distance from each candidate row to its nearest U_r row."""
    return np.concatenate([cdist(synthetic[i:i + _CHUNK], real).min(axis=1) for i in range(0, len(synthetic), _CHUNK)])


def duplicate_groups(embeddings: np.ndarray, threshold: float = DUPLICATE_COSINE) -> np.ndarray:
    """Shape (n,): a group id shared by rows linked through chains of near-duplicates
    (the group's smallest row index), -1 for a row with no near-duplicate."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.where(norms == 0, 1.0, norms)
    rows, cols = [], []
    for start in range(0, len(unit), _CHUNK):
        similar = unit[start:start + _CHUNK] @ unit.T >= threshold
        i, j = np.nonzero(similar)
        keep = (i + start) < j
        rows.append(i[keep] + start)
        cols.append(j[keep])
    i, j = np.concatenate(rows), np.concatenate(cols)
    n = len(unit)
    _, component = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)
    first = np.full(component.max() + 1, n)
    np.minimum.at(first, component, np.arange(n))
    sizes = np.bincount(component)
    return np.where(sizes[component] > 1, first[component], -1)
