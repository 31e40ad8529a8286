"""The answer in words: the verdict that opens the terminal summary and the report
(docs/statistics.md, "Findings and the verdict"), and the ranking table the terminal prints
under it. Every view orders by one ranking, `lead_proxy`, so that all name the same leader.

The verdict says which candidate to train on and how sure the engine is, and never
claims more than the best set supports: when several candidates cannot be told apart
it names them all, and it says which one merely ranked first among them; a candidate
passed over (it leaks the real sample, or its rows read as garbled text) is never named.
Pure: no Ray, no files.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import polars as pl

from synque_ray.findings import LEAKS, LIMITS, PASS_OVER_WHY, SCREENS, passed_over_by_flags, percent, share_text
from synque_ray.reduce import lead_proxy


def level_text(level: float) -> str:
    """`level` as a percentage, as precise as it was given: 0.9 -> "90%", 0.975 -> "97.5%"."""
    return f"{level * 100:.6g}%"


def ranking_table_text(rankings: pl.DataFrame, level: float = 0.9, passed_over: Collection[str] = ()) -> str:
    """A wide, human-readable view: one row per candidate, one rank column per proxy, and the
    `level` interval of the lead ranking (`lead_proxy`); `*` marks its best set, and a note the
    candidates `passed_over` (they keep their rank; the verdict says why)."""
    order = lead_proxy(rankings)
    wide = rankings.pivot(on="proxy", index="dataset_id", values="rank")
    lead = rankings.filter(pl.col("proxy") == order).select(
        "dataset_id", pl.format("{}-{}", "rank_low", "rank_high").alias("interval"), "tied_with_best")
    proxies = [c for c in wide.columns if c not in ("dataset_id", "ensemble")] + (
        ["ensemble"] if "ensemble" in wide.columns else [])
    wide = wide.join(lead, on="dataset_id", how="left").sort(order, nulls_last=True)
    width = max(10, *(len(x) for x in wide["dataset_id"]))
    lines = [f"rank by proxy (1 = best; interval: {level_text(level)} range of {order}'s rank; "
             f"* in {order}'s {level_text(level)} best set, cannot be told from the best)",
             f"{'dataset_id':<{width}}  " + "  ".join(f"{p:>8}" for p in proxies) + f"  {'interval':>9}"]
    for row in wide.iter_rows(named=True):
        cells = "  ".join(f"{'-' if row[p] is None else row[p]:>8}" for p in proxies)
        mark = "*" if row["tied_with_best"] else " "
        note = "  passed over (the verdict says why)" if row["dataset_id"] in passed_over else ""
        lines.append(f"{row['dataset_id']:<{width}}  {cells}  {row['interval'] or '-':>8}{mark}{note}")
    return "\n".join(lines)


def _names(ids: list[str], most: int = 8) -> str:
    return ", ".join(ids) if len(ids) <= most else ", ".join(ids[:most]) + f" and {len(ids) - most} more"


def _first_under(rankings: pl.DataFrame, dataset_id: str) -> str:
    """'rank 1 under k of n proxies' for `dataset_id` (the proxies of the ensemble: not the screens)."""
    proxies = rankings.filter(~pl.col("proxy").is_in(["ensemble", *SCREENS]))
    n = proxies.get_column("proxy").n_unique()
    k = proxies.filter((pl.col("dataset_id") == dataset_id) & (pl.col("rank") == 1)).height
    return f"rank 1 under {k} of {n} {'proxy' if n == 1 else 'proxies'}"


def _behind(after: dict, first: dict, lead: str) -> str:
    """How far `after` stands behind `first` on the lead ranking: in mean ranks for the
    ensemble (its score_mean is the negated mean rank), else in the proxy's score."""
    if lead == "ensemble":
        return (f"mean rank {-after['score_mean']:.2f}, {first['score_mean'] - after['score_mean']:.2f} behind "
                f"{first['dataset_id']}'s {-first['score_mean']:.2f}")
    return (f"{lead} score {after['score_mean']:.4g}, {first['score_mean'] - after['score_mean']:.3g} below "
            f"{first['dataset_id']}'s {first['score_mean']:.4g}")


def _chance(row: dict, alone: bool) -> str:
    """The share of draws in which `row` ranked first, and, beside a best set of several, why
    that share can be high while the set still holds others."""
    p = row.get("p_best")
    if p is None:
        return ""
    if alone:
        return f"; first in {p:.0%} of draws"
    return (f"; first in {p:.0%} of resampled draws, a share of single comparisons, while the best set "
            "allows for every comparison at once and for a spread estimated from few seeds")


def _passed_over_line(row: dict, names: list[str]) -> str:
    found = "; ".join(f"{share_text(row, n)}, over the {percent(LIMITS[n])} limit" if row.get(n) is not None
                      else share_text(row, n) for n in names)
    why = "; ".join(dict.fromkeys(PASS_OVER_WHY[n] for n in names if n in PASS_OVER_WHY))
    return f"passed over: {row['dataset_id']} (rank {row['rank']}): {found}; {why}"


def _passed_over_words(passed: list[list[str]]) -> tuple[str, str]:
    """What the candidates passed over (each given by its findings) have in common: (what every one
    of them does, the others' qualifier), in words that name the leak when all of them leak."""
    if all(set(names) <= set(LEAKS) for names in passed):
        return "copies the real sample", "that do not copy the real sample"
    return "is passed over", "not passed over"


@dataclass(frozen=True)
class Choice:
    """What the verdict picks from a ranking table, before it is put in words.

    lead: the ranking it reads (`lead_proxy`). best: the rows of the lead ranking named on
    `train on:` (its best set, without the candidates passed over), best first; empty only when
    nothing can be named. after: the best row outside them (`next:`), None when there is none.
    passed: per candidate passed over, the findings that pass it over (`findings.PASS_OVER`).
    rows: the lead ranking's rows that may be named; every: all of them."""

    lead: str
    best: list[dict]
    after: dict | None
    passed: dict[str, list[str]]
    rows: list[dict]
    every: list[dict]

    @property
    def train_on(self) -> list[str]:
        return [r["dataset_id"] for r in self.best]


def choose(rankings: pl.DataFrame) -> Choice:
    """The candidates to train on and the runner-up, from the ranking table (dataset_id, proxy,
    rank, tied_with_best; findings `flags` where present): the lead ranking's best set without
    the candidates passed over; where a table from before passed-over candidates existed leaves
    no member, the best-ranked of the others."""
    lead = lead_proxy(rankings) if rankings.height else "ensemble"
    every = rankings.filter(pl.col("proxy") == lead).sort(["rank", "dataset_id"]).to_dicts() if rankings.height else []
    passed = passed_over_by_flags(rankings)
    rows = [r for r in every if r["dataset_id"] not in passed]
    tied = [r for r in rows if r["tied_with_best"]]
    best = tied if tied or not rows else [r for r in rows if r["rank"] == rows[0]["rank"]]
    outside = [r for r in rows if r not in best]
    return Choice(lead, best, outside[0] if outside else None, passed, rows, every)


def verdict(rankings: pl.DataFrame, level: float = 0.9) -> list[str]:
    """The verdict, first line `train on: ...`, then how far behind the next candidate is.

    rankings: the ranking table (dataset_id, proxy, score_mean, rank, tied_with_best;
    p_best and findings `flags` where present). level: ranking.level, the confidence the
    best set is stated at. One candidate in the best set: it is named with how many proxies
    rank it first. Several: all are named as not told apart, and the order among them is
    given as no more than that. The next line names the best candidate outside the best
    set and its gap on the lead ranking (the ensemble's mean rank, else the proxy's score).
    A candidate passed over (a finding of `PASS_OVER` over its limit: it leaks the real sample, or
    its rows read as garbled text) is never named: one `passed over:` line says why, for each such
    candidate ranked at or above the last one named (a garbled one ranks after them all).
    """
    if rankings.height == 0:
        return ["train on: nothing yet (no candidate was ranked)"]
    choice = choose(rankings)
    lead, best, passed, every = choice.lead, choice.best, choice.passed, choice.every
    if not best:
        return [f"train on: nothing: every ranked candidate {_passed_over_words(list(passed.values()))[0]}",
                *(_passed_over_line(r, passed[r["dataset_id"]]) for r in every)]
    best_ids = choice.train_on
    first = best[0]  # the best set's highest-ranked member
    if first["rank"] != 1:
        above = [passed[r["dataset_id"]] for r in every if r["dataset_id"] in passed and r["rank"] < first["rank"]]
        under = f"rank {first['rank']}, the best of the candidates {_passed_over_words(above)[1]}"
    else:
        under = _first_under(rankings, first["dataset_id"]) if lead == "ensemble" else f"rank 1 under {lead}"
    if len(best) == 1:
        lines = [f"train on: {first['dataset_id']} ({under}{_chance(first, True)}; best set at {level_text(level)}: "
                 f"{first['dataset_id']})"]
    elif len(best) == len(choice.rows):
        lines = [f"train on: any of the {len(best)} candidates: they cannot be told apart at {level_text(level)} "
                 f"({_names(best_ids)}); more U_r rows or seeds would be needed to separate them"]
    else:
        lines = [f"train on: one of {_names(best_ids)}: these {len(best)} cannot be told apart at {level_text(level)} "
                 f"(best set); {first['dataset_id']} ranks first among them ({under}{_chance(first, False)}), "
                 "which alone does not make it better"]
    last_named = max(r["rank"] for r in best)
    lines.extend(_passed_over_line(r, passed[r["dataset_id"]]) for r in every
                 if r["dataset_id"] in passed and r["rank"] <= last_named)
    if choice.after is not None:
        after = choice.after
        lines.append(f"next: {after['dataset_id']} (rank {after['rank']}, {_behind(after, first, lead)})")
    flagged = [r["dataset_id"] for r in best if r.get("flags")]
    if flagged:
        one = len(flagged) == 1
        lines.append(f"caution: {_names(flagged)} in the best set {'is' if one else 'are'} flagged: read "
                     f"{'its' if one else 'their'} findings before training on {'it' if one else 'them'}")
    return lines
