"""The HTML report: its view model on a small real run (scored by `synque score` through Ray),
the page it writes, and how it says what is missing."""

import json
import re
import shutil
import subprocess
import sys
from html import escape
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from synque_ray.findings import FINDING_COLUMNS, with_findings
from synque_ray.reading import read_texts
from synque_ray.report import build_page, candidate_view, load, render, view, write_report
from synque_ray.runfiles import candidate_paths, published
from synque_ray.legend import PROXY_LEGEND
from synque_ray.verdict import verdict
from tests._scored_run import ROWS, SEEDS

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def run(scored_run):
    return load.load_run(str(scored_run.output))


@pytest.fixture(scope="module")
def page_html(scored_run):
    return (scored_run.output / "report.html").read_text()


def test_score_writes_the_report_and_prints_its_path(scored_run, page_html):
    stamps = sorted((scored_run.output / "runs").iterdir())
    assert len(stamps) == 2
    for output in scored_run.printed[:2]:
        assert f"report: {scored_run.output}/report.html\n" in output
    assert (stamps[-1] / "report.html").is_file()
    assert page_html.startswith("<!DOCTYPE html>") and "</html>" in page_html
    assert "http://" not in page_html and "https://" not in page_html  # nothing to fetch
    assert "default-src 'none'" in page_html  # and the page forbids fetching anything


def test_ranking_view_has_one_row_per_candidate_in_ensemble_order(run, scored_run):
    ranking = view.ranking_view(run.rankings, list(scored_run.quality))
    ensemble = run.rankings.filter(pl.col("proxy") == "ensemble").sort(["rank", "dataset_id"])
    assert ranking.lead == "ensemble"
    assert ranking.proxies == ["mauve", "mdm", "mmd", "pad", "ensemble"]
    assert [r["dataset_id"] for r in ranking.rows] == ensemble["dataset_id"].to_list()
    for row, expected in zip(ranking.rows, ensemble.iter_rows(named=True), strict=True):
        cell = row["cells"]["ensemble"]
        assert (cell["rank"], cell["low"], cell["high"], cell["tied"]) == (
            expected["rank"], expected["rank_low"], expected["rank_high"], expected["tied_with_best"])


def test_a_candidate_without_a_ranking_is_listed_last_as_unranked(run, scored_run):
    ranking = view.ranking_view(run.rankings, [*scored_run.quality, "zz_failed"])
    assert ranking.rows[-1]["dataset_id"] == "zz_failed"
    assert all(cell is None for cell in ranking.rows[-1]["cells"].values())
    assert "not ranked" in render.ranking_section(ranking)


def test_score_spread_matches_the_scores_table(run):
    spread = view.score_spread(run.scores, run.rankings)
    pad = spread["pad"]
    assert len(pad["ids"]) == len(pad["seeds"]) == 4
    for dataset_id, seeds, mean, std in zip(pad["ids"], pad["seeds"], pad["mean"], pad["std"], strict=True):
        own = run.scores.filter((pl.col("proxy") == "pad") & (pl.col("dataset_id") == dataset_id))["raw"]
        assert sorted(seeds) == sorted(own.to_list()) and len(seeds) == len(SEEDS)
        assert mean == pytest.approx(np.mean(seeds)) and std == pytest.approx(np.std(seeds))
    missing = view.score_spread(run.scores, run.rankings, [*pad["ids"], "zz_unranked"])["pad"]
    assert missing["ids"][-1] == "zz_unranked" and missing["mean"][-1] is None and missing["seeds"][-1] == []


def test_agreement_is_spearman_between_proxies_mean_scores(run):
    data = view.agreement(run.rankings)
    wide = run.rankings.pivot(on="proxy", index="dataset_id", values="score_mean")
    i, j = data["proxies"].index("mdm"), data["proxies"].index("pad")
    expected = spearmanr(wide["mdm"].to_numpy(), wide["pad"].to_numpy()).statistic
    assert data["spearman"][i][j] == pytest.approx(expected)
    assert data["spearman"][i][i] == pytest.approx(1.0) and data["counts"][i][j] == 4


def _brightness(style: str) -> int:
    return sum(int(c) for c in style[style.index("rgb(") + 4:style.index(")")].split(","))


def test_agreement_colours_stretch_over_the_values_shown():
    data = {"proxies": ["a", "b", "c"], "counts": [[5] * 3] * 3,
            "spearman": [[1.0, 0.66, 0.8], [0.66, 1.0, None], [0.8, None, 1.0]]}
    html = render.agreement_section(data)
    styles = {value: style for style, value in re.findall(r'<td style="([^"]*)"[^>]*>([0-9.–]+)</td>', html)}
    assert _brightness(styles["0.66"]) - _brightness(styles["1.00"]) > 400  # the lowest light, the highest dark
    assert _brightness(styles["0.66"]) > _brightness(styles["0.80"]) > _brightness(styles["1.00"])
    assert styles["–"] == ""  # an undefined correlation is left uncoloured, its dash says why
    assert render.shade(0.5, 0.5, 0.5).startswith("background: rgb(")  # one value shown: a mid colour


def test_evaluation_pairs_each_proxys_score_with_measured_performance(run, scored_run):
    spread = view.score_spread(run.scores, run.rankings)
    data = view.evaluation_view(run.evaluation, spread, run.info["started_at"])
    assert not data["stale"] and data["top_k"] == 2
    assert data["metric"] == "quality"  # the --metric column, as evaluation.json records it
    assert data["labels"]["pad"] == "PAD (lower is better)"
    mdm = {dataset_id: (score, performance) for score, performance, dataset_id in data["points"]["mdm"]}
    assert set(mdm) == set(scored_run.quality)
    for dataset_id, (score, performance) in mdm.items():
        assert performance == pytest.approx(scored_run.quality[dataset_id])
        assert score == pytest.approx(spread["mdm"]["mean"][spread["mdm"]["ids"].index(dataset_id)])
    older = view.evaluation_view({**run.evaluation, "run": "20200101T000000Z"}, spread, run.info["started_at"])
    assert older["stale"]


def test_history_follows_each_candidate_across_runs(run):
    data = view.history_view(run.history, "ensemble")
    assert len(data["stamps"]) == 2
    assert all(r["move"] == 0 and r["ranks"][0] == r["ranks"][1] for r in data["rows"])  # an unchanged re-run


def _ranks(pairs):
    return pl.DataFrame({"dataset_id": [p[0] for p in pairs], "proxy": "ensemble", "rank": [p[1] for p in pairs]})


def test_history_says_who_rose_who_fell_and_who_is_new():
    history = [("r1", _ranks([("a", 1), ("b", 2), ("c", 3)])), ("r2", _ranks([("a", 2), ("b", 1)])),
               ("r3", _ranks([("a", 3), ("b", 1), ("c", 2), ("d", 4)]))]
    rows = {r["dataset_id"]: r for r in view.history_view(history, "ensemble")["rows"]}
    assert rows["a"]["move"] == 0 and rows["b"]["move"] == 0  # among a and b, nothing changed since r2
    assert rows["c"]["move"] == 1 and rows["c"]["ranks"] == [3, None, 2]  # against the last run that ranked it
    assert rows["d"]["new"] and rows["d"]["move"] is None
    assert view.history_view(history[:1], "ensemble") is None


def test_a_newcomer_ranked_above_moves_nobody_else():
    before = _ranks([("a", 1), ("b", 2), ("c", 3), ("d", 4)])
    after = _ranks([("new", 1), ("a", 2), ("b", 3), ("d", 4), ("c", 5)])  # c and d swapped, the rest kept
    rows = {r["dataset_id"]: r for r in view.history_view([("r1", before), ("r2", after)], "ensemble")["rows"]}
    assert {i: rows[i]["move"] for i in "abcd"} == {"a": 0, "b": 0, "c": -1, "d": 1}
    assert rows["new"]["new"]
    gone = _ranks([("b", 1), ("c", 2), ("d", 3)])  # a left: b, c and d keep their order
    rows = {r["dataset_id"]: r for r in view.history_view([("r1", before), ("r2", gone)], "ensemble")["rows"]}
    assert {i: rows[i]["move"] for i in "bcd"} == {"b": 0, "c": 0, "d": 0} and rows["a"]["move"] is None
    tied = view.shared_moves({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 1, "c": 3})  # ties share a place
    assert tied == {"a": 0, "b": 1, "c": 0}


def test_history_dates_are_readable():
    data = view.history_view([("20261201T103111429178Z", _ranks([("a", 1)])),
                              ("20261202T080000000000Z", _ranks([("a", 1)]))], "ensemble")
    assert data["dates"] == ["2026-12-01 10:31:11 UTC", "2026-12-02 08:00:00 UTC"]
    assert view.readable_stamp("my-run") == "my-run"


def test_each_proxy_is_drawn_in_its_own_units_in_one_order(run):
    spread = view.score_spread(run.scores, run.rankings)
    ensemble = run.rankings.filter(pl.col("proxy") == "ensemble").sort(["rank", "dataset_id"])
    assert list(spread)[0] == "ensemble"  # the lead proxy first ...
    assert all(data["ids"] == ensemble["dataset_id"].to_list() for data in spread.values())  # ... its order for all
    assert spread["mmd"]["label"] == "MMD² (lower is better)" and spread["mdm"]["label"] == "MDM (higher is better)"
    assert spread["ensemble"]["label"] == "mean rank over proxies (lower is better)"
    for proxy, data in spread.items():
        raw = run.scores.filter(pl.col("proxy") == proxy)
        for dataset_id, mean, seeds in zip(data["ids"], data["mean"], data["seeds"], strict=True):
            own = raw.filter(pl.col("dataset_id") == dataset_id)["raw"]
            assert sorted(seeds) == sorted(own.to_list()) and mean == pytest.approx(own.mean())
    assert min(spread["ensemble"]["mean"]) >= 1  # a mean rank, not its negation
    assert spread["ensemble"]["mean"] == sorted(spread["ensemble"]["mean"])  # best (lowest) first


def test_example_rows_are_the_extremes_of_pads_out_of_fold_probability(run, scored_run):
    dataset_id = sorted(scored_run.quality)[1]
    rows = run.row_scores.filter(pl.col("dataset_id") == dataset_id)
    texts = read_texts(candidate_paths(run.info)[dataset_id], "text")
    signals, synthetic, real = view.example_rows(rows, texts)
    mean = rows.group_by("row_index").agg(pl.col("p_synthetic").mean())
    assert signals == ["p_synthetic", "nearest_real_distance"]
    # Ties are common at the top (PAD reads a row outside U_r's support as synthetic, p = 1): among
    # equal means the lower row index is shown first.
    lowest = mean.sort(["p_synthetic", "row_index"]).head(5)
    highest = mean.sort(["p_synthetic", "row_index"], descending=[True, False]).head(5)
    assert [r["row_index"] for r in real] == lowest["row_index"].to_list()
    assert [r["row_index"] for r in synthetic] == highest["row_index"].to_list()
    assert all(r["text"] == texts[r["row_index"]] for r in synthetic + real)
    changed = list(texts)
    changed[synthetic[0]["row_index"]] = "edited after the run"
    _, again, _ = view.example_rows(rows, changed)
    assert again[0]["text"] is None and again[1]["text"] == synthetic[1]["text"]


def test_the_candidate_section_gives_the_ranking_tables_duplicate_share(run, scored_run):
    """One number per finding: the section repeats the findings column, which counts the rows of a
    near-duplicate group beyond its first (not every member, as the section once did)."""
    worst = sorted(scored_run.quality)[-1]  # the most degraded demo candidate has planted near-copies
    rows = run.row_scores.filter(pl.col("dataset_id") == worst)
    ranking = view.ranking_view(with_findings(run.rankings, run.row_scores), sorted(scored_run.quality))
    findings = next(r["findings"] for r in ranking.rows if r["dataset_id"] == worst)
    paths, _ = load.candidate_files(run)
    section = candidate_view(run, worst, None, load.candidate_inputs(run, worst, paths, None), findings)
    per_row = rows.unique("row_index")
    beyond_first = ((per_row["duplicate_group"] >= 0) & (per_row["duplicate_group"] != per_row["row_index"])).sum()
    assert section.rows == ROWS
    assert beyond_first > 0 and section.duplicate_share == pytest.approx(beyond_first / ROWS)
    assert section.duplicate_share == findings["duplicate_share"]


def test_pca_keeps_the_direction_that_separates_the_sets():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 8))
    candidate = rng.normal(size=(300, 8)) + np.eye(8)[3] * 6
    a, b, explained = view.pca_2d(candidate, real, limit=250)
    assert a.shape == (250, 2) and b.shape == (200, 2)
    assert abs(a[:, 0].mean() - b[:, 0].mean()) > 4 and explained > 0.5
    for width, rows in ((8, 300), (64, 20)):  # more rows than dimensions, and fewer: as an SVD would give
        c, r = rng.normal(size=(rows, width)) + 2, rng.normal(size=(rows, width))
        union = np.vstack([c, r])
        union -= union.mean(axis=0)
        _, singular, vt = np.linalg.svd(union, full_matrices=False)
        a, b, explained = view.pca_2d(c, r, limit=rows)
        assert np.allclose(np.abs(np.vstack([a, b])), np.abs(union @ vt[:2].T))  # up to each axis's sign
        assert explained == pytest.approx((singular[:2] ** 2).sum() / (singular ** 2).sum())


def _with_lens(scored_run, tmp_path):
    """A copy of the run with LENS outputs written as the LENS stage writes them (LENS itself
    needs a vLLM engine: minutes on CPU, tested in test_lens_e2e)."""
    out = tmp_path / "out"
    shutil.copytree(scored_run.output, out)
    run = load.load_run(str(out))
    folder = Path(published(str(out)).root)  # the published set, which readers follow
    dataset_id = sorted(scored_run.quality)[0]
    rows = []
    for seed in SEEDS:
        for role, base in (("synthetic", 1.0), ("real", 3.0)):
            for row_id in range(4):
                rows.append({"dataset_id": dataset_id, "seed": seed, "row_id": row_id, "role": role,
                             "g_real_csr": base, "g_synth_csr": 4 - base, "g_real_crs": base + row_id % 2,
                             "g_synth_crs": float("nan") if row_id == 0 else 2.0})
        rubric = {"commonalities": ["both are headlines"], "real_vs_synthetic": ["real names real firms"],
                  "synthetic_vs_real": ["synthetic repeats templates"]}
        (out / "rubrics" / dataset_id).mkdir(parents=True, exist_ok=True)
        (out / "rubrics" / dataset_id / f"seed{seed}.json").write_text(json.dumps(rubric))
    pl.DataFrame(rows).write_parquet(folder / "lens_judgements.parquet")
    run.row_scores.with_columns(pl.lit(0.25).alias("lens_p_real")).write_parquet(folder / "row_scores.parquet")
    return out, dataset_id


def test_lens_rubric_and_the_four_permutations(scored_run, tmp_path):
    out, dataset_id = _with_lens(scored_run, tmp_path)
    run = load.load_run(str(out))
    means = {m["column"]: m for m in view.judgement_means(run.judgements, dataset_id)}
    assert means["g_real_csr"]["synthetic"] == 1.0 and means["g_real_csr"]["real"] == 3.0
    assert means["g_real_crs"]["synthetic"] == pytest.approx(1.5)
    assert means["g_synth_crs"]["synthetic"] == 2.0  # an unparsed (NaN) judgement is left out
    assert view.judgement_means(run.judgements, "nobody") is None
    paths, _ = load.candidate_files(run)
    section = candidate_view(run, dataset_id, None, load.candidate_inputs(run, dataset_id, paths, None))
    assert section.rubric_seed == SEEDS[0] and section.signals[-1] == "lens_p_real"
    html = render.render_page(build_page(run))
    assert "synthetic repeats templates" in html and "p real (LENS)" in html
    assert "LENS did not run" not in html


def test_missing_pieces_are_said_on_the_page(scored_run, tmp_path):
    out = tmp_path / "bare"
    shutil.copytree(scored_run.output, out)
    folder = Path(published(str(out)).root)  # the published set, which readers follow
    for name in ("evaluation.json", "row_scores.parquet"):
        (folder / name).unlink()
    shutil.rmtree(out / "cache")
    for extra in sorted((out / "runs").iterdir())[:-1]:
        shutil.rmtree(extra)
    info = json.loads((folder / "run.json").read_text())
    info["config"]["candidates"]["path"] = str(tmp_path / "moved")
    (folder / "run.json").write_text(json.dumps(info))
    written = write_report(str(out))
    html = (out / "report.html").read_text()
    assert written == [f"{out}/report.html", f"{folder}/report.html"] and (folder / "report.html").read_text() == html
    for said in ("no evaluation.json", "1 run(s) under runs/", "row_scores.parquet is missing",
                 "LENS did not run", "candidate files not found", "not in the cache"):
        assert said in html, said
    assert html.count('class="candidate"') == len(scored_run.quality)


def test_report_command_writes_where_asked_and_refuses_a_non_run(scored_run, tmp_path):
    target = tmp_path / "elsewhere" / "page.html"
    done = subprocess.run([sys.executable, "-m", "synque_ray", "report", str(scored_run.output), "--out",
                           str(target)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"report: {target}\n" and target.read_text().startswith("<!DOCTYPE html>")
    bad = subprocess.run([sys.executable, "-m", "synque_ray", "report", str(tmp_path / "norun")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr == f"error: {tmp_path}/norun/run.json: not found or unreadable; run `synque score` first\n"
    assert not (tmp_path / "norun").exists()


def test_the_page_and_the_terminal_open_with_the_same_verdict(run, scored_run, page_html):
    lines = verdict(run.rankings, run.info["config"]["ranking"]["level"])
    assert lines[0].startswith("train on: ")
    assert scored_run.printed[0].startswith(lines[0] + "\n")  # the terminal summary's first line
    top = page_html.index('class="verdict"')
    assert top < page_html.index('id="ranking"') and page_html.index(escape(lines[0])) > top


def test_findings_are_in_rankings_parquet_and_the_ranking_table(run, scored_run, page_html):
    rankings = pl.read_parquet(scored_run.output / "rankings.parquet")
    assert set(FINDING_COLUMNS) <= set(rankings.columns)
    for dataset_id in scored_run.quality:  # near-duplicates beyond each group's first row, counted by hand
        rows = run.row_scores.filter((pl.col("dataset_id") == dataset_id) & (pl.col("seed") == SEEDS[0]))
        groups = rows["duplicate_group"].to_list()
        beyond = sum(1 for i, g in zip(rows["row_index"], groups, strict=True) if g >= 0 and g != i)
        share = rankings.filter(pl.col("dataset_id") == dataset_id)["duplicate_share"].unique().to_list()
        assert share == [pytest.approx(beyond / ROWS)]
    assert max(rankings["duplicate_share"]) > 0  # the demo plants near-copies
    table = page_html[page_html.index('id="ranking-table"'):]
    table = table[:table.index("</table>")]
    for header in ("near-duplicates", "copies of U_r", "look synthetic", "short rows", "most disagreeing proxy"):
        assert f"<th>{header}</th>" in table


def test_the_legend_names_every_proxy_of_the_run(run, page_html):
    legend = page_html[page_html.index('<dl class="legend">'):]
    for proxy in set(run.rankings["proxy"]):
        assert f"<dt>{proxy}</dt><dd>{escape(PROXY_LEGEND[proxy])}</dd>" in legend


def test_a_run_from_before_findings_gets_them_on_the_page(scored_run, tmp_path):
    out = tmp_path / "old"
    shutil.copytree(scored_run.output, out)
    old = pl.read_parquet(out / "rankings.parquet").drop(FINDING_COLUMNS)
    old.write_parquet(out / "rankings.parquet")
    html = render.render_page(build_page(load.load_run(str(out))))
    fresh = (scored_run.output / "report.html").read_text()
    table = slice(html.index('id="ranking-table"'), html.index('id="scores"'))
    assert html[table] == fresh[fresh.index('id="ranking-table"'):fresh.index('id="scores"')]
