"""Rank intervals: what they cost and whether they hold on unseen U_r samples.

    python benchmarks/bench_intervals.py CONFIG [--cost-candidates 8]

Needs a finished `synque score CONFIG` (its committed per-candidate results hold the
bootstrap replicates). Two measurements:
- cost: the proxy tasks of the first candidates run in this process with 0 and with
  `ranking.resamples` replicates; the extra CPU seconds over the proxy compute;
- coverage: for every split of the seeds into 2 and the rest, intervals computed from
  the 2 seeds are checked against the rank each candidate gets from the mean score over
  the other seeds (a re-run on U_r samples the intervals never saw). Reported per proxy:
  the share of candidates whose unseen rank falls inside, and the mean interval width.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time

import numpy as np
import polars as pl
from scipy.stats import rankdata

from synque_ray.config import load_config
from synque_ray.embed import EmbeddingCache
from synque_ray.models import resolve_model
from synque_ray.pipeline import read_candidates, read_real
from synque_ray.stage.embedding import task_spec
from synque_ray.reduce import add_ensemble, rank, split_failures
from synque_ray.proxy_task import score_pair
from synque_ray.storage import Store


def cost(config, candidates: int) -> tuple[float, float]:
    """CPU seconds of the proxy tasks without and with replicates, same (candidate, seed) pairs."""
    cache = EmbeddingCache(Store(config.cache_location), resolve_model(config.embedding.model, "model")[1])
    real = {seed: cache.load(rs) for seed, rs in list(read_real(config).items())[:2]}
    vectors = [(c.name, cache.load(c)) for c in read_candidates(config)[:candidates]]
    spec = task_spec(config)
    seconds = []
    for resamples in (0, spec.resamples):
        run_spec = dataclasses.replace(spec, resamples=resamples)
        started = time.process_time()
        for name, synthetic in vectors:
            score_pair(name, None, synthetic, None, run_spec)
            for seed, real_vectors in real.items():
                score_pair(name, seed, synthetic, real_vectors, run_spec)
        seconds.append(time.process_time() - started)
    return seconds[0], seconds[1]


def committed_results(config) -> pl.DataFrame:
    store = Store(config.output)
    keys = store.read_json("run.json")["result_keys"]["embedding"]  # the embedding stage's, by candidate
    frames = [pl.from_arrow(store.read_table(f"results/{key}.parquet")) for key in keys.values()]
    return split_failures(pl.concat(frames))[0]


def coverage(results: pl.DataFrame, level: float) -> dict[str, tuple[float, float]]:
    seeds = sorted(results["seed"].unique().to_list())
    hits: dict[str, list] = {}
    for shown in itertools.combinations(seeds, 2):
        seen = add_ensemble(results.filter(pl.col("seed").is_in(shown)))
        unseen = add_ensemble(results.filter(~pl.col("seed").is_in(shown)))
        intervals = rank(seen, level=level)
        for (proxy,), group in unseen.group_by(["proxy"]):
            mean = group.group_by("dataset_id").agg(pl.col("score").mean()).sort("dataset_id")
            truth = dict(zip(mean["dataset_id"], rankdata(-mean["score"].to_numpy(), method="min"), strict=True))
            part = intervals.filter(pl.col("proxy") == proxy)
            for row in part.iter_rows(named=True):
                inside = row["rank_low"] <= truth[row["dataset_id"]] <= row["rank_high"]
                hits.setdefault(proxy, []).append((inside, row["rank_high"] - row["rank_low"] + 1))
    return {p: (float(np.mean([h for h, _ in v])), float(np.mean([w for _, w in v]))) for p, v in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--cost-candidates", type=int, default=8)
    args = parser.parse_args()
    config = load_config(args.config)
    plain, with_replicates = cost(config, args.cost_candidates)
    print(f"proxy tasks of {args.cost_candidates} candidates x 2 seeds: {plain:.1f} CPU s without replicates, "
          f"{with_replicates:.1f} with {config.ranking.resamples}: +{(with_replicates / plain - 1) * 100:.1f}%\n")
    print(f"| proxy | unseen rank inside the {config.ranking.level:.0%} interval | mean interval width (ranks) |")
    print("|---|---|---|")
    for proxy, (share, width) in sorted(coverage(committed_results(config), config.ranking.level).items()):
        print(f"| {proxy} | {share:.0%} | {width:.1f} |")


if __name__ == "__main__":
    main()
