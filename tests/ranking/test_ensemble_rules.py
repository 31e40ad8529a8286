"""The ensemble's weighting rules, against weights computed by hand with numpy."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from synque_ray.reduce import DECORRELATION_SHRINK, add_ensemble, ensemble_weights


def scores_of(values: dict[str, np.ndarray]) -> pl.DataFrame:
    """A scores table from {proxy: array (seeds, candidates)}."""
    rows = [{"dataset_id": f"c{c}", "proxy": proxy, "seed": s, "raw": float(v), "score": float(v)}
            for proxy, array in values.items() for s, seed_values in enumerate(array)
            for c, v in enumerate(seed_values)]
    return pl.DataFrame(rows)


def test_decorrelated_weights_are_the_shrunk_minimum_variance_solution():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=30)
    shared = rng.normal(size=30)  # an error the block shares: it agrees with itself more than with the truth
    values = {f"block{i}": np.stack([truth + shared + 0.2 * rng.normal(size=30) for _ in range(3)])
              for i in range(3)}
    values["clean"] = np.stack([truth + 0.3 * rng.normal(size=30) for _ in range(3)])
    scores = scores_of(values)
    weights = ensemble_weights(scores, "decorrelated")
    # By hand: per seed, the Spearman correlation matrix of the proxies (ranks, no ties), averaged.
    proxies = sorted(values)
    ranks = [np.stack([np.argsort(np.argsort(-values[p][s])) for p in proxies]) for s in range(3)]
    assert all(w > 0 for w in ensemble_weights(scores, "robust").values())  # every proxy agrees with the rest
    r = np.mean([np.corrcoef(seed_ranks) for seed_ranks in ranks], axis=0)
    expected = np.clip(np.linalg.solve(r + DECORRELATION_SHRINK * np.eye(4), np.ones(4)), 0, None)
    expected /= expected.sum()
    assert [weights[p] for p in proxies] == pytest.approx(expected)
    # Three proxies that move together count about as one: the clean one outweighs each of them,
    # while the robust rule (agreement with the others) gives the block most of the weight.
    assert weights["clean"] > max(weights[f"block{i}"] for i in range(3))
    robust = ensemble_weights(scores, "robust")
    assert robust["clean"] < min(robust[f"block{i}"] for i in range(3))


def test_decorrelated_gives_a_reversed_proxy_no_weight():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=12)
    values = {f"good{i}": np.stack([truth + 0.5 * rng.normal(size=12) for _ in range(2)]) for i in range(3)}
    values["reversed"] = np.stack([-truth + 0.5 * rng.normal(size=12) for _ in range(2)])
    weights = ensemble_weights(scores_of(values), "decorrelated")
    assert weights["reversed"] == 0 and sum(weights.values()) == pytest.approx(1.0)
    ranked = add_ensemble(scores_of(values), method="decorrelated")
    assert ranked.filter(pl.col("proxy") == "ensemble").height == 24


def test_a_proxy_that_ranks_everyone_alike_is_no_nan(recwarn):
    rng = np.random.default_rng(2)
    truth = rng.normal(size=8)
    values = {f"good{i}": np.stack([truth + 0.3 * rng.normal(size=8) for _ in range(2)]) for i in range(3)}
    values["flat"] = np.ones((2, 8))  # every candidate alike: its rank correlation is undefined
    weights = ensemble_weights(scores_of(values), "decorrelated")
    assert all(np.isfinite(w) for w in weights.values()) and weights["flat"] == 0
    assert sum(weights.values()) == pytest.approx(1.0)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
