"""MDM read at one size: how its value moves with a candidate's rows, and what the size costs in
ranking accuracy on the sentiment benchmark.

    python benchmarks/bench_mdm_rows.py --sizes [--draws 30]
    python benchmarks/bench_mdm_rows.py --replicates [--draws 16]
    python benchmarks/bench_mdm_rows.py --cost 5
    python benchmarks/bench_mdm_rows.py --bench ../shared/bench/sentiment --cache results/cache-sentiment \
        [--rows 10 20 40]

--sizes: the paper's MDM (every row) and the proxy's (blocks of mdm.rows rows) on 16-d Gaussians of
one distribution at 40, 100 and 300 rows: mean and sd over `--draws` candidates.
--replicates: the proxy's replicate sd over the sd of its value across `--draws` fresh candidates
(1 is right) at 25, 45, 70, 150 and 300 rows, 100 replicates, and the sd of (value - common mean) /
replicate sd (1 when each candidate's replicates are as wide as its own error); 16-d Gaussians,
and four Gaussian clusters of unequal weights and spreads.
--cost: CPU seconds of one MDM task without and with 200 replicates at 45 and 300 rows (one BLAS
thread); run it with another tree's synque_ray on PYTHONPATH for a before column.
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


CENTRES = np.random.default_rng(99).normal(size=(4, 16)) * 2.0  # the clustered distribution's four centres


def gaussian(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(n, 16))


def clustered(n: int, rng: np.random.Generator) -> np.ndarray:
    """Four 16-d Gaussian clusters of unequal weights (.4/.3/.2/.1) and spreads (1, .5, 1.5, .8)."""
    label = rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1])
    return CENTRES[label] + np.array([1.0, 0.5, 1.5, 0.8])[label][:, None] * rng.normal(size=(n, 16))


def replicates(draws: int) -> None:
    from threadpoolctl import threadpool_limits

    from synque_ray.proxies import REGISTRY
    from synque_ray.proxies.mdm import MdmParams

    proxy = REGISTRY["mdm"]
    print("| distribution | rows | replicate sd / true sd | sd of the studentised error |\n|---|---|---|---|")
    with threadpool_limits(1):  # small matrices: a second BLAS thread only adds overhead
        for name, draw in (("gaussian", gaussian), ("clustered", clustered)):
            rng = np.random.default_rng(4)
            outputs = {n: [proxy.compute(draw(n, rng), None, MdmParams(), 0, 100) for _ in range(draws)]
                       for n in (25, 45, 70, 150, 300)}
            centre = np.mean([o.value for found in outputs.values() for o in found])
            for n, found in outputs.items():
                values = np.array([o.value for o in found])
                spreads = np.array([np.std(o.replicates) for o in found])
                print(f"| {name} | {n} | {spreads.mean() / values.std(ddof=1):.2f} | "
                      f"{np.std((values - centre) / spreads):.2f} |", flush=True)


def cost(tasks: int) -> None:
    """CPU seconds of one MDM task (16-d Gaussians) without and with 200 replicates, at 45 and 300 rows."""
    import time

    from threadpoolctl import threadpool_limits

    from synque_ray.proxies import REGISTRY
    from synque_ray.proxies.mdm import MdmParams

    proxy, rng = REGISTRY["mdm"], np.random.default_rng(5)
    print("| rows | CPU s without replicates | with 200 |\n|---|---|---|")
    with threadpool_limits(1):
        proxy.compute(rng.normal(size=(45, 16)), None, MdmParams(), 0, 2)  # the first call loads kmedoids
        for n in (45, 300):
            candidates = [rng.normal(size=(n, 16)) for _ in range(tasks)]
            seconds = []
            for resamples in (0, 200):
                started = time.process_time()
                for candidate in candidates:
                    proxy.compute(candidate, None, MdmParams(), 0, resamples)
                seconds.append((time.process_time() - started) / tasks)
            print(f"| {n} | {seconds[0]:.3f} | {seconds[1]:.3f} |", flush=True)


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
    parser.add_argument("--cost", type=int, metavar="TASKS", help="CPU per task at 45 and 300 rows, mean of TASKS")
    parser.add_argument("--bench", type=Path)
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--rows", type=int, nargs="+", default=[10, 20, 40])
    args = parser.parse_args()
    if args.sizes:
        sizes(args.draws)
    if args.replicates:
        replicates(args.draws)
    if args.cost:
        cost(args.cost)
    if args.bench is not None:
        bench(args.bench, args.cache, args.rows)


if __name__ == "__main__":
    main()
