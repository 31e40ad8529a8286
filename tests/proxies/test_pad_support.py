"""PAD's support gate and its refit replicates.

The gate: a held-out row farther from its nearest U_r training row than any U_r training row is
from its own nearest other reads as synthetic (P = 1), and the candidate's training rows beyond
that are left out of the fit. Why (docs/proxies.md, PAD): on unit-norm text embeddings a real
sample is more varied than an LLM's rows, so rows unlike anything in U_r (off-topic ones) lie
nearer U_r's outskirts than the candidate's centre; the classifier alone read them as real, and a
candidate with 10% of them read *closer* to U_r than the same candidate without.

The refits: PAD's replicates are widened to the spread of refits of the whole cross-fit under
random row weights, so that they carry the models' variation, not only the held-out rows'.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from synque_ray.proxies import REGISTRY
from synque_ray.proxies.pad import PadParams, outside_support, pad, pad_probabilities

DIMS = 48


def test_outside_support_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    real, rows = rng.normal(size=(9, 5)), rng.normal(size=(40, 5)) * 1.6
    within = cdist(real, real)
    np.fill_diagonal(within, np.inf)
    threshold = within.min(axis=1).max()  # the farthest any U_r row is from its nearest other
    expected = cdist(rows, real[:-1]).min(axis=1) > threshold  # each row against t − 1 U_r rows
    assert expected.any() and not expected.all()
    assert (outside_support(real, rows) == expected).all()
    assert not outside_support(real[:1], rows).any()  # one U_r row measures no support


def test_a_fresh_row_of_u_rs_own_distribution_is_outside_about_once_in_t():
    # Exchangeability: the row and the t U_r rows are one distribution, so the chance that it is the
    # farthest from the rest is about 1 / t; a candidate of U_r's distribution is flagged as often.
    rng, t, trials = np.random.default_rng(1), 20, 3000
    flagged = [outside_support(rng.normal(size=(t, 8)), rng.normal(size=(1, 8)))[0] for _ in range(trials)]
    assert 0.6 / t <= np.mean(flagged) <= 1.4 / t, np.mean(flagged)


def _unit(values: np.ndarray) -> np.ndarray:
    return values / np.linalg.norm(values, axis=1, keepdims=True)


def _real(rng, rows):  # a varied real sample around one direction
    return _unit(np.eye(DIMS)[0] + 0.35 * rng.normal(size=(rows, DIMS)))


def _candidate(rng, rows):  # narrower than U_r and moved off its centre, as LLM rows are
    return _unit(np.eye(DIMS)[0] + 0.25 * np.eye(DIMS)[1] + 0.2 * rng.normal(size=(rows, DIMS)))


def _off_topic(rng, rows):  # unlike anything: orthogonal to both centres
    values = rng.normal(size=(rows, DIMS))
    values[:, :2] = 0.0
    return _unit(values)


def off_topic_reading(support_gate: bool) -> tuple[float, float, float]:
    """(mean p_synthetic of the off-topic rows, of the candidate's other rows, mean PAD of the 30-row
    candidate with 3 off-topic rows minus the clean 300-row one's), 3 draws × 3 seeds, 24 rows per side."""
    params = PadParams(train_rows=24, support_gate=support_gate)
    off, on, gaps = [], [], []
    for draw in range(3):
        for seed in range(3):
            rng = np.random.default_rng([draw, seed])
            real, clean = _real(rng, 100), _candidate(rng, 300)
            noisy = np.vstack([_candidate(rng, 27), _off_topic(rng, 3)])
            output = REGISTRY["pad"].compute(noisy, real, params, seed, 0)
            off.append(output.rows["p_synthetic"][27:].mean())
            on.append(output.rows["p_synthetic"][:27].mean())
            gaps.append(output.value - REGISTRY["pad"].compute(clean, real, params, seed, 0).value)
    return float(np.mean(off)), float(np.mean(on)), float(np.mean(gaps))


def test_rows_unlike_any_u_r_row_read_as_synthetic():
    # The classifier alone: off-topic rows p .36 against .55 for the candidate's own rows, and the
    # candidate with them reads .05 closer to U_r than the clean one (what the text showed).
    off, on, gap = off_topic_reading(support_gate=False)
    assert off < on - 0.1 and gap < -0.03, (off, on, gap)
    off, on, gap = off_topic_reading(support_gate=True)
    assert off > on + 0.05 and gap > -0.02, (off, on, gap)


def test_the_gate_keeps_a_tie_at_zero_and_its_flagged_rows_at_one():
    rng = np.random.default_rng(5)
    values = [pad(_real(rng, 60), _real(rng, 60), seed=seed, train_rows=24) for seed in range(6)]
    assert abs(np.mean(values)) < 0.04, values
    real = _unit(np.eye(DIMS)[0] + 0.1 * rng.normal(size=(40, DIMS)))  # a tight U_r: every off-topic row is outside
    synthetic = _off_topic(rng, 30)
    probability, _ = pad_probabilities(synthetic, real, seed=0, train_rows=24)
    assert np.allclose(probability[:30], 1.0)


def test_unit_weights_are_no_weights_and_bad_weights_are_refused():
    rng = np.random.default_rng(2)
    synthetic, real = rng.normal(0.3, 1, size=(30, 4)), rng.normal(size=(30, 4))
    plain, _ = pad_probabilities(synthetic, real, seed=1, train_rows=20)
    weighted, _ = pad_probabilities(synthetic, real, seed=1, train_rows=20, weights=np.ones(60))
    assert np.allclose(plain, weighted)
    with pytest.raises(ValueError, match="positive"):
        pad_probabilities(synthetic, real, seed=1, train_rows=20, weights=np.r_[np.ones(59), 0.0])


def test_stored_pad_results_are_keyed_by_the_gate_and_the_refits():
    # A result stored before these parameters existed lacks them in its key, so it is recomputed.
    dumped = PadParams().model_dump()
    assert dumped["support_gate"] is True and dumped["refits"] == 8
    assert PadParams(support_gate=False).model_dump() != dumped != PadParams(refits=4).model_dump()
