"""Binds the config to the pure proxy functions, for one (candidate, seed) pair.

`score_pair` is what a Ray task runs; it returns plain rows so that the driver can
commit them without knowing which proxies exist.
"""

from __future__ import annotations

import time

import numpy as np

from synque_ray import proxies
from synque_ray.config import JobConfig

# score = sign * raw, so that higher is always better (SPEC §6)
ORIENTATION = {"mdm": 1.0, "mmd": -1.0, "pad": -1.0, "mauve": 1.0, "lens": 1.0}


def proxy_params(config: JobConfig) -> dict:
    """Everything a proxy result depends on besides the embeddings: part of the result key."""
    return {name: getattr(config, name).model_dump() for name in config.embedding_proxies}


def compute_proxy(name: str, synthetic: np.ndarray, real: np.ndarray, params: dict, seed: int) -> float:
    if name == "mdm":
        return proxies.mdm(synthetic, k=params["k"], seed=seed)
    if name == "mmd":
        return proxies.mmd_squared(synthetic, real, **params)
    if name == "pad":
        return proxies.pad(synthetic, real, classifier=params["classifier"], holdout=params["holdout"], seed=seed)
    if name == "mauve":
        return proxies.mauve_score(synthetic, real, scaling_factor=params["scaling_factor"], seed=seed)
    raise ValueError(f"unknown proxy {name!r}")


def score_pair(dataset_id: str, seed: int, synthetic, real, params: dict) -> list[dict]:
    """`synthetic` and `real` are arrays, or handles with a `load()` (a Ray task reads its own inputs)."""
    synthetic = synthetic if isinstance(synthetic, np.ndarray) else synthetic.load()
    real = real if isinstance(real, np.ndarray) else real.load()
    rows = []
    for name, proxy_config in params.items():
        started = time.perf_counter()
        raw = compute_proxy(name, synthetic, real, proxy_config, seed)
        rows.append(
            {
                "dataset_id": dataset_id,
                "proxy": name,
                "seed": seed,
                "raw": raw,
                "score": ORIENTATION[name] * raw,
                "seconds": time.perf_counter() - started,
            }
        )
    return rows
