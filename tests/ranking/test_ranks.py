"""synque_ray.ranks against scipy.stats, the reference it replaces on the run's path."""
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import rankdata as scipy_rankdata
from scipy.stats import spearmanr

from synque_ray.ranks import rankdata, spearman


@pytest.mark.parametrize("shape", [(1,), (9,), (6, 5), (3, 4, 7)])
@pytest.mark.parametrize("axis", [None, 0, -1])
@pytest.mark.parametrize("method", ["average", "min"])
def test_rankdata_matches_scipy_with_ties(shape, axis, method):
    values = np.random.default_rng(len(shape)).integers(0, 4, size=shape).astype(float)
    np.testing.assert_array_equal(rankdata(values, axis=axis, method=method),
                                  scipy_rankdata(values, axis=axis, method=method))


def test_a_slice_with_nan_ranks_all_nan_like_scipy():
    values = np.array([[1.0, np.nan, 3.0], [2.0, 1.0, 0.0]])
    for axis in (0, 1):
        np.testing.assert_array_equal(rankdata(values, axis=axis), scipy_rankdata(values, axis=axis))
    assert list(rankdata(np.array([3.0, 1.0, 3.0, 2.0]))) == [3.5, 1.0, 3.5, 2.0]
    assert list(rankdata(np.array([3.0, 1.0, 3.0, 2.0]), method="min")) == [3.0, 1.0, 3.0, 2.0]


def test_an_unknown_tie_rule_is_refused():
    with pytest.raises(ValueError, match="unknown tie rule 'max'"):
        rankdata(np.arange(3.0), method="max")


def test_spearman_matches_scipy_and_is_nan_when_undefined():
    rng = np.random.default_rng(3)
    for _ in range(20):
        x, y = rng.integers(0, 5, size=12).astype(float), rng.normal(size=12)
        assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert np.isnan(spearman(np.ones(5), np.arange(5.0)))
    assert np.isnan(spearman(np.array([1.0]), np.array([2.0])))


def test_ranking_a_run_does_not_import_scipy_stats():
    """The no-op re-run's path (config, pipeline, reduce, report) must not pay for scipy.stats."""
    code = ("import sys, synque_ray.pipeline, synque_ray.report, synque_ray.cli; "
            "print('scipy.stats' in sys.modules, 'scipy.special' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
