"""Per-candidate findings (docs/statistics.md): what is wrong with a candidate, each a number with a
plain name, so that a user sees *why* it ranks where it does, not only *where*.

Findings are computed from `row_scores.parquet` (the per-row signals) and the ranking
table, and joined onto every row of `rankings.parquet` as columns:

- `duplicate_share`: rows that near-duplicate an earlier row of the candidate (every row of
  a near-duplicate group beyond its first), over all rows;
- `real_copy_share`: rows that copy a U_r row exactly or nearly (`copies_real`);
- `eval_copy_share`: rows that copy a row of the config's contamination (evaluation) set
  (`copies_eval`); null when the job names none. Any such row is a leak: its limit is 0;
- `synthetic_share`: rows PAD's balanced `p_synthetic` puts above `SYNTHETIC_P`;
- `short_share`: rows of fewer than `SHORT_CHARS` characters (empty rows included);
- `garbled_share`: rows the fluency screen judged garbled (`garbled`: a small LM's order gain,
  spelling surprise or end surprise of the row beyond U_r's percentile of it): shuffled,
  misspelt or cut text, which embeddings barely see;
- `garbled_as`: what those rows showed, each cause with its share of the judged rows, most
  frequent first ("cut mid-sentence 50%, shuffled 12%"; a row may show several); informational,
  it names the problem in the `garbled_share` finding;
- `disagreeing_proxy`, `disagreeing_rank`, `proxy_disagreement`: the proxy whose rank of the
  candidate is furthest from the ensemble's, its rank, and how far (in ranks). Informational only:
  proxies measure different things (MDM never looks at U_r), so their disagreeing is no defect of
  the candidate and never flags it;
- `identical_to`: the other candidates that hold the same texts (a copied file, a BOM or
  CRLF variant), comma-separated; informational, never a flag (they are scored once and
  ranked under each name, so they tie);
- `flags`: the findings that cross their limit in `LIMITS`.

A candidate flagged for a finding in `PASS_OVER` is passed over: never a member of the best set
(`reduce.rank`'s `passed_over`) and never named on `train on:` (`passed_over`), for one of two
reasons. A finding in `LEAKS`: it copies rows of U_r (or of the evaluation set), so it looks
closest to the real data by construction and training on it leaks the real sample; it keeps its
rank in every table, since it *is* close to U_r. A finding in `DEMOTED` (`garbled_share`): its
rows are shuffled, misspelt or cut text that the embedding proxies barely see, so the ensemble's
rank of it is wrong; it ranks after every candidate that is not demoted in the lead ranking
(`reduce.rank`'s `demoted`). Such a finding comes from a *screen* (`SCREENS`): a proxy whose
score is ranked and shown but never votes in the ensemble (docs/proxies.md, "fluency").

Shares are taken per seed (a seed may score a subsample of the candidate's rows) and
averaged over seeds. A share whose signal is absent (an older run, a proxy that did
not run) is null, never 0: absent is not the same as clean.

Pure polars: no Ray, no files.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

SYNTHETIC_P = 0.5  # a row "looks synthetic" when its balanced p_synthetic is above this
SHORT_CHARS = 10  # a row "is too short" below this many characters (an empty row has 0)
SHARES = ("duplicate_share", "real_copy_share", "eval_copy_share", "synthetic_share", "short_share", "garbled_share")
FINDING_SCHEMA = {"dataset_id": pl.Utf8, "duplicate_share": pl.Float64, "real_copy_share": pl.Float64,
                  "eval_copy_share": pl.Float64, "synthetic_share": pl.Float64, "short_share": pl.Float64,
                  "garbled_share": pl.Float64, "disagreeing_proxy": pl.Utf8, "disagreeing_rank": pl.Float64,
                  "proxy_disagreement": pl.Float64, "identical_to": pl.Utf8, "garbled_as": pl.Utf8}
FINDING_COLUMNS = [*list(FINDING_SCHEMA)[1:], "flags"]

# When a finding flags a candidate: its share is above the limit. A balanced p_synthetic puts about
# half of the rows of a real-like candidate above .5, so its limit is high. Copies of U_r: 2%, twice
# the false-positive share the copy detector allows itself on clean same-domain rows, so that a
# clean candidate is not passed over for the detector's noise while a leak of a few rows in a
# hundred is. Copies of the evaluation set the user will measure on: any one is a leak. Garbled
# rows: up to about 9% of rows like U_r's are garbled by definition (three signals, each beyond U_r's
# 3rd/97th percentile), and a row's order gain rests on one shuffle, which now and then reads about
# as well as the row: fluent text unlike U_r (LLM-written headlines against tweets) reached 12-27% of
# 16 rows. Two in five leaves room for that and still flags a shuffled, misspelt or cut copy (67-100%
# of its rows; BENCHMARKS.md).
LIMITS = {"duplicate_share": 0.10, "real_copy_share": 0.02, "eval_copy_share": 0.0, "synthetic_share": 0.75,
          "short_share": 0.05, "garbled_share": 0.40}
# Findings that keep a candidate off `train on:` because its rows leak the real sample, or the
# evaluation set, into training: it keeps its rank.
LEAKS = ("real_copy_share", "eval_copy_share")
# Findings that keep a candidate off `train on:` and rank it after every other candidate in the lead
# ranking: the proxies of the ensemble cannot see the problem, so their rank of it means nothing.
DEMOTED = ("garbled_share",)
PASS_OVER = (*LEAKS, *DEMOTED)
# Why a candidate flagged for each finding of PASS_OVER is passed over (the verdict's words).
PASS_OVER_WHY = {
    "real_copy_share": "it looks close to the real data because it holds it, and training on it leaks the real sample",
    "eval_copy_share": "it looks close to the real data because it holds it, and training on it leaks the real sample",
    "garbled_share": "its rows read as shuffled, misspelt or cut text, which the embedding proxies barely see, so it "
                     "ranks after every candidate that does not",
}
# Screens: proxy -> the finding its row signal feeds. A screen's score is ranked and shown, but it
# never votes in the ensemble (`reduce.add_ensemble`): what it measures is pass or fail (is the text
# fluent?), its order of passing candidates is noise, and weighted in it cost a benchmark of fluent
# candidates Spearman (BENCHMARKS.md). Its finding over the limit passes a candidate over instead.
SCREENS = {"fluency": "garbled_share"}

# Each share: (the row_scores column it needs, the per-row condition it counts).
_ROW_RULES: dict[str, tuple[str, Callable[[], pl.Expr]]] = {
    "duplicate_share": ("duplicate_group", lambda: (pl.col("duplicate_group") >= 0)
                        & (pl.col("duplicate_group") != pl.col("row_index"))),
    "real_copy_share": ("copies_real", lambda: pl.col("copies_real")),
    "eval_copy_share": ("copies_eval", lambda: pl.col("copies_eval")),
    "synthetic_share": ("p_synthetic", lambda: pl.col("p_synthetic") > SYNTHETIC_P),
    "short_share": ("text_chars", lambda: pl.col("text_chars") < SHORT_CHARS),
    "garbled_share": ("garbled", lambda: pl.col("garbled")),
}


def row_shares(row_scores: pl.DataFrame) -> pl.DataFrame:
    """Shape (candidates, 1 + len(SHARES)): per candidate, each share of SHARES.

    row_scores: one row per (dataset_id, seed, row_index) with any of the signal columns
    in `_ROW_RULES`. A share is the mean over seeds of (rows meeting the condition / rows
    with a known value of the signal); null where the column is absent or all its values
    are null for that candidate.
    """
    for column in ("dataset_id", "seed", "row_index"):
        if column not in row_scores.columns:
            raise ValueError(f"row_scores lacks the column {column!r}")
    per_seed = []
    for name, (column, condition) in _ROW_RULES.items():
        if column in row_scores.columns:
            known = pl.col(column).is_not_null()
            counted = (condition().fill_null(False) & known).sum().cast(pl.Float64)
            per_seed.append((counted / pl.when(known.sum() > 0).then(known.sum()).otherwise(None)).alias(name))
        else:
            per_seed.append(pl.lit(None, pl.Float64).alias(name))
    seeds = row_scores.group_by("dataset_id", "seed").agg(per_seed)
    return seeds.group_by("dataset_id").agg(pl.col(name).mean() for name in SHARES).sort("dataset_id")


def garbled_causes(row_scores: pl.DataFrame) -> pl.DataFrame:
    """Per candidate with a garbled row (dataset_id, garbled_as): each cause the rows' `garbled_as`
    name (comma-separated) with its share of the rows judged (`garbled` not null), as
    `row_shares` takes a share (per seed, then the mean over seeds), most frequent first, e.g.
    "cut mid-sentence 50%, shuffled 12%". Empty where row_scores has no `garbled_as`."""
    schema = {"dataset_id": pl.Utf8, "garbled_as": pl.Utf8}
    if "garbled_as" not in row_scores.columns or "garbled" not in row_scores.columns:
        return pl.DataFrame(schema=schema)
    judged = (row_scores.group_by("dataset_id", "seed").agg(pl.col("garbled").is_not_null().sum().alias("judged"))
              .filter(pl.col("judged") > 0))
    seeds = dict(judged.group_by("dataset_id").len().iter_rows())
    counts = (row_scores.filter(pl.col("garbled_as").is_not_null())
              .select("dataset_id", "seed", pl.col("garbled_as").str.split(", ").alias("cause")).explode("cause")
              .group_by("dataset_id", "seed", "cause").len().join(judged, on=["dataset_id", "seed"]))
    shares: dict[str, dict[str, float]] = {}
    for row in counts.iter_rows(named=True):
        causes = shares.setdefault(row["dataset_id"], {})
        causes[row["cause"]] = causes.get(row["cause"], 0.0) + row["len"] / row["judged"] / seeds[row["dataset_id"]]
    text = {dataset_id: ", ".join(f"{cause} {percent(share)}" for cause, share in
                                  sorted(causes.items(), key=lambda item: (-item[1], item[0])))
            for dataset_id, causes in shares.items()}
    return pl.DataFrame({"dataset_id": list(text), "garbled_as": list(text.values())}, schema=schema)


def disagreement(rankings: pl.DataFrame) -> pl.DataFrame:
    """Per candidate, the proxy that ranks it furthest from the ensemble.

    rankings: the ranking table (dataset_id, proxy, rank). Returns dataset_id,
    disagreeing_proxy, disagreeing_rank and proxy_disagreement = |proxy rank − ensemble
    rank|; candidates without an ensemble rank are left out. Ties go to the proxy whose
    name sorts first, so the answer does not depend on row order.
    """
    ensemble = rankings.filter(pl.col("proxy") == "ensemble").select("dataset_id", pl.col("rank").alias("_lead"))
    proxies = rankings.filter(pl.col("proxy") != "ensemble").join(ensemble, on="dataset_id", how="inner")
    gaps = proxies.with_columns((pl.col("rank").cast(pl.Float64) - pl.col("_lead")).abs().alias("proxy_disagreement"))
    return (gaps.sort(["dataset_id", "proxy_disagreement", "proxy"], descending=[False, True, False])
            .group_by("dataset_id", maintain_order=True).first()
            .select("dataset_id", pl.col("proxy").alias("disagreeing_proxy"),
                    pl.col("rank").cast(pl.Float64).alias("disagreeing_rank"), "proxy_disagreement"))


def findings(rankings: pl.DataFrame, row_scores: pl.DataFrame | None,
             identical: dict[str, str] | None = None) -> pl.DataFrame:
    """One row per candidate of `rankings`: FINDING_SCHEMA's columns and `flags` (a list of
    the names of the findings that cross LIMITS, in LIMITS' order). `identical`: candidate ->
    the others with the same texts (`identical_to`; null for the rest, and when not known)."""
    ids = pl.DataFrame({"dataset_id": sorted(set(rankings.get_column("dataset_id").to_list()))},
                       schema={"dataset_id": pl.Utf8})
    if row_scores is not None and row_scores.height:
        ids = ids.join(row_shares(row_scores), on="dataset_id", how="left")
        ids = ids.join(garbled_causes(row_scores), on="dataset_id", how="left")
    table = ids.join(disagreement(rankings), on="dataset_id", how="left")
    if identical:
        twins = pl.DataFrame({"dataset_id": list(identical), "identical_to": list(identical.values())},
                             schema={"dataset_id": pl.Utf8, "identical_to": pl.Utf8})
        table = table.join(twins, on="dataset_id", how="left")
    table = table.with_columns(pl.lit(None, dtype).alias(c) for c, dtype in FINDING_SCHEMA.items()
                               if c not in table.columns).select(list(FINDING_SCHEMA)).cast(FINDING_SCHEMA)
    crossed = [pl.when(pl.col(name).fill_null(0) > limit).then(pl.lit(name)).otherwise(None)
               for name, limit in LIMITS.items()]
    return table.with_columns(pl.concat_list(crossed).list.drop_nulls().alias("flags"))


def leak_flags(flags: list[str] | None, kinds: tuple[str, ...] = LEAKS) -> list[str]:
    """The findings of `kinds` (by default `LEAKS`) among a candidate's `flags`."""
    return [name for name in flags or [] if name in kinds]


def passed_over_by_flags(rankings: pl.DataFrame, kinds: tuple[str, ...] = PASS_OVER) -> dict[str, list[str]]:
    """Per candidate flagged for a finding of `kinds` (by default every one that passes it over), those
    findings, read from a ranking table's `flags` (a published run's; `passed_over` computes the same
    from the row signals before the ranking exists)."""
    if "flags" not in rankings.columns:
        return {}
    table = rankings.select("dataset_id", "flags").unique("dataset_id", keep="first")
    return {row["dataset_id"]: names for row in table.iter_rows(named=True)
            if (names := leak_flags(row["flags"], kinds))}


def leaked_by_flags(rankings: pl.DataFrame) -> dict[str, list[str]]:
    """Per candidate that leaks the real sample, its findings of `LEAKS`, read from `flags`."""
    return passed_over_by_flags(rankings, LEAKS)


def passed_over(row_scores: pl.DataFrame | None) -> dict[str, list[str]]:
    """Per candidate with a finding of `PASS_OVER` over its limit (its rows leak the real sample, or
    read as garbled text), the names of those findings; computed from the row signals alone, so
    that the ranking can keep these candidates out of its best set."""
    if row_scores is None or row_scores.height == 0:
        return {}
    shares = row_shares(row_scores)
    kinds = [name for name in PASS_OVER if name in shares.columns]
    return {row["dataset_id"]: names for row in shares.iter_rows(named=True)
            if (names := [n for n in kinds if (row[n] or 0) > LIMITS[n]])}


def demoted(passed: dict[str, list[str]]) -> set[str]:
    """The candidates of `passed` (candidate -> findings, as `passed_over` returns) with a finding of
    `DEMOTED`: they rank after every other candidate in the lead ranking."""
    return {dataset_id for dataset_id, names in passed.items() if any(n in DEMOTED for n in names)}


def add_findings(rankings: pl.DataFrame, row_scores: pl.DataFrame | None,
                 identical: dict[str, str] | None = None) -> pl.DataFrame:
    """`rankings` with the findings of each candidate joined onto every one of its rows
    (FINDING_COLUMNS; any earlier findings columns are replaced)."""
    base = rankings.drop([c for c in FINDING_COLUMNS if c in rankings.columns])
    if base.height == 0:
        return base
    return base.join(findings(base, row_scores, identical), on="dataset_id", how="left")


def with_findings(rankings: pl.DataFrame, row_scores: pl.DataFrame | None) -> pl.DataFrame:
    """The rankings as they are when they hold findings, else with findings computed now
    (a run written before findings existed)."""
    if all(c in rankings.columns for c in FINDING_COLUMNS):
        return rankings
    return add_findings(rankings, row_scores)


def per_candidate(rankings: pl.DataFrame) -> pl.DataFrame:
    """One row per candidate of the findings columns that `rankings` holds (those absent are null)."""
    present = [c for c in FINDING_COLUMNS if c in rankings.columns]
    table = rankings.select("dataset_id", *present).unique("dataset_id", keep="first").sort("dataset_id")
    return table.with_columns(pl.lit(None, FINDING_SCHEMA.get(c, pl.List(pl.Utf8))).alias(c)
                              for c in FINDING_COLUMNS if c not in present)


SHARE_NAMES = {"duplicate_share": "near-duplicate rows", "real_copy_share": "rows copying U_r",
               "eval_copy_share": "rows copying the evaluation set",
               "synthetic_share": f"rows that look synthetic (p_synthetic > {SYNTHETIC_P:g})",
               "short_share": f"rows under {SHORT_CHARS} characters",
               "garbled_share": "garbled rows"}


def percent(share: float) -> str:
    """A share as a percentage, with a decimal below 1% (so 0.4% does not read as 0%)."""
    return f"{share:.1%}" if 0 < share < 0.01 else f"{share:.0%}"


def over_limit(row: dict) -> list[str]:
    """The findings of one candidate (a row of `per_candidate`) over their limit, worst first: by
    how many times its limit each share is (a limit of 0 first), then by name."""
    flags = [f for f in row.get("flags") or [] if f in LIMITS and row.get(f) is not None]
    return sorted(flags, key=lambda f: (-row[f] / LIMITS[f] if LIMITS[f] > 0 else -float("inf"), f))


# A share -> the finding column that says what its rows showed (read beside the share, never flagged).
SHARE_DETAILS = {"garbled_share": "garbled_as"}


def share_detail(row: dict, name: str) -> str | None:
    """What the rows behind one share of a candidate (a row of `per_candidate`) showed, from its
    `SHARE_DETAILS` column ("cut mid-sentence 50%, shuffled 12%"); None where the share has none."""
    return row.get(SHARE_DETAILS[name]) if name in SHARE_DETAILS else None


def share_text(row: dict, name: str) -> str:
    """One finding of a candidate (a row of `per_candidate`) in words: its share and name, and what
    the rows showed where the share says (`share_detail`: "62% garbled rows (cut mid-sentence 50%,
    shuffled 12%)")."""
    said = f"{percent(row[name])} {SHARE_NAMES.get(name, name)}" if row.get(name) is not None else SHARE_NAMES.get(
        name, name)
    detail = share_detail(row, name)
    return f"{said} ({detail})" if detail else said


def finding_parts(row: dict) -> list[str]:
    """The readable parts of one candidate's flagged findings (a row of `per_candidate`): each
    finding over its limit, worst first, with the limit it crossed."""
    return [f"{share_text(row, name)} (limit {percent(LIMITS[name])})" for name in over_limit(row)]


def flagged_lines(rankings: pl.DataFrame, most: int | None = None) -> list[str]:
    """One line per flagged candidate, in the order of the lead ranking (the ensemble's when
    there is one): `flagged: <id>: <finding>; <finding>; ...`, only the findings over their limit,
    worst first. `most`: at most this many candidates, then one line saying how many more the
    report lists (a terminal must keep the verdict in view)."""
    table = per_candidate(rankings)
    lead = "ensemble" if "ensemble" in rankings.get_column("proxy").to_list() else None
    if lead is None and rankings.height:
        lead = sorted(rankings.get_column("proxy").unique().to_list())[0]
    order = rankings.filter(pl.col("proxy") == lead).select("dataset_id", "rank")
    table = table.join(order, on="dataset_id", how="left").sort(["rank", "dataset_id"], nulls_last=True)
    lines = [f"flagged: {row['dataset_id']}: " + "; ".join(parts)
             for row in table.iter_rows(named=True) if (parts := finding_parts(row))]
    if most is not None and len(lines) > most:
        lines = [*lines[:most], f"flagged: +{len(lines) - most} more in the report"]
    return lines
