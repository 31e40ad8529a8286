"""MDM on a run-wide number of rows: a candidate's size alone no longer moves it."""

from __future__ import annotations

import numpy as np
import pytest

from synque_ray.proxies.mdm import PROXY, MdmParams


def _mean_mdm(rows, n: int, draws: int, rng: np.random.Generator) -> float:
    return float(np.mean([PROXY.compute(rng.normal(size=(n, 8)), None, MdmParams(rows=rows), 1, 20).value
                          for _ in range(draws)]))


def test_a_small_candidate_of_the_same_distribution_no_longer_reads_lower():
    rng = np.random.default_rng(11)
    every_row = _mean_mdm("all", 40, 30, rng), _mean_mdm("all", 300, 30, rng)
    run_wide = _mean_mdm(40, 40, 30, rng), _mean_mdm(40, 300, 30, rng)
    assert every_row[1] - every_row[0] > 0.06, every_row  # the size effect the run-wide size removes
    assert abs(run_wide[1] - run_wide[0]) < 0.06, run_wide


def test_auto_resolves_to_the_smallest_candidate_once_per_run():
    assert MdmParams().for_run([300, 40, 120], [60]).rows == 40
    assert MdmParams(k=5).for_run([3, 90], []).rows == 5  # never below k
    assert MdmParams(rows="all").for_run([40, 300], []).rows == "all"
    assert MdmParams(rows=60).for_run([40, 300], []).rows == 60
    with pytest.raises(ValueError):
        MdmParams(rows=True)  # a yes/no is not a number of rows


def test_a_candidate_no_larger_than_the_size_is_computed_on_every_row():
    x = np.random.default_rng(3).normal(size=(50, 8))
    alone = PROXY.compute(x, None, MdmParams(rows="all"), 7, 30)
    sized = PROXY.compute(x, None, MdmParams(rows=50), 7, 30)
    assert sized.value == alone.value and np.array_equal(sized.replicates, alone.replicates)
    larger = PROXY.compute(x, None, MdmParams(rows=20), 7, 30)
    assert larger.value != alone.value and len(larger.replicates) == 30
    assert np.mean(larger.replicates) == pytest.approx(larger.value)
    assert PROXY.compute(x, None, MdmParams(rows=20), 8, 30).value == larger.value  # the same subsamples per seed
