"""Findings, the verdict and the legend (docs/statistics.md): pure functions over constructed tables,
checked against counts made by hand."""

import math

import numpy as np
import polars as pl
import pytest

from synque_ray.findings import (FINDING_COLUMNS, LIMITS, SHARES, SHORT_CHARS, add_findings, disagreement, findings,
                                 flagged_lines, passed_over, row_shares, with_findings)
from synque_ray.proxies import REGISTRY
from synque_ray.reduce import ENSEMBLES, rank
from synque_ray.report import render
from synque_ray.report.view import ranking_view
from synque_ray.legend import LEGEND, PROXY_LEGEND, legend_text
from synque_ray.verdict import lead_proxy, ranking_table_text, verdict


def rows_of(dataset_id, seed, **signals):
    n = len(next(iter(signals.values())))
    return pl.DataFrame({"dataset_id": [dataset_id] * n, "seed": [seed] * n, "row_index": list(range(n)), **signals})


@pytest.fixture()
def row_scores():
    # "dup": 10 rows; groups {0,1,2} and {5,6}: rows 1, 2 and 6 are copies beyond their group's first -> 3/10.
    groups = [0, 0, 0, -1, -1, 5, 5, -1, -1, -1]
    dup = pl.concat([
        rows_of("dup", 1, duplicate_group=groups, p_synthetic=[0.9, 0.6, 0.2, 0.1, 0.5, 0.7, 0.8, 0.4, 0.3, 0.2],
                copies_real=[False] * 9 + [True], text_chars=[40] * 10),
        rows_of("dup", 2, duplicate_group=groups, p_synthetic=[0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1],
                copies_real=[False] * 10, text_chars=[40] * 10),
    ])
    # "short": 4 rows, two under SHORT_CHARS characters (one empty), one p_synthetic unknown.
    short = pl.concat([
        rows_of("short", s, duplicate_group=[-1] * 4, p_synthetic=[0.2, 0.9, None, 0.8],
                copies_real=[False] * 4, text_chars=[0, SHORT_CHARS - 1, SHORT_CHARS, 200]) for s in (1, 2)])
    return pl.concat([dup, short])


def test_shares_match_hand_counts(row_scores):
    shares = {r["dataset_id"]: r for r in row_shares(row_scores).iter_rows(named=True)}
    assert shares["dup"]["duplicate_share"] == pytest.approx(0.3)
    assert shares["dup"]["real_copy_share"] == pytest.approx((0.1 + 0.0) / 2)  # per seed, then the mean
    # seed 1: 0.9, 0.6, 0.7, 0.8 are > .5 (0.5 itself is not) -> 4/10; seed 2: 5/10
    assert shares["dup"]["synthetic_share"] == pytest.approx(0.45)
    assert shares["dup"]["short_share"] == 0
    assert shares["short"]["short_share"] == pytest.approx(0.5)
    assert shares["short"]["synthetic_share"] == pytest.approx(2 / 3)  # over the rows whose p is known
    assert shares["short"]["duplicate_share"] == 0


def test_an_absent_signal_is_null_not_zero(row_scores):
    shares = row_shares(row_scores.drop("copies_real", "text_chars"))
    assert shares["real_copy_share"].null_count() == shares.height
    assert shares["short_share"].null_count() == shares.height
    assert shares["duplicate_share"].null_count() == 0


def test_row_scores_without_keys_are_refused():
    with pytest.raises(ValueError, match="row_scores lacks the column 'seed'"):
        row_shares(pl.DataFrame({"dataset_id": ["a"], "row_index": [0]}))


def rankings_of(ranks: dict[str, dict[str, int]], tied: dict[str, bool] | None = None, **extra) -> pl.DataFrame:
    """A ranking table from {proxy: {candidate: rank}}; the ensemble's score_mean is −rank."""
    rows = []
    for proxy, by_id in ranks.items():
        for dataset_id, r in by_id.items():
            rows.append({"dataset_id": dataset_id, "proxy": proxy, "score_mean": -float(r), "score_std": 0.0,
                         "rank": r, "rank_low": r, "rank_high": r,
                         "tied_with_best": (tied or {}).get(dataset_id, r == 1) if proxy == "ensemble" else r == 1,
                         **{k: v.get(dataset_id) for k, v in extra.items()}})
    return pl.DataFrame(rows)


def test_disagreement_names_the_proxy_furthest_from_the_ensemble():
    table = rankings_of({"mdm": {"a": 4, "b": 1, "c": 2, "d": 3}, "pad": {"a": 1, "b": 2, "c": 3, "d": 4},
                         "mmd": {"a": 2, "b": 1, "c": 3, "d": 4}, "ensemble": {"a": 1, "b": 2, "c": 3, "d": 4}})
    found = {r["dataset_id"]: r for r in disagreement(table).iter_rows(named=True)}
    assert (found["a"]["disagreeing_proxy"], found["a"]["disagreeing_rank"], found["a"]["proxy_disagreement"]) == (
        "mdm", 4, 3)
    assert found["b"]["disagreeing_proxy"] == "mdm" and found["b"]["proxy_disagreement"] == 1  # tie: name order
    assert found["d"]["disagreeing_proxy"] == "mdm" and found["d"]["proxy_disagreement"] == 1


def test_flags_cross_the_documented_limits(row_scores):
    table = rankings_of({"mdm": {"dup": 2, "short": 1}, "pad": {"dup": 1, "short": 2},
                         "ensemble": {"dup": 1, "short": 2}})
    found = {r["dataset_id"]: r for r in findings(table, row_scores).iter_rows(named=True)}
    assert found["dup"]["flags"] == ["duplicate_share", "real_copy_share"]  # 30% > 10%, 5% > 2%
    assert found["short"]["flags"] == ["short_share"]  # 50% > 5%; 67% synthetic-looking stays under 75%
    assert LIMITS["duplicate_share"] == 0.10 and LIMITS["real_copy_share"] == 0.02


def test_a_disagreement_between_proxies_alone_never_flags():
    # "far" is last under mdm and first under the ensemble: 3 ranks of 3 apart, yet its rows are clean.
    clean = rows_of("far", 1, duplicate_group=[-1] * 4, copies_real=[False] * 4, text_chars=[40] * 4)
    table = add_findings(rankings_of({"mdm": {"far": 4, "a": 1, "b": 2, "c": 3},
                                      "ensemble": {"far": 1, "a": 2, "b": 3, "c": 4}}), clean)
    row = table.filter((pl.col("dataset_id") == "far") & (pl.col("proxy") == "ensemble")).to_dicts()[0]
    assert row["proxy_disagreement"] == 3 and row["flags"] == []
    assert flagged_lines(table) == [] and verdict(table)[-1].startswith("next: a")


def test_findings_are_columns_of_every_ranking_row(row_scores):
    table = rankings_of({"mdm": {"dup": 2, "short": 1}, "ensemble": {"dup": 1, "short": 2}})
    joined = add_findings(table, row_scores)
    assert joined.columns == [*table.columns, *FINDING_COLUMNS]
    assert joined.height == table.height
    assert joined.filter(pl.col("dataset_id") == "dup")["duplicate_share"].to_list() == pytest.approx([0.3, 0.3])
    assert add_findings(joined, row_scores).equals(joined)  # recomputed, not duplicated
    assert with_findings(table, row_scores).equals(joined)  # an older run's table gains them
    no_rows = add_findings(table, None)
    assert no_rows["duplicate_share"].null_count() == no_rows.height


def test_flagged_lines_say_each_finding_in_words(row_scores):
    table = add_findings(rankings_of({"mdm": {"dup": 2, "short": 1}, "pad": {"dup": 1, "short": 2},
                                      "ensemble": {"dup": 1, "short": 2}}), row_scores)
    # Only the findings over their limit, worst first by how many times the limit: 30% is 3x its 10%,
    # 5% copies 2.5x its 2%; dup's 45% synthetic-looking rows and the disagreement are left out.
    assert flagged_lines(table) == ["flagged: dup: 30% near-duplicate rows (limit 10%); 5% rows copying U_r (limit 2%)",
                                    "flagged: short: 50% rows under 10 characters (limit 5%)"]


def test_the_terminal_lists_at_most_so_many_flagged_candidates(row_scores):
    short = row_scores.filter(pl.col("dataset_id") == "short")
    many = pl.concat([short.with_columns(pl.lit(f"s{i}").alias("dataset_id")) for i in range(7)])
    table = add_findings(rankings_of({"mdm": {f"s{i}": i + 1 for i in range(7)},
                                      "ensemble": {f"s{i}": i + 1 for i in range(7)}}), many)
    assert len(flagged_lines(table)) == 7
    lines = flagged_lines(table, most=5)
    assert [line.split(":")[1].strip() for line in lines[:5]] == ["s0", "s1", "s2", "s3", "s4"]
    assert lines[5] == "flagged: +2 more in the report"


def test_verdict_names_a_lone_best_with_the_runner_up_and_its_gap():
    table = rankings_of({"mdm": {"good": 1, "dup": 2, "short": 3}, "pad": {"good": 1, "dup": 3, "short": 2},
                         "mmd": {"good": 2, "dup": 1, "short": 3}, "ensemble": {"good": 1, "dup": 2, "short": 3}})
    table = table.with_columns(pl.when(pl.col("proxy") == "ensemble").then(
        pl.col("dataset_id").replace_strict({"good": -4 / 3, "dup": -2.0, "short": -8 / 3}))
        .otherwise(pl.col("score_mean")).alias("score_mean"))
    lines = verdict(table, level=0.9)
    assert lines[0] == "train on: good (rank 1 under 2 of 3 proxies; best set at 90%: good)"
    assert lines[1] == "next: dup (rank 2, mean rank 2.00, 0.67 behind good's 1.33)"


def test_verdict_never_picks_inside_a_best_set():
    ids = ["a", "b", "c", "d", "e"]
    table = rankings_of({"mdm": dict(zip(ids, [1, 2, 3, 4, 5])), "ensemble": dict(zip(ids, [1, 2, 3, 4, 5]))},
                        tied={"a": True, "b": True, "c": True, "d": True, "e": False},
                        p_best={"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1, "e": 0.0})
    lines = verdict(table, level=0.95)
    assert lines[0].startswith("train on: one of a, b, c, d: these 4 cannot be told apart at 95% (best set); ")
    assert "a ranks first among them (rank 1 under 1 of 1 proxy; first in 40% of resampled draws, a share of " \
           "single comparisons, while the best set allows for every comparison at once and for a spread " \
           "estimated from few seeds), which alone does not make it better" in lines[0]
    assert lines[1].startswith("next: e (rank 5")
    everyone = rankings_of({"ensemble": dict(zip(ids, [1, 2, 3, 4, 5])), "mdm": dict(zip(ids, [1, 2, 3, 4, 5]))},
                           tied=dict.fromkeys(ids, True))
    assert verdict(everyone)[0].startswith("train on: any of the 5 candidates: they cannot be told apart at 90%")
    assert len(verdict(everyone)) == 1  # no runner-up outside a best set that holds everyone


def test_verdict_warns_when_the_best_is_flagged(row_scores):
    no_copies = row_scores.with_columns(pl.lit(False).alias("copies_real"))  # flagged for its duplicates alone
    table = add_findings(rankings_of({"mdm": {"dup": 1, "short": 2}, "pad": {"dup": 1, "short": 2},
                                      "ensemble": {"dup": 1, "short": 2}}), no_copies)
    assert verdict(table)[-1] == ("caution: dup in the best set is flagged: read its findings before training "
                                  "on it")


def test_a_candidate_that_copies_the_real_sample_is_passed_over(row_scores):
    """dup ranks first and is alone in the best set of an old table, but 5% of its rows copy U_r
    (over the 2% limit): the verdict names short and says in one line why dup was passed over."""
    table = add_findings(rankings_of({"mdm": {"dup": 1, "short": 2}, "pad": {"dup": 1, "short": 2},
                                      "ensemble": {"dup": 1, "short": 2}}, tied={"dup": True, "short": False}),
                         row_scores)
    lines = verdict(table)
    assert lines[0].startswith("train on: short (rank 2, the best of the candidates that do not copy the real "
                               "sample")
    assert lines[1] == ("passed over: dup (rank 1): 5% rows copying U_r, over the 2% limit; it looks close to the "
                        "real data because it holds it, and training on it leaks the real sample")
    assert not any(line.startswith("next:") for line in lines)  # nobody else is left to name
    assert passed_over(row_scores) == {"dup": ["real_copy_share"]}
    everyone = add_findings(rankings_of({"ensemble": {"dup": 1}, "mdm": {"dup": 1}}),
                            row_scores.filter(pl.col("dataset_id") == "dup"))
    assert verdict(everyone)[0] == "train on: nothing: every ranked candidate copies the real sample"


def test_verdict_of_a_single_proxy_speaks_in_its_score():
    table = rankings_of({"mauve": {"a": 1, "b": 2}}).with_columns(
        pl.Series("score_mean", [0.91, 0.62]))
    assert verdict(table) == ["train on: a (rank 1 under mauve; best set at 90%: a)",
                              "next: b (rank 2, mauve score 0.62, 0.29 below a's 0.91)"]


def test_terminal_table_report_and_verdict_follow_one_lead_without_an_ensemble():
    """Without an ensemble all three views lead with the same proxy, whatever the row order."""
    table = rankings_of({"pad": {"a": 1, "b": 2}, "mdm": {"a": 2, "b": 1}})
    assert table["proxy"][0] == "pad"
    assert lead_proxy(table) == "mdm"
    assert verdict(table)[0].startswith("train on: b (rank 1 under mdm")
    assert [r["dataset_id"] for r in ranking_view(table, ["a", "b"]).rows] == ["b", "a"]
    body = ranking_table_text(table).splitlines()[2:]
    assert [line.split()[0] for line in body if line.strip()][:2] == ["b", "a"]


def test_every_proxy_has_a_legend_entry():
    assert set(REGISTRY) | {"lens", "perplexity", "ensemble"} <= set(PROXY_LEGEND)
    for term in ("U_r", "rank_low–high", "best set", "score", "raw", *(c for c in FINDING_COLUMNS if
                                                                      c.endswith("share"))):
        assert term in LEGEND
    text = legend_text()
    assert all(f"\n  {name}\n" in text for name in LEGEND)
    assert not any(math.isnan(len(v)) or len(v) < 40 for v in LEGEND.values())


def test_the_ensemble_legend_names_every_way_it_can_weigh_the_proxies():
    """The legend describes the ensemble the engine builds: weighted, with each configurable method named."""
    entry = PROXY_LEGEND["ensemble"]
    assert "weighted mean rank" in entry and all(f"`{m}`" in entry or f"ensemble: {m}" in entry for m in ENSEMBLES)


def test_the_report_legend_and_verdict_read_the_same_text(row_scores):
    html = render.legend_section(["mdm", "pad", "ensemble"])
    assert html.count("<dt>") == 3 + len(LEGEND) - len(PROXY_LEGEND)
    assert "never looks at U_r" in html and "<dt>mauve</dt>" not in html
    top = render.verdict_section(["train on: a (x)", "next: b"], ["flagged: b: 30% near-duplicate rows (!)"])
    assert top.index("train on: a (x)") < top.index("next: b") < top.index("b: 30% near-duplicate rows")
    table = add_findings(rankings_of({"mdm": {"dup": 2, "short": 1}, "ensemble": {"dup": 1, "short": 2}}),
                         row_scores)
    row = table.filter(pl.col("dataset_id") == "dup").to_dicts()[0]
    cells = render.finding_cells(row)
    assert cells.count("<td") == len(SHARES) + 1 and 'class="flag" title="over the 10% limit">30%</td>' in cells
    assert render.finding_cells(None).count(">–</td>") == len(SHARES) + 1
    agreed = render.finding_cells({"disagreeing_proxy": "mdm", "disagreeing_rank": 1.0, "proxy_disagreement": 0.0})
    assert ">all agree</td>" in agreed


def test_the_best_set_is_taken_among_the_candidates_not_passed_over():
    """A leaker far ahead of everyone keeps rank 1, but the best set is the others': the clear
    runner-up stands alone in it instead of an empty or leaker-only set."""
    rng = np.random.default_rng(3)
    means = {"leak": 10.0, "good": 5.0, "c": 0.0, "d": 0.0}
    rows = [{"dataset_id": d, "proxy": "p", "seed": s, "raw": m + rng.normal(0, 0.1), "score": m + rng.normal(0, 0.1),
             "replicates": list(m + rng.normal(0, 0.1, 50))} for d, m in means.items() for s in range(3)]
    scores = pl.DataFrame(rows).with_columns(pl.col("raw").alias("score"))
    plain = rank(scores).sort("dataset_id")
    assert dict(zip(plain["dataset_id"], plain["tied_with_best"], strict=True))["leak"]
    ranked = rank(scores, passed_over={"leak"})
    tied = dict(zip(ranked["dataset_id"], ranked["tied_with_best"], strict=True))
    assert tied == {"leak": False, "good": True, "c": False, "d": False}
    assert ranked.filter(pl.col("dataset_id") == "leak")["rank"].item() == 1
    assert ranked.drop("tied_with_best").equals(plain.sort(["proxy", "rank", "dataset_id"]).drop("tied_with_best"))


def test_one_copy_of_the_evaluation_set_passes_a_candidate_over():
    """Any row copying the contamination (evaluation) set is a leak: limit 0, first among its flags."""
    rows = pl.concat([
        rows_of("leaky", 1, duplicate_group=[-1] * 10, copies_real=[False] * 10,
                copies_eval=[True] + [False] * 9, text_chars=[40] * 10),
        rows_of("clean", 1, duplicate_group=[-1] * 10, copies_real=[False] * 10,
                copies_eval=[False] * 10, text_chars=[40] * 10),
    ])
    assert passed_over(rows) == {"leaky": ["eval_copy_share"]}
    table = add_findings(rankings_of({"mdm": {"leaky": 1, "clean": 2}, "ensemble": {"leaky": 1, "clean": 2}},
                                     tied={"leaky": True, "clean": True}), rows)
    lines = verdict(table)
    assert lines[0].startswith("train on: clean (")
    assert lines[1].startswith("passed over: leaky (rank 1): 10% rows copying the evaluation set, over the 0% limit")
    assert flagged_lines(table) == ["flagged: leaky: 10% rows copying the evaluation set (limit 0%)"]
