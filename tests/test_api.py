"""The library: `synque_ray.score` and `open_run` give what `synque score` prints and writes."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import polars as pl
import pytest
import yaml

import synque_ray
from synque_ray import cli
from synque_ray.demo import write_demo_data


def test_the_package_exports_its_entry_points():
    assert set(synque_ray.__all__) == {"Run", "RunFailed", "UserError", "Verdict", "__version__", "explain",
                                       "open_run", "score", "score_demo"}
    documented = [synque_ray.score, synque_ray.score_demo, synque_ray.open_run, synque_ray.explain,
                  synque_ray.Run.evaluate, synque_ray.Run.select, synque_ray.Run.write_report]
    for function in documented:
        assert "Returns:" in (function.__doc__ or ""), function.__name__
    for function in documented[:3] + documented[4:]:
        assert "Args:" in (function.__doc__ or ""), function.__name__


def test_the_cli_reaches_the_engine_only_through_the_library():
    """Every command calls api.py; what the CLI imports from elsewhere only formats what it returns."""
    import ast

    tree = ast.parse(Path(cli.__file__).read_text(encoding="utf-8"))
    for node in ast.walk(tree):  # what only names a type for the checker never runs
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    imported: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("synque_ray"):
            imported.setdefault(node.module, set()).update(alias.name for alias in node.names)
    assert {"score", "score_demo", "Run", "explain", "verdict_of"} <= imported["synque_ray.api"]
    formatting = {"flagged_lines", "ranking_table_text", "report_text", "choice_line", "proxy_times", "wall_times"}
    library = ("synque_ray", "synque_ray.api", "synque_ray.errors", "synque_ray.vocabulary")  # and its words
    for module, names in imported.items():
        if module not in library:
            assert names <= formatting, (module, names - formatting)


def test_the_cli_prints_the_librarys_explanation_and_its_errors_for_a_non_run(tmp_path, monkeypatch):
    """`synque explain` prints `explain()`; evaluate, report and select on a folder without a run end
    in the one line of the `UserError` the library raises for it, exit 2."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["explain"]) == 0
    assert out.getvalue() == synque_ray.explain() + "\n" and "proxies:" in out.getvalue()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "perf.csv").write_text("id,f1\na,1\n")
    run = synque_ray.Run("norun")  # opens lazily: each call names the first file it lacks
    calls = {("evaluate", "norun", "--performance", "perf.csv", "--id-column", "id", "--metric", "f1"):
             lambda: run.evaluate("perf.csv", "id", "f1"),
             ("report", "norun"): run.write_report,
             ("select", "norun", "--by", "ensemble", "--top", "1", "--out", "chosen"):
             lambda: run.select("ensemble", 1, "chosen")}
    said = set()
    for argv, call in calls.items():
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert cli.main(list(argv)) == 2
        with pytest.raises(synque_ray.UserError) as raised:
            call()
        assert err.getvalue() == f"error: {raised.value}\n"
        said.add(str(raised.value))
    assert said == {"norun/scores.parquet: not found or unreadable; run `synque score` first",
                    "norun/run.json: not found or unreadable; run `synque score` first"}
    assert not any((tmp_path / name).exists() for name in ("norun", "chosen"))


def test_a_bad_config_raises_the_one_line_the_cli_prints(tmp_path):
    bad = tmp_path / "job.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "output": str(tmp_path / "out"), "candidates": {"path": "c"}}))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(["score", str(bad)]) == 2
    with pytest.raises(synque_ray.UserError) as raised:
        synque_ray.score(bad)
    assert err.getvalue() == f"error: {raised.value}\n"
    assert str(raised.value) == f"{bad}: missing key 'real'"
    with pytest.raises(synque_ray.UserError, match="^config: missing key 'real'$"):
        synque_ray.score(yaml.safe_load(bad.read_text()))  # a dict is checked the same way


def test_a_dict_config_is_checked_like_a_file(tmp_path):
    config = {"name": "x", "output": str(tmp_path / "out"),
              "real": {"path": str(tmp_path / "missing.jsonl"), "text": "t", "sample_size": 5, "seeds": [1]},
              "candidates": {"path": str(tmp_path), "text": "t"}}
    with pytest.raises(synque_ray.UserError) as raised:
        synque_ray.score(config)
    assert str(raised.value) == f"config: real.path: {tmp_path / 'missing.jsonl'}: file not found"
    config["output"] = str(tmp_path)  # the candidates' own folder
    (tmp_path / "missing.jsonl").write_text('{"t": "a"}\n')
    with pytest.raises(synque_ray.UserError, match="^config: output"):
        synque_ray.score(config)


def test_open_run_refuses_a_folder_without_a_published_run(tmp_path):
    with pytest.raises(synque_ray.UserError, match="run.json: not found: not a published run"):
        synque_ray.open_run(tmp_path)


def test_score_of_a_dict_names_the_clis_best_set_and_open_run_reads_the_same_tables(ray_session, tmp_path):
    quality = write_demo_data(tmp_path / "data", n_candidates=3, rows=40, pool_rows=80)
    config = {"name": "api", "output": str(tmp_path / "out"),
              "real": {"path": str(tmp_path / "data/real/pool.jsonl"), "text": "text", "sample_size": 30,
                       "seeds": [1, 2]},
              "candidates": {"path": str(tmp_path / "data/candidates"), "text": "text"},
              "embedding": {"model": "bundled-minilm", "batch_size": 32}, "resources": {"embed_actors": 1}}
    run = synque_ray.score(config)
    assert sorted(run.rankings["dataset_id"].unique()) == sorted(quality)
    again = synque_ray.open_run(tmp_path / "out")
    assert run.stamp == again.stamp and run.path == again.path
    for name in ("rankings", "scores", "row_scores"):
        assert getattr(run, name).equals(getattr(again, name)), name
    assert run.rankings.equals(pl.read_parquet(f"{run.path}/rankings.parquet"))
    ensemble = run.rankings.filter((pl.col("proxy") == "ensemble") & pl.col("tied_with_best")).sort("rank")
    assert run.verdict.train_on == ensemble["dataset_id"].to_list()
    assert Path(run.report_path).is_file() and run.config["name"] == "api" and run.failed == {}
    # `synque score` on the same config (everything reused): its own printout names the same best set.
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(config))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["score", str(tmp_path / "job.yaml")]) == 0
    printed = out.getvalue().splitlines()
    assert printed[0].startswith("train on: ") and printed[0] == run.verdict.lines[0]
    # The table's `*` marks the best set, from the ranking's own column; passed-over ones are noted.
    header = next(i for i, line in enumerate(printed) if line.startswith("dataset_id "))
    rows = printed[header + 1: header + 1 + len(quality)]
    starred = {line.split()[0] for line in rows if line.split("  passed over:")[0].endswith("*")}
    passed = {line.split()[0] for line in rows if "  passed over:" in line}
    assert passed == set(run.verdict.passed_over) and starred - passed == set(run.verdict.train_on) != set()
    named = printed[0].removeprefix("train on: ")
    assert all(name in named for name in run.verdict.train_on)
    assert not any(name in named.split(" (")[0] for name in set(quality) - set(run.verdict.train_on))
    # The set the CLI published, read back, holds the same tables as the library's run.
    cli_run = synque_ray.open_run(tmp_path / "out")
    assert cli_run.stamp != run.stamp and cli_run.summary is None and cli_run.failed == {}
    assert cli_run.rankings.equals(run.rankings) and cli_run.scores.equals(run.scores)
    assert cli_run.verdict == run.verdict


def test_the_demo_is_scored_and_evaluated_against_the_order_it_was_built_with(ray_session, tmp_path, monkeypatch):
    """`synque demo` (through `score_demo`) publishes a run whose evaluation is the one `evaluate`
    computes from the demo's quality.csv, and Spearman per seed is scipy's on the run's scores."""
    from scipy.stats import spearmanr

    from synque_ray.evaluate import report_text

    monkeypatch.chdir(tmp_path)
    job = yaml.safe_load(cli.DEMO_CONFIG.read_text())
    job.update(proxies=["mdm", "mmd"], real={**job["real"], "sample_size": 60})
    Path("job.yaml").write_text(yaml.safe_dump(job))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["demo", "--config", "job.yaml"]) == 0
    printed = out.getvalue()
    assert printed.startswith("demo data: 12 candidates graded by construction under demo-data/\ntrain on: ")
    first = synque_ray.open_run("results/demo")
    known = first.evaluation
    assert known is not None and known["run"] == first.stamp and known["metric"] == "quality (set by construction)"
    assert printed.split("agreement with the known quality order:\n")[1].startswith(report_text(known) + "\n")
    quality = {row["dataset_id"]: row["quality"] for row in pl.read_csv("demo-data/quality.csv").iter_rows(named=True)}
    assert known["performance"] == quality
    for proxy in ("mdm", "mmd"):
        scores = first.scores.filter(pl.col("proxy") == proxy)
        by_hand = [spearmanr(g["score"].to_list(), [quality[i] for i in g["dataset_id"]]).statistic
                   for _, g in scores.group_by("seed")]
        assert known["proxies"][proxy]["spearman"] == pytest.approx(sum(by_hand) / len(by_hand), abs=1e-6)

    # The library's call: everything reused, the data said before scoring, the same evaluation.
    said = []
    again = synque_ray.score_demo("job.yaml", on_data=lambda folder, q: said.append((folder, q)))
    assert said == [("demo-data", quality)] and again.stamp != first.stamp and again.failed == {}
    assert again.summary is not None and again.summary.counts["candidates_reused"] == 12
    assert again.evaluation is not None and {**again.evaluation, "run": None} == {**known, "run": None}
    # `evaluate` on the same quality, as a user would give it: the same figures.
    measured = again.evaluate("demo-data/quality.csv", "dataset_id", "quality", top_k=3, report=False)
    assert measured["proxies"] == known["proxies"] and again.evaluation == measured
