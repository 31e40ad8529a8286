"""The FLUENCY proxy: its distance against computations by hand, its stage's pure parts with
cached values (no model), and end to end with the bundled LM on real headlines (slow)."""

import json
import math

import numpy as np
import polars as pl
import pytest
from scipy.stats import norm

from synque_ray.config import parse_config
from synque_ray.findings import LIMITS, findings, row_shares
from synque_ray.fluency import (
    FluencyParams,
    energy_distance,
    fluency_score,
    gain_threshold,
    resampled_energy,
    row_fluency,
    shuffled_text,
)
from synque_ray.proxies.base import resample_weights
from synque_ray.reading import row_hashes
from synque_ray.stage.fluency import ROW_COLUMNS, NllCache, score_candidate
from synque_ray.storage import Store



def energy_by_hand(x, y):
    """2·mean|x−y| − mean over ordered pairs of distinct draws within each side, as plain loops."""
    cross = sum(abs(a - b) for a in x for b in y) / (len(x) * len(y))
    within = [sum(abs(s[i] - s[j]) for i in range(len(s)) for j in range(len(s)) if i != j) / (len(s) * (len(s) - 1))
              for s in (x, y)]
    return 2 * cross - within[0] - within[1]


def test_energy_distance_matches_loops_on_unequal_samples():
    x, y = [4.1, 5.0, 7.5], [3.9, 4.4, 4.0, 5.2, 4.8]
    assert energy_distance(np.array(x), np.array(y)) == pytest.approx(energy_by_hand(x, y), rel=1e-12)
    same = energy_distance(np.array(y), np.array(y))  # unbiased, so a little below 0 for one sample twice
    assert same == pytest.approx(energy_by_hand(y, y), rel=1e-12) and same < 0


def test_energy_distance_is_zero_in_expectation_at_any_sizes_and_tracks_a_shift():
    # One distribution, a 6-row candidate against a 40-row U_r: the mean over draws is 0 within noise,
    # where the mean absolute gap of quantiles (Wasserstein-1) is clearly positive at these sizes.
    rng = np.random.default_rng(3)
    draws = np.array([energy_distance(rng.normal(size=6), rng.normal(size=40)) for _ in range(400)])
    assert abs(draws.mean()) < 3 * draws.std() / math.sqrt(len(draws))
    # A shift of 2 (spread 1): E = 2·E|X−Y| − 2·E|X−X'|, with X−Y ~ N(2, 2) and E|X−X'| = 2/√π.
    shift, sigma = 2.0, math.sqrt(2)
    folded = (sigma * math.sqrt(2 / math.pi) * math.exp(-shift**2 / (2 * sigma**2))
              + shift * (1 - 2 * norm.cdf(-shift / sigma)))
    truth = 2 * folded - 2 * 2 / math.sqrt(math.pi)
    got = energy_distance(rng.normal(shift, 1, size=1500), rng.normal(0, 1, size=1200))
    assert got == pytest.approx(truth, abs=0.1)
    assert energy_distance(np.array([9.0, 9.5, 10.0]), np.array([4.0, 4.5, 5.0])) > 8  # far apart: about 2|shift|


def test_replicates_are_the_distance_of_each_resampled_multiset_centred_on_the_point():
    x, y = np.array([4.0, 6.5, 5.1, 8.0]), np.array([4.2, 4.9, 3.8, 5.5, 4.4])
    got = resampled_energy(x, y, 5, np.random.default_rng(7))
    rng = np.random.default_rng(7)  # the same draws, expanded into the rows they repeat
    wx, wy = resample_weights(len(x), 5, rng), resample_weights(len(y), 5, rng)
    raw = np.array([energy_by_hand(np.repeat(x, a.astype(int)), np.repeat(y, b.astype(int))) for a, b in zip(wx, wy)])
    point = energy_by_hand(x, y)
    np.testing.assert_allclose(got, raw - raw.mean() + point, rtol=1e-10)


def test_garbled_rows_are_those_below_u_r_percentile_of_order_gain_and_the_score_is_the_negated_distance():
    real, real_gain = np.array([3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0]), np.array([0.2, 1.0, 1.1, 1.2, 1.3, 1.4, 2.0])
    assert gain_threshold(real_gain, 5) == pytest.approx(np.percentile(real_gain, 5)) == pytest.approx(0.44)
    assert gain_threshold(np.array([0.3, math.nan, 1.5]), 50) == pytest.approx(0.9)  # rows without a gain left out
    assert math.isnan(gain_threshold(np.array([1.0, math.nan]), 5))  # one row with an order: no threshold
    candidate, gain = np.array([4.0, 9.0, 4.0, 4.0]), np.array([1.0, 1.5, 0.3, math.nan])
    result = fluency_score(candidate, real, gain, 0.44, 20, np.random.default_rng(0))
    assert result.garbled.tolist() == [False, False, True, None]  # an NLL of 9 alone is no garble; no gain: not judged
    assert fluency_score(candidate, real, gain, math.nan, 20, np.random.default_rng(0)).garbled.tolist() == [None] * 4
    assert result.score == -result.energy == pytest.approx(-energy_by_hand(candidate.tolist(), real.tolist()))
    assert len(result.replicates) == 20
    with pytest.raises(ValueError, match="gain has shape"):
        fluency_score(candidate, real, gain[:2], 0.44, 20, np.random.default_rng(0))


@pytest.mark.parametrize("bad", [np.array([1.0]), np.array([1.0, np.nan]), np.ones((2, 2))])
def test_too_few_or_non_finite_values_are_refused(bad):
    with pytest.raises(ValueError, match="candidate"):
        energy_distance(bad, np.array([1.0, 2.0]))


def test_a_candidate_whose_rows_are_all_cached_is_scored_without_the_model_and_unscored_rows_stay_null():
    """Against a threshold of order gain of 1.04, the third row (gain 0.1) and the fourth (0.5) are
    garbled; the fifth has no order (one word) and is not judged; the empty row has no NLL."""
    texts = ["Stocks rally as yields fall", "", "rally yields Stocks as fall", "Oil slips", "Wow"]
    known = (np.array([4.0, math.nan, 8.0, 5.0, 5.2]), np.array([6, 0, 6, 3, 1]),
             np.array([1.5, math.nan, 0.1, 0.5, math.nan]))
    real = {1: np.array([3.9, 4.2, 4.8, 5.1, 5.4]), 2: np.array([7.0])}  # seed 2: too few U_r rows
    results, rows = score_candidate("c", "/no/model/here", texts, [0, 3, 5, 9, 11], known, real, 1.04,
                                    FluencyParams(), 30, 1)
    first, second = results
    assert first["raw"] == pytest.approx(energy_by_hand([4.0, 8.0, 5.0, 5.2], real[1].tolist()))
    assert first["score"] == -first["raw"] and len(first["replicates"]) == 30 and first["error"] is None
    assert math.isnan(second["raw"]) and "at least 2" in second["error"] and second["replicates"] == []
    table = pl.DataFrame(rows, schema=ROW_COLUMNS)
    seed1 = table.filter(pl.col("seed") == 1)
    assert seed1.get_column("row_index").to_list() == [0, 3, 5, 9, 11]
    assert seed1.get_column("token_nll").to_list() == [4.0, None, 8.0, 5.0, 5.2]  # an empty row: null, never 0
    assert seed1.get_column("order_gain").to_list() == [1.5, None, 0.1, 0.5, None]
    assert seed1.get_column("garbled").to_list() == [False, None, True, True, None]
    assert seed1.get_column("text_hash").to_list() == row_hashes(texts)
    assert table.filter(pl.col("seed") == 2).get_column("garbled").null_count() == 5


def test_the_shuffle_keeps_the_words_changes_their_order_and_depends_on_the_text_alone():
    text = "Stocks rally as bond yields fall after the Fed holds rates"
    shuffled = shuffled_text(text)
    assert shuffled is not None and shuffled != text and sorted(shuffled.split()) == sorted(text.split())
    assert shuffled_text(text) == shuffled  # the same text, the same order, in every run
    assert shuffled_text("up up") is None and shuffled_text("Wow") is None and shuffled_text("") is None
    assert shuffled_text("Oil slips") == "slips Oil"  # two words: the one other order


def test_order_gain_is_the_shuffles_nll_minus_the_rows_with_nan_where_a_row_has_no_order(monkeypatch):
    """The LM replaced by a stand-in that scores a text by its first word's length (a test double
    of the model, not of the arithmetic under test): the gain is the shuffle's value minus the row's."""
    seen = []

    def fake(model_path, texts, params, threads=1):
        seen.append(list(texts))
        nll = np.array([float(len(t.split()[0])) if t.strip() else math.nan for t in texts])
        return nll, np.array([len(t.split()) for t in texts])

    monkeypatch.setattr("synque_ray.fluency.mean_token_nll", fake)
    texts = ["Stocks rally", "", "Wow", "a bb ccc"]
    nll, tokens, gain = row_fluency("/no/model", texts, FluencyParams())
    assert len(seen) == 1 and seen[0][:4] == texts  # one batch: the rows, then the shuffles of those with an order
    shuffles = [shuffled_text("Stocks rally"), shuffled_text("a bb ccc")]
    assert seen[0][4:] == shuffles
    np.testing.assert_array_equal(nll, [6.0, math.nan, 3.0, 1.0])
    assert tokens.tolist() == [2, 0, 1, 3]
    expected = [len(shuffles[0].split()[0]) - 6.0, math.nan, math.nan, len(shuffles[1].split()[0]) - 1.0]
    np.testing.assert_array_equal(gain, expected)


def test_the_nll_cache_keeps_finite_values_by_text_hash_across_instances(tmp_path):
    store = Store(str(tmp_path / "cache"))
    cache = NllCache(store)
    assert cache.save(["a", "b", "c"], np.array([4.0, math.nan, 6.0]), np.array([3, 0, 5]),
                      np.array([1.5, math.nan, math.nan])) == 2
    assert cache.save(["a", "d"], np.array([9.0, 7.0]), np.array([1, 2]), np.array([0.0, 0.2])) == 1  # "a": kept
    again = NllCache(store)
    nll, counts, gain = again.lookup(["a", "b", "c", "d"])
    np.testing.assert_array_equal(nll, [4.0, math.nan, 6.0, 7.0])
    assert counts.tolist() == [3, 0, 5, 2]
    np.testing.assert_array_equal(gain, [1.5, math.nan, math.nan, 0.2])  # "c" has no order: NaN, never 0


def test_garbled_share_counts_scored_rows_per_seed_and_flags_above_its_limit():
    def rows(dataset_id, seed, garbled):
        return [{"dataset_id": dataset_id, "seed": seed, "row_index": i, "garbled": g} for i, g in enumerate(garbled)]

    table = pl.DataFrame(rows("shuffled", 1, [True, True, True, None]) + rows("shuffled", 2, [True, False, None, None])
                         + rows("clean", 1, [False, False, True, False]) + rows("clean", 2, [False] * 4),
                         schema={"dataset_id": pl.Utf8, "seed": pl.Int64, "row_index": pl.Int64, "garbled": pl.Boolean})
    shares = dict(row_shares(table).select("dataset_id", "garbled_share").iter_rows())
    assert shares == {"clean": pytest.approx((0.25 + 0) / 2), "shuffled": pytest.approx((1 + 0.5) / 2)}
    rankings = pl.DataFrame({"dataset_id": ["clean", "shuffled"] * 2, "proxy": ["fluency"] * 2 + ["ensemble"] * 2,
                             "rank": [1.0, 2.0, 1.0, 2.0]})
    flags = dict(findings(rankings, table).select("dataset_id", "flags").iter_rows())
    assert LIMITS["garbled_share"] == 0.40 and flags == {"clean": [], "shuffled": ["garbled_share"]}


def test_config_section_and_its_checks():
    base = {"name": "x", "output": "out", "real": {"path": "r.jsonl", "text": "text"},
            "candidates": {"path": "c", "text": "text"}, "proxies": ["fluency"]}
    config = parse_config({**base, "fluency": {"max_rows": None, "real_rows": 10}})
    assert config.fluency.max_rows is None and config.proxy_params("fluency").min_rows()[0] == 2
    with pytest.raises(Exception, match="fluency.max_rows"):
        parse_config({**base, "fluency": {"max_rows": 1}})
    with pytest.raises(Exception, match="fluency.percentile"):
        parse_config({**base, "fluency": {"percentile": 50}})


@pytest.mark.ray
def test_damaged_copies_are_screened_out_below_their_source(tmp_path):
    """The bundled LM on real financial tweets, whose tickers and links give real rows a heavy tail of
    NLL: U_r and a clean candidate drawn from one pool, and copies of the candidate shuffled, noised
    and cut. Each copy holds more garbled rows than the clean one, which is not flagged; the shuffled
    and the noised copies are over the limit, so they are passed over and rank after every fluent
    candidate in the ensemble (of mdm and mmd: fluency never votes), out of its best set, and the
    verdict names the clean one. The NLL cache scores each distinct text once (with its shuffle); a
    re-run reuses every result. 60 U_r rows: with 30 the 5th percentile of order gain moves enough
    that a clean 12-row candidate is flagged about once in 50 draws (BENCHMARKS.md)."""
    import synque_ray
    from synque_ray.verdict import verdict
    from tests._garble import cut_mid_sentence, noised_chars, real_headlines, shuffled_words

    pool = real_headlines()
    if pool is None:
        pytest.skip("the sentiment benchmark's real pool (../shared/bench/sentiment) is not here")
    order = np.random.default_rng(0).permutation(len(pool))
    real, clean = [pool[i] for i in order[:60]], [pool[i] for i in order[60:72]]
    rng = np.random.default_rng(1)
    candidates = {"clean": clean, "shuffled": [shuffled_words(t, rng) for t in clean],
                  "noised": [noised_chars(t, rng) for t in clean], "cut": [cut_mid_sentence(t) for t in clean]}
    (tmp_path / "candidates").mkdir()
    for name, texts in candidates.items():
        (tmp_path / "candidates" / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    (tmp_path / "real.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in real))
    config = {"name": "fluency", "output": str(tmp_path / "out"), "proxies": ["mdm", "mmd", "fluency"],
              "real": {"path": str(tmp_path / "real.jsonl"), "text": "text", "sample_size": 60, "seeds": [1, 2]},
              "candidates": {"path": str(tmp_path / "candidates"), "text": "text"},
              "fluency": {"max_rows": None, "real_rows": None}, "ranking": {"resamples": 50}}
    result = synque_ray.score(config)
    summary, table = result.summary, result.rankings
    assert summary is not None
    ranks = dict(table.filter(pl.col("proxy") == "fluency").select("dataset_id", "rank").iter_rows())
    assert ranks["clean"] == 1 and min(ranks["shuffled"], ranks["noised"], ranks["cut"]) > 1
    shares = dict(table.select("dataset_id", "garbled_share").unique().iter_rows())
    assert all(shares[name] > shares["clean"] for name in ("shuffled", "noised", "cut")), shares
    flags = dict(table.select("dataset_id", "flags").unique("dataset_id").iter_rows())
    assert flags["clean"] == [] and "garbled_share" in flags["shuffled"] and "garbled_share" in flags["noised"]
    lead = {r["dataset_id"]: r for r in table.filter(pl.col("proxy") == "ensemble").iter_rows(named=True)}
    fluent = [name for name in candidates if "garbled_share" not in flags[name]]
    for name in ("shuffled", "noised"):
        assert lead[name]["rank"] > max(lead[f]["rank"] for f in fluent) and not lead[name]["tied_with_best"]
    assert "shuffled" not in verdict(table)[0] and "noised" not in verdict(table)[0]
    assert result.info["ensemble"]["weights"].keys() == {"mdm", "mmd"}
    rows = result.row_scores
    assert rows is not None
    clean_rows = rows.filter(pl.col("dataset_id") == "clean")
    assert clean_rows.select(pl.col("token_nll", "order_gain").null_count()).sum_horizontal().item() == 0
    # All U_r rows of both seeds were scored once (the two seeds draw the same 60), then 4 x 12 candidate rows.
    assert summary.counts["fluency_rows_scored"] == 60 + 4 * 12
    again = synque_ray.score(config).summary
    assert again is not None
    assert again.counts["stages"]["fluency"]["reused"] == 4 and again.counts["stages"]["fluency"]["scored"] == 0
