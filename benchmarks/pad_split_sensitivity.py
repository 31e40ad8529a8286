"""How much PAD's Spearman depends on which rows land in its 20% holdout.

    python benchmarks/pad_split_sensitivity.py CONFIG PERFORMANCE_CSV ID_COLUMN METRIC

Reads the embeddings that a previous `synque score CONFIG` left in its cache and
recomputes PAD per (candidate, seed) under three holdout choices: the engine's
(stratified, split seeded by the U_r seed), stratified with one fixed split seed 42
for every U_r seed, and unstratified with seed 42.
"""

from __future__ import annotations

import sys

import numpy as np
import polars as pl
from scipy import stats
from sklearn.model_selection import train_test_split
from xgboost import XGBClassifier

from synque_ray.config import load_config
from synque_ray.embed import EmbeddingCache
from synque_ray.models import resolve_model
from synque_ray.pipeline import read_candidates, read_real
from synque_ray.storage import Store


def pad_with_split(synthetic, real, split_seed, stratify):
    x = np.vstack([synthetic, real])
    y = np.r_[np.ones(len(synthetic)), np.zeros(len(real))]
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=split_seed,
                                              stratify=y if stratify else None)
    p = XGBClassifier(n_jobs=1, random_state=split_seed).fit(x_tr, y_tr).predict_proba(x_te)[:, 1]
    return 1 - 2 * np.mean(np.abs(p - y_te))


def main() -> None:
    config_path, csv, id_column, metric = sys.argv[1:5]
    config = load_config(config_path)
    cache = EmbeddingCache(Store(config.cache_location), resolve_model(config.embedding.model, "m")[1])
    performance = dict(pl.read_csv(csv).select(id_column, metric).iter_rows())
    real = {seed: cache.load(rs) for seed, rs in read_real(config).items()}
    candidates = read_candidates(config)
    variants = {"stratified, split seed = U_r seed (engine)": (None, True),
                "stratified, split seed 42 for all": (42, True),
                "unstratified, split seed 42 for all": (42, False)}
    print("| holdout | Spearman per seed | mean |\n|---|---|---|")
    for label, (fixed, stratify) in variants.items():
        per_seed = []
        for seed, real_vectors in real.items():
            scores = [-pad_with_split(cache.load(c), real_vectors, fixed if fixed is not None else seed, stratify)
                      for c in candidates]
            per_seed.append(stats.spearmanr(scores, [performance[c.name] for c in candidates]).statistic)
        print(f"| {label} | {', '.join(f'{v:.3f}' for v in per_seed)} | {np.mean(per_seed):.3f} |", flush=True)


if __name__ == "__main__":
    main()
