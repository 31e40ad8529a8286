"""Replicates as wide as the truth: a proxy's replicates must spread as far as its value does over
fresh draws of the candidate's rows and U_r's, or every rank interval and best set built on them
is too wide (no power) or too narrow (false certainty).

The truth is set by construction: 16-d Gaussians, a candidate from the same distribution as U_r
or shifted by 0.5 on 4 coordinates, sizes unequal both ways, 60 independent draws (one seed, fixed).
`replicate_spread_ratio` is the mean replicate sd over the sd of the values; it must lie in
0.75–1.35. The bootstrap the proxies used before read (seed 0, these cases): MMD² between equal
distributions 2.3 (biased) and 1.8 (unbiased), density 0.61 and coverage 1.8 for the shifted
candidate; the half-samples read 0.94–1.22 (BENCHMARKS.md, "Replicates as wide as the truth").
"""

from __future__ import annotations

import numpy as np
import pytest

from synque_ray.proxies import REGISTRY
from synque_ray.proxies.base import replicate_spread_ratio

DIMS, SHIFTED_DIMS, DRAWS, RESAMPLES = 16, 4, 60, 60
# (label, candidate rows, U_r rows, shift of the candidate's mean on SHIFTED_DIMS coordinates)
CASES = [("equal", 50, 120, 0.0), ("shifted", 150, 60, 0.5)]
PROXIES = [("mmd", {"estimator": "biased"}), ("mmd", {"estimator": "unbiased"}), ("density", {}), ("coverage", {})]


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """The matrices here are small: a second BLAS thread only adds overhead (5x the CPU time)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def gaussians(n: int, m: int, shift: float):
    """A draw of (candidate (n, DIMS), U_r (m, DIMS)): standard normals, the candidate's mean moved
    by `shift` on the first SHIFTED_DIMS coordinates."""
    mean = np.zeros(DIMS)
    mean[:SHIFTED_DIMS] = shift

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return rng.normal(size=(n, DIMS)) + mean, rng.normal(size=(m, DIMS))

    return draw


def _ratio(name: str, params: dict, n: int, m: int, shift: float, draws: int = DRAWS) -> float:
    proxy = REGISTRY[name]
    return replicate_spread_ratio(proxy, proxy.params.model_validate(params), gaussians(n, m, shift), draws,
                                  RESAMPLES)


@pytest.mark.parametrize("label,n,m,shift", CASES, ids=[case[0] for case in CASES])
@pytest.mark.parametrize("name,params", PROXIES, ids=[f"{n}-{p.get('estimator', '')}".rstrip("-") for n, p in PROXIES])
def test_replicates_spread_as_far_as_fresh_draws(name, params, label, n, m, shift):
    ratio = _ratio(name, params, n, m, shift)
    assert 0.75 <= ratio <= 1.35, f"{name} {params} {label} {n}x{m}: replicate sd / true sd = {ratio:.2f}"


def test_the_ratio_sees_replicates_that_are_too_wide_or_too_narrow():
    # The yardstick itself: replicates made twice as wide (or half) read about 2 (or 0.5).
    proxy = REGISTRY["density"]

    def scaled(factor):
        def compute(synthetic, real, params, seed, resamples):
            output = proxy.compute(synthetic, real, params, seed, resamples)
            output.replicates = output.value + factor * (output.replicates - output.value)
            return output
        return type(proxy)(proxy.name, proxy.params, proxy.orientation, compute)

    draw, params = gaussians(150, 60, 0.5), proxy.params()
    plain = replicate_spread_ratio(proxy, params, draw, 30, RESAMPLES)
    assert replicate_spread_ratio(scaled(2.0), params, draw, 30, RESAMPLES) == pytest.approx(2 * plain)
    assert replicate_spread_ratio(scaled(0.5), params, draw, 30, RESAMPLES) == pytest.approx(plain / 2)


def test_candidates_of_one_seed_share_u_rs_halves_and_so_its_error():
    # One U_r sample is shared by every candidate of a seed, so is its error: with the same seed
    # two candidates (of different sizes) get the same U_r halves and their replicates move
    # together; with different seeds they do not.
    rng = np.random.default_rng(3)
    real = rng.normal(size=(60, DIMS))
    small, large = rng.normal(size=(100, DIMS)), rng.normal(size=(300, DIMS))
    proxy, params = REGISTRY["density"], REGISTRY["density"].params()
    same = np.corrcoef(proxy.compute(small, real, params, 7, 200).replicates,
                       proxy.compute(large, real, params, 7, 200).replicates)[0, 1]
    other = np.corrcoef(proxy.compute(small, real, params, 7, 200).replicates,
                        proxy.compute(large, real, params, 8, 200).replicates)[0, 1]
    assert same > 0.5 and abs(other) < 0.2, (same, other)


def test_a_candidates_error_is_the_same_in_every_seed():
    # A candidate's rows are the same in every seed, so is their error: replicate b of two seeds
    # draws the same candidate halves (here with U_r large, where the candidate's half drives
    # density's replicates), and averaging over seeds does not shrink it.
    rng = np.random.default_rng(4)
    candidate, real = rng.normal(size=(40, DIMS)), rng.normal(size=(400, DIMS))
    proxy, params = REGISTRY["density"], REGISTRY["density"].params()
    seven, eight = (proxy.compute(candidate, real, params, seed, 200).replicates for seed in (7, 8))
    assert np.corrcoef(seven, eight)[0, 1] > 0.7
    assert np.std((seven + eight) / 2) > 0.85 * np.std(seven)


@pytest.mark.slow
def test_mauve_replicates_spread_as_far_as_fresh_draws_when_distributions_differ():
    ratio = _ratio("mauve", {}, 150, 60, 0.5, draws=25)
    assert 0.75 <= ratio <= 1.35, ratio


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="MAUVE's replicates are still about 2x too wide between equal distributions")
def test_mauve_replicates_spread_as_far_as_fresh_draws_between_equal_distributions():
    ratio = _ratio("mauve", {}, 50, 120, 0.0, draws=25)
    assert 0.75 <= ratio <= 1.35, ratio


@pytest.mark.slow
@pytest.mark.parametrize("label,n,m,shift", CASES, ids=[case[0] for case in CASES])
def test_pad_replicates_spread_as_far_as_fresh_draws(label, n, m, shift):
    # Resampling the rows of fixed fits read 0.57 (equal 50x120) and 0.64 (shifted 150x60): it left
    # out how the models move with a fresh sample. The refits put it in.
    ratio = _ratio("pad", {}, n, m, shift, draws=25)
    assert 0.75 <= ratio <= 1.35, f"pad {label} {n}x{m}: replicate sd / true sd = {ratio:.2f}"
