"""What MAUVE costs a proxy task beyond its clustering: the import in a fresh worker and the replicates.

    python benchmarks/bench_mauve_cost.py [--repeats 3] [--draws 200] [--buckets 20]

1. Import, each in a fresh process, alternating: `import mauve` as mauve-text does it (torch
   and transformers included) and `synque_ray.proxies.mauve._mauve_module()` (without them).
2. The rank-interval replicates of one pair: `--draws` multinomial redraws of a pair of
   `--buckets`-bin histograms (20 = mauve-text's "auto" for the sentiment benchmark's 198-row
   U_r), scored one at a time with mauve-text's divergence curve and sklearn's auc (the loop
   the engine ran before) and all at once with `mauve_of_histograms`; the largest difference.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np

PLAIN = "import time; t = time.perf_counter(); import mauve; print(time.perf_counter() - t)"
HIDDEN = ("import time; t = time.perf_counter(); from synque_ray.proxies.mauve import _mauve_module; "
          "_mauve_module(); print(time.perf_counter() - t)")


def fresh(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--buckets", type=int, default=20)
    args = parser.parse_args()
    for repeat in range(args.repeats):
        plain, hidden = fresh(PLAIN), fresh(HIDDEN)
        print(f"import, repeat {repeat + 1}: mauve-text as is {plain:.2f} s, without torch/transformers "
              f"{hidden:.2f} s", flush=True)

    from mauve.compute_mauve import get_divergence_curve_for_multinomials
    from sklearn.metrics import auc

    from synque_ray.proxies.mauve import CURVE_POINTS, mauve_of_histograms

    def one(p: np.ndarray, q: np.ndarray) -> float:
        x, y = get_divergence_curve_for_multinomials(p, q, np.linspace(1e-6, 1 - 1e-6, CURVE_POINTS), 5.0).T
        by_x, by_y = np.argsort(x), np.argsort(y)
        return 0.5 * (auc(x[by_x], y[by_x]) + auc(y[by_y], x[by_y]))

    rng = np.random.default_rng(0)
    p_hist, q_hist = rng.dirichlet(np.ones(args.buckets)), rng.dirichlet(np.ones(args.buckets))
    p = rng.multinomial(198, p_hist, size=args.draws) / 198
    q = rng.multinomial(999, q_hist, size=args.draws) / 999
    for repeat in range(args.repeats):
        started = time.perf_counter()
        loop = np.array([one(a, b) for a, b in zip(p, q)])
        looped = time.perf_counter() - started
        started = time.perf_counter()
        vector = mauve_of_histograms(p, q, 5.0)
        vectorized = time.perf_counter() - started
        print(f"{args.draws} replicates, repeat {repeat + 1}: loop {looped * 1000:.0f} ms, one array operation "
              f"{vectorized * 1000:.1f} ms ({looped / vectorized:.0f}x); largest difference "
              f"{np.abs(loop - vector).max():.1e}", flush=True)


if __name__ == "__main__":
    main()
