"""PAD fair to size (issue 13 §1–2): issue 8's PAD beside balanced probabilities, both classifiers.

    python benchmarks/bench_pad_fair.py CONFIG PERFORMANCE_CSV ID_COLUMN METRIC [--seeds N]
        [--part simulation|benchmark] [--variant I ...]

Two parts, every variant on the same inputs, one after another in this process
(single-threaded classifiers), cost in CPU seconds (process time):

1. simulation, truth by construction: 16-d Gaussians, U_r = 30 rows, a candidate
   shifted 2 sd in one coordinate at 30/100/300/1000 rows (mean of 5 U_r draws; a
   size-fair PAD reads the same at every size), and A = 60 rows shifted 1.5 sd vs
   B = 1,000 rows shifted 2.5 sd (B is further: its PAD must be higher), and the
   median p_synthetic of one distribution at 200 v 200, 1000 v 200 and 1000 v 30 rows
   (a balanced probability reads ½ at every size);
2. the benchmark of CONFIG (embeddings read from its cache: run `synque score CONFIG`
   first): Spearman/Pearson of −PAD with the measured metric averaged over seeds, and
   the median over (candidate, seed) of the candidate rows' median `p_synthetic`.

Prints Markdown tables.
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl
from bench_pad import benchmark_parser, embeddings, quality

from synque_ray.config import load_config
from synque_ray.evaluate import read_performance
from synque_ray.proxies.pad import pad_from_probabilities, pad_probabilities

VARIANTS = {  # name: (classifier, balanced probabilities); the error is class-balanced in all
    "issue 8 default: xgboost, raw probabilities": ("xgboost", False),
    "xgboost, balanced probabilities": ("xgboost", True),
    "logistic, raw probabilities": ("logistic", False),
    "**logistic, balanced probabilities (new default)**": ("logistic", True),
}


def pad_and_rows(variant, synthetic, real, seed) -> tuple[float, np.ndarray]:
    """(PAD with the class-balanced error, the candidate rows' probabilities) under one variant."""
    classifier, balanced = variant
    probability, labels = pad_probabilities(synthetic, real, classifier, folds=5, seed=seed, balanced=balanced)
    return pad_from_probabilities(probability, labels, balanced=True), probability[: len(synthetic)]


def _gaussian(rng, rows: int, shift: float, dims: int = 16) -> np.ndarray:
    values = rng.normal(size=(rows, dims))
    values[:, 0] += shift
    return values


def simulation(variant) -> tuple[list[float], float, float, list[float], float]:
    """(mean PAD at 30/100/300/1000 candidate rows, PAD of A, PAD of B, median p_synthetic of
    one distribution at 200 v 200, 1000 v 200 and 1000 v 30 rows, CPU seconds)."""
    def mean_pad(rows, shift, offset=0):
        values = []
        for draw in range(5):
            candidate = _gaussian(np.random.default_rng(1000 + offset + rows + draw), rows, shift)
            values.append(pad_and_rows(variant, candidate, _gaussian(np.random.default_rng(draw), 30, 0.0), draw)[0])
        return float(np.mean(values))

    def median_p(rows, real_rows):  # one distribution: a size-fair p_synthetic has median ½
        return float(np.mean([np.median(pad_and_rows(variant, _gaussian(np.random.default_rng(9 + d), rows, 0.0),
                                                     _gaussian(np.random.default_rng(d), real_rows, 0.0), d)[1])
                              for d in range(3)]))

    started = time.process_time()
    by_size = [mean_pad(rows, 2.0) for rows in (30, 100, 300, 1000)]
    a, b = mean_pad(60, 1.5, offset=50), mean_pad(1000, 2.5, offset=80)
    medians = [median_p(rows, real_rows) for rows, real_rows in ((200, 200), (1000, 200), (1000, 30))]
    return by_size, a, b, medians, time.process_time() - started


def benchmark(variant, real, candidates, performance) -> tuple[float, tuple, float]:
    """(CPU seconds per pair, (Spearman, its std over seeds, Pearson), median p_synthetic)."""
    rows, medians, started = [], [], time.process_time()
    for seed, real_vectors in real.items():
        for name, vectors in candidates.items():
            value, p_synthetic = pad_and_rows(variant, vectors, real_vectors, seed)
            rows.append({"dataset_id": name, "seed": seed, "score": -value})
            medians.append(float(np.median(p_synthetic)))
    seconds = (time.process_time() - started) / len(rows)
    return seconds, quality(pl.DataFrame(rows), performance), float(np.median(medians))


def main() -> None:
    parser = benchmark_parser()
    parser.add_argument("--part", choices=["simulation", "benchmark"], help="run only this part (default: both)")
    parser.add_argument("--variant", type=int, action="append", help="run only these rows of VARIANTS (0-based)")
    args = parser.parse_args()
    names = list(VARIANTS)
    chosen = {names[i]: VARIANTS[names[i]] for i in args.variant} if args.variant else VARIANTS
    if args.part != "benchmark":
        print_simulation(chosen)
    if args.part != "simulation":
        print_benchmark(args, chosen)


def print_simulation(variants: dict) -> None:
    print("| PAD variant | PAD at 30 / 100 / 300 / 1000 rows | spread | A (60, 1.5 sd) | B (1000, 2.5 sd) "
          "| median p_synthetic, one distribution | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for name, variant in variants.items():
        by_size, a, b, medians, seconds = simulation(variant)
        sizes, p = " / ".join(f"{v:.2f}" for v in by_size), " / ".join(f"{v:.2f}" for v in medians)
        print(f"| {name} | {sizes} | {max(by_size) - min(by_size):.2f} | {a:.2f} | {b:.2f} | {p} | {seconds:.1f} |",
              flush=True)


def print_benchmark(args, variants: dict) -> None:
    real, candidates = embeddings(load_config(args.config), args.seeds)
    performance = read_performance(args.performance, args.id_column, args.metric)
    print(f"\n{len(candidates)} candidates x {len(real)} seeds\n")
    print("| PAD variant | CPU s per pair | Spearman | ± over seeds | Pearson | median p_synthetic |")
    print("|---|---|---|---|---|---|")
    for name, variant in variants.items():
        seconds, (rho, rho_std, r), median = benchmark(variant, real, candidates, performance)
        print(f"| {name} | {seconds:.3f} | {rho:.3f} | {rho_std:.3f} | {r:.3f} | {median:.2f} |", flush=True)


if __name__ == "__main__":
    main()
