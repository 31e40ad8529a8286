"""How well each proxy's ranking agrees with measured downstream performance (SPEC §9).

Correlations are computed per seed across candidates and then averaged over seeds,
the paper's protocol; top-k uses the mean score over seeds.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

from synque_ray.errors import UserError
from synque_ray.storage import Store


def read_performance(csv_path: str, id_column: str, metric: str) -> dict[str, float]:
    path = Path(csv_path)
    if not path.is_file():
        raise UserError(f"{csv_path}: file not found")
    try:
        frame = pl.read_csv(path)
    except Exception as err:
        raise UserError(f"{csv_path}: cannot be read as CSV ({str(err).splitlines()[0]})") from None
    for column in (id_column, metric):
        if column not in frame.columns:
            raise UserError(f"{csv_path}: no column '{column}' (columns: {', '.join(frame.columns)})")
    values = frame.get_column(metric).cast(pl.Float64, strict=False)
    bad = values.is_null().arg_true()
    if len(bad):
        raise UserError(f"{csv_path}: row {int(bad[0]) + 2} column '{metric}' is not a number")
    return dict(zip(frame.get_column(id_column).cast(pl.Utf8).to_list(), values.to_list(), strict=True))


def _clean(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 6)


def evaluate_scores(
    scores: pl.DataFrame, rankings: pl.DataFrame, performance: dict[str, float], top_k: int = 3
) -> dict:
    """The SPEC §9 report as a dict; pure, so that tests can check it against scipy."""
    ids = sorted(scores.get_column("dataset_id").unique().to_list())
    missing = [i for i in ids if i not in performance]
    if missing:
        raise UserError(f"performance file has no row for dataset_id '{missing[0]}'")
    if top_k < 1 or top_k > len(ids):
        raise UserError(f"--top-k {top_k} must be between 1 and the {len(ids)} candidates")
    mean_performance = float(np.mean([performance[i] for i in ids]))
    report: dict = {"n_datasets": len(ids), "mean_performance": round(mean_performance, 6), "top_k": top_k,
                    "proxies": {}}
    for proxy in scores.get_column("proxy").unique(maintain_order=True).to_list():
        spearman, pearson = [], []
        for (_seed,), group in scores.filter(pl.col("proxy") == proxy).group_by(["seed"], maintain_order=True):
            x = group.get_column("score").to_numpy()
            y = np.array([performance[i] for i in group.get_column("dataset_id")])
            constant = np.all(x == x[0]) or np.all(y == y[0]) or len(x) < 2
            spearman.append(np.nan if constant else stats.spearmanr(x, y).statistic)
            pearson.append(np.nan if constant else stats.pearsonr(x, y).statistic)
        best = rankings.filter(pl.col("proxy") == proxy).sort(["rank", "dataset_id"]).head(top_k)
        top = float(np.mean([performance[i] for i in best.get_column("dataset_id")]))
        report["proxies"][proxy] = {
            "spearman": _clean(np.mean(spearman)),
            "pearson": _clean(np.mean(pearson)),
            "spearman_std": _clean(np.std(spearman)),
            "top_k_performance": _clean(top),
            "top_k_gain": _clean(top - mean_performance),
        }
    return report


def evaluate_run(run_dir: str, csv_path: str, id_column: str, metric: str, top_k: int = 3) -> dict:
    store = Store(run_dir)
    tables = {}
    for name in ("scores", "rankings"):
        table = store.read_table(f"{name}.parquet")
        if table is None:
            raise UserError(f"{store.display(name + '.parquet')}: not found or unreadable; run `synque score` first")
        tables[name] = pl.from_arrow(table)
    report = evaluate_scores(tables["scores"], tables["rankings"], read_performance(csv_path, id_column, metric), top_k)
    store.write_json("evaluation.json", report)
    return report


def report_text(report: dict) -> str:
    lines = [
        f"{report['n_datasets']} candidates, mean performance {report['mean_performance']:.4f}",
        f"{'proxy':<10} {'spearman':>9} {'±':>6} {'pearson':>8} {'top-' + str(report['top_k']):>8} {'gain':>8}",
    ]

    def fmt(value, width):
        return f"{value:>{width}.3f}" if value is not None else f"{'n/a':>{width}}"

    for proxy, row in report["proxies"].items():
        lines.append(
            f"{proxy:<10} {fmt(row['spearman'], 9)} {fmt(row['spearman_std'], 6)} {fmt(row['pearson'], 8)} "
            f"{fmt(row['top_k_performance'], 8)} {fmt(row['top_k_gain'], 8)}"
        )
    return "\n".join(lines)
