"""MAUVE's own noise floor: how far MAUVE reorders the candidates when only its k-means start
changes, on the same fp32 embeddings (the bar for int8: agreement ≥ .98 with fp32).

    python benchmarks/mauve_noise_floor.py CONFIG SEED [SEED ...]

CONFIG: a finished run's config (its embedding cache holds every candidate and U_r sample).
Per U_r seed: MAUVE of every candidate with the engine's k-means seed (the U_r seed) and with
seed + 1000, and the Spearman correlation of the two rankings.
"""
import sys
import time

import numpy as np

from synque_ray.config import load_config
from synque_ray.embed import EmbeddingCache, resolve_embedding
from synque_ray.pipeline import read_candidates, read_real
from synque_ray.proxies.mauve import mauve_score
from synque_ray.ranks import spearman
from synque_ray.storage import Store

config = load_config(sys.argv[1])
cache = EmbeddingCache(Store(config.cache_location), resolve_embedding(config).id)
real = {seed: cache.load(rs) for seed, rs in read_real(config).items()}
candidates = [rs for rs in read_candidates(config) if cache.has(rs)]
vectors = {rs.name: cache.load(rs) for rs in candidates}
print(len(candidates), "candidates", flush=True)
for seed in [int(s) for s in sys.argv[2:]]:
    t = time.time()
    a = [mauve_score(vectors[rs.name], real[seed], 5.0, seed) for rs in candidates]
    b = [mauve_score(vectors[rs.name], real[seed], 5.0, seed + 1000) for rs in candidates]
    rho = spearman(np.array(a), np.array(b))
    print(f"U_r seed {seed}: Spearman(k-means seed {seed}, seed {seed + 1000}) = {rho:.3f} ({time.time() - t:.0f} s)",
          flush=True)
