"""Proxies fair to size when distributions differ, and replicates that centre on the point.

Simulations whose truth is set by construction: Gaussian embeddings, a candidate shifted
by a known number of standard deviations, candidates of known size and distinct rows.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.special import expit

from synque_ray.proxies import REGISTRY
from synque_ray.proxies.coverage import ball_membership, coverage, density
from synque_ray.proxies.pad import (PadParams, balanced_probability, fixed_train_rows, pad, pad_probabilities,
                                    training_rows)

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


@pytest.mark.parametrize("params", [PadParams(), PadParams(folds=0, balanced=False),
                                    PadParams(folds=0, balanced=False, train_rows="all")],
                         ids=["default", "holdout", "papers-holdout"])
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


# ---------------------------------------------------------------- PAD at one training size for the whole run
# A classifier's power grows with its training rows, so with every training row a larger candidate
# reads as more separable; a run-wide `train_rows` trains every candidate on the same number per side.


def _shifted_everywhere(rng: np.random.Generator, rows: int, shift: float, dims: int = DIMS) -> np.ndarray:
    """rows × dims standard normal rows moved by `shift` sd in every coordinate."""
    return rng.normal(size=(rows, dims)) + shift


def size_drift(train_rows: int | str, support_gate: bool = True) -> list[float]:
    """Mean PAD (3 U_r draws of 30 rows) of candidates 0.5 sd from U_r in each of 16 coordinates, at
    30 / 100 / 300 / 1,000 rows."""
    return [float(np.mean([pad(_shifted_everywhere(np.random.default_rng(1000 + rows + draw), rows, 0.5),
                               _shifted_everywhere(np.random.default_rng(draw), REAL_ROWS, 0.0), seed=draw,
                               train_rows=train_rows, support_gate=support_gate) for draw in range(3)]))
            for rows in (30, 100, 300, 1000)]


def test_pad_at_a_run_wide_training_size_reads_the_same_at_every_candidate_size():
    train_rows = PadParams().for_run([30, 100, 300, 1000], [REAL_ROWS]).train_rows  # `auto` for this run
    assert train_rows == 20  # 24 training rows per side in a fold, less the gate's share
    fixed, every_row = size_drift(train_rows), size_drift("all", support_gate=False)  # the paper's classifier
    assert max(fixed) - min(fixed) <= 0.05, fixed
    assert min(fixed) > 0.3  # it still sees the shift
    assert max(every_row) - min(every_row) > 0.08, every_row  # every training row: it grows with the size


def tie_p_best(train_rows: int | str) -> dict[str, float]:
    """Mean p_best of three candidates of one distribution (0.5 sd from U_r in every coordinate) at
    30 / 100 / 300 rows, over 6 independent runs of 3 seeds each, ranked by reduce.rank."""
    from synque_ray.reduce import rank

    sizes = {"a30": 30, "b100": 100, "c300": 300}
    params = PadParams(train_rows=train_rows, refits=3)  # fewer refits: a noisier spread, the same centre; cheaper
    p_best: dict[str, list[float]] = {name: [] for name in sizes}
    for run in range(6):
        rows = []
        for seed in range(3):
            rng = np.random.default_rng([run, seed])
            real = _shifted_everywhere(rng, REAL_ROWS, 0.0)
            for name, size in sizes.items():
                output = REGISTRY["pad"].compute(_shifted_everywhere(rng, size, 0.5), real, params, seed, 100)
                rows.append({"dataset_id": name, "proxy": "pad", "seed": seed, "raw": output.value,
                             "score": -output.value, "replicates": list(-output.replicates)})
        for row in rank(pl.DataFrame(rows)).iter_rows(named=True):
            p_best[row["dataset_id"]].append(row["p_best"])
    return {name: float(np.mean(values)) for name, values in p_best.items()}


@pytest.mark.slow  # 54 PADs with refitted replicates: about 20 s, too long for the fast loop
def test_a_true_tie_of_unequal_sizes_gives_each_candidate_its_share_of_p_best():
    # Trained on every row (`all`), the 30-row candidate reads least separable: p_best .51 / .26 / .23.
    shares = tie_p_best(PadParams().for_run([30, 100, 300], [REAL_ROWS]).train_rows)
    assert all(abs(share - 1 / 3) <= 0.15 for share in shares.values()), shares


def clean_larger_gaps(train_rows: int | str | None = None, support_gate: bool = True) -> list[float]:
    """PAD of a small candidate with off-topic rows minus PAD of a clean larger one, per (draw, seed):
    600 clean rows vs 60 rows of which 6 are off-topic (far from everything), both otherwise one
    distribution (0.2 sd from U_r in each of 64 coordinates): the clean one is closer by construction.
    5 candidate draws x 4 U_r seeds; train_rows None: the run's `auto`."""
    dims, real_rows, small = 64, 100, 60
    if train_rows is None:
        train_rows = PadParams().for_run([small, 10 * small], [real_rows]).train_rows
    gaps = []
    for draw in range(5):
        rng = np.random.default_rng([17, draw])
        clean = _shifted_everywhere(rng, 10 * small, 0.2, dims)
        noisy = np.vstack([_shifted_everywhere(rng, small - small // 10, 0.2, dims),
                           _shifted_everywhere(rng, small // 10, 1.0, dims)])
        for seed in range(4):
            real = _shifted_everywhere(np.random.default_rng([18, seed]), real_rows, 0.0, dims)
            gaps.append(pad(noisy, real, seed=seed, train_rows=train_rows, support_gate=support_gate)
                        - pad(clean, real, seed=seed, train_rows=train_rows, support_gate=support_gate))
    return gaps


def test_a_clean_larger_candidate_beats_a_small_one_with_off_topic_rows():
    # Trained on every row (`all`), the clean 600-row candidate was ahead in only 13 of 20 pairs.
    gaps = np.array(clean_larger_gaps())
    assert gaps.mean() > 0.03 and np.mean(gaps > 0) >= 0.75, (gaps.mean(), np.sum(gaps > 0))


def test_auto_resolves_to_the_fewest_training_rows_any_side_keeps_in_a_split():
    from sklearn.model_selection import StratifiedKFold, train_test_split

    def fewest(rows, other, folds, holdout):  # sklearn's own splits, both classes, several seeds
        labels = np.r_[np.ones(rows), np.zeros(other)]
        counts = []
        for seed in range(3):
            if folds:
                trains = [t for t, _ in StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels)]
            else:
                trains = [train_test_split(np.arange(len(labels)), test_size=holdout, stratify=labels,
                                           random_state=seed)[0]]
            counts += [int((labels[t] == 1).sum()) for t in trains]
        return min(counts)

    for folds, holdout in [(5, 0.2), (3, 0.2), (0, 0.2), (0, 0.3)]:
        for rows in (7, 30, 31, 99):
            assert training_rows(rows, folds, holdout) <= fewest(rows, 45, folds, holdout), (folds, holdout, rows)
    assert [training_rows(rows, 5, 0.2) for rows in (30, 31, 100)] == [24, 24, 80]  # rows − ceil(rows / 5)
    assert fixed_train_rows([300, 31, 1000, 100, 120], 5, 0.2) == 24  # the 31-row side keeps 24 in a fold
    resolved = PadParams().for_run([300, 31, 1000], [100, 120])  # the gate at .15 keeps ⌊.85 × 24⌋ of them
    assert resolved.train_rows == 20 and resolved.model_dump()["train_rows"] == 20
    assert PadParams(support_gate=False).for_run([300, 31, 1000], [100, 120]).train_rows == 24
    assert PadParams(gate_rate=0.3).for_run([300, 31, 1000], [100, 120]).train_rows == 16  # ⌊.7 × 24⌋
    assert PadParams(folds=0).for_run([30], [100]).train_rows == 19  # ⌊.85 × (⌊.8 × 30⌋ − 1)⌋
    assert PadParams(train_rows=10).for_run([30], [30]).train_rows == 10
    assert PadParams(train_rows="all").for_run([30], [30]).train_rows == "all"


def test_fixed_size_probabilities_match_a_hand_built_cross_fit():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(7)
    synthetic, real = rng.normal(0.5, 1, size=(40, 3)), rng.normal(-0.5, 1, size=(25, 3))
    probability, labels = pad_probabilities(synthetic, real, folds=5, seed=3, train_rows=12, support_gate=False)
    x, y = np.vstack([synthetic, real]), np.r_[np.ones(40), np.zeros(25)]
    expected, draws = np.empty(65), np.random.default_rng(3)
    for train, test in StratifiedKFold(5, shuffle=True, random_state=3).split(x, y):
        fits = []
        for _ in range(5):  # each on 12 rows of each side of the fold's training rows, candidate side first
            drawn = np.r_[draws.choice(train[y[train] == 1], 12, replace=False),
                          draws.choice(train[y[train] == 0], 12, replace=False)]
            fits.append(LogisticRegression(max_iter=1000, random_state=3).fit(x[drawn], y[drawn]).predict_proba(
                x[test])[:, 1])
        expected[test] = np.mean(fits, axis=0)
    assert np.allclose(probability, expected) and (labels == y).all()
    error = np.mean(1 - expected[:40]) + np.mean(expected[40:])
    assert pad(synthetic, real, folds=5, seed=3, train_rows=12, support_gate=False) == pytest.approx(1 - error)


def test_a_candidate_that_cannot_give_the_run_wide_training_size_is_a_failure_not_a_score():
    from synque_ray.proxy_task import TaskSpec, score_pair

    rng = np.random.default_rng(0)
    params = PadParams(train_rows=30)  # 30 rows leave 24 per side in a fold: fewer than 30
    with pytest.raises(ValueError, match=r"30 candidate and 60 real rows leave 24/48 training rows per side in a "
                                         r"split, fewer than pad.train_rows 30"):
        REGISTRY["pad"].compute(rng.normal(size=(30, 4)), rng.normal(size=(60, 4)), params, 0, 10)
    spec = TaskSpec({"pad": params.model_dump()}, None, 10)
    scored = score_pair("small", 1, rng.normal(size=(30, 4)), rng.normal(size=(60, 4)), spec)["scores"][0]
    assert np.isnan(scored["raw"]) and scored["error"].startswith("pad: 30 candidate and 60 real rows leave")
    # a U_r sample that cannot is refused when the run is read: every candidate would fail
    assert params.min_real_rows() == (38, "PAD's 5 folds with pad.train_rows 30")  # 38 − ceil(38/5) = 30
    assert PadParams().min_real_rows() == PadParams(train_rows=3).min_real_rows() == (5, "PAD's 5 folds")


@pytest.mark.parametrize("value", [0, "some", 2.5, True, None])
def test_train_rows_is_auto_all_or_a_positive_count(value):
    from synque_ray.config import parse_config
    from synque_ray.errors import UserError

    base = {"name": "t", "output": "/tmp/never-written", "real": {"path": "a.jsonl", "text": "text"},
            "candidates": {"path": "c", "text": "text"}}
    assert parse_config(base).pad.train_rows == "auto"
    assert parse_config({**base, "pad": {"train_rows": 40}}).pad.train_rows == 40
    with pytest.raises(UserError) as refused:
        parse_config({**base, "pad": {"train_rows": value}})
    assert str(refused.value) == ("config: pad.train_rows: must be auto, all or a number of rows per side "
                                  f"(at least 1), got {value!r}")


def test_the_run_resolves_train_rows_once_and_the_result_key_holds_it():
    from types import SimpleNamespace

    from synque_ray.config import parse_config
    from synque_ray.pipeline import resolve_for_run
    from synque_ray.reading import RowSet
    from synque_ray.stage.embedding import EmbeddingStage

    config = parse_config({"name": "t", "output": "/tmp/never-written", "real": {"path": "a.jsonl", "text": "text"},
                           "candidates": {"path": "c", "text": "text", "sample_size": 200}})
    real = {1: RowSet("real/seed1", [f"r{i}" for i in range(100)])}

    def key(candidate_rows):
        candidates = [RowSet(f"c{rows}", [f"c{i}" for i in range(rows)]) for rows in candidate_rows]
        resolved = resolve_for_run(config, real, candidates)
        stage = EmbeddingStage(resolved, real, SimpleNamespace(id="model"), cache=None)
        return resolved.pad.train_rows, stage.key_payload(candidates[0])

    (rows, payload), (rows_small, payload_small) = key([500, 300]), key([500, 300, 30])
    assert rows == 68  # 100 U_r rows: 80 per side in a fold, 68 inside the gate; the 500-row candidate is scored on 200
    assert rows_small == 20  # a 30-row candidate joins: every candidate is fit on 20 per side
    assert payload["params"]["pad"]["train_rows"] == 68 and payload != payload_small
    assert key([500])[1] == payload  # the same sizes resolve to the same key
