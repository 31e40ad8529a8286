"""Ranking, ensemble and evaluation against hand computations with scipy."""

import numpy as np
import polars as pl
import pytest
from scipy import stats

from synque_ray.errors import UserError
from synque_ray.evaluate import evaluate_scores, read_performance
from synque_ray.reduce import add_ensemble, rank


def make_scores(values: dict) -> pl.DataFrame:
    rows = [
        {"dataset_id": d, "proxy": p, "seed": s, "raw": v, "score": v}
        for (p, s), per_dataset in values.items()
        for d, v in per_dataset.items()
    ]
    return pl.DataFrame(rows, schema={"dataset_id": pl.Utf8, "proxy": pl.Utf8, "seed": pl.Int64,
                                      "raw": pl.Float64, "score": pl.Float64})


SCORES = make_scores({
    ("mdm", 1): {"a": 0.9, "b": 0.5, "c": 0.1, "d": 0.3},
    ("mdm", 2): {"a": 0.8, "b": 0.6, "c": 0.2, "d": 0.1},
    ("pad", 1): {"a": -0.1, "b": -0.2, "c": -0.9, "d": -0.05},
    ("pad", 2): {"a": -0.2, "b": -0.1, "c": -0.8, "d": -0.3},
})
PERFORMANCE = {"a": 0.9, "b": 0.7, "c": 0.2, "d": 0.4, "unused": 0.0}


def test_ensemble_is_mean_rank_per_seed():
    ensemble = add_ensemble(SCORES).filter(pl.col("proxy") == "ensemble")
    seed1 = {r["dataset_id"]: r["raw"] for r in ensemble.filter(pl.col("seed") == 1).iter_rows(named=True)}
    # seed 1: mdm ranks a1 b2 d3 c4; pad ranks d1 a2 b3 c4
    assert seed1 == {"a": 1.5, "b": 2.5, "c": 4.0, "d": 2.0}
    assert ensemble.filter(pl.col("dataset_id") == "a")["score"].to_list() == [-1.5, -1.5]


def test_rank_takes_mean_and_population_std_over_seeds():
    rankings = rank(SCORES).filter(pl.col("proxy") == "mdm")
    assert rankings["dataset_id"].to_list() == ["a", "b", "d", "c"]
    assert rankings["rank"].to_list() == [1, 2, 3, 4]
    a = rankings.filter(pl.col("dataset_id") == "a").row(0, named=True)
    assert a["score_mean"] == pytest.approx(0.85)
    assert a["score_std"] == pytest.approx(np.std([0.9, 0.8]))


def test_evaluate_matches_scipy_by_hand():
    scores = add_ensemble(SCORES)
    report = evaluate_scores(scores, rank(scores), PERFORMANCE, top_k=2)
    ids = ["a", "b", "c", "d"]
    y = [PERFORMANCE[i] for i in ids]
    mdm1, mdm2 = [0.9, 0.5, 0.1, 0.3], [0.8, 0.6, 0.2, 0.1]
    spearman = [stats.spearmanr(mdm1, y)[0], stats.spearmanr(mdm2, y)[0]]
    pearson = [stats.pearsonr(mdm1, y)[0], stats.pearsonr(mdm2, y)[0]]
    mdm = report["proxies"]["mdm"]
    assert report["n_datasets"] == 4
    assert report["mean_performance"] == pytest.approx(np.mean(y))
    assert mdm["spearman"] == pytest.approx(np.mean(spearman), abs=1e-6)
    assert mdm["pearson"] == pytest.approx(np.mean(pearson), abs=1e-6)
    assert mdm["spearman_std"] == pytest.approx(np.std(spearman), abs=1e-6)
    # top-2 by mean score: a (0.85) and b (0.55)
    assert mdm["top_k_performance"] == pytest.approx(0.8)
    assert mdm["top_k_gain"] == pytest.approx(0.8 - np.mean(y))
    # pad mean scores: a -0.15, b -0.15, d -0.175, c -0.85 -> a and b tie for rank 1
    assert report["proxies"]["pad"]["top_k_performance"] == pytest.approx(0.8)
    assert set(report["proxies"]) == {"mdm", "pad", "ensemble"}


def test_evaluate_names_a_missing_dataset():
    with pytest.raises(UserError, match="performance file has no row for dataset_id 'c'"):
        evaluate_scores(SCORES, rank(SCORES), {"a": 1, "b": 1, "d": 1})


def test_read_performance_errors(tmp_path):
    csv = tmp_path / "perf.csv"
    csv.write_text("name,f1\na,0.5\nb,oops\n")
    with pytest.raises(UserError, match=f"^{csv}: no column 'dataset_name' \\(columns: name, f1\\)$"):
        read_performance(str(csv), "dataset_name", "f1")
    with pytest.raises(UserError, match=f"^{csv}: row 3 column 'f1' is not a number$"):
        read_performance(str(csv), "name", "f1")
    with pytest.raises(UserError, match="missing.csv: file not found"):
        read_performance(str(tmp_path / "missing.csv"), "name", "f1")
