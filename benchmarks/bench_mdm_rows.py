"""MDM read at one size: how its value moves with a candidate's rows, and what the size costs in
ranking accuracy on the sentiment benchmark.

    python benchmarks/bench_mdm_rows.py --sizes [--draws 30]
    python benchmarks/bench_mdm_rows.py --replicates [--draws 16] [--replicate-rows 25 45 70 150 300]
    python benchmarks/bench_mdm_rows.py --cost 5 [--before TREE]
    python benchmarks/bench_mdm_rows.py --overlaps 3000
    python benchmarks/bench_mdm_rows.py --bench ../shared/bench/sentiment --cache results/cache-sentiment \
        [--rows 10 20 40]

--sizes: the paper's MDM (every row) and the proxy's (blocks of mdm.rows rows) on 16-d Gaussians of
one distribution at 40, 100 and 300 rows: mean and sd over `--draws` candidates.
--replicates: the proxy's replicate sd over the sd of its value across `--draws` fresh candidates
(1 is right) at 25, 45, 70, 150 and 300 rows, 100 replicates, and the sd of (value - common mean) /
replicate sd (1 when each candidate's replicates are as wide as its own error); 16-d Gaussians,
and four Gaussian clusters of unequal weights and spreads.
--cost: CPU seconds of one MDM task without and with 200 replicates at 45 and 300 rows (one BLAS
thread); --before TREE (a folder holding another revision's synque_ray, `git archive REV synque_ray |
tar -x -C TREE`) runs that tree's MDM on the same candidates, alternating, for a side-by-side ratio.
--overlaps: the covariance of MDM on two blocks of 20 Gaussian rows that share c rows (the
Hoeffding structure of the U-statistic: linear in c for a mean of rows).
--bench: the Spearman of each with the benchmark's test F1, from the cached bundled-MiniLM
embeddings of a `bench-sentiment` run (the cache_dir of configs/bench-sentiment.yaml).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "proxies"))
from test_replicate_calibration import candidate_only  # the tests' Gaussian and clustered candidates

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


def replicates(draws: int, sizes: tuple[int, ...] = (25, 45, 70, 150, 300)) -> None:
    from threadpoolctl import threadpool_limits

    from synque_ray.proxies import REGISTRY
    from synque_ray.proxies.mdm import MdmParams

    proxy = REGISTRY["mdm"]
    print("| distribution | rows | replicate sd / true sd | sd of the studentised error |\n|---|---|---|---|")
    with threadpool_limits(1):  # small matrices: a second BLAS thread only adds overhead
        for name, clustered in (("gaussian", False), ("clustered", True)):
            rng = np.random.default_rng(4)
            outputs = {n: [proxy.compute(candidate_only(n, clustered)(rng)[0], None, MdmParams(), 0, 100)
                           for _ in range(draws)]
                       for n in sizes}
            centre = np.mean([o.value for found in outputs.values() for o in found])
            for n, found in outputs.items():
                values = np.array([o.value for o in found])
                spreads = np.array([np.std(o.replicates) for o in found])
                print(f"| {name} | {n} | {spreads.mean() / values.std(ddof=1):.2f} | "
                      f"{np.std((values - centre) / spreads):.2f} |", flush=True)


def overlaps(pairs: int) -> None:
    """The covariance of the paper's MDM of two blocks of 20 rows that share c rows (16-d Gaussians), over
    `pairs` fresh pairs per c, and that covariance per shared row: for a mean of rows it is the same at
    every c; MDM's rises near c = 20 (a block's medoids are a property of its exact rows)."""
    from threadpoolctl import threadpool_limits

    from synque_ray.proxies.mdm import _block_mdms

    rows, rng = 20, np.random.default_rng(0)
    print("| shared rows c | covariance | per shared row |\n|---|---|---|")
    with threadpool_limits(1):
        for shared in (0, 1, 2, 5, 10, 15, 18, 19, 20):
            width = 2 * rows - shared  # the rows of the pair's union
            points = rng.normal(size=(pairs * width, 16))
            start = (np.arange(pairs) * width)[:, None]
            first = _block_mdms(points, start + np.arange(rows), 3)
            second = _block_mdms(points, start + np.arange(rows - shared, width), 3)
            covariance = np.cov(first, second)[0, 1]
            print(f"| {shared} | {covariance:.4f} | {covariance / max(shared, 1):.4f} |", flush=True)


def _module_of(tree: Path):
    """The MDM module of another tree's synque_ray (e.g. `git archive REV synque_ray | tar -x -C TREE`),
    loaded beside this one's; what it imports from the rest of synque_ray comes from this tree."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("_mdm_before", tree / "synque_ray" / "proxies" / "mdm.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic looks the module of its models up there
    spec.loader.exec_module(module)
    return module


def cost(tasks: int, before: Path | None) -> None:
    """CPU seconds of one MDM task (16-d Gaussians) without and with 200 replicates, at 45 and 300 rows,
    mean of `tasks` candidates; with `before`, the same candidates through that tree's MDM too, the two
    alternating candidate by candidate so that the machine's load falls on both alike."""
    import time

    from threadpoolctl import threadpool_limits

    from synque_ray.proxies import mdm as this

    modules = {"this tree": this, **({"before": _module_of(before)} if before else {})}
    rng = np.random.default_rng(5)
    print("| rows | tree | CPU s without replicates | with 200 |\n|---|---|---|---|")
    with threadpool_limits(1):
        for module in modules.values():  # the first call loads kmedoids
            module.PROXY.compute(rng.normal(size=(45, 16)), None, module.MdmParams(), 0, 2)
        for n in (45, 300):
            candidates = [rng.normal(size=(n, 16)) for _ in range(tasks)]
            seconds = {name: [0.0, 0.0] for name in modules}
            for candidate in candidates:
                for i, resamples in enumerate((0, 200)):
                    for name, module in modules.items():
                        started = time.process_time()
                        module.PROXY.compute(candidate, None, module.MdmParams(), 0, resamples)
                        seconds[name][i] += (time.process_time() - started) / tasks
            for name, (plain, full) in seconds.items():
                print(f"| {n} | {name} | {plain:.3f} | {full:.3f} |", flush=True)


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
    parser.add_argument("--replicate-rows", type=int, nargs="+", default=[25, 45, 70, 150, 300])
    parser.add_argument("--cost", type=int, metavar="TASKS", help="CPU per task at 45 and 300 rows, mean of TASKS")
    parser.add_argument("--before", type=Path, metavar="TREE", help="--cost for TREE's synque_ray too, side by side")
    parser.add_argument("--overlaps", type=int, metavar="PAIRS", help="MDM's covariance by shared rows")
    parser.add_argument("--bench", type=Path)
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--rows", type=int, nargs="+", default=[10, 20, 40])
    args = parser.parse_args()
    if args.sizes:
        sizes(args.draws)
    if args.replicates:
        replicates(args.draws, tuple(args.replicate_rows))
    if args.overlaps:
        overlaps(args.overlaps)
    if args.cost:
        cost(args.cost, args.before)
    if args.bench is not None:
        bench(args.bench, args.cache, args.rows)


if __name__ == "__main__":
    main()
