"""MDM read at one size: how its value moves with a candidate's rows, and what the size costs in
ranking accuracy on the sentiment benchmark.

    python benchmarks/bench_mdm_rows.py --sizes [--draws 30]
    python benchmarks/bench_mdm_rows.py --replicates [--draws 16]
    python benchmarks/bench_mdm_rows.py --bench ../shared/bench/sentiment --cache results/cache-sentiment \
        [--rows 10 20 40]

--sizes: the paper's MDM (every row) and the proxy's (blocks of mdm.rows rows) on 16-d Gaussians of
one distribution at 40, 100 and 300 rows: mean and sd over `--draws` candidates.
--replicates: the proxy's replicate sd over the sd of its value across `--draws` fresh candidates
(1 is right) at 45, 70, 150 and 300 rows, 100 replicates, and the sd of (value - common mean) /
replicate sd (1 when each candidate's replicates are as wide as its own error).
--bench: the Spearman of each with the benchmark's test F1, from the cached bundled-MiniLM
embeddings of a `bench-sentiment` run (the cache_dir of configs/bench-sentiment.yaml).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from synque_ray.proxies.mdm import mdm, mdm_of_rows


def sizes(draws: int) -> None:
    rng = np.random.default_rng(11)
    print("| rows | paper's MDM (every row) | MDM at 20 rows (the proxy) |\n|---|---|---|")
    for n in (40, 100, 300):
        rows = [rng.normal(size=(n, 16)) for _ in range(draws)]
        paper = [mdm(x, k=3) for x in rows]
        proxy = [mdm_of_rows(x, k=3, rows=20) for x in rows]
        cells = [f"{np.mean(v):.3f} (sd {np.std(v):.3f})" for v in (paper, proxy)]
        print(f"| {n} | " + " | ".join(cells) + " |", flush=True)


def replicates(draws: int) -> None:
    from synque_ray.proxies import REGISTRY
    from synque_ray.proxies.mdm import MdmParams

    rng, proxy = np.random.default_rng(4), REGISTRY["mdm"]
    outputs = {n: [proxy.compute(rng.normal(size=(n, 16)), None, MdmParams(), 0, 100) for _ in range(draws)]
               for n in (45, 70, 150, 300)}
    centre = np.mean([o.value for found in outputs.values() for o in found])
    print("| rows | replicate sd / true sd | sd of the studentised error |\n|---|---|---|")
    for n, found in outputs.items():
        values, spreads = np.array([o.value for o in found]), np.array([np.std(o.replicates) for o in found])
        print(f"| {n} | {spreads.mean() / values.std(ddof=1):.2f} | {np.std((values - centre) / spreads):.2f} |")


def bench(folder: Path, cache: Path, block_rows: list[int]) -> None:
    import pyarrow.parquet as pq

    from synque_ray.reading import RowSet

    f1 = {r["dataset_name"]: float(r["test_f1"]) for r in csv.DictReader((folder / "task_performance.csv").open())}
    values: dict[str, list[float]] = {}
    truth = []
    for path in sorted((folder / "synthetic").glob("*.json")):
        found = list(cache.glob(f"embeddings/*/{RowSet(path.stem, path=path, spec='headline').content_hash}.parquet"))
        if not found:
            raise SystemExit(f"{path.stem}: no cached embeddings under {cache} (run make bench-sentiment first)")
        x = np.asarray(pq.read_table(found[0]).column("embedding").to_pylist(), dtype=np.float64)
        truth.append(f1[path.stem])
        values.setdefault("every row (the paper's)", []).append(mdm(x, k=3))
        for rows in block_rows:
            values.setdefault(f"blocks of {rows} rows", []).append(mdm_of_rows(x, k=3, rows=rows))
    print("| MDM | Spearman with test F1 |\n|---|---|")
    for name, v in values.items():
        print(f"| {name} | {spearmanr(v, truth).statistic:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", action="store_true")
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--replicates", action="store_true")
    parser.add_argument("--bench", type=Path)
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--rows", type=int, nargs="+", default=[10, 20, 40])
    args = parser.parse_args()
    if args.sizes:
        sizes(args.draws)
    if args.replicates:
        replicates(args.draws)
    if args.bench is not None:
        bench(args.bench, args.cache, args.rows)


if __name__ == "__main__":
    main()
