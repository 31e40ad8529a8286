"""PAD's cost and quality: the paper's single holdout beside k-fold cross-fitting.

    python benchmarks/bench_pad.py CONFIG PERFORMANCE_CSV ID_COLUMN METRIC [--seeds N]

Reads the embeddings a previous `synque score CONFIG` left in its cache and computes
PAD for every (candidate, seed) under each variant below, one after another in this
process (single-threaded classifiers), timing each with CPU seconds (process time),
which another process on the machine disturbs far less than wall time. Prints a
Markdown table: CPU seconds per (candidate, seed), the ratio to today's (the paper's)
PAD, Spearman/Pearson with the measured metric averaged over seeds, and the spread
over seeds. The classifier settings are swapped through `pad.XGBOOST`, the module's
one table of them. Since then "balanced" also balances the probabilities (the
earlier figures in BENCHMARKS.md were taken with raw ones); `bench_pad_fair.py`
compares the two. Every variant trains on every row of its folds (`train_rows: all`, PAD
before one training size per run), as when these figures were taken.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl
from scipy import stats

from synque_ray.config import load_config
from synque_ray.embed import EmbeddingCache
from synque_ray.evaluate import read_performance
from synque_ray.models import resolve_model
from synque_ray.pipeline import read_candidates, read_real
from synque_ray.proxies import pad as pad_module
from synque_ray.storage import Store

XGBOOST_DEFAULTS = {"n_jobs": 1}  # what PAD used before cross-fitting: xgboost's own defaults
VARIANTS = {  # name: (folds, holdout, balanced, classifier, xgboost settings)
    "paper: holdout 0.2, unbalanced, xgboost defaults": (0, 0.2, False, "xgboost", XGBOOST_DEFAULTS),
    "5 folds, balanced, xgboost defaults": (5, 0.2, True, "xgboost", XGBOOST_DEFAULTS),
    "5 folds, balanced, tuned xgboost (default)": (5, 0.2, True, "xgboost", dict(pad_module.XGBOOST)),
    "5 folds, balanced, logistic": (5, 0.2, True, "logistic", {}),
}


def embeddings(config, seeds: int):
    cache = EmbeddingCache(Store(config.cache_location), resolve_model(config.embedding.model, "model")[1])
    real = {seed: cache.load(rs) for seed, rs in list(read_real(config).items())[:seeds]}
    candidates = {c.name: cache.load(c) for c in read_candidates(config)}
    missing = [name for name, v in {**candidates, **{str(s): v for s, v in real.items()}}.items() if v is None]
    if missing:
        raise SystemExit(f"no cached embeddings for {missing[:3]}: run `synque score` on the config first")
    return real, candidates


def run_variant(settings, real, candidates) -> tuple[float, pl.DataFrame]:
    folds, holdout, balanced, classifier, xgb = settings
    pad_module.XGBOOST = xgb
    rows, started = [], time.process_time()
    for seed, real_vectors in real.items():
        for name, vectors in candidates.items():
            value = pad_module.pad(vectors, real_vectors, classifier, holdout, seed, folds, balanced, train_rows="all")
            rows.append({"dataset_id": name, "seed": seed, "score": -value})
    return time.process_time() - started, pl.DataFrame(rows)


def quality(scores: pl.DataFrame, performance: dict) -> tuple[float, float, float]:
    spearman, pearson = [], []
    for (_,), group in scores.group_by(["seed"]):
        y = [performance[d] for d in group["dataset_id"]]
        spearman.append(stats.spearmanr(group["score"], y).statistic)
        pearson.append(stats.pearsonr(group["score"], y).statistic)
    return float(np.mean(spearman)), float(np.std(spearman)), float(np.mean(pearson))


def benchmark_parser() -> argparse.ArgumentParser:
    """The arguments every PAD benchmark on a scored config takes (bench_pad_fair.py adds its own)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("performance")
    parser.add_argument("id_column")
    parser.add_argument("metric")
    parser.add_argument("--seeds", type=int, default=5)
    return parser


def main() -> None:
    args = benchmark_parser().parse_args()
    config = load_config(args.config)
    real, candidates = embeddings(config, args.seeds)
    performance = read_performance(args.performance, args.id_column, args.metric)
    pairs = len(real) * len(candidates)
    print(f"{len(candidates)} candidates x {len(real)} seeds = {pairs} (candidate, seed) pairs\n")
    print("| PAD variant | CPU s per pair | x today's | Spearman | ± over seeds | Pearson |")
    print("|---|---|---|---|---|---|")
    baseline = None
    for name, settings in VARIANTS.items():
        seconds, scores = run_variant(settings, real, candidates)
        baseline = baseline or seconds
        rho, rho_std, r = quality(scores, performance)
        print(f"| {name} | {seconds / pairs:.3f} | {seconds / baseline:.2f} | {rho:.3f} | {rho_std:.3f} | {r:.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
