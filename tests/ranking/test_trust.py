"""No score is silently wrong, and every rank says how sure it is.

Each test here failed before its fix: a NaN ranked first, the ensemble ranked partial
proxy sets, one constant seed made evaluate's averages null, nan/inf performance was
accepted, `...json` wrote rubrics outside `rubrics/`, MDM moved with the seed.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from synque_ray.errors import UserError
from synque_ray.evaluate import evaluate_scores, read_performance
from synque_ray.proxies.base import ProxyOutput
from synque_ray.reading import list_candidates
from synque_ray.reduce import add_ensemble, incomplete, rank, rank_intervals, split_failures
from synque_ray.proxy_task import TaskSpec, score_pair

SCHEMA = {"dataset_id": pl.Utf8, "proxy": pl.Utf8, "seed": pl.Int64, "raw": pl.Float64, "score": pl.Float64}


def frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame([dict(zip(SCHEMA, r, strict=True)) for r in rows], schema=SCHEMA, orient="row")


# ---------------------------------------------------------------- non-finite values


def test_nan_score_is_a_failure_not_rank_one():
    results = frame([("a", "mdm", 1, 0.5, 0.5), ("b", "mdm", 1, float("nan"), float("nan")),
                     ("c", "mdm", 1, 0.2, 0.2), ("d", "mdm", 1, float("inf"), float("inf"))])
    usable, failures = split_failures(results)
    assert sorted(failures["dataset_id"]) == ["b", "d"]
    assert failures.filter(pl.col("dataset_id") == "b")["error"].item() == "mdm is not finite (NaN)"
    ranked = rank(usable)
    assert ranked["dataset_id"].to_list() == ["a", "c"] and ranked["rank"].to_list() == [1, 2]


def test_mdm_on_a_nan_embedding_is_a_recorded_failure():
    embeddings = np.random.default_rng(0).normal(size=(12, 4))
    embeddings[3, 1] = np.nan
    spec = TaskSpec({"mdm": {"k": 3}}, sample_size=None, resamples=20)
    [row] = score_pair("cand", None, embeddings, None, spec)["scores"]
    assert math.isnan(row["raw"]) and row["replicates"] == []
    assert row["error"] == "mdm: synthetic embeddings hold a non-finite value"


def test_proxy_returning_nan_is_a_recorded_failure(monkeypatch):
    from synque_ray.proxies import REGISTRY, mmd

    monkeypatch.setitem(REGISTRY, "mmd", mmd.PROXY.__class__("mmd", mmd.MmdParams, -1.0,
                                                             lambda *a: ProxyOutput(float("nan"))))
    rng = np.random.default_rng(1)
    spec = TaskSpec({"mmd": {}}, sample_size=None, resamples=20)
    [row] = score_pair("cand", 7, rng.normal(size=(10, 3)), rng.normal(size=(10, 3)), spec)["scores"]
    assert row["error"] == "mmd is not finite (nan)" and math.isnan(row["score"])


# ---------------------------------------------------------------- the ensemble


def test_ensemble_ranks_only_candidates_with_every_proxy():
    # c lacks mmd at seed 1 (its task failed) but has the best LENS score: it must not be ranked.
    scores = frame([
        ("a", "mmd", 1, 0.1, -0.1), ("b", "mmd", 1, 0.3, -0.3),
        ("a", "lens", 1, 0.6, 0.6), ("b", "lens", 1, 0.5, 0.5), ("c", "lens", 1, 0.9, 0.9),
    ])
    ensemble = add_ensemble(scores).filter(pl.col("proxy") == "ensemble")
    assert sorted(ensemble["dataset_id"]) == ["a", "b"]
    assert dict(zip(ensemble["dataset_id"], ensemble["raw"], strict=True)) == {"a": 1.0, "b": 2.0}
    assert incomplete(scores, [1]) == {"c": ["mmd@1"]}
    ranked = rank(add_ensemble(scores)).filter(pl.col("proxy") == "ensemble")
    assert ranked["dataset_id"].to_list() == ["a", "b"]


# ---------------------------------------------------------------- evaluate


def test_constant_seed_is_left_out_of_the_averages_and_counted():
    scores = frame([("a", "p", 1, 1.0, 1.0), ("b", "p", 1, 2.0, 2.0), ("c", "p", 1, 3.0, 3.0),
                    ("a", "p", 2, 5.0, 5.0), ("b", "p", 2, 5.0, 5.0), ("c", "p", 2, 5.0, 5.0)])
    performance = {"a": 0.1, "b": 0.3, "c": 0.2}
    report = evaluate_scores(scores, rank(scores), performance, top_k=1)["proxies"]["p"]
    assert report["seeds_used"] == 1
    assert report["spearman"] == pytest.approx(stats.spearmanr([1, 2, 3], [0.1, 0.3, 0.2]).statistic)
    assert report["pearson"] == pytest.approx(stats.pearsonr([1, 2, 3], [0.1, 0.3, 0.2]).statistic)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_performance_is_a_one_line_error(tmp_path, value):
    csv = tmp_path / "perf.csv"
    csv.write_text(f"name,f1\na,0.5\nb,{value}\n")
    with pytest.raises(UserError) as err:
        read_performance(str(csv), "name", "f1")
    assert str(err.value) == f"{csv}: row 3 column 'f1' is not a finite number ({float(value)})"


def test_evaluate_reports_whether_the_truly_best_is_in_the_top_group():
    scores = frame([(d, "p", s, v + s * 0.01, v + s * 0.01) for s in (1, 2) for d, v in
                    (("a", 3.0), ("b", 2.0), ("c", 1.0))])
    report = evaluate_scores(scores, rank(scores), {"a": 0.1, "b": 0.9, "c": 0.2}, top_k=1)
    assert report["proxies"]["p"]["top_group_size"] == 1
    assert report["proxies"]["p"]["best_in_top_group"] is False  # b is truly best; a leads alone
    assert report["best_in_top_group_rate"] == 0.0


# ---------------------------------------------------------------- candidate ids


@pytest.mark.parametrize("name", ["...json", "..json", "a\x07b.json"])
def test_unsafe_candidate_id_is_a_one_line_error(tmp_path, name):
    (tmp_path / "good.json").write_text("[]")
    (tmp_path / name).write_text("[]")
    with pytest.raises(UserError) as err:
        list_candidates(str(tmp_path))
    stem = name.rsplit(".", 1)[0]
    assert str(err.value) == (f"{tmp_path / name}: candidate id {stem!r} (the file name without its suffix) "
                              "is not a safe file name; rename the file")


# ---------------------------------------------------------------- rank intervals


def _cube(means: list[float], noise: float, seeds: int = 5, resamples: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array(means)[:, None, None] + rng.normal(0, noise, size=(len(means), seeds, resamples))


def test_one_distribution_gives_overlapping_intervals_different_ones_do_not():
    same = rank_intervals(_cube([0.50, 0.50], noise=0.05), 0.9, np.random.default_rng(1))
    assert same[0].tolist() == [1, 1] and same[1].tolist() == [2, 2]  # each can be first or second
    apart = rank_intervals(_cube([0.9, 0.1], noise=0.05), 0.9, np.random.default_rng(1))
    assert apart[0].tolist() == [1, 2] and apart[1].tolist() == [1, 2]


def test_interval_is_reproducible_for_a_fixed_seed():
    cube = _cube([0.5, 0.52, 0.4, 0.55], noise=0.05)
    first = rank_intervals(cube, 0.9, np.random.default_rng(3))
    again = rank_intervals(cube, 0.9, np.random.default_rng(3))
    assert all((x == y).all() for x, y in zip(first, again, strict=True))


def test_rankings_mark_candidates_tied_with_the_best():
    rng = np.random.default_rng(4)
    rows = []
    for dataset_id, mean in (("a", 0.60), ("b", 0.59), ("c", 0.10)):
        for seed in range(3):
            replicates = (mean + rng.normal(0, 0.03, size=100)).tolist()
            rows.append({"dataset_id": dataset_id, "proxy": "p", "seed": seed, "raw": mean, "score": mean,
                         "replicates": replicates})
    ranked = rank(pl.DataFrame(rows))
    tied = dict(zip(ranked["dataset_id"], ranked["tied_with_best"], strict=True))
    assert tied == {"a": True, "b": True, "c": False}
    c = ranked.filter(pl.col("dataset_id") == "c").row(0, named=True)
    assert (c["rank"], c["rank_low"], c["rank_high"]) == (3, 3, 3)
