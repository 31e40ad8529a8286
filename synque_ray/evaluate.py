"""How well each proxy's ranking agrees with measured downstream performance (docs/statistics.md, evaluation).

Correlations are computed per seed across candidates and then averaged over seeds,
the paper's protocol; top-k and decision accuracy use the mean score over seeds.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import polars as pl

from synque_ray.ranks import spearman as rank_correlation
from synque_ray.errors import UserError
from synque_ray.runfiles import copy_if_latest, published
from synque_ray.storage import Store
from synque_ray.vocabulary import EVALUATION_FILE, RUN_FILE


def read_performance(csv_path: str, id_column: str, metric: str) -> dict[str, float]:
    """{dataset id: measured performance} from a CSV; an unreadable file, a missing column, an empty
    or repeated id, or a value that is not a finite number is a UserError naming the row."""
    path = Path(csv_path)
    if not path.is_file():
        raise UserError(f"{csv_path}: file not found")
    try:
        frame = pl.read_csv(path)
    except Exception as err:  # noqa: BLE001 - polars raises several types for a malformed CSV
        raise UserError(f"{csv_path}: cannot be read as CSV ({str(err).splitlines()[0]})") from None
    for column in (id_column, metric):
        if column not in frame.columns:
            raise UserError(f"{csv_path}: no column '{column}' (columns: {', '.join(frame.columns)})")
    ids = frame.get_column(id_column).cast(pl.Utf8).to_list()
    first: dict[str, int] = {}
    for row, dataset_id in enumerate(ids, start=2):  # row 1 is the header
        if dataset_id is None or not dataset_id.strip():
            raise UserError(f"{csv_path}: row {row} column '{id_column}' is empty")
        if dataset_id in first:
            raise UserError(f"{csv_path}: row {row} repeats {id_column} '{dataset_id}' (first on row "
                            f"{first[dataset_id]})")
        first[dataset_id] = row
    values = frame.get_column(metric).cast(pl.Float64, strict=False)
    for row, value in enumerate(values.to_list(), start=2):
        if value is None:
            raise UserError(f"{csv_path}: row {row} column '{metric}' is not a number")
        if not math.isfinite(value):
            raise UserError(f"{csv_path}: row {row} column '{metric}' is not a finite number ({value})")
    return dict(zip(ids, values.to_list(), strict=True))


def _clean(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 6)


def _per_seed_correlations(scores: pl.DataFrame, performance: dict[str, float]) -> tuple[list, list]:
    """Spearman and Pearson across candidates for each seed where they are defined (neither side
    constant, at least 2 candidates); an undefined seed is left out, never averaged in as NaN.
    Computed with numpy (`ranks.spearman`, `np.corrcoef`), not scipy.stats: every new run of an
    evaluated output is evaluated again, a no-op re-run included, and that path stays clear of
    scipy.stats' import (tests/pipeline/test_noop_rerun.py)."""
    spearman, pearson = [], []
    for (_seed,), group in scores.group_by(["seed"], maintain_order=True):
        x = group.get_column("score").to_numpy().astype(float)
        y = np.array([performance[i] for i in group.get_column("dataset_id")], dtype=float)
        if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
            continue
        spearman.append(rank_correlation(x, y))
        pearson.append(float(np.corrcoef(x, y)[0, 1]))
    return spearman, pearson


def decision_accuracy(score: np.ndarray, performance: np.ndarray) -> float | None:
    """The share of candidate pairs with different measured performance that `score` orders the
    same way (the pairwise decision accuracy of data-selection studies); a pair the score ties
    counts one half, what a coin would get. Shapes (candidates,) each; None without such a pair."""
    i, j = np.triu_indices(len(score), k=1)
    differs = performance[i] != performance[j]
    if not differs.any():
        return None
    agree = np.sign(score[i] - score[j]) * np.sign(performance[i] - performance[j])  # 1, 0 (score tie), -1
    return float(np.mean((agree[differs] + 1) / 2))


def _top_group(ranked: pl.DataFrame, performance: dict[str, float]) -> dict:
    """The candidates that cannot be told from the proxy's best (`tied_with_best`), and whether the
    candidate that truly performs best among the ranked ones is among them."""
    if "tied_with_best" not in ranked.columns or ranked.height == 0:
        return {"top_group_size": None, "best_in_top_group": None}
    ids = ranked.get_column("dataset_id").to_list()
    truly_best = max(ids, key=lambda i: (performance[i], i))
    group = ranked.filter(pl.col("tied_with_best")).get_column("dataset_id").to_list()
    return {"top_group_size": len(group), "best_in_top_group": truly_best in group}


def evaluate_scores(
    scores: pl.DataFrame, rankings: pl.DataFrame, performance: dict[str, float], top_k: int = 3
) -> dict:
    """The evaluation report as a dict; pure, so that tests can check it against scipy. Candidates the
    performance lacks are left out of every figure and named in `missing_performance`."""
    scored = sorted(scores.get_column("dataset_id").unique().to_list())
    missing = [i for i in scored if i not in performance]
    ids = [i for i in scored if i in performance]
    if not ids:
        raise UserError(f"performance file has a row for none of the {len(scored)} candidates "
                        f"(e.g. dataset_id '{scored[0]}')" if scored else "the run scored no candidates")
    if top_k < 1 or top_k > len(ids):
        raise UserError(f"--top-k {top_k} must be between 1 and the {len(ids)} candidates")
    scores = scores.filter(pl.col("dataset_id").is_in(ids))
    rankings = rankings.filter(pl.col("dataset_id").is_in(ids))
    mean_performance = float(np.mean([performance[i] for i in ids]))
    report: dict = {"n_datasets": len(ids), "mean_performance": round(mean_performance, 6), "top_k": top_k,
                    "missing_performance": missing, "proxies": {}}
    for proxy in scores.get_column("proxy").unique(maintain_order=True).to_list():
        spearman, pearson = _per_seed_correlations(scores.filter(pl.col("proxy") == proxy), performance)
        ranked = rankings.filter(pl.col("proxy") == proxy).sort(["rank", "dataset_id"])
        top = float(np.mean([performance[i] for i in ranked.head(top_k).get_column("dataset_id")]))
        measured = np.array([performance[i] for i in ranked.get_column("dataset_id")])
        report["proxies"][proxy] = {
            "spearman": _clean(np.mean(spearman)) if spearman else None,
            "pearson": _clean(np.mean(pearson)) if pearson else None,
            "spearman_std": _clean(np.std(spearman)) if spearman else None,
            "seeds_used": len(spearman),
            "decision_accuracy": _clean(decision_accuracy(ranked.get_column("score_mean").to_numpy(), measured)),
            "top_k_performance": _clean(top),
            "top_k_gain": _clean(top - mean_performance),
            **_top_group(ranked, performance),
        }
    groups = [row["best_in_top_group"] for row in report["proxies"].values() if row["best_in_top_group"] is not None]
    report["best_in_top_group_rate"] = _clean(np.mean(groups)) if groups else None
    report["performance"] = {i: performance[i] for i in ids}  # what the report plots scores against
    return report


def performance_source(csv_path: str, id_column: str, metric: str, top_k: int) -> dict:
    """What an evaluation was computed from, recorded in evaluation.json so that every later run
    can be evaluated the same way: the file (absolute, as a later run may start elsewhere), its
    SHA-256 (to tell the user when it changed), the id column, the metric and k."""
    path = Path(csv_path).resolve()
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return {"path": str(path), "sha256": digest, "id_column": id_column, "metric": metric, "top_k": top_k}


def _evaluate_set(store: Store, scores: pl.DataFrame, rankings: pl.DataFrame, source: dict, stamp: object) -> dict:
    """Evaluate one set's tables against `source` and write its evaluation.json (into that set)."""
    performance = read_performance(source["path"], source["id_column"], source["metric"])
    report = evaluate_scores(scores, rankings, performance, source["top_k"])
    report["run"] = stamp  # which run it evaluated
    report["metric"] = source["metric"]  # what the performance is, for the report's axes
    report["source"] = source
    store.write_json(EVALUATION_FILE, report)
    return report


def evaluate_run(run_dir: str, csv_path: str, id_column: str, metric: str, top_k: int = 3) -> dict:
    root = Store(run_dir)
    store = published(root)  # the set LATEST names: never two runs' tables mixed
    tables = {}
    for name in ("scores", "rankings"):
        table = store.read_table(f"{name}.parquet")
        if table is None:
            raise UserError(f"{store.display(name + '.parquet')}: not found or unreadable; run `synque score` first")
        tables[name] = pl.from_arrow(table)
    info = store.read_json(RUN_FILE)
    stamp = info.get("started_at") if isinstance(info, dict) else None
    report = _evaluate_set(store, tables["scores"], tables["rankings"],
                           performance_source(csv_path, id_column, metric, top_k), stamp)
    copy_if_latest(root, store, EVALUATION_FILE)  # part of the run's set, beside what it evaluated
    return report


def carry_evaluation(root: Store, run_dir: str, scores: pl.DataFrame, rankings: pl.DataFrame, stamp: str
                     ) -> str | None:
    """Evaluate a new run's set (`run_dir`, not yet published) as the published set was evaluated:
    an evaluation added with `synque evaluate` holds for every later run while its performance
    file exists, re-read each time. Returns the line the terminal shows (None when the published
    set has no evaluation); a file that is gone or no longer fits is said there, never fatal."""
    previous = published(root).read_json(EVALUATION_FILE)
    source = previous.get("source") if isinstance(previous, dict) else None
    if (not isinstance(source, dict) or not {"path", "id_column", "metric", "top_k"} <= set(source)
            or not isinstance(source["top_k"], int)):
        return None  # none, or not one `synque evaluate` wrote
    fresh = performance_source(source["path"], source["id_column"], source["metric"], source["top_k"])
    named = f"{fresh['path']} (id column '{fresh['id_column']}', metric '{fresh['metric']}')"
    if fresh["sha256"] is None:
        return f"not evaluated: {named}, which the last evaluation used, is gone; run `synque evaluate` again"
    try:
        _evaluate_set(root.child(run_dir), scores, rankings, fresh, stamp)
    except UserError as err:
        return f"not evaluated: {named} no longer fits this run ({err})"
    changed = "" if fresh["sha256"] == source.get("sha256") else " (the file changed since then: re-read)"
    return f"evaluated against {named}, as the last `synque evaluate` did{changed}: evaluation.json"


def report_text(report: dict) -> str:
    """The evaluation as a terminal table, after a warning naming the candidates it left out."""
    k = report["top_k"]
    missing = report.get("missing_performance") or []
    lines = [f"warning: the performance file has no row for {len(missing)} candidate(s), left out: "
             f"{', '.join(missing)}"] if missing else []
    lines += [
        f"{report['n_datasets']} candidates, mean performance {report['mean_performance']:.4f}",
        f"{'proxy':<10} {'spearman':>9} {'±':>6} {'pearson':>8} {'seeds':>6} {'pairs':>6} {'top-' + str(k):>8}"
        f" {'gain':>8} {'top group':>10}",
    ]

    def fmt(value, width):
        return f"{value:>{width}.3f}" if value is not None else f"{'n/a':>{width}}"

    for proxy, row in report["proxies"].items():
        group = row.get("top_group_size")
        holds = "" if group is None else f"{group}{' ✓' if row['best_in_top_group'] else ' ✗'}"
        lines.append(
            f"{proxy:<10} {fmt(row['spearman'], 9)} {fmt(row['spearman_std'], 6)} {fmt(row['pearson'], 8)} "
            f"{row['seeds_used']:>6} {fmt(row.get('decision_accuracy'), 6)} {fmt(row['top_k_performance'], 8)} "
            f"{fmt(row['top_k_gain'], 8)} {holds:>10}"
        )
    if report.get("best_in_top_group_rate") is not None:
        lines.append(f"top group (cannot be told from the best) holds the truly best candidate for "
                     f"{report['best_in_top_group_rate']:.0%} of proxies (✓/✗ above)")
    lines.append("pairs: decision accuracy, the share of candidate pairs with different performance that the proxy "
                 "orders the same way")
    return "\n".join(lines)
