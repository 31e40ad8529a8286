"""The FLUENCY proxy: its distance against computations by hand, its stage's pure parts with
cached values (no model), and end to end with the bundled LM on real headlines (slow)."""

import json
import math
import re
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from scipy.stats import norm

from synque_ray.config import parse_config
from synque_ray.findings import LIMITS, finding_parts, findings, row_shares
from synque_ray.fluency import (
    FluencyParams,
    RowScores,
    end_surprise,
    energy_distance,
    fluency_score,
    garbled_rows,
    letter_words,
    native_bfloat16,
    resampled_energy,
    resolve_dtype,
    resolve_model,
    row_fluency,
    shuffled_text,
    spelling_surprise,
    thresholds,
)
from synque_ray.proxies.base import resample_weights
from synque_ray.reading import row_hashes
from synque_ray.stage.fluency import ROW_COLUMNS, NllCache, score_candidate, threshold_texts
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


def signals(gain, spelling, end):
    return {"order_gain": np.array(gain, float), "spelling_surprise": np.array(spelling, float),
            "end_surprise": np.array(end, float)}


def test_each_signals_threshold_is_u_r_percentile_on_its_bad_side_over_rows_that_have_it():
    real = signals([0.2, 1.0, 1.1, 1.2, 1.3, 1.4, 2.0], [0.1, 0.3, 0.2, 0.0, 2.0, 0.4, math.nan],
                   [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 9.0])
    got = thresholds(real, 5)
    assert got["order_gain"] == pytest.approx(np.percentile(real["order_gain"], 5)) == pytest.approx(0.44)  # low: bad
    assert got["spelling_surprise"] == pytest.approx(np.percentile([0.1, 0.3, 0.2, 0.0, 2.0, 0.4], 95))  # NaN left out
    assert got["end_surprise"] == pytest.approx(np.percentile(real["end_surprise"], 95)) == pytest.approx(8.1)
    few = thresholds(signals([1.0, math.nan], [1.0, 2.0], [math.nan, math.nan]), 5)  # one gain, no end: too few
    assert math.isnan(few["order_gain"]) and math.isnan(few["end_surprise"]) and few["spelling_surprise"] > 1.9


def test_a_row_is_garbled_when_any_signal_it_has_is_beyond_its_limit_and_the_causes_are_named():
    limits = {"order_gain": 0.5, "spelling_surprise": 2.0, "end_surprise": 6.0}
    rows = signals([1.0, 0.1, 1.0, 1.0, 0.2, math.nan, math.nan, 0.5],
                   [0.5, 0.5, 3.0, 0.5, 2.5, 0.4, math.nan, 2.0],
                   [3.0, 3.0, 3.0, 7.5, 9.0, 8.0, math.nan, 6.0])
    garbled, named = garbled_rows(rows, limits)
    assert garbled.tolist() == [False, True, True, True, True, True, None, False]  # at a limit: not beyond it
    assert named.tolist() == [None, "shuffled", "misspelt", "cut mid-sentence", "shuffled, misspelt, cut mid-sentence",
                              "cut mid-sentence", None, None]
    no_end = {**limits, "end_surprise": math.nan}  # U_r gave no end surprise: it judges nothing
    assert garbled_rows(rows, no_end)[0].tolist() == [False, True, True, False, True, False, None, False]
    with pytest.raises(ValueError, match="different lengths"):
        garbled_rows({**rows, "end_surprise": np.ones(3)}, limits)


def test_the_score_is_the_negated_distance_and_garbled_rows_come_with_it():
    real = np.array([3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0])
    candidate = np.array([4.0, 9.0, 4.0, 4.0])
    limits = {"order_gain": 0.44, "spelling_surprise": 2.0, "end_surprise": 6.0}
    rows = signals([1.0, 1.5, 0.3, math.nan], [0.2, 0.3, 0.1, 0.2], [2.0, 3.0, 2.0, 1.0])
    result = fluency_score(candidate, real, rows, limits, 20, np.random.default_rng(0))
    assert result.garbled.tolist() == [False, False, True, False]  # an NLL of 9 alone is no garble
    assert result.garbled_as.tolist() == [None, None, "shuffled", None]
    assert result.score == -result.energy == pytest.approx(-energy_by_hand(candidate.tolist(), real.tolist()))
    assert len(result.replicates) == 20
    with pytest.raises(ValueError, match="order_gain has shape"):
        fluency_score(candidate, real, {**rows, "order_gain": rows["order_gain"][:2]}, limits, 20,
                      np.random.default_rng(0))


def test_spelling_surprise_sums_the_nll_of_each_letter_words_later_tokens_over_its_words():
    """Hand-made tokens: '"Stocks' is a quote then 'Sto' 'cks' (the quote is no part of the word), 'ri' 'se'
    a word of two pieces, '9%' no word of letters, 'AAPL,' a word of one token whose comma is stripped,
    'x1y' no word (a digit). Surprise = (1.5 [cks] + 0.5 [se]) / 3 words of letters with tokens."""
    text = '"Stocks rise 9% AAPL, x1y'
    assert [text[a:b] for a, b in letter_words(text)] == ["Stocks", "rise", "AAPL"]
    offsets = [(0, 1), (1, 4), (4, 7), (7, 10), (10, 12), (12, 15), (15, 20), (20, 21), (21, 25)]
    nll = np.array([9.0, 4.0, 1.5, 3.0, 0.5, 7.0, 5.0, 2.0, 8.0])
    assert spelling_surprise(text, offsets, nll) == pytest.approx((1.5 + 0.5) / 3)
    # The same row with its last words cut off by max_length: only the words with tokens count.
    assert spelling_surprise(text, offsets[:4], nll[:4]) == pytest.approx(1.5 / 2)
    assert math.isnan(spelling_surprise("9% $12", [(0, 2), (2, 6)], np.array([1.0, 2.0])))  # no word of letters


def test_end_surprise_reads_the_end_after_the_last_token_that_is_not_white_space():
    text = "Adobe price target raised to  "
    offsets = [(0, 5), (5, 11), (11, 18), (18, 25), (25, 28), (28, 30)]
    end_logprob = np.log([0.5, 0.2, 0.1, 0.3, 0.001, 0.9])
    assert end_surprise(text, offsets, end_logprob, cut=False) == pytest.approx(-math.log(0.001))
    assert math.isnan(end_surprise(text, offsets, end_logprob, cut=True))  # its real end was never read
    assert math.isnan(end_surprise("   ", [(0, 3)], np.array([-1.0]), cut=False))


@pytest.mark.parametrize("bad", [np.array([1.0]), np.array([1.0, np.nan]), np.ones((2, 2))])
def test_too_few_or_non_finite_values_are_refused(bad):
    with pytest.raises(ValueError, match="candidate"):
        energy_distance(bad, np.array([1.0, 2.0]))


def test_a_candidate_whose_rows_are_all_cached_is_scored_without_the_model_and_unscored_rows_stay_null():
    """Against limits of order gain 1.04, spelling surprise 2 and end surprise 6: the third row (gain 0.1)
    is shuffled, the fourth misspelt (spelling 3.0) and cut (end 7.0); the fifth has no order (one word)
    but is judged on its other signals; the empty row has no NLL and is not judged."""
    texts = ["Stocks rally as yields fall", "", "rally yields Stocks as fall", "Oil slps", "Wow"]
    known = RowScores(np.array([4.0, math.nan, 8.0, 5.0, 5.2]), np.array([6, 0, 6, 3, 1]),
                      np.array([1.5, math.nan, 0.1, 1.2, math.nan]), np.array([0.2, math.nan, 0.3, 3.0, 0.0]),
                      np.array([2.0, math.nan, 3.0, 7.0, 4.0]))
    real = {1: np.array([3.9, 4.2, 4.8, 5.1, 5.4]), 2: np.array([7.0])}  # seed 2: too few U_r rows
    limits = {"order_gain": 1.04, "spelling_surprise": 2.0, "end_surprise": 6.0}
    results, rows = score_candidate("c", "/no/model/here", texts, [0, 3, 5, 9, 11], known, real, limits,
                                    FluencyParams(), 30, 1)
    first, second = results
    assert first["raw"] == pytest.approx(energy_by_hand([4.0, 8.0, 5.0, 5.2], real[1].tolist()))
    assert first["score"] == -first["raw"] and len(first["replicates"]) == 30 and first["error"] is None
    assert math.isnan(second["raw"]) and "at least 2" in second["error"] and second["replicates"] == []
    table = pl.DataFrame(rows, schema=ROW_COLUMNS)
    seed1 = table.filter(pl.col("seed") == 1)
    assert seed1.get_column("row_index").to_list() == [0, 3, 5, 9, 11]
    assert seed1.get_column("token_nll").to_list() == [4.0, None, 8.0, 5.0, 5.2]  # an empty row: null, never 0
    assert seed1.get_column("order_gain").to_list() == [1.5, None, 0.1, 1.2, None]
    assert seed1.get_column("end_surprise").to_list() == [2.0, None, 3.0, 7.0, 4.0]
    assert seed1.get_column("garbled").to_list() == [False, None, True, True, False]
    assert seed1.get_column("garbled_as").to_list() == [None, None, "shuffled", "misspelt, cut mid-sentence", None]
    assert seed1.get_column("text_hash").to_list() == row_hashes(texts)
    assert table.filter(pl.col("seed") == 2).get_column("garbled").null_count() == 5


def test_the_shuffle_keeps_the_words_changes_their_order_and_depends_on_the_text_alone():
    text = "Stocks rally as bond yields fall after the Fed holds rates"
    shuffled = shuffled_text(text)
    assert shuffled is not None and shuffled != text and sorted(shuffled.split()) == sorted(text.split())
    assert shuffled_text(text) == shuffled  # the same text, the same order, in every run
    assert shuffled_text("up up") is None and shuffled_text("Wow") is None and shuffled_text("") is None
    assert shuffled_text("Oil slips") == "slips Oil"  # two words: the one other order


class ThreeLetterTokens:
    """A stand-in tokenizer (a fast one: it gives offsets): every run of non-space characters in pieces
    of three, each space a token of its own."""

    is_fast = True

    def __call__(self, texts, add_special_tokens=False, return_offsets_mapping=False):
        spans = [[(i, min(i + 3, m.end())) for m in re.finditer(r"\S+|\s", t) for i in range(m.start(), m.end(), 3)]
                 for t in texts]
        return SimpleNamespace(input_ids=[list(range(len(s))) for s in spans], offset_mapping=spans)


def test_row_fluency_reads_gain_spelling_and_end_from_one_batch_of_rows_and_shuffles(monkeypatch):
    """The LM replaced by a stand-in (a test double of the model, not of the arithmetic under test): a
    token's NLL is its length, the end log-probability after token j is −(j + 1). Checked: the gain is the
    shuffle's mean minus the row's, the spelling surprise and the end surprise come from the row's own
    tokens, the length cap cuts tokens and leaves the end unread, a row without text gets nothing."""
    tokenizer, seen = ThreeLetterTokens(), []

    def fake(model, tok, texts, template, max_length, batch_size, threads=1, end_ids=()):
        seen.append((list(texts), tuple(end_ids)))
        spans = tokenizer(texts).offset_mapping
        return ([np.array([b - a for a, b in s[:max_length]], float) for s in spans],
                [-np.arange(1.0, len(s[:max_length]) + 1) for s in spans])

    monkeypatch.setattr("synque_ray.fluency.text_token_nll", fake)
    monkeypatch.setattr("synque_ray.fluency._model", lambda path, dtype: (None, tokenizer))
    monkeypatch.setattr("synque_ray.fluency.end_tokens", lambda path: (0, 7))
    texts = ["Stocks rally ", "", "Wow", "a bb ccc"]
    got = row_fluency("/no/model", texts, FluencyParams(max_length=4))
    shuffles = [shuffled_text("Stocks rally "), shuffled_text("a bb ccc")]
    assert seen == [([texts[0], texts[2], texts[3], *shuffles], (0, 7))]  # one batch: rows with text, then shuffles
    # Cut at 4 tokens: "Stocks rally " to Sto|cks| |ral (of 6), mean 10/4; "a bb ccc" to a| |bb| (of 5), 5/4.
    np.testing.assert_array_equal(got.token_nll, [10 / 4, math.nan, 3.0, 5 / 4])
    assert got.token_count.tolist() == [4, 0, 1, 4]
    cut = [min(4, len(tokenizer([t]).offset_mapping[0])) for t in shuffles]
    means = [sum(b - a for a, b in tokenizer([t]).offset_mapping[0][:n]) / n for t, n in zip(shuffles, cut)]
    np.testing.assert_allclose(got.order_gain, [means[0] - 10 / 4, math.nan, math.nan, means[1] - 5 / 4])
    # Later tokens: "cks" (3) in Stocks; rally's first token only was read. "a bb": each word one token.
    np.testing.assert_array_equal(got.spelling_surprise, [3 / 2, math.nan, 0.0, 0.0])
    # Both rows cut at 4 tokens have no end read; "Wow" ends after its token 1.
    np.testing.assert_array_equal(got.end_surprise, [math.nan, math.nan, 1.0, math.nan])
    got = row_fluency("/no/model", ["a bb ccc", "Oil  "], FluencyParams())
    np.testing.assert_array_equal(got.end_surprise, [5.0, 1.0])  # after "ccc", the 5th token; after "Oil" (not a space)


def test_the_thresholds_rest_on_threshold_rows_of_u_r_drawing_more_only_when_the_scored_rows_are_fewer():
    samples = {7: [f"row {i}" for i in range(10)], 8: [f"row {i}" for i in range(5, 15)]}  # 15 distinct texts
    scored = {7: ["row 0", "row 1", "row 2"], 8: ["row 2", "row 9"]}  # 4 distinct
    extra = threshold_texts(scored, samples, 9)
    assert len(extra) == 5 and len(set(extra)) == 5 and not set(extra) & {"row 0", "row 1", "row 2", "row 9"}
    assert set(extra) <= {f"row {i}" for i in range(15)} and threshold_texts(scored, samples, 9) == extra  # seeded
    assert threshold_texts(scored, samples, 4) == [] and threshold_texts(scored, samples, None) == []
    assert len(threshold_texts(scored, samples, 100)) == 11  # every other distinct U_r row, no more


def test_the_nll_cache_keeps_finite_values_by_text_hash_across_instances(tmp_path):
    store = Store(str(tmp_path / "cache"))
    cache = NllCache(store)

    def scores(nll, counts, gain, spelling, end):
        return RowScores(*(np.array(v, dtype=np.int64 if k == 1 else float)
                           for k, v in enumerate((nll, counts, gain, spelling, end))))

    assert cache.save(["a", "b", "c"], scores([4.0, math.nan, 6.0], [3, 0, 5], [1.5, math.nan, math.nan],
                                              [0.5, math.nan, 0.0], [2.0, math.nan, math.nan])) == 2
    assert cache.save(["a", "d"], scores([9.0, 7.0], [1, 2], [0.0, 0.2], [1.0, 1.1], [3.0, 4.0])) == 1  # "a": kept
    again = NllCache(store)
    got = again.lookup(["a", "b", "c", "d"])
    np.testing.assert_array_equal(got.token_nll, [4.0, math.nan, 6.0, 7.0])
    assert got.token_count.tolist() == [3, 0, 5, 2]
    np.testing.assert_array_equal(got.order_gain, [1.5, math.nan, math.nan, 0.2])  # "c" has no order: NaN, never 0
    np.testing.assert_array_equal(got.spelling_surprise, [0.5, math.nan, 0.0, 1.1])
    np.testing.assert_array_equal(got.end_surprise, [2.0, math.nan, math.nan, 4.0])


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


def test_the_finding_names_what_the_garbled_rows_showed_with_each_causes_share_over_seeds():
    """Seed 1: 4 rows judged, 2 cut and 1 of them also misspelt; seed 2: 2 judged of 3 (one row has no
    signal), 1 shuffled. Shares per seed, then their mean: cut (2/4 + 0) / 2 = 25%, misspelt 1/4 / 2 =
    12.5% (shown 12%), shuffled (0 + 1/2) / 2 = 25%; ties by name."""
    rows = pl.DataFrame({"dataset_id": ["c"] * 7 + ["d"] * 2, "seed": [1, 1, 1, 1, 2, 2, 2, 1, 1],
                         "row_index": [0, 1, 2, 3, 0, 1, 2, 0, 1],
                         "garbled": [True, True, False, False, True, False, None, False, False],
                         "garbled_as": ["cut mid-sentence", "misspelt, cut mid-sentence", None, None, "shuffled", None,
                                        None, None, None]})
    table = findings(pl.DataFrame({"dataset_id": ["c", "d"], "proxy": ["fluency"] * 2, "rank": [2.0, 1.0]}), rows)
    got = dict(table.select("dataset_id", "garbled_as").iter_rows())
    assert got == {"c": "cut mid-sentence 25%, shuffled 25%, misspelt 12%", "d": None}
    shares = dict(table.select("dataset_id", "garbled_share").iter_rows())
    assert shares["c"] == pytest.approx((2 / 4 + 1 / 2) / 2) and shares["d"] == 0
    row = {"dataset_id": "c", "garbled_share": 0.5, "garbled_as": got["c"], "flags": ["garbled_share"]}
    assert finding_parts(row) == ["50% garbled rows (cut mid-sentence 25%, shuffled 25%, misspelt 12%) (limit 40%)"]
    older = findings(pl.DataFrame({"dataset_id": ["c"], "proxy": ["fluency"], "rank": [1.0]}), rows.drop("garbled_as"))
    assert older.get_column("garbled_as").to_list() == [None]  # a run before the causes: nothing named, no error


def test_config_section_and_its_checks():
    base = {"name": "x", "output": "out", "real": {"path": "r.jsonl", "text": "text"},
            "candidates": {"path": "c", "text": "text"}, "proxies": ["fluency"]}
    config = parse_config({**base, "fluency": {"max_rows": None, "real_rows": 10}})
    assert config.fluency.max_rows is None and config.proxy_params("fluency").min_rows()[0] == 2
    with pytest.raises(Exception, match="fluency.max_rows"):
        parse_config({**base, "fluency": {"max_rows": 1}})
    with pytest.raises(Exception, match="fluency.percentile"):
        parse_config({**base, "fluency": {"percentile": 50}})


def test_bfloat16_is_chosen_where_the_lm_computes_in_it_and_any_explicit_format_is_kept():
    flags = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512vl\n"
    assert native_bfloat16(flags) and native_bfloat16("flags : fpu amx_bf16 amx_tile\n")
    assert not native_bfloat16("flags\t\t: fpu sse2 avx2 avx512f avx512bw\n")  # AVX-512 alone emulates it
    assert not native_bfloat16("model name : Apple M2\n")
    assert resolve_dtype("float32", gpus=1) == "float32" and resolve_dtype("bfloat16") == "bfloat16"
    assert resolve_dtype("auto", gpus=1) == "bfloat16"  # a GPU computes in it
    with pytest.raises(Exception, match="fluency.dtype"):
        parse_config({"name": "x", "output": "out", "real": {"path": "r.jsonl", "text": "text"},
                      "candidates": {"path": "c", "text": "text"}, "proxies": ["fluency"],
                      "fluency": {"dtype": "float16"}})


def test_the_stage_keys_results_and_cache_by_the_format_it_resolved(tmp_path):
    from synque_ray.reading import RowSet
    from synque_ray.stage.fluency import FluencyStage

    real = {1: RowSet("real", ["a b c", "d e f"])}
    candidate = RowSet("c", ["a b c", "x y z"])
    stages = {dtype: FluencyStage(FluencyParams(dtype=dtype), real, Store(str(tmp_path)), 10, 1.0, 0.0, 0)
              for dtype in ("float32", "bfloat16")}
    assert {stage.params.dtype for stage in stages.values()} == {"float32", "bfloat16"}
    assert stages["float32"].key_payload(candidate) != stages["bfloat16"].key_payload(candidate)
    assert stages["float32"].cache_store.root != stages["bfloat16"].cache_store.root
    auto = FluencyStage(FluencyParams(), real, Store(str(tmp_path)), 10, 1.0, 0.0, 0)
    assert auto.params.dtype == resolve_dtype("auto")  # resolved once, never keyed as "auto"
    assert auto.key_payload(candidate)["params"]["dtype"] in ("float32", "bfloat16")


def test_the_bundled_lm_reads_rows_alike_in_bfloat16_and_float32():
    # The bundled model ships in bfloat16: computed in it, a row's mean token NLL moves by a few hundredths
    # of a nat, and a shuffled row still loses what a fluent one does.
    from tests._garble import real_headlines

    pool = real_headlines()
    if pool is None:
        pytest.skip("the sentiment benchmark's real pool (../shared/bench/sentiment) is not here")
    path = resolve_model(FluencyParams())[0]
    texts = pool[:12]
    full, half = (row_fluency(path, texts, FluencyParams(dtype=dtype)) for dtype in ("float32", "bfloat16"))
    assert np.abs(full.token_nll - half.token_nll).max() < 0.15
    assert np.abs(full.token_nll - half.token_nll).mean() < 0.05
    assert np.corrcoef(full.order_gain, half.order_gain)[0, 1] > 0.95


@pytest.mark.ray
def test_damaged_copies_are_screened_out_below_their_source(tmp_path):
    """The bundled LM on real financial tweets, whose tickers and links give real rows a heavy tail of
    NLL: U_r and a clean candidate drawn from one pool, and copies of the candidate shuffled, noised
    and cut after half their words. Each copy holds more garbled rows than the clean one, which is not
    flagged; every copy is over the limit, so it is passed over and ranks after every fluent candidate
    in the ensemble (of mdm and mmd: fluency never votes), out of its best set, and the verdict names
    the clean one. Each flag names what its rows showed: shuffled, misspelt, cut mid-sentence. The NLL
    cache scores each distinct text once (with its shuffle); a re-run reuses every result. 60 U_r rows:
    with 30 a percentile this far out moves enough that a clean 12-row candidate is flagged in about 1
    draw in 20 (BENCHMARKS.md)."""
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
    assert flags["clean"] == [] and all("garbled_share" in flags[name] for name in ("shuffled", "noised", "cut"))
    lead = {r["dataset_id"]: r for r in table.filter(pl.col("proxy") == "ensemble").iter_rows(named=True)}
    for name in ("shuffled", "noised", "cut"):
        assert lead[name]["rank"] > lead["clean"]["rank"] and not lead[name]["tied_with_best"]
    assert verdict(table)[0].startswith("train on: clean")
    seen = dict(table.select("dataset_id", "garbled_as").unique("dataset_id").iter_rows())
    for name, cause in (("shuffled", "shuffled"), ("noised", "misspelt"), ("cut", "cut mid-sentence")):
        assert seen[name].startswith(cause), seen  # the most frequent cause first
    assert result.info["ensemble"]["weights"].keys() == {"mdm", "mmd"}
    rows = result.row_scores
    assert rows is not None
    clean_rows = rows.filter(pl.col("dataset_id") == "clean")
    assert clean_rows.select(pl.col("token_nll", "order_gain", "spelling_surprise", "end_surprise").null_count()
                             ).sum_horizontal().item() == 0
    # All U_r rows of both seeds were scored once (the two seeds draw the same 60), then 4 x 12 candidate rows.
    assert summary.counts["fluency_rows_scored"] == 60 + 4 * 12
    again = synque_ray.score(config).summary
    assert again is not None
    assert again.counts["stages"]["fluency"]["reused"] == 4 and again.counts["stages"]["fluency"]["scored"] == 0
