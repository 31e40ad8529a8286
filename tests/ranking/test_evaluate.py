"""Ranking, ensemble and evaluation against hand computations with scipy."""

import itertools

import numpy as np
import polars as pl
import pytest
from scipy import stats

from synque_ray.errors import UserError
from synque_ray.evaluate import decision_accuracy, evaluate_scores, read_performance, report_text
from synque_ray.reduce import add_ensemble, ensemble_weights, rank


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
    ensemble = add_ensemble(SCORES, method="mean").filter(pl.col("proxy") == "ensemble")
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


def test_evaluate_leaves_out_and_names_candidates_the_performance_lacks():
    performance = {"a": 0.9, "b": 0.7, "d": 0.4}  # no c, no e
    scores = pl.concat([SCORES, make_scores({("mdm", 1): {"e": 0.0}, ("mdm", 2): {"e": 0.0},
                                             ("pad", 1): {"e": 0.0}, ("pad", 2): {"e": 0.0}})])
    report = evaluate_scores(scores, rank(scores), performance, top_k=1)
    assert report["missing_performance"] == ["c", "e"] and report["n_datasets"] == 3
    mdm1, mdm2 = [0.9, 0.5, 0.3], [0.8, 0.6, 0.1]  # a, b, d
    y = [0.9, 0.7, 0.4]
    expected = np.mean([stats.spearmanr(mdm1, y)[0], stats.spearmanr(mdm2, y)[0]])
    assert report["proxies"]["mdm"]["spearman"] == pytest.approx(expected, abs=1e-6)
    assert report["mean_performance"] == pytest.approx(np.mean(y))
    assert report_text(report).splitlines()[0] == (
        "warning: the performance file has no row for 2 candidate(s), left out: c, e")
    with pytest.raises(UserError, match=r"^performance file has a row for none of the 5 candidates "
                                        r"\(e.g. dataset_id 'a'\)$"):
        evaluate_scores(scores, rank(scores), {"zz": 1.0})


def _brute_decision_accuracy(score: dict, performance: dict) -> float:
    hits = pairs = 0.0
    for x, y in itertools.combinations(sorted(score), 2):
        if performance[x] == performance[y]:
            continue
        pairs += 1
        if score[x] == score[y]:
            hits += 0.5
        elif (score[x] > score[y]) == (performance[x] > performance[y]):
            hits += 1
    return hits / pairs


def test_decision_accuracy_matches_a_brute_force_count():
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(3, 12))
        score = np.round(rng.normal(size=n), 1)  # ties in the score happen
        performance = np.round(rng.normal(size=n), 1)  # and in the performance
        ids = [f"c{i}" for i in range(n)]
        if len(set(performance)) == 1:
            continue
        brute = _brute_decision_accuracy(dict(zip(ids, score)), dict(zip(ids, performance)))
        assert decision_accuracy(score, performance) == pytest.approx(brute)
    assert decision_accuracy(np.array([1.0, 2.0]), np.array([0.5, 0.5])) is None


def test_evaluate_reports_decision_accuracy_of_the_mean_score():
    scores = add_ensemble(SCORES)
    report = evaluate_scores(scores, rank(scores), PERFORMANCE, top_k=2)
    ranked = rank(scores)
    for proxy in ("mdm", "pad", "ensemble"):
        means = dict(ranked.filter(pl.col("proxy") == proxy).select("dataset_id", "score_mean").iter_rows())
        assert report["proxies"][proxy]["decision_accuracy"] == pytest.approx(
            _brute_decision_accuracy(means, PERFORMANCE), abs=1e-6)
    # mdm means a .85, b .55, d .2, c .15 against a .9, b .7, d .4, c .2: every pair agrees
    assert report["proxies"]["mdm"]["decision_accuracy"] == 1.0
    assert "pairs" in report_text(report).splitlines()[1]


def test_read_performance_errors(tmp_path):
    csv = tmp_path / "perf.csv"
    csv.write_text("name,f1\na,0.5\nb,oops\n")
    with pytest.raises(UserError, match=f"^{csv}: no column 'dataset_name' \\(columns: name, f1\\)$"):
        read_performance(str(csv), "dataset_name", "f1")
    with pytest.raises(UserError, match=f"^{csv}: row 3 column 'f1' is not a number$"):
        read_performance(str(csv), "name", "f1")
    with pytest.raises(UserError, match="missing.csv: file not found"):
        read_performance(str(tmp_path / "missing.csv"), "name", "f1")


def test_performance_with_a_repeated_or_empty_id_is_a_one_line_error(tmp_path):
    csv = tmp_path / "perf.csv"
    csv.write_text("name,f1\na,0.5\nb,0.6\na,0.7\n")
    with pytest.raises(UserError) as err:
        read_performance(str(csv), "name", "f1")
    assert str(err.value) == f"{csv}: row 4 repeats name 'a' (first on row 2)"
    csv.write_text("name,f1\na,0.5\n,0.6\n")
    with pytest.raises(UserError) as err:
        read_performance(str(csv), "name", "f1")
    assert str(err.value) == f"{csv}: row 3 column 'name' is empty"


# ---------------------------------------------------------------- the robust ensemble


def _proxies_of(truth: np.ndarray, rng: np.random.Generator, noise: float, bad: tuple[str, ...],
                seeds: int = 5) -> pl.DataFrame:
    """Four proxies that are noisy copies of the truth, plus the `bad` ones: "reversed" (a noisy
    copy of its opposite) or "random" (unrelated to it), scored on `seeds` seeds."""
    values = {}
    for seed in range(seeds):
        for p in range(4):
            values[(f"good{p}", seed)] = truth + rng.normal(0, noise, truth.size)
        for name in bad:
            values[(name, seed)] = (-truth + rng.normal(0, noise, truth.size) if name == "reversed"
                                    else rng.normal(0, 1, truth.size))
    return make_scores({key: {f"c{i:02d}": v for i, v in enumerate(vector)} for key, vector in values.items()})


def _spearman_with(scores: pl.DataFrame, proxy: str, truth: np.ndarray) -> float:
    mean = scores.filter(pl.col("proxy") == proxy).group_by("dataset_id").agg(pl.col("score").mean())
    return stats.spearmanr(mean.sort("dataset_id")["score"], truth).statistic


@pytest.mark.parametrize("bad", [("reversed",), ("random",), ("reversed", "random")])
def test_robust_ensemble_is_not_dragged_down_by_a_misleading_proxy(bad):
    rng = np.random.default_rng(13)
    good, robust, plain, misled = [], [], [], []
    for _ in range(20):
        truth = rng.normal(size=32)
        scores = _proxies_of(truth, rng, noise=1.5, bad=bad)
        good.append(np.mean([_spearman_with(scores, f"good{p}", truth) for p in range(4)]))
        robust.append(_spearman_with(add_ensemble(scores, method="robust"), "ensemble", truth))
        plain.append(_spearman_with(add_ensemble(scores, method="mean"), "ensemble", truth))
        weights = ensemble_weights(scores, "robust")
        assert sum(weights.values()) == pytest.approx(1.0)
        misled.append([weights[name] for name in bad])
    assert np.mean(misled) < 0.05  # each misleading proxy weighs little (the good ones about 1/4 each)
    assert np.mean(robust) >= np.mean(good)
    assert np.mean(robust) >= np.mean(plain) + 0.02, (np.mean(robust), np.mean(plain))
    assert np.mean(np.array(robust) >= np.array(plain)) >= 0.8  # run by run, not only on average


def test_robust_weights_are_leave_one_out_agreement_by_hand():
    # per seed: each proxy's Spearman with the mean rank of the others, averaged, clipped, normalised
    by_hand = {}
    for proxy in ("mdm", "pad"):
        other = "pad" if proxy == "mdm" else "mdm"
        rhos = [stats.spearmanr(SCORES.filter((pl.col("proxy") == proxy) & (pl.col("seed") == s)).sort(
            "dataset_id")["score"], SCORES.filter((pl.col("proxy") == other) & (pl.col("seed") == s)).sort(
            "dataset_id")["score"]).statistic for s in (1, 2)]
        by_hand[proxy] = max(0.0, float(np.mean(rhos)))
    assert by_hand["mdm"] == by_hand["pad"] > 0  # two proxies: each is the other's consensus
    assert ensemble_weights(SCORES, "robust") == pytest.approx({"mdm": 0.5, "pad": 0.5})
    four = pl.concat([SCORES, make_scores({**{("bad", s): {"a": 0.1, "b": 0.4, "c": 0.9, "d": 0.6} for s in (1, 2)},
                                           **{("mmd", s): {"a": 0.8, "b": 0.7, "c": 0.1, "d": 0.2} for s in (1, 2)}})])
    weights = ensemble_weights(four, "robust")
    ranks = {p: [stats.rankdata(-four.filter((pl.col("proxy") == p) & (pl.col("seed") == s)).sort("dataset_id")[
        "score"].to_numpy()) for s in (1, 2)] for p in ("bad", "mdm", "mmd", "pad")}
    raw = {}
    for p in ranks:
        others = [q for q in ranks if q != p]
        raw[p] = max(0.0, np.mean([stats.spearmanr(ranks[p][s], np.mean([ranks[q][s] for q in others], axis=0))
                                   .statistic for s in (0, 1)]))
    total = sum(raw.values())
    assert weights == pytest.approx({p: raw[p] / total for p in raw})
    assert weights["bad"] == 0.0 and weights["mdm"] > 0.3
    assert ensemble_weights(four, "mean") == pytest.approx({p: 0.25 for p in ranks})


def test_ensemble_uses_the_given_weights():
    ensemble = add_ensemble(SCORES, weights={"mdm": 1.0, "pad": 0.0}).filter(pl.col("proxy") == "ensemble")
    seed1 = {r["dataset_id"]: r["raw"] for r in ensemble.filter(pl.col("seed") == 1).iter_rows(named=True)}
    assert seed1 == {"a": 1.0, "b": 2.0, "c": 4.0, "d": 3.0}  # mdm's ranks alone
    with pytest.raises(ValueError, match="ensemble method 'median' is not one of robust, mean"):
        ensemble_weights(SCORES, "median")


def test_the_run_records_the_ensemble_weights_and_ranks_by_the_configured_settings():
    from synque_ray.config import RankingConfig
    from synque_ray.pipeline import reduce_outcomes
    from synque_ray.vocabulary import RANKING_COLUMNS, RESULT_SCHEMA
    from synque_ray.stage.base import StageOutcome

    results = SCORES.with_columns(pl.lit(None, pl.List(pl.Float64)).alias("replicates"),
                                  pl.lit(None, pl.Utf8).alias("error"), pl.lit(0.0).alias("seconds"))
    outcome = StageOutcome("proxies", {}, scores=results.select(list(RESULT_SCHEMA)),
                           counts={"scored": 4, "reused": 0, "failed": 0, "skipped": 0})
    for method in ("robust", "mean"):
        tables, summary = reduce_outcomes([outcome], [], [1, 2], RankingConfig(top=2, ensemble=method))
        assert summary["ensemble"] == {"method": method, "weights": ensemble_weights(SCORES, method)}
        rankings = tables["rankings.parquet"]
        assert rankings.columns[:len(RANKING_COLUMNS)] == RANKING_COLUMNS  # then the findings
        for proxy in ("mdm", "pad", "ensemble"):
            part = rankings.filter(pl.col("proxy") == proxy)
            assert part["p_top"].sum() == pytest.approx(2.0) and part["p_best"].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        RankingConfig(ensemble="median")
