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
    assert set(synque_ray.__all__) == {"Run", "RunFailed", "UserError", "Verdict", "__version__", "open_run", "score"}
    for name in ("score", "open_run"):
        assert "Returns" in (getattr(synque_ray, name).__doc__ or "") or "Raises" in getattr(synque_ray, name).__doc__


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
    # The CLI on the same config (everything reused) opens with the same verdict.
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(config))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["score", str(tmp_path / "job.yaml")]) == 0
    assert out.getvalue().splitlines()[: len(run.verdict.lines)] == run.verdict.lines
    assert synque_ray.open_run(tmp_path / "out").verdict.train_on == run.verdict.train_on
