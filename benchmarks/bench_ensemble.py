"""The ensemble and the best set on a scored benchmark.

    python benchmarks/bench_ensemble.py CONFIG --performance CSV --id-column NAME --metric COLUMN

Needs a finished `synque score CONFIG` (its committed per-candidate results hold the
bootstrap replicates). From the same committed results it builds the ensemble three ways
(plain mean rank, median rank, the robust weights; only the first and last are offered
by the config, the median is here as the other label-free candidate that was considered),
evaluates each with `evaluate_scores` (per-seed Spearman averaged over seeds, pairwise
decision accuracy) beside every single proxy, and prints the robust weights and the size
of each ensemble's best set (`tied_with_best`) at the config's `ranking.level`.
Measured performance is used only to *evaluate*; nothing it holds goes into a weight.
"""

from __future__ import annotations

import argparse

import polars as pl

from synque_ray.config import load_config
from synque_ray.evaluate import evaluate_scores, read_performance
from synque_ray.reduce import add_ensemble, ensemble_weights, rank, split_failures
from synque_ray.vocabulary import SCORE_SCHEMA
from synque_ray.storage import Store


def committed_results(config) -> pl.DataFrame:
    """The usable results (with replicates) of the run's embedding stage, every candidate."""
    store = Store(config.output)
    keys = store.read_json("run.json")["result_keys"]["embedding"]
    frames = [pl.from_arrow(store.read_table(f"results/{key}.parquet")) for key in keys.values()]
    return split_failures(pl.concat(frames))[0]


def median_ensemble(results: pl.DataFrame) -> pl.DataFrame:
    """proxy = "ensemble" rows: per seed, the median over the proxies of each candidate's rank."""
    ranked = results.with_columns((-pl.col("score")).rank("average").over(["proxy", "seed"]).alias("r"))
    median = ranked.group_by(["dataset_id", "seed"]).agg(pl.col("r").median().alias("raw"))
    return median.select("dataset_id", pl.lit("ensemble").alias("proxy"), "seed", "raw",
                         (-pl.col("raw")).alias("score")).cast(SCORE_SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--performance", required=True)
    parser.add_argument("--id-column", required=True)
    parser.add_argument("--metric", required=True)
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args()
    config = load_config(args.config)
    performance = read_performance(args.performance, args.id_column, args.metric)
    results = committed_results(config)
    level, top = config.ranking.level, config.ranking.top

    rows = {}
    for method in ("mean", "robust"):
        scores = add_ensemble(results, method=method)
        rankings = rank(scores, level=level, top=top)
        report = evaluate_scores(scores, rankings, performance, args.top_k)["proxies"]
        if method == "mean":
            rows.update({p: report[p] for p in report if p != "ensemble"})
        rows[f"ensemble ({method})"] = report["ensemble"]
        best = rankings.filter((pl.col("proxy") == "ensemble") & pl.col("tied_with_best"))
        rows[f"ensemble ({method})"]["best_set"] = best.sort("dataset_id")["dataset_id"].to_list()
    median = pl.concat([results.select(list(SCORE_SCHEMA)), median_ensemble(results)])
    rows["ensemble (median, not offered)"] = evaluate_scores(median, rank(median, level=level, top=top), performance,
                                                             args.top_k)["proxies"]["ensemble"]

    print(f"{'':<32} {'spearman':>9} {'decision acc.':>14} {'top-' + str(args.top_k):>7} {'best set':>9}")
    for name, row in rows.items():
        size = len(row["best_set"]) if "best_set" in row else row.get("top_group_size")
        print(f"{name:<32} {row['spearman']:>9.3f} {row['decision_accuracy']:>14.3f} "
              f"{row['top_k_performance']:>7.3f} {size:>9}")
    weights = ensemble_weights(results, "robust")
    print("robust weights: " + ", ".join(f"{p} {w:.3f}" for p, w in weights.items()))
    for method in ("mean", "robust"):
        print(f"best set of ensemble ({method}) at {level:.0%}: {', '.join(rows[f'ensemble ({method})']['best_set'])}")


if __name__ == "__main__":
    main()
