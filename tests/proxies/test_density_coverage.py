"""density / coverage (Naeem et al. 2020) and the per-row signals, against explicit loops."""

from __future__ import annotations

import numpy as np
import pytest

from synque_ray.proxies import REGISTRY
from synque_ray.proxies.coverage import NeighbourParams, coverage, density
from synque_ray.rowsignals import duplicate_groups, nearest_real_distance


def _explicit(synthetic, real, k):
    radius = [sorted(np.linalg.norm(real - r, axis=1))[k] for r in real]
    inside = [[np.linalg.norm(x - r) < radius[j] for j, r in enumerate(real)] for x in synthetic]
    return np.mean([sum(row) for row in inside]) / k, np.mean([any(col) for col in zip(*inside)])


@pytest.mark.parametrize("k", [1, 3])
def test_density_and_coverage_match_explicit_loops(k):
    rng = np.random.default_rng(k)
    real, synthetic = rng.normal(size=(15, 3)), rng.normal(0.5, 1, size=(11, 3))
    expected_density, expected_coverage = _explicit(synthetic, real, k)
    assert density(synthetic, real, k) == pytest.approx(expected_density)
    assert coverage(synthetic, real, k) == pytest.approx(expected_coverage)


def test_collapsed_candidate_covers_little_and_off_manifold_has_low_density():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 4))
    same = rng.normal(size=(200, 4))
    collapsed = np.repeat(real[:2], 100, axis=0)  # realistic rows, two modes
    far = rng.normal(4.0, 1, size=(200, 4))
    assert coverage(same, real) > 0.9 and coverage(collapsed, real) < 0.1
    assert density(same, real) == pytest.approx(1.0, abs=0.25) and density(far, real) < 0.05


def test_registry_declares_both_with_higher_is_better_and_k_in_config():
    for name in ("density", "coverage"):
        proxy = REGISTRY[name]
        assert proxy.orientation == 1.0 and proxy.uses_real
        # each half of U_r holds its own balls (half-sample replicates): 7 neighbours and the row itself
        assert proxy.params(k=7).min_real_rows() == (16, "7 nearest neighbours in each of the half-sample replicates")


def test_coverage_replicates_resample_both_sides():
    rng = np.random.default_rng(2)
    out = REGISTRY["coverage"].compute(rng.normal(size=(50, 3)), rng.normal(size=(40, 3)), NeighbourParams(), 1, 64)
    # centred on the point (proxies.base.centred), so a replicate may pass 1: only its rank is used
    assert out.replicates.shape == (64,) and np.isfinite(out.replicates).all() and out.replicates.std() > 0
    assert out.replicates.mean() == pytest.approx(out.value)


def test_nearest_real_distance_and_duplicate_groups():
    synthetic = np.array([[0.0, 0.0], [3.0, 4.0]])
    real = np.array([[0.0, 1.0], [3.0, 0.0]])
    assert nearest_real_distance(synthetic, real).tolist() == [1.0, 4.0]  # (3,4)→(3,0); (0,1) is 4.24
    rows = np.array([[1, 0], [0, 1], [1, 0.01], [0.7, 0.7], [0, 1.0001], [1, 0.02]])
    # rows 0, 2, 5 point the same way; rows 1 and 4 too; row 3 stands alone
    assert duplicate_groups(rows).tolist() == [0, 1, 0, -1, 1, 0]
