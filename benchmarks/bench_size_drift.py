"""Does a candidate's size alone move its score? Two disjoint samples of ONE real pool.

    python benchmarks/bench_size_drift.py POOL_FILE TEXT_FIELD [--draws 10]

Embeds the pool with the bundled model, then for each (candidate rows, real rows)
size pair draws `draws` disjoint random splits of the pool and scores the "candidate"
against the "real" sample under the paper's definitions (holdout PAD with the plain
error; biased MMD²) and the new defaults (5-fold cross-fitted, class-balanced PAD;
unbiased MMD²). Both sides come from one distribution, so a size-robust proxy stays
at its no-difference value (0) at every size. Prints a Markdown table of mean ± std.
"""

from __future__ import annotations

import argparse

import numpy as np

from synque_ray.models import resolve_model
from synque_ray.proxies.mmd import mmd_squared
from synque_ray.proxies.pad import pad
from synque_ray.reading import read_texts

SIZES = [(100, 100), (400, 100), (30, 30), (300, 30), (800, 30), (20, 40), (400, 40)]
PROXIES = {
    "PAD paper": lambda s, r, d: pad(s, r, seed=d, folds=0, holdout=0.2, balanced=False, train_rows="all"),
    "PAD new": lambda s, r, d: pad(s, r, seed=d),
    "MMD² biased": lambda s, r, d: mmd_squared(s, r, estimator="biased"),
    "MMD² unbiased": lambda s, r, d: mmd_squared(s, r, estimator="unbiased"),
}

FORMAT = {"PAD": ".3f", "MMD": ".1e"}  # MMD² of unit-norm embeddings is of order 1e-4 here


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("pool")
    parser.add_argument("text")
    parser.add_argument("--draws", type=int, default=10)
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model("bundled-minilm", "model")[0], device="cpu")
    pool = model.encode(read_texts(args.pool, args.text), batch_size=256)
    print(f"pool: {len(pool)} rows; {args.draws} draws per size\n")
    print("| candidate rows | real rows | 1-4π(1-π) | " + " | ".join(PROXIES) + " |")
    print("|---|---|---|" + "---|" * len(PROXIES))
    for n_candidate, n_real in SIZES:
        values = {name: [] for name in PROXIES}
        for draw in range(args.draws):
            order = np.random.default_rng(draw).permutation(len(pool))
            synthetic, real = pool[order[:n_candidate]], pool[order[n_candidate:n_candidate + n_real]]
            for name, proxy in PROXIES.items():
                values[name].append(proxy(synthetic, real, draw))
        share = n_candidate / (n_candidate + n_real)
        cells = " | ".join(f"{np.mean(v):{FORMAT[n[:3]]}} ± {np.std(v):{FORMAT[n[:3]]}}" for n, v in values.items())
        print(f"| {n_candidate} | {n_real} | {1 - 4 * share * (1 - share):.2f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
