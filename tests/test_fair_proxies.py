"""Proxies fair to size when distributions differ, and replicates that centre on the point (issue 13).

Simulations whose truth is set by construction: Gaussian embeddings, a candidate shifted
by a known number of standard deviations, candidates of known size and distinct rows.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from synque_ray.proxies import REGISTRY
from synque_ray.proxies.coverage import ball_membership, coverage, density
from synque_ray.proxies.pad import PadParams, balanced_probability, pad

DIMS = 16
REAL_ROWS = 30


def _gaussian(rng: np.random.Generator, rows: int, shift: float = 0.0, dims: int = DIMS) -> np.ndarray:
    """rows × dims standard normal rows, the first coordinate moved by `shift` sd."""
    values = rng.normal(size=(rows, dims))
    values[:, 0] += shift
    return values


def _mean_pad(rows: int, shift: float, draws: int = 5, offset: int = 0) -> float:
    """PAD (defaults) of a `rows`-row candidate shifted by `shift` against a 30-row U_r, mean over U_r draws."""
    values = []
    for draw in range(draws):
        real = _gaussian(np.random.default_rng(draw), REAL_ROWS)
        candidate = _gaussian(np.random.default_rng(1000 + offset + rows + draw), rows, shift)
        values.append(pad(candidate, real, seed=draw))
    return float(np.mean(values))


def test_pad_does_not_move_with_the_candidates_size_when_the_distributions_differ():
    by_size = {rows: _mean_pad(rows, shift=2.0) for rows in (30, 100, 300, 1000)}
    assert max(by_size.values()) - min(by_size.values()) < 0.10, by_size
    assert min(by_size.values()) > 0.3  # and it still sees the shift


def test_a_large_candidate_further_from_real_ranks_behind_a_small_closer_one():
    closer, further = _mean_pad(60, shift=1.5, offset=50), _mean_pad(1000, shift=2.5, offset=80)
    assert further >= closer + 0.05, (closer, further)


@pytest.mark.parametrize("params", [PadParams(), PadParams(folds=0, balanced=False)], ids=["default", "holdout"])
@pytest.mark.parametrize("rows,real_rows", [(200, 200), (1000, 200), (1000, 30)])
def test_p_synthetic_reads_one_half_for_one_distribution_at_any_size(params, rows, real_rows):
    medians = []
    for draw in range(3):
        rng = np.random.default_rng(draw)
        output = REGISTRY["pad"].compute(_gaussian(rng, rows), _gaussian(rng, real_rows), params, draw, 0)
        p_synthetic = output.rows["p_synthetic"]
        assert p_synthetic.shape == (rows,)
        medians.append(np.nanmedian(p_synthetic))
    assert 0.35 <= np.mean(medians) <= 0.65, medians


def test_balanced_probability_swaps_the_training_prior_for_one_half():
    # Bayes: posterior odds = likelihood ratio × prior odds; with a likelihood ratio of 1 the
    # posterior is the prior, which the balanced probability must turn into ½
    assert balanced_probability(np.array([0.9]), 0.9) == pytest.approx([0.5])
    likelihood_ratio, share = 3.0, 0.8
    posterior = likelihood_ratio * share / (likelihood_ratio * share + (1 - share))
    balanced = balanced_probability(np.array([posterior]), share)
    assert balanced == pytest.approx([likelihood_ratio / (1 + likelihood_ratio)])
    assert balanced_probability(np.array([0.0, 1.0]), 0.3).tolist() == [0.0, 1.0]
    assert balanced_probability(np.array([0.25]), 0.5) == pytest.approx([0.25])
    assert balanced_probability(np.array([expit(1.0)]), expit(-2.0)) == pytest.approx([expit(3.0)])
    with pytest.raises(ValueError, match=r"synthetic share of the training rows must be in \(0, 1\), got 1.0"):
        balanced_probability(np.array([0.5]), 1.0)


# Every proxy with replicates: (registry name, its parameters).
RESAMPLED = [
    ("mdm", {}), ("mmd", {"estimator": "biased"}), ("mmd", {"estimator": "unbiased"}), ("pad", {}),
    ("mauve", {}), ("density", {}), ("coverage", {}),
]


IDS = [f"{name}-{params.get('estimator', '')}".rstrip("-") for name, params in RESAMPLED]


@pytest.mark.parametrize("name,params", RESAMPLED, ids=IDS)
def test_every_proxys_replicates_centre_on_its_point_value(name, params):
    proxy = REGISTRY[name]
    for seed in range(2):
        rng = np.random.default_rng(seed)
        candidate, real = _gaussian(rng, 80, 0.3, dims=8), _gaussian(rng, 60, dims=8)
        output = proxy.compute(candidate, real, proxy.params.model_validate(params), seed, 100)
        replicates = output.replicates
        assert replicates.shape == (100,) and np.isfinite(replicates).all()
        assert abs(np.median(replicates) - output.value) <= 0.5 * replicates.std(), (seed, output.value,
                                                                                      np.median(replicates))


def test_more_distinct_rows_cover_more_and_their_replicates_say_so():
    # A: 60 distinct rows; B: 45 distinct rows, each repeated 12 times. A covers more of U_r
    # on every seed; its replicates must sit around its own point, not below B's.
    proxy, params = REGISTRY["coverage"], REGISTRY["coverage"].params()
    for seed in range(5):
        rng = np.random.default_rng(seed)
        real, a = rng.normal(size=(200, 8)), rng.normal(size=(60, 8))
        b = np.repeat(rng.normal(size=(45, 8)), 12, axis=0)
        out_a, out_b = proxy.compute(a, real, params, seed, 200), proxy.compute(b, real, params, seed, 200)
        assert out_a.value == pytest.approx(coverage(a, real)) and out_a.value > out_b.value + 0.02
        assert np.quantile(out_a.replicates, 0.05) > np.median(out_b.replicates), seed
        assert abs(np.median(out_a.replicates) - out_a.value) < 0.03


def test_a_row_on_a_balls_boundary_is_outside_it():
    # U_r on a line at 0, 1, 3, 6; k = 1: the balls' radii are 1, 1, 2, 3 (distance to the nearest other row).
    real = np.array([[0.0], [1.0], [3.0], [6.0]])
    # 2.0: distance 1 from row 1 (radius 1: on the boundary, out) and 1 from row 2 (radius 2: in)
    # 4.0: distance 1 from row 2 (in), 2 from row 3 (radius 3: in), 3 from row 1 (radius 1: out)
    synthetic = np.array([[2.0], [4.0], [-1.0]])  # -1.0: distance 1 from row 0 (radius 1: on the boundary, out)
    expected = np.array([[False, False, True, False], [False, False, True, True], [False, False, False, False]])
    assert (ball_membership(synthetic, real, k=1) == expected).all()
    assert density(synthetic, real, k=1) == pytest.approx(expected.sum() / 3)
    assert coverage(synthetic, real, k=1) == pytest.approx(0.5)


def test_perplexity_and_lens_replicates_already_centre_on_their_point():
    # a ratio of row means (perplexity) and a mean of rows (LENS) stay centred under the
    # bootstrap, so they are left uncentred: checked here so that a change to them is seen
    from synque_ray.lens.results import bootstrap_means
    from synque_ray.perplexity import SampleScore, resampled_perplexity

    for seed in range(5):
        rng = np.random.default_rng(seed)
        tokens, nll = rng.integers(5, 60, size=30).astype(np.float64), rng.normal(3.2, 0.8, size=30)
        point = float(np.exp((nll * tokens).sum() / tokens.sum()))
        score = SampleScore(perplexity=point, row_nll=nll, row_tokens=tokens)
        replicates = resampled_perplexity(score, 400, np.random.default_rng(seed))
        assert abs(np.median(replicates) - score.perplexity) <= 0.25 * replicates.std()
        p_hat = rng.uniform(size=40)
        replicates = bootstrap_means(p_hat, 400, seed)
        assert abs(np.median(replicates) - p_hat.mean()) <= 0.25 * replicates.std()
