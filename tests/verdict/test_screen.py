"""Fluency as a screen (docs/proxies.md, "fluency"): its score never votes in the ensemble, and a
candidate whose garbled_share is over its limit is passed over and ranks after every other in the
lead ranking. Small constructed tables and simulations, no model."""

import numpy as np
import polars as pl
import pytest

from synque_ray.config import DEFAULT_PROXIES, parse_config
from synque_ray.findings import LIMITS, SCREENS, add_findings, demoted, flagged_lines, passed_over
from synque_ray.fluency import fluency_score, thresholds
from synque_ray.reduce import add_ensemble, ensemble_weights, lead_proxy, rank
from synque_ray.verdict import choose, verdict


def scores_of(means: dict[str, dict[str, float]], seeds=(1, 2, 3), spread=0.05, seed=0) -> pl.DataFrame:
    """Per-(candidate, proxy, seed) scores from {proxy: {candidate: mean score}}, each seed's score
    and its 40 replicates drawn around that mean."""
    rng = np.random.default_rng(seed)
    rows = []
    for proxy, by_id in means.items():
        for dataset_id, mean in by_id.items():
            for s in seeds:
                score = mean + rng.normal(0, spread)
                rows.append({"dataset_id": dataset_id, "proxy": proxy, "seed": s, "raw": score, "score": score,
                             "replicates": list(score + rng.normal(0, spread, 40))})
    return pl.DataFrame(rows)


def garbled_rows(dataset_id: str, garbled: list[bool], seeds=(1, 2)) -> pl.DataFrame:
    """The fluency stage's rows of a candidate: each garbled row seen as shuffled."""
    return pl.concat(pl.DataFrame({"dataset_id": dataset_id, "seed": s, "row_index": list(range(len(garbled))),
                                   "garbled": garbled, "garbled_as": ["shuffled" if g else None for g in garbled]},
                                  schema_overrides={"garbled_as": pl.Utf8}) for s in seeds)


def test_the_screen_never_votes_and_a_candidate_without_it_is_still_in_the_ensemble():
    """fluency orders the candidates against mdm and mmd; the ensemble and its weights are those of
    mdm and mmd alone, fluency's rows stay in the table, and `late`, which fluency did not score,
    still gets its ensemble rank."""
    voters = {"mdm": {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0, "late": 0.0},
              "mmd": {"a": 4.1, "b": 2.9, "c": 2.2, "d": 0.8, "late": 0.1}}
    screen = {"fluency": {"a": 0.0, "b": 1.0, "c": 2.0, "d": 3.0}}
    with_screen, without = scores_of({**voters, **screen}), scores_of(voters)
    assert "fluency" in SCREENS
    for method in ("robust", "decorrelated", "mean"):
        assert ensemble_weights(with_screen, method) == pytest.approx(ensemble_weights(without, method))
        assert set(ensemble_weights(with_screen, method)) == {"mdm", "mmd"}
    both = add_ensemble(with_screen)
    ensemble = both.filter(pl.col("proxy") == "ensemble").sort("dataset_id", "seed")
    alone = add_ensemble(without).filter(pl.col("proxy") == "ensemble").sort("dataset_id", "seed")
    assert ensemble.select("dataset_id", "seed", "score").equals(alone.select("dataset_id", "seed", "score"))
    assert "late" in ensemble.get_column("dataset_id").to_list()
    assert both.filter(pl.col("proxy") == "fluency").height == 4 * 3
    # One voter and a screen: no ensemble, and the voter leads every view.
    single = add_ensemble(scores_of({"mdm": voters["mdm"], **screen}))
    assert "ensemble" not in single.get_column("proxy").to_list() and lead_proxy(single) == "mdm"
    assert lead_proxy(scores_of(screen)) == "fluency"  # alone, it is all there is to read


def test_a_demoted_candidate_ranks_after_every_other_in_the_lead_ranking_and_keeps_its_own_elsewhere():
    """`shuf` is far ahead under mdm (embeddings barely see shuffled words). Demoted, it is last in
    the ensemble in every draw (rank, interval and shares), out of the best set, and the others rank
    as if it were not there; under mdm it keeps rank 1, and its score_mean is what was measured."""
    means = {"mdm": {"shuf": 9.0, "a": 5.0, "b": 3.0, "c": 1.0}, "mmd": {"shuf": 9.0, "a": 5.0, "b": 3.0, "c": 1.0}}
    scores = add_ensemble(scores_of(means))
    plain = rank(scores, top=2)
    table = rank(scores, top=2, passed_over={"shuf"}, demoted={"shuf"})
    lead = {r["dataset_id"]: r for r in table.filter(pl.col("proxy") == "ensemble").iter_rows(named=True)}
    assert (lead["shuf"]["rank"], lead["shuf"]["rank_low"], lead["shuf"]["rank_high"]) == (4, 4, 4)
    assert lead["shuf"]["p_best"] == 0 and lead["shuf"]["p_top"] == 0 and not lead["shuf"]["tied_with_best"]
    assert [lead[d]["rank"] for d in ("a", "b", "c")] == [1, 2, 3] and lead["a"]["tied_with_best"]
    assert lead["a"]["p_best"] == pytest.approx(1.0)
    before = plain.filter((pl.col("proxy") == "ensemble") & (pl.col("dataset_id") == "shuf")).row(0, named=True)
    assert before["rank"] == 1 and lead["shuf"]["score_mean"] == pytest.approx(before["score_mean"])
    mdm = {r["dataset_id"]: r["rank"] for r in table.filter(pl.col("proxy") == "mdm").iter_rows(named=True)}
    assert mdm == {"shuf": 1, "a": 2, "b": 3, "c": 4}
    # Passed over alone (a leak) it keeps rank 1 in the ensemble too.
    kept = rank(scores, top=2, passed_over={"shuf"}).filter(pl.col("proxy") == "ensemble")
    assert kept.filter(pl.col("dataset_id") == "shuf")["rank"].item() == 1


def test_garbled_rows_over_the_limit_pass_a_candidate_over_and_demote_it():
    """7 of 16 rows garbled (44%) is over the 40% limit; 6 of 16 (38%) is not."""
    rows = pl.concat([garbled_rows("shuf", [True] * 7 + [False] * 9), garbled_rows("edge", [True] * 6 + [False] * 10),
                      garbled_rows("good", [True] + [False] * 15)])
    assert LIMITS["garbled_share"] == 0.40
    passed = passed_over(rows)
    assert passed == {"shuf": ["garbled_share"]} and demoted(passed) == {"shuf"}
    assert demoted({"leak": ["real_copy_share"], "both": ["real_copy_share", "garbled_share"]}) == {"both"}


def ranking_table(order: dict[str, list[str]]) -> pl.DataFrame:
    """A ranking table from {proxy: candidates best first}; the ensemble's best set is its first."""
    rows = [{"dataset_id": d, "proxy": p, "score_mean": -float(r), "score_std": 0.0, "rank": r, "rank_low": r,
             "rank_high": r, "tied_with_best": r == 1, "p_best": None}
            for p, ids in order.items() for r, d in enumerate(ids, start=1)]
    return pl.DataFrame(rows)


def test_the_verdict_names_the_fluent_candidate_and_says_why_the_garbled_one_is_not():
    rows = pl.concat([garbled_rows("shuf", [True] * 10 + [False] * 6), garbled_rows("good", [False] * 16),
                      garbled_rows("ok", [True] + [False] * 15)])
    # As the engine ranks it: demoted to last; the verdict names good, fluency's rank counts for nothing.
    table = add_findings(ranking_table({"ensemble": ["good", "ok", "shuf"], "mdm": ["good", "shuf", "ok"],
                                        "pad": ["good", "shuf", "ok"], "fluency": ["ok", "good", "shuf"]}), rows)
    lines = verdict(table)
    assert lines[0].startswith("train on: good (rank 1 under 2 of 2 proxies")  # mdm and pad; not the screen
    assert lines[1].startswith("next: ok (rank 2") and not any("shuf" in line for line in lines)
    assert flagged_lines(table) == [
        "flagged: shuf: 62% garbled rows (shuffled 62%) (limit 40%)"]
    assert choose(table).passed == {"shuf": ["garbled_share"]}
    # A table ranked before demotion existed (shuf first): the verdict still passes it over, and says why.
    old = add_findings(ranking_table({"ensemble": ["shuf", "good", "ok"], "mdm": ["shuf", "good", "ok"]}), rows)
    lines = verdict(old)
    assert lines[0].startswith("train on: good (rank 2, the best of the candidates not passed over")
    assert lines[1] == ("passed over: shuf (rank 1): 62% garbled rows (shuffled 62%), over the 40% limit; its rows "
                        "read as shuffled, misspelt or cut text, which the embedding proxies barely see, so it ranks "
                        "after every candidate that does not")
    alone = add_findings(ranking_table({"ensemble": ["shuf"], "mdm": ["shuf"]}), rows.filter(pl.col("dataset_id") ==
                                                                                           "shuf"))
    assert verdict(alone)[0] == "train on: nothing: every ranked candidate is passed over"


def test_fluency_is_in_the_default_proxies():
    assert DEFAULT_PROXIES[-1] == "fluency" and {"mdm", "mmd", "pad", "mauve"} <= set(DEFAULT_PROXIES)
    config = parse_config({"name": "x", "output": "out", "real": {"path": "r.jsonl", "text": "text"},
                           "candidates": {"path": "c", "text": "text"}})
    assert config.proxies == DEFAULT_PROXIES


def heavy_tailed_domain(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Token NLL and order gain of n real rows of a domain with a heavy tail: one row in four holds
    tickers or links (NLL 3 nats higher); the gain is the row's own difference (its tickers are in
    both of its terms), so it does not follow the tail."""
    tail = rng.random(n) < 0.25
    return rng.normal(6.5, 0.7, n) + 3.0 * tail, rng.normal(1.4, 0.35, n)


def gain_only(gain: np.ndarray) -> dict[str, np.ndarray]:
    """The fluency screen's judging signals of rows whose order gain alone is known."""
    unknown = np.full(len(gain), np.nan)
    return {"order_gain": gain, "spelling_surprise": unknown, "end_surprise": unknown}


def test_a_shuffled_copy_in_a_heavy_tailed_domain_is_caught_by_its_order_gain_where_its_nll_is_not():
    """Truth by construction: a shuffled copy's rows are about 1.2 nats less likely than their source
    and keep an order gain of about 0.15 (nothing left to lose). The rule of the NLL alone (above
    U_r's 95th percentile, as before the order gain) flags the copy in under half of the simulated
    runs, since U_r's tail reaches as far; the order gain flags most of its rows and the copy in
    every run, and a clean candidate drawn like U_r in none. Sizes as the engine's defaults on the
    demo: 64 U_r rows (2 seeds of 32) and 16 candidate rows."""
    rng = np.random.default_rng(11)
    limit = LIMITS["garbled_share"]
    by_nll, by_gain, clean = [], [], []
    for _ in range(40):
        real, real_gain = heavy_tailed_domain(64, rng)
        source, _ = heavy_tailed_domain(16, rng)
        shuffled, shuffled_gain = source + rng.normal(1.2, 0.5, 16), rng.normal(0.15, 0.3, 16)
        by_nll.append(np.mean(shuffled > np.percentile(real, 95)))
        limits = thresholds(gain_only(real_gain), 5)
        by_gain.append(np.mean(fluency_score(shuffled, real, gain_only(shuffled_gain), limits, 2,
                                             rng).garbled.astype(bool)))
        clean_nll, clean_gain = heavy_tailed_domain(16, rng)
        clean.append(np.mean(fluency_score(clean_nll, real, gain_only(clean_gain), limits, 2,
                                           rng).garbled.astype(bool)))
    assert np.mean(np.array(by_nll) > limit) < 0.5
    assert np.mean(by_gain) > 0.8 and min(by_gain) > limit
    assert max(clean) <= limit
