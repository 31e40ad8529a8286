"""Ranks and Spearman's correlation in numpy.

Every run re-ranks its candidates, even when every score is reused, so this sits on the path
of a run with nothing to compute; scipy.stats would add most of a second of start-up for two
functions. Results match `scipy.stats.rankdata` / `spearmanr` (tests/ranking/test_ranks.py checks it)."""
from __future__ import annotations

import numpy as np


def _place(first: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    return first + (sizes + 1) / 2.0


TIE_RULES = {
    "average": _place,                                  # ties share the mean of their places
    "min": lambda first, _sizes: first + 1.0,           # ties all take the best of their places
}


def _rank_1d(values: np.ndarray, method: str) -> np.ndarray:
    if np.isnan(values).any():
        return np.full(len(values), np.nan)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    first = np.flatnonzero(starts)
    sizes = np.diff(np.r_[first, len(values)])
    ranks = np.empty(len(values))
    ranks[order] = TIE_RULES[method](first, sizes)[np.cumsum(starts) - 1]
    return ranks


def rankdata(values: np.ndarray, axis: int | None = None, method: str = "average") -> np.ndarray:
    """1-based ranks of `values` (any shape) along `axis` (None: the flattened array), smallest
    first; ties by `method` ("average" or "min"). A slice holding a NaN ranks all NaN, as scipy's
    default does, so a missing score never takes a place."""
    if method not in TIE_RULES:
        raise ValueError(f"unknown tie rule {method!r}; expected one of {sorted(TIE_RULES)}")
    values = np.asarray(values, dtype=np.float64)
    if axis is None:
        return _rank_1d(values.ravel(), method)
    if values.size == 0:
        return np.empty(values.shape)
    return np.apply_along_axis(_rank_1d, axis, values, method)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's correlation of two shape-(n,) arrays: Pearson's of their average ranks.
    NaN when either side is constant or n < 2 (the correlation is undefined there)."""
    rx, ry = rankdata(x), rankdata(y)
    if len(rx) < 2 or np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])
