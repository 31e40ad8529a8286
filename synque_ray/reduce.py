"""From per-(candidate, seed) scores to the ranking table (SPEC §6).

The ensemble is one more proxy: for each seed, each candidate's mean rank over the
proxies that ran (raw = mean rank, score = -mean rank), so that it is averaged over
seeds and evaluated exactly like the others.
"""

from __future__ import annotations

import polars as pl

SCORE_SCHEMA = {"dataset_id": pl.Utf8, "proxy": pl.Utf8, "seed": pl.Int64, "raw": pl.Float64, "score": pl.Float64}


def add_ensemble(scores: pl.DataFrame) -> pl.DataFrame:
    scores = scores.filter(pl.col("proxy") != "ensemble")
    if scores.get_column("proxy").n_unique() < 2:
        return scores
    ranked = scores.with_columns(
        pl.col("score").rank(method="average", descending=True).over(["proxy", "seed"]).alias("rank")
    )
    ensemble = (
        ranked.group_by(["dataset_id", "seed"])
        .agg(pl.col("rank").mean().alias("raw"))
        .with_columns(pl.lit("ensemble").alias("proxy"), (-pl.col("raw")).alias("score"))
        .select(list(SCORE_SCHEMA))
    )
    return pl.concat([scores, ensemble]).sort(["proxy", "dataset_id", "seed"])


def rank(scores: pl.DataFrame) -> pl.DataFrame:
    """Mean and (population) std of the score over seeds; rank 1 = best within a proxy."""
    summary = scores.group_by(["dataset_id", "proxy"]).agg(
        pl.col("score").mean().alias("score_mean"), pl.col("score").std(ddof=0).alias("score_std")
    )
    return (
        summary.with_columns(
            pl.col("score_mean").rank(method="min", descending=True).over("proxy").cast(pl.Int64).alias("rank")
        )
        .sort(["proxy", "rank", "dataset_id"])
        .select(["dataset_id", "proxy", "score_mean", "score_std", "rank"])
    )


def ranking_table_text(rankings: pl.DataFrame) -> str:
    """A wide, human-readable view: one row per candidate, one rank column per proxy."""
    wide = rankings.pivot(on="proxy", index="dataset_id", values="rank")
    order = "ensemble" if "ensemble" in wide.columns else wide.columns[1]
    proxies = [c for c in wide.columns if c not in ("dataset_id", "ensemble")] + (
        ["ensemble"] if "ensemble" in wide.columns else []
    )
    wide = wide.sort(order).select(["dataset_id", *proxies])
    width = max(10, *(len(x) for x in wide["dataset_id"]))
    lines = ["rank by proxy (1 = best)", f"{'dataset_id':<{width}}  " + "  ".join(f"{p:>8}" for p in proxies)]
    for row in wide.iter_rows(named=True):
        lines.append(f"{row['dataset_id']:<{width}}  " + "  ".join(f"{row[p]:>8}" for p in proxies))
    return "\n".join(lines)
