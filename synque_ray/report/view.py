"""The report's view model: pure functions from a run's tables to what the page shows.

Nothing here reads files or draws: the tests check these numbers directly, and the
renderer and the plots only lay them out.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from synque_ray.findings import per_candidate
from synque_ray.legend import PROXY_TITLES
from synque_ray.ranks import spearman
from synque_ray.reading import row_hashes
from synque_ray.rowschema import SHOWN_SIGNALS
from synque_ray.reduce import lead_proxy

EXAMPLE_ROWS = 5  # most synthetic- and most real-looking rows shown per candidate
PROJECTION_POINTS = 400  # rows per side drawn in a projection (a seeded sample beyond that)
PERMUTATIONS = [  # (column, question asked, differences shown): LENS's four judgements
    ("g_real_csr", "from the real data?", "C_{s,r}"), ("g_synth_csr", "from the synthetic data?", "C_{s,r}"),
    ("g_real_crs", "from the real data?", "C_{r,s}"), ("g_synth_crs", "from the synthetic data?", "C_{r,s}"),
]


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def proxy_order(rankings: pl.DataFrame) -> list[str]:
    """Proxies alphabetically, the ensemble last."""
    proxies = sorted(set(rankings.get_column("proxy").to_list()) - {"ensemble"})
    return proxies + (["ensemble"] if "ensemble" in rankings.get_column("proxy").to_list() else [])


@dataclass
class RankingView:
    """One row per candidate (in the lead proxy's order, unranked last), a cell per proxy."""

    proxies: list[str]
    lead: str
    rows: list[dict]  # {"dataset_id", "anchor", "cells": {proxy: cell dict or None}, "findings": dict or None}


def ranking_view(rankings: pl.DataFrame, candidates: list[str]) -> RankingView:
    lead = lead_proxy(rankings)
    cells: dict[str, dict] = {}
    for row in rankings.iter_rows(named=True):
        cell = {"rank": row["rank"], "low": row["rank_low"], "high": row["rank_high"],
                "tied": bool(row["tied_with_best"]), "mean": _number(row["score_mean"]),
                "std": _number(row["score_std"])}
        cells.setdefault(row["dataset_id"], {})[row["proxy"]] = cell
    ids = sorted(set(candidates) | set(cells))
    lead_rank = {i: (cells.get(i, {}).get(lead) or {}).get("rank") for i in ids}
    ids.sort(key=lambda i: (lead_rank[i] is None, lead_rank[i] or 0, i))
    proxies = proxy_order(rankings)
    found = {r["dataset_id"]: r for r in per_candidate(rankings).iter_rows(named=True)}
    rows = [{"dataset_id": i, "anchor": anchor(i), "cells": {p: cells.get(i, {}).get(p) for p in proxies},
             "findings": found.get(i)} for i in ids]
    return RankingView(proxies, lead, rows)


def anchor(dataset_id: str) -> str:
    """An HTML id for a candidate's section: safe characters only, unique per candidate."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in dataset_id)
    return f"c-{safe}-{row_hashes([dataset_id])[0][:6]}"




def orientations(scores: pl.DataFrame) -> dict[str, float]:
    """Per proxy, +1 when a higher raw value is better and -1 when a lower one is, read from
    the data (`score` = orientation × `raw`), so that every proxy, the ensemble included
    (raw = mean rank, score = −mean rank), is drawn in its own units without a second table."""
    signs = (scores.filter((pl.col("raw") != 0) & pl.col("raw").is_finite() & pl.col("score").is_finite())
             .group_by("proxy").agg((pl.col("raw").sign() * pl.col("score").sign()).mean().alias("sign")))
    return {proxy: (-1.0 if sign < 0 else 1.0) for proxy, sign in signs.iter_rows()}


def axis_label(proxy: str, orientation: float) -> str:
    """What a value axis says: the metric and which way is better, e.g. 'MMD² (lower is better)'."""
    return f"{PROXY_TITLES.get(proxy, proxy)} ({'lower' if orientation < 0 else 'higher'} is better)"


def score_spread(scores: pl.DataFrame, rankings: pl.DataFrame, order: list[str] | None = None) -> dict[str, dict]:
    """Per proxy (the lead proxy first), every candidate in ONE order (`order`, by default the lead
    proxy's ranking) with its raw per-seed values and their mean and std over seeds (None and []
    where the proxy did not rank it). Raw values, so that the axis reads in the metric's own units
    and the ensemble as a mean rank; `label` names the metric and its direction."""
    lead = lead_proxy(rankings)
    if order is None:
        order = rankings.filter(pl.col("proxy") == lead).sort(["rank", "dataset_id"])["dataset_id"].to_list()
        order += sorted(set(rankings["dataset_id"].to_list()) - set(order))
    signs = orientations(scores)
    out = {}
    for proxy in [lead, *[p for p in proxy_order(rankings) if p != lead]]:
        sign = signs.get(proxy, 1.0)
        ranked = {row["dataset_id"]: row for row in rankings.filter(pl.col("proxy") == proxy).iter_rows(named=True)}
        per_seed = scores.filter(pl.col("proxy") == proxy).group_by("dataset_id").agg(pl.col("raw"))
        values = dict(zip(per_seed["dataset_id"], per_seed["raw"].to_list(), strict=True))
        mean = [None if i not in ranked else sign * ranked[i]["score_mean"] for i in order]
        out[proxy] = {
            "ids": list(order), "mean": mean, "label": axis_label(proxy, sign), "orientation": sign,
            "std": [None if i not in ranked else ranked[i]["score_std"] or 0.0 for i in order],
            "seeds": [values.get(i, []) if i in ranked else [] for i in order],
        }
    return out


def agreement(rankings: pl.DataFrame) -> dict:
    """Spearman correlation of mean scores between every two proxies, over the candidates both
    rank (None with fewer than three, or a constant side); with how many candidates each used."""
    proxies = proxy_order(rankings)
    wide = rankings.pivot(on="proxy", index="dataset_id", values="score_mean")
    matrix: list[list[float | None]] = [[None] * len(proxies) for _ in proxies]
    counts = [[0] * len(proxies) for _ in proxies]
    for i, a in enumerate(proxies):
        for j, b in enumerate(proxies):
            both = wide.select(pl.col(a).alias("x"), pl.col(b).alias("y")).drop_nulls()
            counts[i][j] = both.height
            x, y = both["x"].to_numpy(), both["y"].to_numpy()
            if both.height >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
                matrix[i][j] = spearman(x, y)
    return {"proxies": proxies, "spearman": matrix, "counts": counts}


def evaluation_view(evaluation: dict | None, spread: dict[str, dict], run_stamp: str | None = None) -> dict | None:
    """The top-k table of evaluation.json, and per proxy (raw mean score, measured performance,
    id) for every candidate the file gives a performance for; `metric` names the performance
    (as `synque evaluate --metric` recorded it); `stale` when it evaluated another run."""
    if not evaluation:
        return None
    performance = evaluation.get("performance") or {}
    points = {}
    for proxy, data in spread.items():
        pairs = [(m, performance[i], i) for i, m in zip(data["ids"], data["mean"], strict=True)
                 if i in performance and m is not None]
        if pairs:
            points[proxy] = pairs
    return {"n": evaluation.get("n_datasets"), "mean_performance": evaluation.get("mean_performance"),
            "top_k": evaluation.get("top_k"), "proxies": evaluation.get("proxies", {}), "points": points,
            "metric": evaluation.get("metric") or "measured performance",
            "labels": {proxy: data["label"] for proxy, data in spread.items()},
            "stale": evaluation.get("run") not in (None, run_stamp), "run": evaluation.get("run")}


def readable_stamp(stamp: str) -> str:
    """A run folder's name as a person reads it: '20261201T103111429178Z' → '2026-12-01 10:31:11 UTC';
    a name of another shape is returned as it is."""
    try:
        when = datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ")
    except ValueError:
        return stamp
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def shared_moves(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Each candidate ranked in both runs: how many places it rose (negative: fell) among the
    candidates BOTH runs ranked, so that a newcomer entering above (or one leaving) moves nobody.
    A place is 1 + the number of shared candidates ranked strictly better (ties share a place)."""
    shared = set(before) & set(after)

    def places(ranks: dict[str, int]) -> dict[str, int]:
        values = sorted(ranks[i] for i in shared)
        return {i: 1 + bisect_left(values, ranks[i]) for i in shared}

    old, new = places(before), places(after)
    return {i: old[i] - new[i] for i in shared}


def history_view(history: list[tuple[str, pl.DataFrame]], lead: str) -> dict | None:
    """Each candidate's rank under `lead` in each run (oldest first) and its move since the
    previous run that ranked it (positive = rose), counted among the candidates both runs
    ranked; None with fewer than two runs."""
    if len(history) < 2:
        return None
    stamps = [stamp for stamp, _ in history]
    ranks: dict[str, list] = {}
    for k, (_, table) in enumerate(history):
        for row in table.filter(pl.col("proxy") == lead).iter_rows(named=True):
            ranks.setdefault(row["dataset_id"], [None] * len(history))[k] = row["rank"]
    latest = {i: series[-1] for i, series in ranks.items() if series[-1] is not None}
    rows: list[dict[str, Any]] = []
    for dataset_id, series in ranks.items():
        earlier = [k for k, r in enumerate(series[:-1]) if r is not None]
        move = None
        if series[-1] is not None and earlier:
            before = {i: s[earlier[-1]] for i, s in ranks.items() if s[earlier[-1]] is not None}
            move = shared_moves(before, latest)[dataset_id]
        rows.append({"dataset_id": dataset_id, "ranks": series, "move": move,
                     "new": not earlier and series[-1] is not None})
    rows.sort(key=lambda r: (r["ranks"][-1] is None, r["ranks"][-1] or 0, r["dataset_id"]))
    return {"lead": lead, "stamps": stamps, "dates": [readable_stamp(s) for s in stamps], "rows": rows}


def pca_2d(candidate: np.ndarray, real: np.ndarray, limit: int = PROJECTION_POINTS, seed: int = 0,
           blas_threads: int | None = 1) -> tuple[np.ndarray, np.ndarray, float]:
    """Both sets projected on the first two principal components of their union (at most
    `limit` seeded rows of each: (≤limit, 2) and (≤limit, 2)), and the share of variance those
    components explain. The eigendecomposition runs on `blas_threads` BLAS threads (None: the library's
    default): for a matrix this small, threads only thrash on a busy machine (BENCHMARKS.md,
    "The report's SVDs")."""
    rng = np.random.default_rng(seed)

    def cut(points: np.ndarray) -> np.ndarray:
        return points if len(points) <= limit else points[np.sort(rng.choice(len(points), limit, replace=False))]

    a, b = cut(candidate.astype(np.float64)), cut(real.astype(np.float64))
    union = np.vstack([a, b])
    union -= union.mean(axis=0)
    # The top two eigenpairs of the smaller of X'X (d×d) and XX' (n×n) give the projections
    # exactly: X v = u √λ. Twice as fast as a full SVD of X, and only two components are drawn.
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        if union.shape[1] <= union.shape[0]:
            values, vectors = np.linalg.eigh(union.T @ union)
            projected = union @ vectors[:, [-1, -2]]
        else:
            values, vectors = np.linalg.eigh(union @ union.T)
            projected = vectors[:, [-1, -2]] * np.sqrt(np.clip(values[[-1, -2]], 0, None))
    values = np.clip(values, 0, None)
    explained = float(values[-2:].sum() / max(values.sum(), 1e-12))
    return projected[:len(a)], projected[len(a):], explained


@dataclass
class CandidateView:
    dataset_id: str
    anchor: str
    cell: dict | None  # its lead-proxy ranking cell
    rows: int | None = None
    duplicate_share: float | None = None  # the findings' share (synque_ray.findings), as in the table
    synthetic_looking: list[dict] = field(default_factory=list)
    real_looking: list[dict] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)  # row-signal columns shown
    projection: tuple | None = None  # (candidate xy, real xy, explained share)
    rubric: dict | None = None
    rubric_seed: int | None = None
    judgements: list[dict] | None = None
    notes: list[str] = field(default_factory=list)


def row_signals(rows: pl.DataFrame) -> list[str]:
    """The declared signals shown in the example rows that this run has (LENS's p̂ only where LENS ran)."""
    return [c for c in SHOWN_SIGNALS if c in rows.columns and rows[c].drop_nulls().len() > 0]


def example_rows(rows: pl.DataFrame, texts: list[str] | None, n: int = EXAMPLE_ROWS) -> tuple[list, list, list]:
    """(signals, most synthetic-looking, most real-looking): rows by PAD's out-of-fold
    p_synthetic averaged over seeds. A row's text is shown only while its hash still matches."""
    signals = row_signals(rows)
    if "p_synthetic" not in signals:
        return signals, [], []
    per_row = rows.group_by("row_index").agg(pl.col("text_hash").first(), *[pl.col(s).mean() for s in signals],
                                             (pl.col("duplicate_group").first() >= 0).alias("duplicate"))
    per_row = per_row.filter(pl.col("p_synthetic").is_not_null())
    hashes = row_hashes(texts) if texts is not None else []

    def shown(frame: pl.DataFrame) -> list[dict]:
        out = []
        for row in frame.iter_rows(named=True):
            i = row["row_index"]
            same = texts is not None and i < len(texts) and hashes[i] == row["text_hash"]
            out.append({**row, "text": texts[i] if texts is not None and same else None})
        return out

    synthetic = per_row.sort(["p_synthetic", "row_index"], descending=[True, False]).head(n)
    real = per_row.sort(["p_synthetic", "row_index"]).head(n)
    return signals, shown(synthetic), shown(real)


def rows_scored(rows: pl.DataFrame) -> int:
    """How many distinct rows of the candidate have row scores (any seed)."""
    return rows.get_column("row_index").n_unique()


def judgement_means(judgements: pl.DataFrame, dataset_id: str) -> list[dict] | None:
    """Mean 0–4 judgement under each of the four permutations, over the candidate's rows and
    over U_r's rows (the baseline LENS divides by), all seeds together."""
    mine = judgements.filter(pl.col("dataset_id") == dataset_id)
    if mine.height == 0:
        return None
    out = []
    for column, question, differences in PERMUTATIONS:
        means = {role: _number(mine.filter(pl.col("role") == role)[column].fill_nan(None).mean())
                 for role in ("synthetic", "real")}
        out.append({"column": column, "question": question, "differences": differences, **means})
    return out
