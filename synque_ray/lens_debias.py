"""LENS's math: from the four judgements per row to one score per candidate (docs/proxies.md, LENS),
and what LENS declares to the floors below its stage: its `ABOUT` (the legend) and its row
signal `P_REAL` (row_scores.parquet), as perplexity.py and fluency.py do for theirs.

Pure functions over tables, no LLM; the rest of LENS (prompts, engine, stage) is `synque_ray.lens`.
Columns, each a judgement in 0..4 (or an expected score in [0, 4]) for one (label, differences)
permutation:

    g_real_csr   "is this row real?"       given the differences C_{s,r}
    g_synth_csr  "is this row synthetic?"  given the differences C_{s,r}
    g_real_crs   "is this row real?"       given the differences C_{r,s}
    g_synth_crs  "is this row synthetic?"  given the differences C_{r,s}

Debiased (the default): each permutation's judgement is divided by its mean over the
real sample U_r (the baseline z), which removes the scorer's overall leaning towards
one answer; the share of the "real" answer is then averaged over the two difference
lists and over the candidate's rows. Rows with a missing judgement (unparsed) are left
out of both the baselines and the mean.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from synque_ray.proxies.base import About
from synque_ray.rowsignals import Signal

ABOUT = About("lens", "LENS",
              ("An LLM judges every row against a rubric of how real and synthetic rows differ, and LENS is "
               "the mean debiased probability that the candidate's rows are real; higher is better. Only as "
               "good as its scorer model: the bundled 135M model is for trying it out, not for decisions."))

EPSILON = 1e-6
COLUMNS = ("g_real_csr", "g_synth_csr", "g_real_crs", "g_synth_crs")
# Each judged candidate row's debiased p̂, joined onto row_scores.parquet by the LENS stage.
P_REAL = Signal("lens_p_real", pl.Float64, "p real (LENS)",
                "the debiased share of the scorer's judgements that call the row real: high = looks real", shown=True)


def _matrix(table, name: str) -> np.ndarray:
    """The four columns as an (n, 4) float array, rows with a missing value dropped."""
    columns = list(getattr(table, "column_names", None) or getattr(table, "columns", []))
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"{name} table lacks the column(s) {', '.join(missing)}")
    arrays = []
    for column in COLUMNS:
        values = table[column]
        if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
            try:
                values = values.to_numpy(zero_copy_only=False)  # pyarrow
            except TypeError:
                values = values.to_numpy()  # polars
        arrays.append(np.asarray(values, dtype=np.float64))
    matrix = np.column_stack(arrays) if arrays[0].size else np.empty((0, 4))
    return matrix[~np.isnan(matrix).any(axis=1)]


def baselines(real) -> np.ndarray:
    """z_{l|D}: the mean over U_r rows of each of the four columns, in COLUMNS order."""
    matrix = _matrix(real, "real")
    if not len(matrix):
        raise ValueError("real table has no complete rows: the debiasing baselines need at least one")
    return matrix.mean(axis=0)


def row_scores(synthetic, real=None, debiased: bool = True, epsilon: float = EPSILON) -> np.ndarray:
    """p̂(x) for each complete row of `synthetic` (real is only needed when debiased)."""
    g = _matrix(synthetic, "synthetic")
    if debiased:
        h = g / np.maximum(epsilon, baselines(real))
        p_csr = h[:, 0] / (h[:, 0] + h[:, 1] + epsilon)
        p_crs = h[:, 2] / (h[:, 2] + h[:, 3] + epsilon)
    else:
        p_csr = g[:, 0] / np.maximum(epsilon, g[:, 0] + g[:, 1])
        p_crs = g[:, 2] / np.maximum(epsilon, g[:, 2] + g[:, 3])
    return (p_csr + p_crs) / 2.0


def lens_score(synthetic, real, debiased: bool = True) -> float:
    """LENS of a candidate: the mean of p̂ over its rows; NaN when no row is complete.

    `synthetic` and `real` are polars DataFrames or Arrow tables with the float columns
    g_real_csr, g_synth_csr, g_real_crs, g_synth_crs. Higher means "more like real".
    """
    scores = row_scores(synthetic, real, debiased=debiased)
    return float(scores.mean()) if len(scores) else float("nan")
