"""LENS debiasing (docs/proxies.md, LENS) against hand computations."""

from __future__ import annotations

import math

import polars as pl
import pyarrow as pa
import pytest

from synque_ray.lens_debias import EPSILON, baselines, lens_score, row_scores

COLS = ("g_real_csr", "g_synth_csr", "g_real_crs", "g_synth_crs")


def table(rows: list[tuple[float, float, float, float]], kind: str = "polars"):
    data = {c: [float(r[i]) if r[i] is not None else None for r in rows] for i, c in enumerate(COLS)}
    return pl.DataFrame(data, schema={c: pl.Float64 for c in COLS}) if kind == "polars" else pa.table(data)


# U_r: baselines z = column means = (3, 2, 2, 1)
REAL = [(4, 2, 3, 1), (2, 2, 1, 1)]
# s1: h = (3/3, 2/2, 2/2, 2/1) = (1, 1, 1, 2): p_csr = 1/2, p_crs = 1/3, p̂ = 5/12
# s2: h = (0, 2, 2, 0): p_csr = 0, p_crs = 1, p̂ = 1/2
SYNTHETIC = [(3, 2, 2, 2), (0, 4, 4, 0)]


@pytest.mark.parametrize("kind", ["polars", "arrow"])
def test_debiased_by_hand(kind):
    assert baselines(table(REAL, kind)).tolist() == [3.0, 2.0, 2.0, 1.0]
    s1 = (1 / (2 + EPSILON) + 1 / (3 + EPSILON)) / 2
    s2 = (0.0 + 2 / (2 + EPSILON)) / 2
    assert row_scores(table(SYNTHETIC, kind), table(REAL, kind)).tolist() == pytest.approx([s1, s2], abs=1e-12)
    assert lens_score(table(SYNTHETIC, kind), table(REAL, kind)) == pytest.approx((s1 + s2) / 2, abs=1e-12)
    assert lens_score(table(SYNTHETIC, kind), table(REAL, kind)) == pytest.approx(11 / 24, abs=1e-6)


def test_biased_by_hand():
    # s1: 3/5 and 2/4 -> 0.55; s2: 0/4 and 4/4 -> 0.5; the real table is not used
    assert lens_score(table(SYNTHETIC), table(REAL), debiased=False) == pytest.approx(0.525, abs=1e-12)
    assert lens_score(table(SYNTHETIC), None, debiased=False) == pytest.approx(0.525, abs=1e-12)


def test_zero_baselines_use_epsilon():
    # z = (0, 2, 0, 0): the zeros are replaced by ε, so nothing divides by zero
    real = [(0, 2, 0, 0), (0, 2, 0, 0)]
    synthetic = [(1, 2, 0, 0)]
    h_real_csr = 1 / EPSILON
    p_csr = h_real_csr / (h_real_csr + 1.0 + EPSILON)
    p_crs = 0.0 / (0.0 + 0.0 + EPSILON)
    value = lens_score(table(synthetic), table(real))
    assert math.isfinite(value)
    assert value == pytest.approx((p_csr + p_crs) / 2, rel=1e-12)
    assert value == pytest.approx(0.4999995, abs=1e-7)


def test_all_zero_judgements_give_zero_not_nan():
    zeros = [(0, 0, 0, 0)] * 3
    assert lens_score(table(zeros), table(zeros)) == 0.0
    assert lens_score(table(zeros), table(zeros), debiased=False) == 0.0


def test_identical_to_real_scores_one_half():
    # a candidate judged exactly like U_r gets h = 1 everywhere when rows equal the baselines
    rows = [(2, 2, 3, 3)] * 4
    assert lens_score(table(rows), table(rows)) == pytest.approx(0.5, abs=1e-6)


def test_unparsed_rows_are_left_out():
    synthetic = SYNTHETIC + [(None, 1, 1, 1)]
    real = REAL + [(1, None, 1, 1)]
    assert lens_score(table(synthetic), table(real)) == pytest.approx(lens_score(table(SYNTHETIC), table(REAL)))


def test_no_complete_rows():
    assert math.isnan(lens_score(table([(None, 1, 1, 1)]), table(REAL)))
    with pytest.raises(ValueError, match="real table has no complete rows"):
        lens_score(table(SYNTHETIC), table([(None, 1, 1, 1)]))


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="g_synth_crs"):
        lens_score(pl.DataFrame({c: [1.0] for c in COLS[:3]}), table(REAL))
