"""Bad input through the real CLI: one line naming the culprit, exit 2, earlier outputs intact."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def synque(*args, cwd):
    return subprocess.run([sys.executable, "-m", "synque_ray", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture()
def workspace(tmp_path):
    """A valid config plus an earlier run's outputs that no failing run may touch."""
    (tmp_path / "cands").mkdir()
    rows = [{"text": f"headline number {i}"} for i in range(12)]
    (tmp_path / "cands" / "good.json").write_text(json.dumps(rows))
    (tmp_path / "pool.json").write_text(json.dumps(rows * 2))
    config = {
        "name": "t", "output": "out",
        "real": {"path": "pool.json", "text": "text", "sample_size": 10, "seeds": [1]},
        "candidates": {"path": "cands", "text": "text"},
    }
    earlier = tmp_path / "out"
    earlier.mkdir()
    for name in ("scores.parquet", "rankings.parquet", "run.json"):
        (earlier / name).write_bytes(f"earlier {name}".encode())
    return tmp_path, config


def run_with(tmp_path, config):
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(config))
    return synque("score", "job.yaml", cwd=tmp_path)


def assert_one_line_failure(result, message, tmp_path):
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"error: {message}\n"
    assert "Traceback" not in result.stderr + result.stdout
    for name in ("scores.parquet", "rankings.parquet", "run.json"):
        assert (tmp_path / "out" / name).read_bytes() == f"earlier {name}".encode()
    assert not (tmp_path / "out" / "runs").exists()


def test_missing_candidate_file_folder(workspace):
    tmp_path, config = workspace
    config["candidates"]["path"] = "missing"
    assert_one_line_failure(run_with(tmp_path, config), "missing: candidates folder or glob not found", tmp_path)


def test_empty_file(workspace):
    tmp_path, config = workspace
    (tmp_path / "cands" / "empty.jsonl").write_text("")
    assert_one_line_failure(run_with(tmp_path, config), "cands/empty.jsonl: file is empty", tmp_path)


def test_missing_text_field(workspace):
    tmp_path, config = workspace
    (tmp_path / "cands" / "nofield.json").write_text(json.dumps([{"text": "a"}, {"body": "b"}]))
    assert_one_line_failure(run_with(tmp_path, config), "cands/nofield.json: row 2 has no field 'text'", tmp_path)


def test_rows_that_are_not_text(workspace):
    tmp_path, config = workspace
    (tmp_path / "cands" / "numbers.jsonl").write_text('{"text": "a"}\n{"text": 7}\n')
    assert_one_line_failure(
        run_with(tmp_path, config), "cands/numbers.jsonl: row 2 field 'text' is not text (got int)", tmp_path
    )


def test_fewer_rows_than_mdm_k(workspace):
    tmp_path, config = workspace
    config["proxies"] = ["mdm"]
    config["mdm"] = {"k": 5}
    (tmp_path / "cands" / "small.json").write_text(json.dumps([{"text": "a"}] * 4))
    assert_one_line_failure(
        run_with(tmp_path, config), "cands/small.json: 4 rows, fewer than the 5 that mdm.k = 5 needs", tmp_path
    )


def test_fewer_rows_than_pad_holdout_needs(workspace):
    tmp_path, config = workspace
    config["proxies"] = ["pad"]
    config["pad"] = {"folds": 0, "holdout": 0.2, "balanced": False}  # the paper's PAD
    (tmp_path / "cands" / "small.json").write_text(json.dumps([{"text": "a"}] * 4))
    assert_one_line_failure(
        run_with(tmp_path, config), "cands/small.json: 4 rows, fewer than the 5 that PAD's 0.2 holdout needs",
        tmp_path,
    )


def test_fewer_rows_than_pad_folds_need(workspace):
    tmp_path, config = workspace
    config["proxies"] = ["pad"]
    config["pad"] = {"folds": 6}
    (tmp_path / "cands" / "small.json").write_text(json.dumps([{"text": "a"}] * 4))
    assert_one_line_failure(
        run_with(tmp_path, config), "cands/small.json: 4 rows, fewer than the 6 that PAD's 6 folds needs", tmp_path
    )


def test_candidate_sample_size_below_what_a_proxy_needs(workspace):
    tmp_path, config = workspace
    config["proxies"] = ["mdm"]
    config["candidates"]["sample_size"] = 2
    assert_one_line_failure(
        run_with(tmp_path, config), "candidates.sample_size: 2 rows, fewer than the 3 that mdm.k = 3 needs", tmp_path
    )


def test_duplicate_candidate_ids(workspace):
    tmp_path, config = workspace
    (tmp_path / "cands" / "good.csv").write_text("text\na\n")
    assert_one_line_failure(
        run_with(tmp_path, config), "duplicate candidate id 'good': cands/good.csv and cands/good.json", tmp_path
    )


def test_model_path_that_does_not_exist(workspace):
    tmp_path, config = workspace
    config["embedding"] = {"model": "./models/nothing-here"}
    assert_one_line_failure(
        run_with(tmp_path, config), "embedding.model: model path './models/nothing-here' does not exist", tmp_path
    )


def test_unknown_key(workspace):
    tmp_path, config = workspace
    config["pad"] = {"classifer": "xgboost"}
    assert_one_line_failure(run_with(tmp_path, config), "job.yaml: unknown key 'pad.classifer' (did you mean 'classifier'?)", tmp_path)


def test_sample_larger_than_pool(workspace):
    tmp_path, config = workspace
    config["real"]["sample_size"] = 100
    assert_one_line_failure(
        run_with(tmp_path, config), "pool.json: real.sample_size 100 exceeds the pool's 24 rows", tmp_path
    )


def test_evaluate_without_a_run(tmp_path):
    (tmp_path / "perf.csv").write_text("id,f1\na,1\n")
    result = synque("evaluate", "norun", "--performance", "perf.csv", "--id-column", "id", "--metric", "f1",
                    cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "error: norun/scores.parquet: not found or unreadable; run `synque score` first\n"
