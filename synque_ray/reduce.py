"""From per-(candidate, proxy, seed) results to the ranking table (docs/statistics.md).

Three rules make a ranking something to act on:
- a failed or non-finite value is a recorded failure, never a number that is ranked;
- the ensemble (mean rank over the proxies, per seed) only ranks a candidate that has
  every proxy for that seed, so no candidate is ranked on a partial proxy set;
- every rank comes with an interval: rows are resampled inside each task (bootstrap
  replicates of the proxy), seeds are resampled here, and the candidates are re-ranked
  in each draw; `tied_with_best` is membership of a best set with a simultaneous
  guarantee (`best_set`), and `p_best` / `p_top` are the shares of draws in which a
  candidate is first / in the top `ranking.top`.

The ensemble is a weighted mean rank; by default (`robust`) each proxy weighs what it
agrees with the others (`ensemble_weights`), so one proxy that is wrong on a task
cannot drag the ensemble below the proxies that agree.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import polars as pl

from synque_ray.findings import SCREENS
from synque_ray.ranks import rankdata, spearman
from synque_ray.vocabulary import RANKING_COLUMNS, SCORE_SCHEMA

DEFAULT_RESAMPLES = 200
# The ensemble rule with the smallest worst-case regret over benchmarks/sim_ensemble.py's scenarios
# (README, "The ensemble"); config.RankingConfig's default names the same rule.
DEFAULT_ENSEMBLE = "decorrelated"
DEFAULT_TOP = 5


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


RANK_BANDWIDTH = 3.0  # the ensemble's smooth rank: over how many sds of a difference (at one seed) a place is spread
LOGISTIC_SLOPE = 1.702  # logistic(1.702 x) is within 0.01 of the normal cdf: the bandwidth reads as a normal sd


def _smooth_ranks(values: np.ndarray, bandwidth: float) -> np.ndarray:
    """Shape of values (candidates, ...): each candidate's rank (1 = best) in each column, where a
    candidate ahead by d counts logistic(1.702·d / bandwidth) of a place instead of 1 (itself counts
    one half): the average rank when bandwidth is 0, a rank that moves smoothly with the scores for
    candidates within a few bandwidths of each other, and the rank for those further apart.

    Why: the ensemble's replicates are its members' replicates put through this function. A plain
    rank of tied candidates varies less over the replicates of one data set than over fresh data
    (for one tied pair its variance is 1/6 against 1/4), so the ensemble's standard errors came out
    25-35% small among tied leaders and its best set broke true ties. A function that is close to
    linear over the candidates' error carries their spread through unshrunk (docs/statistics.md)."""
    ranks = np.full(values.shape, 0.5)  # 1 + the places over the rivals j != i = 0.5 + those over every j
    for j in range(values.shape[0]):  # one rival at a time: memory candidates × columns
        ahead = values[j][None] - values
        if bandwidth > 0:
            ranks += 0.5 * (1.0 + np.tanh(0.5 * LOGISTIC_SLOPE * ahead / bandwidth))  # logistic, overflow-free
        else:
            ranks += (ahead > 0) + 0.5 * (ahead == 0)
    return ranks


def _rank_bandwidth(rows: pl.DataFrame) -> float:
    """RANK_BANDWIDTH times the typical sd of the error of a difference of one proxy's scores at one
    seed, from its `rows` (dataset_id, seed, score, replicates; every seed): the rows' part (median
    over candidates and seeds of the replicates' variance) plus the seed's own part (median of
    `seed_variances` over the candidates that have every seed).

    0 (plain ranks) without replicates: the ensemble's spread is then read from its points over
    seeds alone, and a rank's spread over seeds is its true spread; only the replicates, read given
    one data set, need a rank that is close to linear. Why the seed part too: a rank is close to
    linear over differences within the bandwidth, and a tied pair's difference at one seed spreads
    by both errors."""
    seeds = sorted(rows.get_column("seed").unique().to_list())
    counts = rows.group_by("dataset_id").agg(pl.col("seed").n_unique().alias("n"))
    ids = sorted(counts.filter(pl.col("n") == len(seeds)).get_column("dataset_id").to_list())
    if not ids:
        return 0.0
    complete = rows.filter(pl.col("dataset_id").is_in(ids))
    resamples = _resamples(complete)
    if resamples < 2:
        return 0.0
    variance = float(np.median(_replicate_cube(complete, ids, seeds, resamples).var(axis=2)))
    if len(seeds) > 1 and len(ids) > 1:
        variance += float(np.median(seed_variances(_point_matrix(complete, ids, seeds))))
    return RANK_BANDWIDTH * float(np.sqrt(2.0 * variance))


def _proxy_ranks(rows: pl.DataFrame, ids: list[str], seed: int, resamples: int, bandwidth: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One proxy's smooth rank (`_smooth_ranks`) of each of `ids` (NaN where it has no score) and of its
    replicates, shapes (ids,) and (ids, resamples); ranked among the candidates the proxy scored,
    points and replicates by the proxy's one `bandwidth` (`_rank_bandwidth`), so the replicates
    spread as the point does."""
    rows = rows.sort("dataset_id")
    present = rows.get_column("dataset_id").to_list()
    at = [ids.index(d) for d in present]
    points = np.full(len(ids), np.nan)
    replicates = np.full((len(ids), resamples), np.nan)
    if present:
        cube = _replicate_cube(rows, present, [seed], resamples)[:, 0]
        points[at] = _smooth_ranks(rows.get_column("score").to_numpy(), bandwidth)
        replicates[at] = _smooth_ranks(cube, bandwidth)
    return points, replicates


def _complete_ranks(group: pl.DataFrame, proxies: list[str]) -> np.ndarray | None:
    """Shape (proxies, candidates): each proxy's rank (1 = best, ties averaged) of the candidates
    of one seed's `group` that have every proxy; None when fewer than 3 have (no agreement to read)."""
    wide = group.pivot(on="proxy", index="dataset_id", values="score").drop_nulls()
    if wide.height < 3 or any(p not in wide.columns for p in proxies):
        return None
    return np.stack([rankdata(-wide.get_column(p).to_numpy(), method="average") for p in proxies])


def _loo_agreement(ranks: np.ndarray) -> np.ndarray:
    """Shape (proxies,): Spearman of each proxy's ranks (proxies, candidates) with the mean rank of
    the other proxies; 0 where either side is constant (it says nothing about the order)."""
    proxies = ranks.shape[0]
    out = np.zeros(proxies)
    for p in range(proxies):
        others = np.delete(ranks, p, axis=0).mean(axis=0)
        if np.ptp(ranks[p]) > 0 and np.ptp(others) > 0:
            out[p] = spearman(ranks[p], others)
    return out


def _equal_weights(proxies: list[str]) -> dict[str, float]:
    return {p: 1.0 / len(proxies) for p in proxies}


def _robust_weights(scores: pl.DataFrame, proxies: list[str]) -> dict[str, float]:
    """Each proxy's leave-one-out agreement with the consensus of the others, averaged over seeds,
    clipped at 0 and normalised to sum 1; equal weights when no seed has 3 complete candidates
    or no proxy agrees with the others at all."""
    per_seed = [_loo_agreement(ranks) for _, group in scores.group_by(["seed"], maintain_order=True)
                if (ranks := _complete_ranks(group, proxies)) is not None]
    if not per_seed:
        return _equal_weights(proxies)
    agreement = np.clip(np.mean(per_seed, axis=0), 0.0, None)
    if agreement.sum() <= 0:
        return _equal_weights(proxies)
    return {p: float(w) for p, w in zip(proxies, agreement / agreement.sum(), strict=True)}


DECORRELATION_SHRINK = 0.5  # correlations of 8-32 ranks are noisy: solve with R shrunk halfway to the identity


def _rank_correlations(ranks: np.ndarray) -> np.ndarray:
    """Shape (proxies, proxies): the correlations of the rows of ranks (proxies, candidates), 1 on the
    diagonal; a proxy that ranks every candidate alike correlates with nothing (0), not NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = np.nan_to_num(np.corrcoef(ranks))
    np.fill_diagonal(correlation, 1.0)
    return correlation


def _decorrelated_weights(scores: pl.DataFrame, proxies: list[str]) -> dict[str, float]:
    """Among the proxies with a positive robust weight (the others, which order the candidates against
    or unrelated to the consensus, get 0), minimum-variance weights: (R + s·I)⁻¹·1 clipped at 0 and
    normalised, R their rank correlations over the candidates that have every proxy (per seed, then
    averaged), s = DECORRELATION_SHRINK. Proxies that move together (several on one embedding model,
    sharing its blind spots) then count about as one between them, so a shared error cannot outvote
    the proxies that do not share it. Robust weights where fewer than two proxies are kept or no seed
    has 3 complete candidates."""
    robust = _robust_weights(scores, proxies)
    keep = [p for p in proxies if robust[p] > 0]
    per_seed = [_rank_correlations(ranks) for _, group in scores.group_by(["seed"], maintain_order=True)
                if (ranks := _complete_ranks(group, keep)) is not None] if len(keep) > 1 else []
    if not per_seed:
        return robust
    correlation = np.mean(per_seed, axis=0)
    raw = np.clip(np.linalg.solve(correlation + DECORRELATION_SHRINK * np.eye(len(keep)), np.ones(len(keep))), 0, None)
    if raw.sum() <= 0:
        return robust
    weights = dict.fromkeys(proxies, 0.0)
    weights.update({p: float(w) for p, w in zip(keep, raw / raw.sum(), strict=True)})
    return weights


ENSEMBLES = {"robust": _robust_weights, "mean": lambda _scores, proxies: _equal_weights(proxies),
             "decorrelated": _decorrelated_weights}


def ensemble_weights(scores: pl.DataFrame, method: str = DEFAULT_ENSEMBLE) -> dict[str, float]:
    """The weight of each proxy in the ensemble's mean rank, summing to 1, from `scores`
    (dataset_id, proxy, seed, score; no labels: the default stays unsupervised).

    "mean": equal weights (the plain mean rank). "robust": a proxy weighs its Spearman agreement
    with the mean rank of the *other* proxies over the candidates that have every proxy (per seed,
    then averaged), clipped at 0. A proxy that orders the candidates against (or unrelated to) the
    consensus gets weight near 0, so it cannot pull the ensemble below the proxies that agree;
    when all proxies agree the weights are near equal and the ensemble is the plain mean rank."""
    if method not in ENSEMBLES:
        raise ValueError(f"ensemble method {method!r} is not one of {', '.join(ENSEMBLES)}")
    scores = scores.filter(~pl.col("proxy").is_in(["ensemble", *SCREENS]))  # a screen never votes
    proxies = sorted(scores.get_column("proxy").unique().to_list())
    return ENSEMBLES[method](scores, proxies) if len(proxies) > 1 else _equal_weights(proxies) if proxies else {}


def _shared_row_error(deviations: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Shape (ids, resamples): the ensemble's replicate deviations from its members' deviations
    (proxies, ids, resamples; replicate minus point, NaN where a proxy is absent) and weights w
    (proxies, ids; 0 where absent): their weighted sum, scaled per candidate to the sd Σ w·sd of
    members whose errors move together.

    Why: every proxy reads the same candidate rows, so their row errors are correlated (on a true
    tie, .25-.67 between MMD², PAD, MAUVE and coverage; BENCHMARKS.md), but each proxy resamples its
    rows on its own, so replicate b of one proxy is independent of replicate b of another and the
    plain weighted sum holds only Σ w²·sd². The correlation is not seen without labels (the true
    differences correlate across proxies too), so its bound, 1, is taken: the ensemble's row error
    is never read smaller than it may be, and never wider than its widest member's."""
    combined = np.nansum(w[:, :, None] * deviations, axis=0)
    bound = np.nansum(w * np.nan_to_num(deviations).std(axis=2), axis=0)
    actual = combined.std(axis=1)
    scale = np.where(actual > 0, bound / np.where(actual > 0, actual, 1.0), 1.0)
    return combined * scale[:, None]


def _seed_ensemble(group: pl.DataFrame, weights: dict[str, float], seed: int,
                   exempt: dict[str, set[str]], bandwidths: dict[str, float]) -> list[dict]:
    """The ensemble rows of one seed: each candidate with every proxy it is meant to have (all but
    its `exempt` ones) gets its `weights`-weighted mean smooth rank (`_smooth_ranks`, each proxy by
    its `bandwidths` entry) over the proxies it has (equal weights where those all weigh 0)."""
    proxies = list(weights)
    have = set(zip(group["dataset_id"], group["proxy"], strict=True))
    ids = sorted(d for d in set(group["dataset_id"])
                 if all((d, p) in have or p in exempt.get(d, ()) for p in proxies))
    if not ids:
        return []
    resamples = _resamples(group)
    ranks = [_proxy_ranks(group.filter((pl.col("proxy") == p) & pl.col("dataset_id").is_in(ids)), ids, seed,
                          max(resamples, 1), bandwidths[p]) for p in proxies]
    points = np.stack([points for points, _ in ranks])  # (proxies, ids)
    replicates = np.stack([replicates for _, replicates in ranks])  # (proxies, ids, resamples)
    present = ~np.isnan(points)
    w = np.array([weights[p] for p in proxies])[:, None] * present
    w = np.where(w.sum(axis=0) > 0, w, present)  # (proxies, ids)
    w = w / w.sum(axis=0)
    mean_rank = np.nansum(w * points, axis=0)
    replicate_rank = mean_rank[:, None] + _shared_row_error(replicates - points[:, :, None], w)
    return [{"dataset_id": dataset_id, "proxy": "ensemble", "seed": seed, "raw": mean_rank[i], "score": -mean_rank[i],
             "replicates": list(-replicate_rank[i]) if resamples else None} for i, dataset_id in enumerate(ids)]


def add_ensemble(scores: pl.DataFrame, exempt: dict[str, set[str]] | None = None, method: str = DEFAULT_ENSEMBLE,
                 weights: dict[str, float] | None = None) -> pl.DataFrame:
    """Append `proxy = "ensemble"` rows: per seed, each complete candidate's weighted mean rank over
    the proxies (raw = mean rank, score = −mean rank, so higher is better like every score), with
    replicates from the proxies' replicates under the same weights. With replicates the ranks are
    smooth (`_smooth_ranks`, a bandwidth per proxy from `_rank_bandwidth`) and the replicates'
    deviations are read as if the members' row errors moved together (`_shared_row_error`), so the
    ensemble's best set keeps a true tie as its members' do; without replicates they are plain
    average ranks.

    `weights` (proxy -> weight) default to `ensemble_weights(scores, method)`; record them with the
    run. `exempt` names, per candidate, proxies it is not meant to have (the LENS cascade): it is
    complete without them and its mean rank is over the others. A screen (`findings.SCREENS`: its
    finding passes a candidate over instead) is kept in the table but never in the ensemble: neither
    weighed nor required."""
    scores = scores.filter(pl.col("proxy") != "ensemble")
    proxies = sorted(p for p in scores.get_column("proxy").unique().to_list() if p not in SCREENS)
    if len(proxies) < 2:
        return scores
    weights = weights if weights is not None else ensemble_weights(scores, method)
    weights = {p: weights.get(p, 0.0) for p in proxies}
    voters = scores.filter(pl.col("proxy").is_in(proxies))
    bandwidths = {p: _rank_bandwidth(voters.filter(pl.col("proxy") == p)) for p in proxies}
    rows = [row for (seed,), group in voters.group_by(["seed"], maintain_order=True)
            for row in _seed_ensemble(group, weights, seed, exempt or {}, bandwidths)]
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


def top_by(scores: pl.DataFrame, by: str, top: int, method: str = DEFAULT_ENSEMBLE) -> list[str]:
    """The `top` best candidates (by rank, then id) of `by`: "ensemble" (the only proxy when
    there is one; combined by `method`) or a proxy name, over the usable rows of `scores`."""
    usable, _ = split_failures(scores)
    proxies = set(usable.get_column("proxy").to_list())
    if by == "ensemble":
        usable = add_ensemble(usable, method=method)
        by = by if len(proxies) > 1 else next(iter(proxies), by)
    ranked = rank(usable.filter(pl.col("proxy") == by))
    return ranked.sort(["rank", "dataset_id"]).head(top).get_column("dataset_id").to_list()


def seed_draws(rng: np.random.Generator, seeds: int, resamples: int) -> np.ndarray:
    """Shape (resamples, seeds): the seeds each draw takes, with replacement."""
    return rng.integers(0, seeds, size=(resamples, seeds))


def bootstrap_means(cube: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """Shape (candidates, resamples) from cube (candidates, seeds, resamples): draw b takes the seeds
    `drawn[b]` (the same for every candidate, so a shared U_r sample stays shared) and averages
    replicate b over them."""
    return np.stack([cube[:, drawn[b], b].mean(axis=1) for b in range(len(drawn))], axis=1)


def _intervals(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """(low, high): the central `level` range of each candidate's rank over the draws of boot."""
    ranks = rankdata(-boot, axis=0, method="min")
    tail = (1.0 - level) / 2.0
    low = np.quantile(ranks, tail, axis=1, method="lower")
    high = np.quantile(ranks, 1.0 - tail, axis=1, method="higher")
    return low.astype(np.int64), high.astype(np.int64)


def rank_intervals(cube: np.ndarray, level: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) rank of each candidate, a `level` interval, from cube (candidates, seeds, resamples):
    each resample b draws seeds with replacement, averages replicate b over them, and ranks."""
    return _intervals(bootstrap_means(cube, seed_draws(rng, cube.shape[1], cube.shape[2])), level)


def top_shares(boot: np.ndarray, top: int) -> np.ndarray:
    """Shape (candidates,): the share of draws (columns of boot, candidates × draws, higher is
    better) in which a candidate is among the `top` best. Ties share the places left: three tied
    for the last two places count 2/3 each, so the shares of one draw sum to min(top, candidates)."""
    shares = np.zeros(boot.shape[0])
    for b in range(boot.shape[1]):  # one draw at a time: memory candidates², not candidates² × draws
        column = boot[:, b]
        better = (column[None, :] > column[:, None]).sum(axis=1)
        equal = (column[None, :] == column[:, None]).sum(axis=1)  # itself included
        shares += np.clip(top - better, 0, equal) / equal
    return shares / boot.shape[1]


def _studentised(gap: np.ndarray, se: np.ndarray) -> np.ndarray:
    """gap / se, where se = 0 means the gap is exact: ±inf by its sign, 0 when there is none."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, gap / np.where(se > 0, se, 1.0), np.sign(gap) * np.inf)


VARIANCE_FLOOR = 0.25  # the least a candidate's seed variance is taken to be, as a share of the mean one
BEST_SET_DRAWS = 1000  # simulated draws of the largest studentised error (its `level` quantile)


def seed_variances(points: np.ndarray) -> np.ndarray:
    """Shape (..., candidates): each candidate's own variance over seeds, from points (..., candidates,
    seeds), with what a seed moves every candidate alike (its U_r sample) taken out; 0 with one seed.

    Model: score[i, s] = mean[i] + shift[s] + e[i, s], e independent with variance v[i] (one per
    candidate, so a small, noisy candidate is allowed its larger spread). The sample variance over
    seeds of a paired difference j − i estimates v[j] + v[i]; v is the least-squares fit of those
    sums to every pair's variance (n >= 3 candidates: unbiased before the floor below; with 2 only
    the sum is seen and is split evenly). Every pair informs each v[i], so it is steadier than one
    pair's variance (about twice the degrees of freedom when the spreads are alike) while still
    following each candidate's own spread. A fit under `VARIANCE_FLOOR` times the mean is raised
    to it: with 2 to 4 degrees of freedom a candidate is not believed much steadier than the
    average (nor exact, which would make its differences look certain), and the heavy tail the
    studentised differences would otherwise have at 2 or 3 seeds is bounded by the mean variance,
    which every pair estimates."""
    n, seeds = points.shape[-2:]
    if seeds < 2:
        return np.zeros(points.shape[:-1])
    fitted = own_variances(points)
    if n < 3:
        return fitted
    total = fitted.sum(axis=-1, keepdims=True)
    return np.maximum(fitted, VARIANCE_FLOOR * total / n)


def own_variances(points: np.ndarray) -> np.ndarray:
    """Shape (..., candidates): the least-squares fit of v[i] + v[j] to the variance, over the last
    axis of points (..., candidates, draws), of every paired difference j − i, so what moves every
    candidate alike in a draw cancels (`seed_variances`, before its floor). Unbiased with 3 or more
    candidates; with 2 the sum is split evenly."""
    n, seeds = points.shape[-2:]
    centred = points - points.mean(axis=-1, keepdims=True)
    squares = (centred**2).sum(axis=-1)  # (..., n)
    # sum over j of the squared paired deviations: n * a_i + sum(a) - 2 c_i . sum_j c_j (j = i adds 0)
    partners = (n * squares + squares.sum(axis=-1, keepdims=True)
                - 2 * np.einsum("...is,...s->...i", centred, centred.sum(axis=-2))) / (seeds - 1)
    if n < 3:
        return partners / 2.0
    total = partners.sum(axis=-1, keepdims=True) / 2.0 / (n - 1)  # estimates sum(v)
    return (partners - total) / (n - 2)


REPLICATE_FLOOR = 0.75  # the least a candidate's own replicate variance is taken to be, as a share of its size's fit


def replicate_floors(own: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Shape (candidates,): the least each candidate's own replicate variance is taken to be, from
    `own` (candidates,), the variances `own_variances` reads off the replicates, and `rows`
    (candidates,), the rows each candidate has: `REPLICATE_FLOOR` times the variance a candidate of
    its size has on the run's fit of log variance on log rows (slope held within [-1, 0]: a
    proxy's error shrinks with rows, at most as fast as a mean's). 0 with fewer than 3 candidates
    whose replicates vary: there is no fit to lean on.

    Why: a candidate's replicate variance is itself an estimate, and a noisy one where a proxy's
    error rests on a few odd rows (MDM's jackknife at 45 rows ranges from a quarter to twice the
    truth, like a variance with 4 to 5 degrees of freedom). An underestimate makes the candidate's
    differences look certain, and a true tie is broken; the fit pools every candidate's estimate, so
    none is believed much steadier than the others of its size. Raising a variance only widens the
    set: the price is power, never the guarantee."""
    own, rows = np.asarray(own, dtype=float), np.asarray(rows, dtype=float)
    varies = own > 0
    if varies.sum() < 3:
        return np.zeros(len(own))
    x, y = np.log(rows[varies]), np.log(own[varies])
    slope = float(np.clip(np.polyfit(x, y, 1)[0], -1.0, 0.0)) if np.ptp(x) > 0 else 0.0
    return REPLICATE_FLOOR * np.exp(np.mean(y - slope * x) + slope * np.log(rows))


def best_set(points: np.ndarray, cube: np.ndarray, level: float, rng: np.random.Generator,
             draws: int = BEST_SET_DRAWS, rows: np.ndarray | None = None) -> np.ndarray:
    """Shape (candidates,) bool: a confidence set for the best candidate(s) by mean score over seeds.

    points (candidates, seeds): the score of each seed; cube (candidates, seeds, resamples): the
    replicates of each seed's score (rows resampled), centred on it; rng: the simulated draws.

    Guarantee: with probability about `level` the set holds *every* candidate whose true mean is the
    highest, all of them at once when several tie. Assumptions: a seed moves every candidate by a
    shared shift plus the candidate's own independent, roughly normal error (its variance may differ
    from one candidate to the next), and the replicates give the spread the rows add around each
    seed's score, replicate b resampling a candidate's rows alike at every seed (its rows are the
    same at every seed, so their error does not average out over seeds; replicates drawn afresh
    per seed understate it and break ties). The rule is Hsu's multiple comparisons with the best in
    its simultaneous step-down form (Mogstad, Romano, Shaikh & Wilhelm 2024; Romano & Wolf): i leaves
    only when some j beats it by more than c standard errors, c being the `level` quantile of the
    largest studentised error over the pairs (j, i) with i still in, recomputed as candidates leave
    until none does.

    The standard error of a difference j − i adds the seed part, (v[j] + v[i]) / seeds with v from
    `seed_variances`, to the replicate part, the variance over resamples of the difference of the
    seed-averaged replicates. With 2 to 10 seeds the seed part is itself uncertain, so c comes from a
    parametric bootstrap-t: each draw simulates the seeds' errors from N(0, v), estimates v again
    from them exactly as above, adds replicate b's error and studentises by the draw's own standard
    error; the max then carries the small-sample (t-like) tail of the estimated variances. Resampling
    the seeds instead breaks at few seeds: with 3, one draw in 9 repeats a single seed and has no
    spread at all, which made c huge and kept clearly worse candidates in the set.
    With 2 seeds each v rests on one degree of freedom: a tie is still kept, but only a large lead
    leaves the others out. The replicate part is an estimate too: each candidate's own replicate
    variance is raised to `replicate_floors` of the run (from `rows`, the rows of each candidate;
    None: all one size) where it reads lower, and the draws add that much independent error.
    A difference that never varies is exact. The point leader never leaves: the set is never empty."""
    n, seeds, resamples = cube.shape
    mean = points.mean(axis=1)
    variances = seed_variances(points)  # (n,)
    spread, extra, replicate_var = _replicate_parts(points, cube, rows)
    se = _standard_errors(variances, seeds, replicate_var)
    simulated = rng.standard_normal((draws, n, seeds)) * np.sqrt(variances)[None, :, None]
    draw_variances = seed_variances(simulated).T  # (n, draws)
    draw_errors = simulated.mean(axis=2).T + spread[:, np.arange(draws) % resamples]  # (n, draws)
    # the floors' part of each error, from a child stream: rng's own draws stay what they were without it
    draw_errors += rng.spawn(1)[0].standard_normal((n, draws)) * np.sqrt(extra)[:, None]
    worst = np.full((n, draws), -np.inf)  # [i, b]: the largest studentised error of the pairs (·, i) in draw b
    beaten = np.full((n, n), -np.inf)  # [i, j]: by how many standard errors j beats i
    for i in range(n):
        gap = mean - mean[i]
        varies = se[:, i] > 1e-12 * max(1.0, float(np.abs(gap).max()))
        varies[i] = False
        if varies.any():
            draw_se = np.sqrt((draw_variances[varies] + draw_variances[i]) / seeds + replicate_var[varies, i, None])
            worst[i] = _studentised(draw_errors[varies] - draw_errors[i], draw_se).max(axis=0)
        beaten[i] = _studentised(gap, np.where(varies, se[:, i], 0.0))
        beaten[i, i] = -np.inf
    inside = np.ones(n, dtype=bool)
    while True:
        largest = worst[inside].max(axis=0)  # (draws,); -inf when no pair left varies
        critical = max(0.0, float(np.quantile(largest, level, method="higher"))) if np.isfinite(largest).any() else 0.0
        out = inside & (beaten > critical).any(axis=1)
        if not out.any():
            return inside
        inside &= ~out


def _replicate_parts(points: np.ndarray, cube: np.ndarray, rows: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(spread, extra, replicate_var) of `best_set`: spread (candidates, resamples), the replicates'
    error of each seed mean, centred; extra (candidates,), what `replicate_floors` adds to each
    candidate's own replicate variance where no score moves with the seed (else 0); replicate_var
    (candidates, candidates), [j, i] the replicate variance of the difference j − i with both extras.

    Why only then: a proxy that never reads U_r (MDM), or a run of one seed, has no seed part, and
    the replicates' variance is the whole error, one noisy estimate per candidate. Where scores move
    with the seed, the seed part's own uncertainty is simulated (`best_set`) and the replicate part
    is a share of the error; there a floor only cost power: it raised a clear leader's steady
    ensemble rank to the others' and kept an 8%-degraded demo candidate beside the undegraded one."""
    n, _, resamples = cube.shape
    noise = (cube - points[:, :, None]).mean(axis=1)
    spread = noise - noise.mean(axis=1, keepdims=True)
    covariance = spread @ spread.T / resamples
    extra = np.zeros(n)
    if not np.ptp(points, axis=1).any():
        own = own_variances(spread) * (resamples - 1) / resamples  # on the scale of covariance
        extra = np.clip(replicate_floors(own, np.ones(n) if rows is None else rows) - own, 0.0, None)
    diagonal = np.diag(covariance)
    return spread, extra, diagonal[:, None] + diagonal[None, :] - 2 * covariance + extra[:, None] + extra[None, :]


def pair_standard_errors(points: np.ndarray, cube: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Shape (candidates, candidates): [j, i] the standard error `best_set` gives the difference of
    the seed means j − i (seed part plus replicate part, floors included), from points (candidates,
    seeds), cube (candidates, seeds, resamples) and the candidates' rows."""
    return _standard_errors(seed_variances(points), points.shape[1], _replicate_parts(points, cube, rows)[2])


def _standard_errors(variances: np.ndarray, seeds: int, replicate_var: np.ndarray) -> np.ndarray:
    """[j, i]: the seed part (v[j] + v[i]) / seeds plus the replicate part of the difference j − i."""
    return np.sqrt(np.clip((variances[:, None] + variances[None, :]) / seeds + replicate_var, 0.0, None))


def _point_matrix(scores: pl.DataFrame, ids: list[str], seeds: list[int]) -> np.ndarray:
    """Shape (candidates, seeds): each (candidate, seed)'s score; every pair is present."""
    wide = scores.pivot(on="seed", index="dataset_id", values="score").sort("dataset_id")
    return wide.select([str(s) for s in seeds]).to_numpy().astype(float)


def _sunk(values: np.ndarray, sunk: np.ndarray) -> np.ndarray:
    """`values` (candidates, ...) with the rows where `sunk` (candidates,) is true moved below every
    other value, their order among themselves kept: so they rank after every other candidate."""
    if not sunk.any() or sunk.all():
        return values
    drop = float(np.ptp(values)) + 1.0
    return values - drop * sunk.reshape((-1,) + (1,) * (values.ndim - 1))


def _rank_proxy(scores: pl.DataFrame, proxy: str, level: float, seed: int, top: int,
                passed_over: frozenset[str] = frozenset(), demoted: frozenset[str] = frozenset(),
                rows: Mapping[str, int] | None = None) -> pl.DataFrame:
    """One proxy's rows of the ranking table: candidates that have every seed, with intervals, the
    best set (of the candidates not `passed_over`) and the shares of draws at rank 1 / in the top
    `top`, all from one set of draws; the `demoted` rank after every other candidate in every draw
    (their score_mean stays as measured)."""
    seeds = sorted(scores.get_column("seed").unique().to_list())
    summary = scores.group_by("dataset_id").agg(
        pl.col("score").mean().alias("score_mean"), pl.col("score").std(ddof=0).alias("score_std"),
        pl.col("seed").n_unique().alias("n_seeds"),
    ).filter(pl.col("n_seeds") == len(seeds)).sort("dataset_id")
    ids = summary.get_column("dataset_id").to_list()
    resamples = _resamples(scores, DEFAULT_RESAMPLES)
    complete = scores.filter(pl.col("dataset_id").is_in(ids))
    cube = _replicate_cube(complete, ids, seeds, resamples)
    drawn = seed_draws(np.random.default_rng(seed), len(seeds), resamples)
    sunk = np.array([d in demoted for d in ids], dtype=bool)
    boot = _sunk(bootstrap_means(cube, drawn), sunk)
    low, high = _intervals(boot, level)
    point = rankdata(-_sunk(summary.get_column("score_mean").to_numpy(), sunk), method="min").astype(np.int64)
    eligible = np.array([d not in passed_over for d in ids], dtype=bool)
    tied = np.zeros(len(ids), dtype=bool)
    if eligible.any():
        sizes = None  # the rows of each candidate, where every one is known
        if rows is not None and all(d in rows for d in ids):
            sizes = np.array([rows[d] for d in ids])[eligible]
        tied[eligible] = best_set(_point_matrix(complete, ids, seeds)[eligible], cube[eligible], level,
                                  np.random.default_rng([seed, 1]), rows=sizes)
    return summary.with_columns(
        pl.lit(proxy).alias("proxy"), pl.Series("rank", point),
        pl.Series("rank_low", np.minimum(low, point)), pl.Series("rank_high", np.maximum(high, point)),
        pl.Series("tied_with_best", tied),
        pl.Series("p_best", top_shares(boot, 1)), pl.Series("p_top", top_shares(boot, top)),
    )


def rank(scores: pl.DataFrame, level: float = 0.9, seed: int = 0, top: int = DEFAULT_TOP,
         passed_over: Collection[str] = (), demoted: Collection[str] = (),
         rows: Mapping[str, int] | None = None) -> pl.DataFrame:
    """Mean and (population) std of the score over seeds, rank 1 = best within a proxy, a `level`
    rank interval, membership of the `level` best set (`tied_with_best`, see `best_set`) and the
    shares of draws at rank 1 (`p_best`) and in the `top` best (`p_top`). A candidate missing a
    seed of a proxy is not ranked by that proxy. Candidates `passed_over` (they leak the real
    sample, or read as garbled: `findings.passed_over`) are never in the best set, which is then the
    best set of the others. Those also `demoted` (`findings.demoted`: the ensemble's proxies cannot
    see what is wrong with them) rank after every other candidate in the lead ranking (`lead_proxy`)
    and keep their own rank under each proxy; the others passed over keep their rank everywhere.
    `rows`: each candidate's rows (dataset_id -> rows scored), which `best_set` reads to pool the
    candidates' replicate variances by size; without it every candidate is taken to be one size."""
    lead = lead_proxy(scores) if scores.height else None
    parts = [_rank_proxy(group, proxy, level, seed, top, frozenset(passed_over) | frozenset(demoted),
                         frozenset(demoted) if proxy == lead else frozenset(), rows)
             for (proxy,), group in scores.group_by(["proxy"], maintain_order=True)]
    table = pl.concat(parts) if parts else pl.DataFrame(schema={c: pl.Utf8 for c in RANKING_COLUMNS})
    return table.select(RANKING_COLUMNS).sort(["proxy", "rank", "dataset_id"])


def lead_proxy(rankings: pl.DataFrame) -> str:
    """The ranking that orders every view (terminal table, verdict, report): the ensemble when
    there is one, else the alphabetically first proxy that is not a screen (`findings.SCREENS`,
    which passes candidates over rather than ranks them; a screen only when it is alone), so
    that all three name the same leader."""
    proxies = rankings.get_column("proxy").unique().to_list()
    return "ensemble" if "ensemble" in proxies else sorted(proxies, key=lambda p: (p in SCREENS, p))[0]
