"""The report's view model: pure functions from a run's tables to what the page shows.

Nothing here reads files or draws: the tests check these numbers directly, and the
renderer and the plots only lay them out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy.stats import spearmanr
from threadpoolctl import threadpool_limits

from synque_ray.findings import per_candidate
from synque_ray.reading import row_hashes

EXAMPLE_ROWS = 5  # most synthetic- and most real-looking rows shown per candidate
PROJECTION_POINTS = 400  # rows per side drawn in a projection (a seeded sample beyond that)
PERMUTATIONS = [  # (column, question asked, differences shown): SPEC §8's four judgements
    ("g_real_csr", "from the real data?", "C_{s,r}"), ("g_synth_csr", "from the synthetic data?", "C_{s,r}"),
    ("g_real_crs", "from the real data?", "C_{r,s}"), ("g_synth_crs", "from the synthetic data?", "C_{r,s}"),
]


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def lead_proxy(rankings: pl.DataFrame) -> str:
    """The ranking the page is ordered by: the ensemble when there is one."""
    proxies = rankings.get_column("proxy").unique().to_list()
    return "ensemble" if "ensemble" in proxies else sorted(proxies)[0]


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
    found = {r["dataset_id"]: r for r in per_candidate(rankings).iter_rows(named=True)}  # SPEC §6 findings
    rows = [{"dataset_id": i, "anchor": anchor(i), "cells": {p: cells.get(i, {}).get(p) for p in proxies},
             "findings": found.get(i)} for i in ids]
    return RankingView(proxies, lead, rows)


def anchor(dataset_id: str) -> str:
    """An HTML id for a candidate's section: safe characters only, unique per candidate."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in dataset_id)
    return f"c-{safe}-{row_hashes([dataset_id])[0][:6]}"


def score_spread(scores: pl.DataFrame, rankings: pl.DataFrame) -> dict[str, dict]:
    """Per proxy, candidates in rank order with their per-seed scores, mean and std over seeds."""
    out = {}
    for proxy in proxy_order(rankings):
        ranked = rankings.filter(pl.col("proxy") == proxy).sort(["rank", "dataset_id"])
        per_seed = scores.filter(pl.col("proxy") == proxy).group_by("dataset_id").agg(pl.col("score"))
        values = dict(zip(per_seed["dataset_id"], per_seed["score"].to_list(), strict=True))
        out[proxy] = {
            "ids": ranked["dataset_id"].to_list(), "rank": ranked["rank"].to_list(),
            "mean": ranked["score_mean"].to_list(), "std": ranked["score_std"].fill_null(0.0).to_list(),
            "seeds": [values.get(i, []) for i in ranked["dataset_id"]],
        }
    return out


def agreement(rankings: pl.DataFrame) -> dict:
    """Spearman correlation of mean scores between every two proxies, over the candidates both
    rank (None with fewer than three, or a constant side); with how many candidates each used."""
    proxies = proxy_order(rankings)
    wide = rankings.pivot(on="proxy", index="dataset_id", values="score_mean")
    matrix = [[None] * len(proxies) for _ in proxies]
    counts = [[0] * len(proxies) for _ in proxies]
    for i, a in enumerate(proxies):
        for j, b in enumerate(proxies):
            both = wide.select(pl.col(a).alias("x"), pl.col(b).alias("y")).drop_nulls()
            counts[i][j] = both.height
            x, y = both["x"].to_numpy(), both["y"].to_numpy()
            if both.height >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
                matrix[i][j] = float(spearmanr(x, y).statistic)
    return {"proxies": proxies, "spearman": matrix, "counts": counts}


def evaluation_view(evaluation: dict | None, spread: dict[str, dict], run_stamp: str | None = None) -> dict | None:
    """The top-k table of evaluation.json, and per proxy (score, measured performance) pairs
    when the file lists each candidate's performance; `stale` when it evaluated another run."""
    if not evaluation:
        return None
    performance = evaluation.get("performance") or {}
    points = {}
    for proxy, data in spread.items():
        pairs = [(m, performance[i], i) for i, m in zip(data["ids"], data["mean"], strict=True) if i in performance]
        if pairs:
            points[proxy] = pairs
    return {"n": evaluation.get("n_datasets"), "mean_performance": evaluation.get("mean_performance"),
            "top_k": evaluation.get("top_k"), "proxies": evaluation.get("proxies", {}), "points": points,
            "stale": evaluation.get("run") not in (None, run_stamp), "run": evaluation.get("run")}


def history_view(history: list[tuple[str, pl.DataFrame]], lead: str) -> dict | None:
    """Each candidate's rank under `lead` in each run (oldest first) and its move since the
    previous run that ranked it (positive = rose); None with fewer than two runs."""
    if len(history) < 2:
        return None
    stamps = [stamp for stamp, _ in history]
    ranks: dict[str, list] = {}
    for k, (_, table) in enumerate(history):
        for row in table.filter(pl.col("proxy") == lead).iter_rows(named=True):
            ranks.setdefault(row["dataset_id"], [None] * len(history))[k] = row["rank"]
    rows = []
    for dataset_id, series in ranks.items():
        seen = [r for r in series if r is not None]
        move = seen[-2] - series[-1] if series[-1] is not None and len(seen) >= 2 else None
        rows.append({"dataset_id": dataset_id, "ranks": series, "move": move, "new": len(seen) == 1 and
                     series[-1] is not None})
    rows.sort(key=lambda r: (r["ranks"][-1] is None, r["ranks"][-1] or 0, r["dataset_id"]))
    return {"lead": lead, "stamps": stamps, "rows": rows}


def pca_2d(candidate: np.ndarray, real: np.ndarray, limit: int = PROJECTION_POINTS, seed: int = 0,
           blas_threads: int | None = 1) -> tuple[np.ndarray, np.ndarray, float]:
    """Both sets projected on the first two principal components of their union (at most
    `limit` seeded rows of each: (≤limit, 2) and (≤limit, 2)), and the share of variance those
    components explain. The SVD runs on `blas_threads` BLAS threads (None: the library's
    default): for a matrix this small, threads only thrash on a busy machine (BENCHMARKS.md,
    "The report's SVDs")."""
    rng = np.random.default_rng(seed)

    def cut(points: np.ndarray) -> np.ndarray:
        return points if len(points) <= limit else points[np.sort(rng.choice(len(points), limit, replace=False))]

    a, b = cut(candidate.astype(np.float64)), cut(real.astype(np.float64))
    union = np.vstack([a, b])
    centre = union.mean(axis=0)
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        _, singular, vt = np.linalg.svd(union - centre, full_matrices=False)
    explained = float((singular[:2] ** 2).sum() / max((singular ** 2).sum(), 1e-12))
    return (a - centre) @ vt[:2].T, (b - centre) @ vt[:2].T, explained


@dataclass
class CandidateView:
    dataset_id: str
    anchor: str
    cell: dict | None  # its lead-proxy ranking cell
    rows: int | None = None
    duplicate_share: float | None = None
    synthetic_looking: list[dict] = field(default_factory=list)
    real_looking: list[dict] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)  # row-signal columns shown
    projection: tuple | None = None  # (candidate xy, real xy, explained share)
    rubric: dict | None = None
    rubric_seed: int | None = None
    judgements: list[dict] | None = None
    notes: list[str] = field(default_factory=list)


def row_signals(rows: pl.DataFrame) -> list[str]:
    """The per-row numeric signals present (LENS's p̂ only where LENS ran)."""
    wanted = ["p_synthetic", "nearest_real_distance", "lens_p_real"]
    return [c for c in wanted if c in rows.columns and rows[c].drop_nulls().len() > 0]


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
            out.append({**row, "text": texts[i] if same else None})
        return out

    synthetic = per_row.sort(["p_synthetic", "row_index"], descending=[True, False]).head(n)
    real = per_row.sort(["p_synthetic", "row_index"]).head(n)
    return signals, shown(synthetic), shown(real)


def duplicate_share(rows: pl.DataFrame) -> tuple[int, float | None]:
    """(rows scored, share of them that have a near-duplicate in the candidate)."""
    per_row = rows.group_by("row_index").agg(pl.col("duplicate_group").first())
    known = per_row.filter(pl.col("duplicate_group").is_not_null())
    share = float((known["duplicate_group"] >= 0).mean()) if known.height else None
    return per_row.height, share


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
