"""How the best set behaves at the seed counts, noise mixes and candidate sizes people have.

    python benchmarks/sim_best_set.py [--runs 40] [--e2e-runs 10] [--e2e-k 6] [--skip-e2e] [--skip-tables]
                                      [--density-runs 60]

Part 1, plain scores tables (tests/ranking/test_best_set.py's generator, one definition): a candidate's
score at a seed is its true mean, a shift every candidate shares at that seed (its U_r sample)
and its own seed noise; its replicates scatter around that score. Varied: the seeds (2, 3, 5,
10), the ratio of replicate to seed noise (0.01, 1, 10), the number of candidates and their
sizes (equal, or 40-300 rows with noise sd ∝ 1/sqrt(rows), the smallest noisiest).
- leader: six candidates, one ahead by 10 standard errors of a difference of seed means; the
  share of runs in which it is alone in the set, and the mean set size;
- gap: one candidate 3-20 standard errors behind five tied ones; how often it is dropped (what
  2, 3 and 5 seeds can resolve) and how often the five are kept;
- tie: k equal candidates; the share of runs keeping all k, and the mean set size.

Part 2, the real proxies end to end: k candidates of 40-300 rows and U_r samples of 60 rows per
seed, all Gaussian "embeddings" (16 dims) of ONE distribution, so every candidate is truly tied.
Each (candidate, seed) is scored by `scoring.score_pair`, the function the pipeline's Ray tasks
run (every proxy of `proxies.REGISTRY` at its default parameters, 200 replicates), the
candidate-only proxies (MDM) repeated under every seed as the embedding stage does; then
`reduce.add_ensemble` and `reduce.rank`. A run scores 5 seeds; 2 and 3 seeds are its first 2 and 3.
Reported per proxy and for the ensemble: the share of runs keeping all k (mean set size).

Part 3 (`--density-runs N`): density alone on that tie, its replicates drawn as today and with
one generator for every seed, to show what the best set assumes of the replicates.

The level is 0.9 throughout: a tie kept whole in about 90% of runs is the set holding its level.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "ranking"))
from test_best_set import difference_se, simulated_arrays, unequal_sizes  # the tests' generator

from synque_ray.proxies import REGISTRY
from synque_ray.reduce import add_ensemble, best_set, rank
from synque_ray.proxy_task import TaskSpec, score_pair

LEVEL = 0.9
SEED_COUNTS = (2, 3, 5, 10)
RATIOS = (0.01, 1.0, 10.0)  # replicate noise sd / seed noise sd
SEED_SD = 0.1
GAPS = (3.0, 5.0, 10.0, 20.0)


def leader_row(seeds: int, ratio: float, runs: int) -> tuple[float, float]:
    """(share of runs with the 10-se leader alone, mean set size) among six candidates."""
    rng = np.random.default_rng(seeds * 1000 + int(ratio * 100))
    lead = 10 * difference_se(SEED_SD, SEED_SD * ratio, seeds)
    sizes = [int(best_set(*simulated_arrays([lead] + [0.0] * 5, rng, SEED_SD, SEED_SD * ratio, seeds=seeds),
                          LEVEL, rng).sum()) for _ in range(runs)]
    return float(np.mean(np.equal(sizes, 1))), float(np.mean(sizes))


def gap_row(seeds: int, behind: float, runs: int) -> tuple[float, float]:
    """(share of runs dropping one candidate `behind` se below five tied ones, share keeping those five)."""
    rng = np.random.default_rng(seeds * 1000 + int(behind))
    gap = behind * difference_se(SEED_SD, SEED_SD / 100, seeds)
    sets = [best_set(*simulated_arrays([0.0] * 5 + [-gap], rng, SEED_SD, SEED_SD / 100, seeds=seeds), LEVEL, rng)
            for _ in range(runs)]
    return float(np.mean([not s[5] for s in sets])), float(np.mean([s[:5].all() for s in sets]))


def tie_row(k: int, unequal: bool, seeds: int, ratio: float, runs: int) -> tuple[float, float]:
    """(share of runs keeping all k equal candidates, mean set size)."""
    rng = np.random.default_rng(seeds * 1000 + k * 10 + int(unequal))
    sizes = []
    for _ in range(runs):
        sd = unequal_sizes(k, rng, SEED_SD) if unequal else np.full(k, SEED_SD)
        sizes.append(int(best_set(*simulated_arrays([0.0] * k, rng, sd, sd * ratio, seeds=seeds), LEVEL, rng).sum()))
    return float(np.mean(np.equal(sizes, k))), float(np.mean(sizes))


def part_one(runs: int) -> None:
    print(f"## Plain scores tables ({runs} runs per cell, level {LEVEL:g})\n")
    print("Leader 10 se ahead of five: share of runs alone (mean set size)\n")
    print("| seeds | " + " | ".join(f"replicate/seed {r:g}" for r in RATIOS) + " |")
    print("|---|" + "---|" * len(RATIOS))
    for seeds in SEED_COUNTS:
        cells = [leader_row(seeds, ratio, runs) for ratio in RATIOS]
        print(f"| {seeds} | " + " | ".join(f"{share:.0%} ({size:.1f})" for share, size in cells) + " |", flush=True)
    print("\nOne candidate behind five tied (replicate/seed 0.01): share of runs dropping it; share keeping the five\n")
    print("| seeds | " + " | ".join(f"{b:g} se behind" for b in GAPS) + " |")
    print("|---|" + "---|" * len(GAPS))
    for seeds in (2, 3, 5):
        cells = [gap_row(seeds, behind, runs) for behind in GAPS]
        print(f"| {seeds} | " + " | ".join(f"{drop:.0%}; {keep:.0%}" for drop, keep in cells) + " |", flush=True)
    print("\nTrue tie: share of runs keeping all k (mean set size)\n")
    print("| k | sizes | replicate/seed | " + " | ".join(f"{s} seeds" for s in SEED_COUNTS) + " |")
    print("|---|---|---|" + "---|" * len(SEED_COUNTS))
    for k in (6, 12, 32):
        for unequal in (False, True):
            for ratio in RATIOS:
                cells = [tie_row(k, unequal, seeds, ratio, runs) for seeds in SEED_COUNTS]
                print(f"| {k} | {'40-300 rows' if unequal else 'equal'} | {ratio:g} | "
                      + " | ".join(f"{share:.0%} ({size:.1f})" for share, size in cells) + " |", flush=True)


def scored_run(k: int, seeds: int, rng: np.random.Generator, dims: int = 16, real_rows: int = 60) -> pl.DataFrame:
    """The results table (dataset_id, proxy, seed, raw, score, replicates) of k tied candidates of
    40-300 rows on `seeds` U_r samples, every row drawn from one standard normal in `dims` dims."""
    reals = {seed: rng.normal(size=(real_rows, dims)) for seed in range(seeds)}
    sizes = [int(rng.integers(40, 301)) for _ in range(k)]
    # Resolved for the run as the pipeline does (pipeline.resolve_for_run): PAD's training size and
    # MDM's rows are the same for every candidate of the run.
    params = {name: proxy.params().for_run(sizes, [real_rows] * seeds).model_dump() for name, proxy in REGISTRY.items()}
    spec = TaskSpec(params=params, sample_size=None, resamples=200)
    rows = []
    for i, size in enumerate(sizes):
        dataset_id = f"c{i:02d}"
        candidate = rng.normal(size=(size, dims))
        alone = score_pair(dataset_id, None, candidate, None, spec)["scores"]
        rows += [{**row, "seed": seed} for row in alone for seed in reals]
        for seed, real in reals.items():
            rows += score_pair(dataset_id, seed, candidate, real, spec)["scores"]
    table = pl.DataFrame(rows).select("dataset_id", "proxy", "seed", "raw", "score", "replicates", "error")
    failed = table.filter(pl.col("error").is_not_null())
    if failed.height:
        raise RuntimeError(f"{failed.height} proxy results failed: {failed['error'].to_list()[:3]}")
    return table.drop("error")


def part_two(runs: int, k: int, seed_counts: tuple[int, ...] = (2, 3, 5)) -> None:
    print(f"\n## Real proxies, {k} tied candidates of 40-300 rows, U_r 60 rows per seed ({runs} runs)\n")
    rng = np.random.default_rng(2026)
    kept: dict[tuple[str, int], list[int]] = {}
    started = time.perf_counter()
    for run in range(runs):
        table = scored_run(k, max(seed_counts), rng)
        for seeds in seed_counts:
            ranked = rank(add_ensemble(table.filter(pl.col("seed") < seeds)), level=LEVEL, seed=run)
            for (proxy,), group in ranked.group_by(["proxy"]):
                kept.setdefault((str(proxy), seeds), []).append(int(group["tied_with_best"].sum()))
        print(f"run {run + 1}/{runs} done at {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    proxies = sorted({p for p, _ in kept} - {"ensemble"}) + ["ensemble"]
    print("Share of runs keeping all k (mean set size)\n")
    print("| proxy | " + " | ".join(f"{s} seeds" for s in seed_counts) + " |")
    print("|---|" + "---|" * len(seed_counts))
    for proxy in proxies:
        cells = [np.asarray(kept[(proxy, seeds)]) for seeds in seed_counts]
        print(f"| {proxy} | " + " | ".join(f"{np.mean(c == k):.0%} ({c.mean():.1f})" for c in cells) + " |")


def part_three(runs: int, k: int = 6, seed_counts: tuple[int, ...] = (2, 3, 5)) -> None:
    """Density alone on part 2's tie, its replicates as today (each seed resamples the candidate's rows
    with its own generator) and with one generator for every seed (replicate b resamples the rows
    alike at every seed, so the candidate-row error they share does not average out over seeds)."""
    import synque_ray.proxies.coverage as coverage

    today = coverage.resample_weights
    spec = TaskSpec(params={"density": {}}, sample_size=None, resamples=200)
    print(f"\n## Density's tie and how its replicates are drawn ({k} candidates of 40-300 rows, {runs} runs)\n")
    print("| replicates | " + " | ".join(f"{s} seeds" for s in seed_counts) + " |")
    print("|---|" + "---|" * len(seed_counts))
    for label, weights in (("a generator per seed (today)", today),
                           ("one generator for every seed", lambda n, b, _rng: today(n, b, np.random.default_rng(0)))):
        coverage.resample_weights = weights
        rng = np.random.default_rng(2026)
        kept: dict[int, list[bool]] = {s: [] for s in seed_counts}
        for run in range(runs):
            reals = {seed: rng.normal(size=(60, 16)) for seed in range(max(seed_counts))}
            rows = []
            for i in range(k):
                candidate = rng.normal(size=(int(rng.integers(40, 301)), 16))
                for seed, real in reals.items():
                    rows += score_pair(f"c{i:02d}", seed, candidate, real, spec)["scores"]
            table = pl.DataFrame(rows).select("dataset_id", "proxy", "seed", "raw", "score", "replicates")
            for seeds in seed_counts:
                kept[seeds].append(bool(rank(table.filter(pl.col("seed") < seeds), level=LEVEL, seed=run)
                                        ["tied_with_best"].all()))
        print(f"| {label} | " + " | ".join(f"{np.mean(kept[s]):.0%}" for s in seed_counts) + " |", flush=True)
    coverage.resample_weights = today


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40, help="runs per cell of the plain-table part")
    parser.add_argument("--e2e-runs", type=int, default=10, help="runs of the real-proxy part (each ~30 s)")
    parser.add_argument("--e2e-k", type=int, default=6, help="tied candidates in the real-proxy part")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--skip-tables", action="store_true")
    parser.add_argument("--density-runs", type=int, default=0, help="runs of the density replicate check (0: skip)")
    args = parser.parse_args()
    if not args.skip_tables:
        part_one(args.runs)
    if not args.skip_e2e:
        part_two(args.e2e_runs, args.e2e_k)
    if args.density_runs:
        part_three(args.density_runs)


if __name__ == "__main__":
    main()
