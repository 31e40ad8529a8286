"""How the best set behaves at the seed counts, noise mixes and candidate sizes people have.

    python benchmarks/sim_best_set.py [--runs 40] [--e2e-k 6 12 32] [--e2e-runs 40 20 20] [--cache DIR]
                                      [--rescore mdm ...] [--skip-e2e] [--skip-tables]

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

Part 2, the real proxies end to end (`--e2e-k`, one table per k): k candidates of 40-300 rows
and U_r samples of 60 rows per seed, all Gaussian "embeddings" (16 dims) of ONE distribution,
so every candidate is truly tied.
Each (candidate, seed) is scored by `proxy_task.score_pair`, the function the pipeline's Ray tasks
run (every proxy of `proxies.REGISTRY` at its default parameters, 200 replicates), the
candidate-only proxies (MDM) repeated under every seed as the embedding stage does; then
`reduce.add_ensemble` and `reduce.rank`. A run scores 5 seeds; 2 and 3 seeds are its first 2 and 3.
Reported per proxy and for the ensemble: the share of runs keeping all k (mean set size).
`--cache DIR` keeps each run's scores; a later call with `--rescore mdm` reads them and scores
only MDM again, so a change to one proxy is compared on the same runs at a fraction of the cost;
`--only mdm` scores MDM alone (a candidate-only proxy: cheap at k = 32).

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
from synque_ray.reduce import _point_matrix, _replicate_cube, add_ensemble, best_set, pair_standard_errors, rank
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


def print_table(header: list[str], rows) -> None:
    """A Markdown table, each row printed (and flushed) as soon as it is computed."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cells in rows:
        print("| " + " | ".join(cells) + " |", flush=True)


def part_one(runs: int) -> None:
    print(f"## Plain scores tables ({runs} runs per cell, level {LEVEL:g})\n")
    print("Leader 10 se ahead of five: share of runs alone (mean set size)\n")
    print_table(["seeds", *(f"replicate/seed {r:g}" for r in RATIOS)],
                ([str(seeds), *(f"{share:.0%} ({size:.1f})" for share, size in
                                (leader_row(seeds, ratio, runs) for ratio in RATIOS))] for seeds in SEED_COUNTS))
    print("\nOne candidate behind five tied (replicate/seed 0.01): share of runs dropping it; share keeping the five\n")
    print_table(["seeds", *(f"{b:g} se behind" for b in GAPS)],
                ([str(seeds), *(f"{drop:.0%}; {keep:.0%}" for drop, keep in
                                (gap_row(seeds, behind, runs) for behind in GAPS))] for seeds in (2, 3, 5)))
    print("\nTrue tie: share of runs keeping all k (mean set size)\n")
    print_table(["k", "sizes", "replicate/seed", *(f"{s} seeds" for s in SEED_COUNTS)],
                ([str(k), "40-300 rows" if unequal else "equal", f"{ratio:g}",
                  *(f"{share:.0%} ({size:.1f})" for share, size in
                    (tie_row(k, unequal, seeds, ratio, runs) for seeds in SEED_COUNTS))]
                 for k in (6, 12, 32) for unequal in (False, True) for ratio in RATIOS))


def drawn_run(k: int, seeds: int, rng: np.random.Generator, dims: int = 16, real_rows: int = 60
              ) -> tuple[dict[str, np.ndarray], dict[int, np.ndarray]]:
    """(k tied candidates of 40-300 rows by id, `seeds` U_r samples of `real_rows` rows by seed), every
    row drawn from one standard normal in `dims` dims."""
    reals = {seed: rng.normal(size=(real_rows, dims)) for seed in range(seeds)}
    sizes = [int(rng.integers(40, 301)) for _ in range(k)]
    return {f"c{i:02d}": rng.normal(size=(size, dims)) for i, size in enumerate(sizes)}, reals


def score_candidates(candidates: dict[str, np.ndarray], reals: dict[int, np.ndarray],
                     only: frozenset[str] | None = None) -> pl.DataFrame:
    """Every (candidate, seed) through `proxy_task.score_pair`, the function the pipeline's Ray tasks
    run, the candidate-only proxies once and repeated under every seed as the embedding stage does."""
    names = [name for name in REGISTRY if only is None or name in only]
    sizes = [len(rows) for rows in candidates.values()]
    real_rows = [len(rows) for rows in reals.values()]
    # Resolved for the run as the pipeline does (pipeline.resolve_for_run): PAD's training size is the
    # same for every candidate of the run.
    params = {name: REGISTRY[name].params().for_run(sizes, real_rows).model_dump() for name in names}
    spec = TaskSpec(params=params, sample_size=None, resamples=200)
    rows = []
    for dataset_id, candidate in candidates.items():
        alone = score_pair(dataset_id, None, candidate, None, spec)["scores"]
        rows += [{**row, "seed": seed} for row in alone for seed in reals]
        if any(REGISTRY[name].uses_real for name in names):
            for seed, real in reals.items():
                rows += score_pair(dataset_id, seed, candidate, real, spec)["scores"]
    table = pl.DataFrame(rows).select("dataset_id", "proxy", "seed", "raw", "score", "replicates", "error")
    failed = table.filter(pl.col("error").is_not_null())
    if failed.height:
        raise RuntimeError(f"{failed.height} proxy results failed: {failed['error'].to_list()[:3]}")
    return table.drop("error")


def cached_run(k: int, run: int, seeds: int, rng: np.random.Generator, cache: Path | None,
               rescore: frozenset[str], only: frozenset[str] | None = None) -> tuple[pl.DataFrame, dict[str, int]]:
    """The results table of run `run` (`drawn_run`'s data scored by every proxy), read from `cache` when
    an earlier invocation stored it, with the proxies in `rescore` scored again by the code as it is now:
    a change to one proxy is measured on the same runs without paying for the others again. `only`:
    score just these proxies (nothing read or stored). Returned with each candidate's rows, which
    `reduce.rank` reads as the pipeline gives them."""
    candidates, reals = drawn_run(k, seeds, rng)
    sizes = {name: len(rows) for name, rows in candidates.items()}
    return _scored(k, run, candidates, reals, cache, rescore, only), sizes


def _scored(k: int, run: int, candidates: dict[str, np.ndarray], reals: dict[int, np.ndarray], cache: Path | None,
            rescore: frozenset[str], only: frozenset[str] | None) -> pl.DataFrame:
    if only is not None:
        return score_candidates(candidates, reals, only)
    path = None if cache is None else cache / f"k{k}-run{run:03d}.parquet"
    if path is None or not path.exists():
        table = score_candidates(candidates, reals)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            table.write_parquet(path)
        return table
    table = pl.read_parquet(path)
    if not rescore:
        return table
    return pl.concat([table.filter(~pl.col("proxy").is_in(sorted(rescore))),
                      score_candidates(candidates, reals, rescore).select(table.columns)])


def studentised_gaps(table: pl.DataFrame, seeds: int, rows: dict[str, int]) -> dict[str, np.ndarray]:
    """Per proxy, the differences of every pair's seed means over the standard error `reduce.best_set`
    gives them (`reduce.pair_standard_errors`). Among truly tied candidates their sd is 1 when the
    standard errors are right; above 1 the set breaks ties more often than its level says."""
    out = {}
    for (proxy,), group in table.filter(pl.col("seed") < seeds).group_by(["proxy"]):
        ids, seed_list = sorted(group["dataset_id"].unique().to_list()), list(range(seeds))
        points, cube = _point_matrix(group, ids, seed_list), _replicate_cube(group, ids, seed_list, 200)
        se = pair_standard_errors(points, cube, np.array([rows[name] for name in ids]))
        mean = points.mean(axis=1)
        upper = np.triu_indices(len(ids), 1)
        with np.errstate(divide="ignore", invalid="ignore"):  # two equal values without spread: no gap, left out
            out[str(proxy)] = ((mean[:, None] - mean[None, :]) / se)[upper]
    return out


def part_two(runs: int, k: int, seed_counts: tuple[int, ...] = (2, 3, 5), cache: Path | None = None,
             rescore: frozenset[str] = frozenset(), only: frozenset[str] | None = None) -> None:
    print(f"\n## Real proxies, {k} tied candidates of 40-300 rows, U_r 60 rows per seed ({runs} runs)\n")
    rng = np.random.default_rng(2026 + (k != 6) * k)  # k = 6 keeps the generator its earlier tables used
    kept: dict[tuple[str, int], list[int]] = {}
    gaps: dict[tuple[str, int], list[np.ndarray]] = {}
    started = time.perf_counter()
    for run in range(runs):
        table, rows = cached_run(k, run, max(seed_counts), rng, cache, rescore, only)
        for seeds in seed_counts:
            scores = add_ensemble(table.filter(pl.col("seed") < seeds))
            for (proxy,), group in rank(scores, level=LEVEL, seed=run, rows=rows).group_by(["proxy"]):
                kept.setdefault((str(proxy), seeds), []).append(int(group["tied_with_best"].sum()))
            for proxy, z in studentised_gaps(scores, seeds, rows).items():
                gaps.setdefault((proxy, seeds), []).append(z)
        print(f"k={k}: run {run + 1}/{runs} done at {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    proxies = sorted({p for p, _ in kept} - {"ensemble"}) + (["ensemble"] if ("ensemble", 2) in kept else [])
    print("Share of runs keeping all k (mean set size)\n")
    print("| proxy | " + " | ".join(f"{s} seeds" for s in seed_counts) + " |")
    print("|---|" + "---|" * len(seed_counts))
    for proxy in proxies:
        cells = [np.asarray(kept[(proxy, seeds)]) for seeds in seed_counts]
        print(f"| {proxy} | " + " | ".join(f"{np.mean(c == k):.0%} ({c.mean():.1f})" for c in cells) + " |",
              flush=True)
    print("\nsd of the studentised differences of seed means (1 when the standard errors are right)\n")
    print("| proxy | " + " | ".join(f"{s} seeds" for s in seed_counts) + " |")
    print("|---|" + "---|" * len(seed_counts))
    for proxy in proxies:
        cells = [np.nanstd(np.concatenate(gaps[(proxy, seeds)])) for seeds in seed_counts]
        print(f"| {proxy} | " + " | ".join(f"{c:.2f}" for c in cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40, help="runs per cell of the plain-table part")
    parser.add_argument("--e2e-k", type=int, nargs="+", default=[6], help="tied candidates in the real-proxy part")
    parser.add_argument("--e2e-runs", type=int, nargs="+", default=[10],
                        help="runs of the real-proxy part, one number for every k or one per --e2e-k")
    parser.add_argument("--cache", type=Path, help="a folder keeping each run's scores: a later call reads them")
    parser.add_argument("--rescore", nargs="*", default=[],
                        help="proxies scored again on cached runs (the ones whose code changed)")
    parser.add_argument("--only", nargs="+", help="score just these proxies in the real-proxy part (no cache)")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--skip-tables", action="store_true")
    args = parser.parse_args()
    if not args.skip_tables:
        part_one(args.runs)
    if not args.skip_e2e:
        runs = args.e2e_runs * len(args.e2e_k) if len(args.e2e_runs) == 1 else args.e2e_runs
        if len(runs) != len(args.e2e_k):
            parser.error("--e2e-runs: give one number, or one per --e2e-k")
        for k, count in zip(args.e2e_k, runs, strict=True):
            part_two(count, k, cache=args.cache, rescore=frozenset(args.rescore),
                     only=None if args.only is None else frozenset(args.only))


if __name__ == "__main__":
    main()
