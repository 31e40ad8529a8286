"""From per-(candidate, proxy, seed) results to the ranking table (SPEC §6).

Three rules make a ranking something to act on:
- a failed or non-finite value is a recorded failure, never a number that is ranked;
- the ensemble (mean rank over the proxies, per seed) only ranks a candidate that has
  every proxy for that seed, so no candidate is ranked on a partial proxy set;
- every rank comes with an interval: rows are resampled inside each task (bootstrap
  replicates of the proxy), seeds are resampled here, and the candidates are re-ranked
  in each draw; `tied_with_best` marks those that reach rank 1 often enough that they
  cannot be told apart from the leader.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.stats import rankdata

SCORE_SCHEMA = {"dataset_id": pl.Utf8, "proxy": pl.Utf8, "seed": pl.Int64, "raw": pl.Float64, "score": pl.Float64}
# A committed result: the score, its bootstrap replicates (oriented like `score`), its error, its cost.
RESULT_SCHEMA = {**SCORE_SCHEMA, "replicates": pl.List(pl.Float64), "error": pl.Utf8, "seconds": pl.Float64}
ROW_SCHEMA = {"dataset_id": pl.Utf8, "seed": pl.Int64, "row_index": pl.Int64, "text_hash": pl.Utf8,
              "p_synthetic": pl.Float64, "nearest_real_distance": pl.Float64, "duplicate_group": pl.Int64,
              "copies_real": pl.Boolean, "text_chars": pl.Int64}
RANKING_COLUMNS = ["dataset_id", "proxy", "score_mean", "score_std", "rank", "rank_low", "rank_high",
                   "tied_with_best"]
DEFAULT_RESAMPLES = 200


def split_failures(results: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(results whose raw and score are finite, failures: dataset_id, proxy, seed, error)."""
    if "error" not in results.columns:
        results = results.with_columns(pl.lit(None, pl.Utf8).alias("error"))
    bad = pl.col("error").is_not_null() | ~pl.col("raw").is_finite() | ~pl.col("score").is_finite()
    bad = bad.fill_null(True)  # a null value is as unusable as NaN
    failures = results.filter(bad).select(
        "dataset_id", "proxy", "seed",
        pl.coalesce("error", pl.format("{} is not finite ({})", "proxy", pl.col("raw").cast(pl.Utf8))).alias("error"),
    )
    return results.filter(~bad), failures


def _resamples(scores: pl.DataFrame, default: int = 0) -> int:
    """The replicates every resampled row has (the shortest non-empty list), else `default`."""
    if "replicates" not in scores.columns:
        return default
    lengths = scores.get_column("replicates").list.len().fill_null(0)
    lengths = lengths.filter(lengths > 0)
    return int(lengths.min()) if len(lengths) else default


def _replicate_cube(scores: pl.DataFrame, ids: list[str], seeds: list[int], resamples: int) -> np.ndarray:
    """Shape (candidates, seeds, resamples) of one proxy's oriented replicates; a (candidate, seed)
    without replicates repeats its point score (its rows were not resampled)."""
    cube = np.full((len(ids), len(seeds), resamples), np.nan)
    at = {(d, s): (i, j) for i, d in enumerate(ids) for j, s in enumerate(seeds)}
    has = "replicates" in scores.columns
    for row in scores.iter_rows(named=True):
        i, j = at[(row["dataset_id"], row["seed"])]
        replicates = row["replicates"] if has else None
        cube[i, j] = replicates[:resamples] if replicates and len(replicates) >= resamples else row["score"]
    return cube


def _proxy_ranks(rows: pl.DataFrame, ids: list[str], seed: int, resamples: int) -> tuple[np.ndarray, np.ndarray]:
    """One proxy's rank of each of `ids` (NaN where it has no score) and of its replicates,
    shapes (ids,) and (ids, resamples); ranked among the candidates the proxy scored."""
    rows = rows.sort("dataset_id")
    present = rows.get_column("dataset_id").to_list()
    at = [ids.index(d) for d in present]
    points = np.full(len(ids), np.nan)
    replicates = np.full((len(ids), resamples), np.nan)
    if present:
        points[at] = rankdata(-rows.get_column("score").to_numpy(), method="average")
        cube = _replicate_cube(rows, present, [seed], resamples)[:, 0]
        replicates[at] = rankdata(-cube, axis=0, method="average")
    return points, replicates


def _seed_ensemble(group: pl.DataFrame, proxies: list[str], seed: int, exempt: dict[str, set[str]]) -> list[dict]:
    """The ensemble rows of one seed: each candidate with every proxy it is meant to have (all but
    its `exempt` ones) gets its mean rank over the proxies it has."""
    have = set(zip(group["dataset_id"], group["proxy"], strict=True))
    ids = sorted(d for d in set(group["dataset_id"])
                 if all((d, p) in have or p in exempt.get(d, ()) for p in proxies))
    if not ids:
        return []
    resamples = _resamples(group)
    ranks = [_proxy_ranks(group.filter((pl.col("proxy") == p) & pl.col("dataset_id").is_in(ids)), ids, seed,
                          max(resamples, 1)) for p in proxies]
    mean_rank = np.nanmean(np.stack([points for points, _ in ranks]), axis=0)
    replicate_rank = np.nanmean(np.stack([replicates for _, replicates in ranks]), axis=0)
    return [{"dataset_id": dataset_id, "proxy": "ensemble", "seed": seed, "raw": mean_rank[i], "score": -mean_rank[i],
             "replicates": list(-replicate_rank[i]) if resamples else None} for i, dataset_id in enumerate(ids)]


def add_ensemble(scores: pl.DataFrame, exempt: dict[str, set[str]] | None = None) -> pl.DataFrame:
    """Append `proxy = "ensemble"` rows: per seed, each complete candidate's mean rank over the
    proxies (raw = mean rank, score = −mean rank), with replicates from the proxies' replicates.

    `exempt` names, per candidate, proxies it is not meant to have (the LENS cascade): it is
    complete without them and its mean rank is over the others."""
    scores = scores.filter(pl.col("proxy") != "ensemble")
    proxies = sorted(scores.get_column("proxy").unique().to_list())
    if len(proxies) < 2:
        return scores
    rows = [row for (seed,), group in scores.group_by(["seed"], maintain_order=True)
            for row in _seed_ensemble(group, proxies, seed, exempt or {})]
    extra = {"replicates": pl.List(pl.Float64)} if "replicates" in scores.columns else {}
    ensemble = pl.DataFrame(rows, schema={**SCORE_SCHEMA, "replicates": pl.List(pl.Float64)})
    ensemble = ensemble.select([*SCORE_SCHEMA, *extra])
    return pl.concat([scores.select([*SCORE_SCHEMA, *extra]), ensemble]).sort(["proxy", "dataset_id", "seed"])


def incomplete(scores: pl.DataFrame, seeds: list[int], exempt: dict[str, set[str]] | None = None
               ) -> dict[str, list[str]]:
    """Per candidate, the `proxy@seed` results it lacks (so it is left out of the ensemble);
    proxies it is `exempt` from are not lacking."""
    exempt = exempt or {}
    proxies = sorted(set(scores.get_column("proxy").to_list()) - {"ensemble"})
    have = set(zip(scores["dataset_id"], scores["proxy"], scores["seed"], strict=True))
    missing: dict[str, list[str]] = {}
    for dataset_id in sorted(set(scores.get_column("dataset_id").to_list())):
        lacks = [f"{p}@{s}" for p in proxies for s in seeds
                 if (dataset_id, p, s) not in have and p not in exempt.get(dataset_id, ())]
        if lacks:
            missing[dataset_id] = lacks
    return missing


def top_by(scores: pl.DataFrame, by: str, top: int) -> list[str]:
    """The `top` best candidates (by rank, then id) of `by`: "ensemble" (the only proxy when
    there is one) or a proxy name, over the usable rows of `scores`."""
    usable, _ = split_failures(scores)
    proxies = set(usable.get_column("proxy").to_list())
    if by == "ensemble":
        usable = add_ensemble(usable)
        by = by if len(proxies) > 1 else next(iter(proxies), by)
    ranked = rank(usable.filter(pl.col("proxy") == by))
    return ranked.sort(["rank", "dataset_id"]).head(top).get_column("dataset_id").to_list()


def rank_intervals(cube: np.ndarray, level: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) rank of each candidate, a `level` interval, from cube (candidates, seeds, resamples):
    each resample b draws seeds with replacement, averages replicate b over them, and ranks."""
    candidates, seeds, resamples = cube.shape
    drawn = rng.integers(0, seeds, size=(resamples, seeds))
    boot = np.stack([cube[:, drawn[b], b].mean(axis=1) for b in range(resamples)], axis=1)  # (candidates, B)
    ranks = rankdata(-boot, axis=0, method="min")
    tail = (1.0 - level) / 2.0
    low = np.quantile(ranks, tail, axis=1, method="lower")
    high = np.quantile(ranks, 1.0 - tail, axis=1, method="higher")
    return low.astype(np.int64), high.astype(np.int64)


def _rank_proxy(scores: pl.DataFrame, proxy: str, level: float, seed: int) -> pl.DataFrame:
    """One proxy's rows of the ranking table: candidates that have every seed, with intervals."""
    seeds = sorted(scores.get_column("seed").unique().to_list())
    summary = scores.group_by("dataset_id").agg(
        pl.col("score").mean().alias("score_mean"), pl.col("score").std(ddof=0).alias("score_std"),
        pl.col("seed").n_unique().alias("n_seeds"),
    ).filter(pl.col("n_seeds") == len(seeds)).sort("dataset_id")
    ids = summary.get_column("dataset_id").to_list()
    resamples = _resamples(scores, DEFAULT_RESAMPLES)
    cube = _replicate_cube(scores.filter(pl.col("dataset_id").is_in(ids)), ids, seeds, resamples)
    low, high = rank_intervals(cube, level, np.random.default_rng(seed))
    point = rankdata(-summary.get_column("score_mean").to_numpy(), method="min").astype(np.int64)
    return summary.with_columns(
        pl.lit(proxy).alias("proxy"), pl.Series("rank", point),
        pl.Series("rank_low", np.minimum(low, point)), pl.Series("rank_high", np.maximum(high, point)),
    ).with_columns(((pl.col("rank_low") == 1) | (pl.col("rank") == 1)).alias("tied_with_best"))


def rank(scores: pl.DataFrame, level: float = 0.9, seed: int = 0) -> pl.DataFrame:
    """Mean and (population) std of the score over seeds, rank 1 = best within a proxy, and a
    `level` rank interval. A candidate missing a seed of a proxy is not ranked by that proxy."""
    parts = [_rank_proxy(group, proxy, level, seed)
             for (proxy,), group in scores.group_by(["proxy"], maintain_order=True)]
    table = pl.concat(parts) if parts else pl.DataFrame(schema={c: pl.Utf8 for c in RANKING_COLUMNS})
    return table.select(RANKING_COLUMNS).sort(["proxy", "rank", "dataset_id"])


def row_scores_table(parts: list[pl.DataFrame], columns: list[pl.DataFrame] | None = None) -> pl.DataFrame:
    """row_scores.parquet: every candidate's per-row signals (`parts`, ROW_SCHEMA), with the
    `columns` of other stages (keyed by dataset_id, seed, row_index; LENS: `lens_p_real`)
    joined on where they exist."""
    table = pl.concat([p.cast(ROW_SCHEMA) for p in parts]) if parts else pl.DataFrame(schema=ROW_SCHEMA)
    keys = ["dataset_id", "seed", "row_index"]
    for extra in columns or []:
        table = table.join(extra.cast({"row_index": pl.Int64, "seed": pl.Int64}), on=keys, how="left")
    return table.sort(keys)


def ranking_table_text(rankings: pl.DataFrame) -> str:
    """A wide, human-readable view: one row per candidate, one rank column per proxy, and the
    ensemble's (else the first proxy's) interval; `*` marks candidates tied with the best."""
    order = "ensemble" if "ensemble" in rankings["proxy"].to_list() else rankings["proxy"][0]
    wide = rankings.pivot(on="proxy", index="dataset_id", values="rank")
    lead = rankings.filter(pl.col("proxy") == order).select(
        "dataset_id", pl.format("{}-{}", "rank_low", "rank_high").alias("interval"), "tied_with_best")
    proxies = [c for c in wide.columns if c not in ("dataset_id", "ensemble")] + (
        ["ensemble"] if "ensemble" in wide.columns else [])
    wide = wide.join(lead, on="dataset_id", how="left").sort(order, nulls_last=True)
    width = max(10, *(len(x) for x in wide["dataset_id"]))
    lines = [f"rank by proxy (1 = best; interval: 90% range of {order}'s rank; * cannot be told from the best)",
             f"{'dataset_id':<{width}}  " + "  ".join(f"{p:>8}" for p in proxies) + f"  {'interval':>9}"]
    for row in wide.iter_rows(named=True):
        cells = "  ".join(f"{'-' if row[p] is None else row[p]:>8}" for p in proxies)
        mark = "*" if row["tied_with_best"] else " "
        lines.append(f"{row['dataset_id']:<{width}}  {cells}  {row['interval'] or '-':>8}{mark}")
    return "\n".join(lines)
