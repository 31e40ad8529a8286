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
