"""Per-row signals: what each declares (`Signal`), and those of a candidate that are not
proxies: how close each row is to U_r, which rows are near-copies of each other, which
copy a U_r row, and how long each is. They tell a user *which* rows make a candidate rank
low (row_scores.parquet, the report, `synque select --drop-rows`).

Every signal is declared once by what produces it (a proxy in its `Proxy`, the embedding
stage here, LENS in lens/debias.py); `synque_ray.rowschema` collects them, and a signal
returned without a declaration is an error (`check_declared`), never a column dropped
without a word.

Near-duplicates and near-copies of U_r share one cosine threshold on the embedding
model's vectors, 0.95: above it two rows say the same thing in nearly the same words.
On the bundled MiniLM, rows that differ by a punctuation mark, case or one small word
score .944-.998 (6 of 7 such pairs above .95), paraphrases (the same meaning in other
words) .24-.82 and different sentences on the same topic .55-.84 (tests/test_copies_real.py
checks such pairs), so 0.95 flags edited copies and leaves rewritten ones alone. Because
a short row can drop below it with one changed mark ("Great value for the price." vs
"...price!!": .885), exact copies are also matched on the text itself, after whitespace
and case are normalised, whatever the model says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

# scipy.sparse and scipy.spatial are imported where they are used: a run whose results are all
# reused never computes a row signal, and would otherwise pay a third of a second to load them.

DUPLICATE_COSINE = 0.95  # rows at least this similar (cosine of embeddings) are near-duplicates
COPY_COSINE = DUPLICATE_COSINE  # a candidate row this similar to a U_r row copies it
_CHUNK = 1024  # rows compared at a time, so memory stays O(chunk x n) on large candidates


@dataclass(frozen=True)
class Signal:
    """One per-row signal. name: its row_scores.parquet column; dtype: its type there; title: how
    the report heads it; meaning: what a high value (or true) says of the row; rule: `synque select
    --drop-rows` takes it (a group id is no rule); shown: a column of the report's example rows."""

    name: str
    dtype: pl.DataType
    title: str
    meaning: str
    rule: bool = True
    shown: bool = False


# The embedding stage's own signals, in their row_scores.parquet order (after the proxies').
SIGNALS = (
    Signal("nearest_real_distance", pl.Float64, "distance to U_r",
           "Euclidean distance from the row's embedding to the nearest U_r row's: high = far from real", shown=True),
    Signal("duplicate_group", pl.Int64, "near-duplicate group",
           "the smallest row index of the row's near-duplicate group, -1 when it has none", rule=False),
    Signal("copies_real", pl.Boolean, "copies U_r", "true: the row copies a U_r row, exactly or nearly"),
    Signal("text_chars", pl.Int64, "characters", "the length of the row's stripped text: low = short or empty"),
)


def check_declared(names: Iterable[str], declared: Iterable[str], who: str) -> None:
    """Raise ValueError naming what `who` returned among `names` without declaring it in `declared`."""
    known = set(declared)
    extra = [name for name in names if name not in known]
    if extra:
        raise ValueError(f"{who} returned the row signal {', '.join(map(repr, extra))} that it does not declare "
                         f"(declared: {', '.join(sorted(known)) or 'none'}); declare each as a rowsignals.Signal")


def nearest_real_distance(synthetic: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Shape (n,): Euclidean distance from each candidate row to its nearest U_r row."""
    from scipy.spatial.distance import cdist

    return np.concatenate([cdist(synthetic[i:i + _CHUNK], real).min(axis=1) for i in range(0, len(synthetic), _CHUNK)])


def _unit(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero), so a dot product is a cosine."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.where(norms == 0, 1.0, norms)


def normalised_text(text: str) -> str:
    """The text as a copy is matched: whitespace runs made one space, ends stripped, case
    folded, so a row that was only re-spaced or re-cased still matches its source."""
    return " ".join(text.split()).casefold()


def real_text_set(texts: list[str]) -> frozenset[str]:
    """The normalised texts of a U_r sample, to match candidate rows against."""
    return frozenset(normalised_text(t) for t in texts)


def exact_copies(texts: list[str], real: frozenset[str]) -> np.ndarray:
    """Shape (n,) bool: each text equals a U_r row after `normalised_text` (`real` from
    `real_text_set`). Needs no model, so a copy is caught whatever the embeddings say."""
    return np.array([normalised_text(t) in real for t in texts], dtype=bool)


def near_copies(synthetic: np.ndarray, real: np.ndarray, threshold: float = COPY_COSINE) -> np.ndarray:
    """Shape (n,) bool: each candidate row's embedding has cosine >= `threshold` with some
    U_r row's (synthetic (n, d), real (m, d)): a copy with small edits."""
    unit_real = _unit(real)
    return np.concatenate([(_unit(synthetic[i:i + _CHUNK]) @ unit_real.T).max(axis=1) >= threshold
                           for i in range(0, len(synthetic), _CHUNK)]) if len(synthetic) else np.zeros(0, bool)


def duplicate_groups(embeddings: np.ndarray, threshold: float = DUPLICATE_COSINE) -> np.ndarray:
    """Shape (n,): a group id shared by rows linked through chains of near-duplicates
    (the group's smallest row index), -1 for a row with no near-duplicate."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    unit = _unit(embeddings)
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
