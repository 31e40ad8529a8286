"""The report's PCA projections on a busy machine: one BLAS thread against the default, and
projections reused from the embedding cache.

Real embeddings: the first cached entry of an embedding cache stands for U_r and the next
20 for candidates (as `synque report` would project them: at most 400 rows a side, 2
components). Each candidate is projected both ways, the order alternating from one to the
next, so both modes meet the same machine load. Then the projections go through the
report's cache twice: the first pass computes and saves them, the second reads them back.

    python benchmarks/bench_report_svd.py [--cache /work/cache-sentiment] [--count 20]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

from synque_ray.embed import _read_vectors
from synque_ray.report import load, view
from synque_ray.storage import Store


def entries(cache: Path, count: int) -> tuple[str, list[tuple[str, np.ndarray]]]:
    """(model prefix, [(content hash, embeddings)]) of the first count + 1 cached entries."""
    folder = next(p for p in sorted((cache / "embeddings").iterdir()) if p.is_dir())
    store = Store(str(cache))
    found = []
    for path in sorted(folder.glob("*.parquet"))[:count + 1]:
        found.append((path.stem, _read_vectors(store, f"embeddings/{folder.name}/{path.name}", None)))
    if len(found) < count + 1:
        raise SystemExit(f"{folder}: {len(found)} entries, need {count + 1}")
    return folder.name, found


def timed(function) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def compare_threads(real: np.ndarray, candidates: list[np.ndarray]) -> dict[str, float]:
    """Seconds per mode over all candidates, modes alternating first; checks both agree."""
    totals = {"default": 0.0, "one thread": 0.0}
    modes = {"default": None, "one thread": 1}
    for k, candidate in enumerate(candidates):
        order = list(modes) if k % 2 == 0 else list(reversed(modes))
        results = {}
        for mode in order:
            seconds, results[mode] = timed(lambda m=mode, c=candidate: view.pca_2d(c, real, blas_threads=modes[m]))
            totals[mode] += seconds
        assert abs(results["default"][2] - results["one thread"][2]) < 1e-9
    return totals


def compare_reuse(real_hash: str, hashes: list[str], real: np.ndarray, candidates: list[np.ndarray]
                  ) -> tuple[float, float]:
    """Seconds for all projections through the report's cache: first pass (computed, saved), second (read)."""
    with tempfile.TemporaryDirectory() as folder:
        run = load.RunData(folder, {"models": {"embedding": "bench"}, "config": {"cache_dir": folder},
                                    "content_hashes": {"candidates": dict(zip(hashes, hashes, strict=True)),
                                                       "real": {"1": real_hash}}}, None, None)
        passes = []
        for _ in range(2):
            seconds = 0.0
            for name, candidate in zip(hashes, candidates, strict=True):
                seconds += timed(lambda c=candidate, n=name: load.projection(
                    run, n, lambda: view.pca_2d(c, real), "pca400s0"))[0]
            passes.append(seconds)
        return passes[0], passes[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="/work/cache-sentiment", help="an embedding cache folder")
    parser.add_argument("--count", type=int, default=20, help="candidates to project")
    args = parser.parse_args()
    _, found = entries(Path(args.cache), args.count)
    (real_hash, real), rest = found[0], found[1:]
    hashes, candidates = [h for h, _ in rest], [v for _, v in rest]
    blas = [(i["internal_api"], i.get("num_threads")) for i in threadpool_info() if i["user_api"] == "blas"]
    print(f"cpus {os.cpu_count()}, BLAS {blas}, load average before {os.getloadavg()[0]:.1f}")
    print(f"U_r {real.shape}, candidates {[c.shape[0] for c in candidates]} rows of {real.shape[1]} dims")
    totals = compare_threads(real, candidates)
    print(f"{len(candidates)} SVDs: default threads {totals['default']:.2f} s, one thread {totals['one thread']:.2f} s,"
          f" ratio {totals['default'] / totals['one thread']:.1f}x")
    first, second = compare_reuse(real_hash, hashes, real, candidates)
    print(f"through the report's cache: first pass {first:.2f} s, unchanged re-run {second:.3f} s "
          f"({first / second:.0f}x)")
    print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
