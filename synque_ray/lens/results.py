"""From judgements to LENS scores: pure functions over the judgements table (no LLM, no Ray).

`score_table`: every variant of the score per (candidate, seed), label or expected
judgements x debiased or biased (lens_scores.parquet). `lens_results`: the ranked
score rows (RESULT_SCHEMA) with bootstrap replicates for rank intervals. `p_hat_table`:
each judged candidate row's p̂ (the probability the scorer puts on "real").
"""

from __future__ import annotations

import numpy as np
import polars as pl

import synque_ray.lens_debias as debias
from synque_ray.lens.judge import EXPECTED_COLUMNS, JUDGEMENT_COLUMNS
from synque_ray.proxies.base import resample_weights
from synque_ray.vocabulary import RESULT_SCHEMA

VARIANT_SCHEMA = {
    "dataset_id": pl.Utf8, "seed": pl.Int64, "rows_judged": pl.Int64, "rows_unparsed": pl.Int64,
    "lens_label": pl.Float64, "lens_biased_label": pl.Float64,
    "lens_expected": pl.Float64, "lens_biased_expected": pl.Float64,
}
VARIANT_COLUMNS = {"label": JUDGEMENT_COLUMNS, "expected": EXPECTED_COLUMNS}
P_HAT_SCHEMA = {"dataset_id": pl.Utf8, "seed": pl.Int64, "row_index": pl.Int64, "p_hat": pl.Float64}


def _as_g(table: pl.DataFrame, variant: str) -> pl.DataFrame:
    """The judgement columns of `variant` under debias's names."""
    return table.select([pl.col(c).alias(g) for c, g in zip(VARIANT_COLUMNS[variant], debias.COLUMNS, strict=True)])


def _pair_p_hat(group: pl.DataFrame, variant: str, debiased: bool = True) -> tuple[pl.DataFrame, np.ndarray]:
    """(the complete synthetic rows of one (candidate, seed), their p̂); raises ValueError
    when no real row is complete (no baselines)."""
    complete = group.filter(~pl.col("unparsed"))
    synthetic = complete.filter(pl.col("role") == "synthetic")
    real = complete.filter(pl.col("role") == "real")
    return synthetic, debias.row_scores(_as_g(synthetic, variant), _as_g(real, variant), debiased=debiased)


def score_table(judgements: pl.DataFrame) -> pl.DataFrame:
    """Every LENS variant per (candidate, seed): label/expected judgements x debiased/biased."""
    records = []
    for (dataset_id, seed), group in judgements.group_by(["dataset_id", "seed"], maintain_order=True):
        unparsed = int(group.get_column("unparsed").sum())
        record = {"dataset_id": dataset_id, "seed": seed, "rows_judged": group.height, "rows_unparsed": unparsed}
        for variant in VARIANT_COLUMNS:
            for debiased in (True, False):
                name = f"lens_{variant}" if debiased else f"lens_biased_{variant}"
                try:
                    _, p_hat = _pair_p_hat(group, variant, debiased)
                    record[name] = float(p_hat.mean()) if len(p_hat) else float("nan")
                except ValueError:  # no complete real row: no baselines
                    record[name] = float("nan")
        records.append(record)
    return pl.DataFrame(records, schema=VARIANT_SCHEMA)


def p_hat_table(judgements: pl.DataFrame, variant: str) -> pl.DataFrame:
    """dataset_id, seed, row_index, p_hat: the debiased p̂ of every complete judged candidate row."""
    parts = []
    for (_, _), group in judgements.group_by(["dataset_id", "seed"], maintain_order=True):
        try:
            synthetic, p_hat = _pair_p_hat(group, variant)
        except ValueError:
            continue
        parts.append(synthetic.select("dataset_id", "seed", pl.col("row_id").alias("row_index"))
                     .with_columns(pl.Series("p_hat", p_hat, pl.Float64)))
    return pl.concat(parts).cast(P_HAT_SCHEMA) if parts else pl.DataFrame(schema=P_HAT_SCHEMA)


def bootstrap_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Shape (resamples,): the mean of `values` over rows drawn with replacement, seeded."""
    if not len(values):
        return np.empty(0)
    weights = resample_weights(len(values), resamples, np.random.default_rng(seed))
    return weights @ values / len(values)


def lens_results(variants: pl.DataFrame, p_hat: pl.DataFrame, variant: str, resamples: int) -> pl.DataFrame:
    """Score rows (RESULT_SCHEMA, proxy 'lens', higher = more like real) of every (candidate, seed)
    with a finite score; replicates resample the pair's p̂ rows (seeded by the seed)."""
    column = f"lens_{variant}"
    usable = variants.filter(pl.col(column).is_not_nan())
    rows = []
    for record in usable.iter_rows(named=True):
        mine = p_hat.filter((pl.col("dataset_id") == record["dataset_id"]) & (pl.col("seed") == record["seed"]))
        replicates = bootstrap_means(mine.get_column("p_hat").to_numpy(), resamples, record["seed"])
        rows.append({"dataset_id": record["dataset_id"], "proxy": "lens", "seed": record["seed"],
                     "raw": record[column], "score": record[column], "replicates": replicates.tolist(),
                     "error": None, "seconds": None})
    return pl.DataFrame(rows, schema=RESULT_SCHEMA)
