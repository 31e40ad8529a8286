"""The best set against the old `tied_with_best` rule, by simulation (issue 13 §3).

    python benchmarks/sim_best_set.py [--runs 40]

Candidates of known true means are scored on 5 seeds with 200 replicates the way the
proxies' results look (tests/test_best_set.py builds them): a shift shared by all
candidates per seed (its U_r sample), each candidate's own seed noise, and replicates
scattered around each seed's score. For k truly equal candidates it counts how often the
set holds all k and its mean size; for one candidate `delta` sds ahead of nine equal
others, the mean size (1 = the leader alone). The old rule is "rank 1 in at least 5% of
the draws" (`rank_low == 1`), read from the same rankings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_best_set import simulated  # the tests' generator: one definition

from synque_ray.reduce import rank


def sets(means: list[float], rng: np.random.Generator, seed_sd: float, replicate_sd: float) -> tuple[int, int]:
    """(size of the new best set, size of the old rule's) on one simulated run."""
    ranked = rank(simulated(means, rng, seed_sd, replicate_sd))
    return int(ranked["tied_with_best"].sum()), int(ranked.filter(pl.col("rank_low") == 1).height)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    runs = parser.parse_args().runs
    print("| case | noise (seed sd, replicate sd) | new: all in / mean size | old: all in / mean size |")
    print("|---|---|---|---|")
    for seed_sd, replicate_sd in ((1.0, 1.0), (1.0, 0.2)):
        for k in (2, 10, 32):
            rng = np.random.default_rng(k)
            sizes = np.array([sets([0.0] * k, rng, seed_sd, replicate_sd) for _ in range(runs)])
            print(f"| {k} equal | {seed_sd}, {replicate_sd} | "
                  f"{np.mean(sizes[:, 0] == k):.0%} / {sizes[:, 0].mean():.1f} "
                  f"| {np.mean(sizes[:, 1] == k):.0%} / {sizes[:, 1].mean():.1f} |")
        for delta in (2.0, 4.0, 10.0):
            rng = np.random.default_rng(int(delta))
            sizes = np.array([sets([delta] + [0.0] * 9, rng, seed_sd, replicate_sd) for _ in range(runs)])
            print(f"| 1 ahead by {delta:g} sd + 9 equal | {seed_sd}, {replicate_sd} | "
                  f"{np.mean(sizes[:, 0] == 1):.0%} alone / {sizes[:, 0].mean():.1f} | "
                  f"{np.mean(sizes[:, 1] == 1):.0%} alone / {sizes[:, 1].mean():.1f} |")


if __name__ == "__main__":
    main()
