"""MDM on hand-made clusters: the mean over clusters of the mean distance to the medoid."""

import numpy as np
import pytest

from synque_ray.proxies.mdm import mdm


def test_mdm_on_hand_made_clusters():
    # Three tight clusters; each point sits at distance 1 from its cluster centre, which is a row.
    centres = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    offsets = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    points = np.vstack([c + offsets for c in centres])
    # medoid = centre row; mean distance to it = (0 + 1 + 1 + 1 + 1) / 5 per cluster
    assert mdm(points, k=3) == pytest.approx(0.8)


def test_mdm_uses_unequal_cluster_sizes_as_mean_of_cluster_means():
    a = np.array([[0.0], [2.0], [-2.0]])  # medoid 0, mean distance 4/3
    b = np.array([[50.0], [51.0]])  # medoid either, mean distance 1/2
    value = mdm(np.vstack([a, b]), k=2)
    assert value == pytest.approx((4 / 3 + 1 / 2) / 2)


def test_mdm_needs_k_rows():
    with pytest.raises(ValueError, match="at least k=3 rows"):
        mdm(np.ones((2, 3)), k=3)


def _exact_jackknife(f: np.ndarray, r: int, kernel) -> float:
    """The delete-1 jackknife variance of the U-statistic with `kernel` over every r-subset of f, by brute force."""
    from itertools import combinations

    n = len(f)
    left_out = np.array([np.mean([kernel(f[list(s)]) for s in combinations([j for j in range(n) if j != i], r)])
                         for i in range(n)])
    return (n - 1) / n * np.sum((left_out - left_out.mean()) ** 2)


@pytest.mark.parametrize("kernel", [np.mean, np.max], ids=["mean", "max"])
def test_u_statistic_variance_is_the_jackknife_of_the_complete_u_statistic(kernel):
    # 12 rows, blocks of 4 (3 per partition): the jackknife of U over all 495 subsets, by brute force,
    # against the estimate from the blocks of 3,000 random partitions. For the mean it is also the
    # textbook variance of a mean, s² / n.
    from synque_ray.proxies.mdm import _blocks, u_statistic_variance

    f = np.random.default_rng(0).normal(size=12) ** 2
    blocks = _blocks(np.arange(12), 4, 3000, np.random.default_rng(1)).reshape(3000, 3, 4)
    values = np.apply_along_axis(kernel, 2, f[blocks])
    exact = _exact_jackknife(f, 4, kernel)
    if kernel is np.mean:
        assert exact == pytest.approx(f.var(ddof=1) / 12)
    assert u_statistic_variance(12, blocks, values, float(values.mean())) == pytest.approx(exact, rel=0.08)
    # the centre is taken off for precision only
    assert u_statistic_variance(12, blocks, values, 0.0) == pytest.approx(
        u_statistic_variance(12, blocks, values, float(values.mean())), rel=1e-6)


def test_u_statistic_variance_needs_two_partitions():
    from synque_ray.proxies.mdm import u_statistic_variance

    with pytest.raises(ValueError, match="at least two partitions"):
        u_statistic_variance(8, np.arange(8).reshape(1, 2, 4), np.ones((1, 2)), 1.0)
