"""Bad input through the real CLI: one line naming the culprit, exit 2, earlier outputs intact.

Every case runs `cli.main` in this process (the messages and the exit code are what it returns);
one test runs the real `python -m synque_ray` entry to check that the same one line and exit 2
reach a shell."""

import errno
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from synque_ray import cli
from synque_ray.reduce import rank
from synque_ray.report import split_location
from synque_ray.storage import Store


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


def main_in(tmp_path, monkeypatch, capsys, config, *args):
    """`synque score job.yaml` (or ARGS) in this process from `tmp_path`: (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    if config is not None:
        (tmp_path / "job.yaml").write_text(yaml.safe_dump(config))
    code = cli.main(list(args) or ["score", "job.yaml"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_fails_in_process(workspace, monkeypatch, capsys, message, *args):
    tmp_path, config = workspace
    code, out, err = main_in(tmp_path, monkeypatch, capsys, config, *args)
    assert (code, err) == (2, f"error: {message}\n"), out
    assert_earlier_outputs_intact(tmp_path)


def assert_earlier_outputs_intact(tmp_path):
    for name in ("scores.parquet", "rankings.parquet", "run.json"):
        assert (tmp_path / "out" / name).read_bytes() == f"earlier {name}".encode()
    assert not (tmp_path / "out" / "runs").exists()


def test_the_real_entry_point_prints_one_line_and_exits_2(workspace):
    """The one subprocess: `python -m synque_ray` turns a UserError into one stderr line and exit 2."""
    tmp_path, config = workspace
    config["candidates"]["path"] = "missing"
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "synque_ray", "score", "job.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr == "error: job.yaml: candidates.path: missing: folder or glob not found\n"
    assert "Traceback" not in result.stdout
    assert_earlier_outputs_intact(tmp_path)


def test_missing_candidate_file_folder(workspace, monkeypatch, capsys):
    tmp_path, config = workspace
    config["candidates"]["path"] = "missing"
    assert_fails_in_process(workspace, monkeypatch, capsys,
                            "job.yaml: candidates.path: missing: folder or glob not found")


def test_empty_file(workspace, monkeypatch, capsys):
    tmp_path, config = workspace
    (tmp_path / "cands" / "empty.jsonl").write_text("")
    assert_fails_in_process(workspace, monkeypatch, capsys, "cands/empty.jsonl: file is empty")


def test_missing_text_field(workspace, monkeypatch, capsys):
    tmp_path, config = workspace
    (tmp_path / "cands" / "nofield.json").write_text(json.dumps([{"text": "a"}, {"body": "b"}]))
    assert_fails_in_process(workspace, monkeypatch, capsys,
                            "cands/nofield.json: row 2 has no field 'text' (its fields: 'body')")


def test_rows_that_are_not_text(workspace, monkeypatch, capsys):
    tmp_path, config = workspace
    (tmp_path / "cands" / "numbers.jsonl").write_text('{"text": "a"}\n{"text": 7}\n')
    assert_fails_in_process(
        workspace, monkeypatch, capsys, "cands/numbers.jsonl: row 2 field 'text' is not text (got int)"
    )


@pytest.mark.parametrize("proxy, section, expected", [
    ("mdm", {"k": 5}, "cands/small.json: 4 rows, fewer than the 5 that mdm.k = 5 needs"),
    ("pad", {"folds": 0, "holdout": 0.2, "balanced": False},  # the paper's PAD
     "cands/small.json: 4 rows, fewer than the 5 that PAD's 0.2 holdout needs"),
    ("pad", {"folds": 6}, "cands/small.json: 4 rows, fewer than the 6 that PAD's 6 folds needs"),
], ids=["mdm-k", "pad-holdout", "pad-folds"])
def test_fewer_rows_than_a_proxy_needs(workspace, monkeypatch, capsys, proxy, section, expected):
    tmp_path, config = workspace
    config["proxies"] = [proxy]
    config[proxy] = section
    (tmp_path / "cands" / "good.json").unlink()  # every candidate too small: nothing to rank, one line
    (tmp_path / "cands" / "small.json").write_text(json.dumps([{"text": "a"}] * 4))
    assert_fails_in_process(workspace, monkeypatch, capsys, expected)


def test_candidate_sample_size_below_what_a_proxy_needs(workspace, monkeypatch, capsys):
    tmp_path, config = workspace
    config["proxies"] = ["mdm"]
    config["candidates"]["sample_size"] = 2
    assert_fails_in_process(
        workspace, monkeypatch, capsys, "candidates.sample_size: 2 rows, fewer than the 3 that mdm.k = 3 needs"
    )


def test_duplicate_candidate_ids(workspace, monkeypatch, capsys):
    tmp_path, config = workspace
    (tmp_path / "cands" / "good.csv").write_text("text\na\n")
    assert_fails_in_process(
        workspace, monkeypatch, capsys, "duplicate candidate id 'good': cands/good.csv and cands/good.json"
    )


def test_model_path_that_does_not_exist(workspace, monkeypatch, capsys):
    tmp_path, config = workspace
    config["embedding"] = {"model": "./models/nothing-here"}
    assert_fails_in_process(
        workspace, monkeypatch, capsys, "embedding.model: model path './models/nothing-here' does not exist"
    )


def test_an_onnx_export_cache_that_cannot_be_written(workspace, monkeypatch, capsys):
    """CPU embeddings run an ONNX export kept in SYNQUE_ONNX_CACHE: a folder that cannot be made is
    one line before any work, not a failed actor's traceback per candidate."""
    tmp_path, _ = workspace
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("SYNQUE_ONNX_CACHE", str(tmp_path / "a-file" / "onnx"))
    assert_fails_in_process(
        workspace, monkeypatch, capsys,
        f"embedding: the ONNX export cache {tmp_path / 'a-file' / 'onnx'} is not writable (not a directory); "
        "set SYNQUE_ONNX_CACHE to a writable folder")


def test_unknown_key(workspace, monkeypatch, capsys):
    tmp_path, config = workspace
    config["pad"] = {"classifer": "xgboost"}
    assert_fails_in_process(
        workspace, monkeypatch, capsys, "job.yaml: unknown key 'pad.classifer' (did you mean 'classifier'?)"
    )


def test_sample_larger_than_pool(workspace, monkeypatch, capsys):
    tmp_path, config = workspace
    config["real"]["sample_size"] = 100
    assert_fails_in_process(
        workspace, monkeypatch, capsys, "pool.json: real.sample_size 100 exceeds the pool's 24 rows"
    )


def test_evaluate_without_a_run(tmp_path, monkeypatch, capsys):
    (tmp_path / "perf.csv").write_text("id,f1\na,1\n")
    code, _, err = main_in(tmp_path, monkeypatch, capsys, None, "evaluate", "norun", "--performance", "perf.csv",
                           "--id-column", "id", "--metric", "f1")
    assert (code, err) == (2, "error: norun/scores.parquet: not found or unreadable; run `synque score` first\n")


@pytest.mark.parametrize("name, content", [
    ("bad.jsonl", '{"text": "fine"}\n{"text": "half \\ud800 a pair"}\n'),
    ("bad.json", '[{"text": "fine"}, {"text": "half \\ud800 a pair"}]'),
])
def test_lone_surrogate_in_a_row(workspace, monkeypatch, capsys, name, content):
    (workspace[0] / "cands" / name).write_text(content)
    assert_fails_in_process(workspace, monkeypatch, capsys, f"cands/{name}: row 2 field 'text' holds a lone "
                            "surrogate ('\\ud800'), which is not valid Unicode text")


def test_config_that_is_not_utf8(workspace, monkeypatch, capsys):
    tmp_path, config = workspace
    (tmp_path / "job.yaml").write_bytes(yaml.safe_dump(config).encode() + b"# caf\xe9 au lait\n")
    lines = (tmp_path / "job.yaml").read_bytes().count(b"\n")
    code, _, err = main_in(tmp_path, monkeypatch, capsys, None, "score", "job.yaml")
    assert (code, err) == (2, f"error: job.yaml: line {lines} is not UTF-8 text (byte 0xe9)\n")


@pytest.mark.parametrize("template, message", [
    ("{text", "template '{text' is malformed (expected '}' before end of string)"),
    ("{} x", "template '{} x' has a positional field '{}'; name a field, e.g. '{text}'"),
    ("{0} x", "template '{0} x' has a positional field '{0}'; name a field, e.g. '{text}'"),
])
def test_malformed_or_positional_template(workspace, monkeypatch, capsys, template, message):
    workspace[1]["candidates"]["text"] = template
    assert_fails_in_process(workspace, monkeypatch, capsys, f"job.yaml: candidates.text: {message}")


def test_output_that_is_a_file_is_refused_at_load(workspace, monkeypatch, capsys):
    tmp_path, config = workspace
    (tmp_path / "taken.txt").write_text("not a folder")
    config["output"] = "taken.txt"
    assert_fails_in_process(workspace, monkeypatch, capsys, "job.yaml: output: 'taken.txt' is a file, not a folder")
    config["output"] = "taken.txt/run"
    assert_fails_in_process(workspace, monkeypatch, capsys,
                            "job.yaml: output: 'taken.txt/run' cannot be a folder: 'taken.txt' is a file")


def test_report_out_naming_a_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "folder").mkdir()
    code, _, err = main_in(tmp_path, monkeypatch, capsys, None, "report", "run", "--out", "folder")
    assert (code, err) == (2, "error: folder: is a folder; give the HTML file to write, e.g. folder/report.html\n")
    assert list(tmp_path.rglob("*")) == [tmp_path / "folder"]


def leftovers(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.tmp-*"))


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    store = Store(str(tmp_path))
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(Exception) as caught:
        store.write_bytes("a-folder", b"x")
    assert str(caught.value) == f"cannot write {tmp_path}/a-folder (Is a directory)"
    real_write = Store._write_file

    def half_then_full(self, path, payload):
        real_write(self, path, payload[:3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Store, "_write_file", half_then_full)
    with pytest.raises(Exception) as caught:
        store.write_bytes("sub/file.bin", b"0123456789")
    assert str(caught.value) == f"cannot write {tmp_path}/sub/file.bin (No space left on device)"
    assert leftovers(tmp_path) == [] and not (tmp_path / "sub" / "file.bin").exists()


@pytest.mark.ray
def test_disk_full_mid_run_names_the_path_and_a_rerun_resumes(workspace, monkeypatch, capsys, ray_session):
    """The second candidate's results commit hits a full disk: one line naming the file and what
    stays committed; the re-run reuses the first candidate and scores only the second."""
    tmp_path, config = workspace
    config["proxies"] = ["mdm"]
    (tmp_path / "cands" / "other.json").write_text(json.dumps([{"text": f"story {i} of a day"} for i in range(12)]))
    real_write, results_written = Store._write_file, []

    def full_on_second_result(self, path, payload):
        if re.search(r"/results/[0-9a-f]+\.parquet\.tmp-", path):
            results_written.append(path)
            if len(results_written) == 2:
                real_write(self, path, payload[:10])
                raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, path, payload)

    monkeypatch.setattr(Store, "_write_file", full_on_second_result)
    code, _, err = main_in(tmp_path, monkeypatch, capsys, config)
    assert code == 2 and "Traceback" not in err, err
    last = err.split("\r")[-1].split("\n", 1)[-1]  # the line after the progress bar
    assert re.fullmatch(r"error: cannot write out/results/[0-9a-f]+\.parquet \(No space left on device\); 1 "
                        r"committed result\(s\) under out/results are kept: free space or make the folder "
                        r"writable, then re-run the same command to resume from them\n", last), err
    assert leftovers(tmp_path) == []
    monkeypatch.setattr(Store, "_write_file", real_write)
    code, out, err = main_in(tmp_path, monkeypatch, capsys, config)
    assert code == 0, err
    assert "candidates: 2 total, 1 scored, 1 reused, 0 failed" in out


# ---------------------------------------------------------------- refused when the config is read


@pytest.mark.parametrize("section, key, value, message", [
    ("real", "seeds", [True, 2], "real.seeds: true is not a seed: give whole numbers from 0 to 4294967295"),
    ("real", "seeds", [3, -1], "real.seeds: -1 is not a seed: give whole numbers from 0 to 4294967295"),
    ("real", "seeds", [2**63], "real.seeds: 9223372036854775808 is not a seed: give whole numbers from 0 to "
     "4294967295"),
    ("real", "seeds", [1.5], "real.seeds: 1.5 is not a seed: give whole numbers from 0 to 4294967295"),
    ("ranking", "resamples", 10**12, "ranking.resamples: 1000000000000 is over the 10000 allowed (every proxy task "
     "holds a resamples × rows matrix of draws)"),
    (None, "output", "", "output: is empty; name the folder (or URI) to write to, e.g. results/my-job"),
    (None, "cache_dir", " ", "cache_dir: is empty; name the folder (or URI) to write to, e.g. results/my-job"),
    (None, "output", "cands", "output: 'cands' is the candidates folder 'cands'; the next run would read its "
     "files as candidates: give a folder outside it"),
    (None, "output", "cands/sub/run", "output: 'cands/sub/run' is inside the candidates folder 'cands'; the next "
     "run would read its files as candidates: give a folder outside it"),
    (None, "cache_dir", "./cands/", "cache_dir: './cands/' is the candidates folder 'cands'; the next run would "
     "read its files as candidates: give a folder outside it"),
    ("candidates", "text", "{text:>99999999999}", "candidates.text: template '{text:>99999999999}': the width "
     "99999999999 of field 'text' is over the 1000 characters a field may take"),
    ("real", "text", "{text:.5000f}", "real.text: template '{text:.5000f}': the precision 5000 of field 'text' is "
     "over the 1000 characters a field may take"),
    ("real", "path", "nopool.json", "real.path: nopool.json: file not found"),
])
def test_config_values_refused_before_any_work(workspace, monkeypatch, capsys, section, key, value, message):
    """Each was accepted and failed late (a seed of 1, a numpy or i64 traceback after the run, a
    218 TiB allocation, outputs written into the working directory or among the candidates, a
    MemoryError at the first row) or named the file but not its key."""
    tmp_path, config = workspace
    (config.setdefault(section, {}) if section else config)[key] = value
    assert_fails_in_process(workspace, monkeypatch, capsys, f"job.yaml: {message}")


@pytest.mark.parametrize("glob, output, folder", [("cands/*.json", "cands", "cands"), ("*.json", ".", "."),
                                                   ("c*/*.json", "cands", "c*")])
def test_output_in_a_glob_of_candidates_is_refused(workspace, monkeypatch, capsys, glob, output, folder):
    tmp_path, config = workspace
    config["candidates"]["path"] = glob
    config["output"] = output
    assert_fails_in_process(workspace, monkeypatch, capsys, f"job.yaml: output: '{output}' is the candidates folder "
                            f"'{folder}'; the next run would read its files as candidates: give a folder outside it")


def test_output_below_a_glob_of_candidates_is_allowed(tmp_path, monkeypatch):
    """`*.json` reads the working directory's files only: `out/` beside them is no candidate."""
    from synque_ray.config import load_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pool.json").write_text(json.dumps([{"text": "a"}]))
    (tmp_path / "job.yaml").write_text(yaml.safe_dump({"name": "t", "output": "out/run", "real": {
        "path": "pool.json", "text": "text"}, "candidates": {"path": "*.json", "text": "text"}}))
    assert load_config("job.yaml").output == "out/run"


BLOCK_CONFIG = """name: t
output: out
real:
  path: pool.json
  text: text
  sample_size: 10
  seeds: [1]
candidates:
  path: cands
  text: text
ranking: {top: 3}
proxies: [mdm]
mdm: {k: 3}
"""


@pytest.mark.parametrize("old, new, message", [
    ("candidates:\n", "candidates\n",  # line 8: the parser finds out at line 9
     "line 8 is not valid YAML: could not find expected ':' (while scanning a simple key)"),
    ("proxies: [mdm]\n", "proxies: [mdm\n",  # line 12: the parser finds out at line 13
     "line 12 is not valid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence)"),
    ("  seeds: [1]\n", "  seeds: [1]\n  path: other.json\n",
     "line 8: key 'path' is given twice in one mapping (first on line 4); keep one"),
    ("mdm: {k: 3}\n", "mdm: {k: 3}\nname: again\n",
     "line 14: key 'name' is given twice in one mapping (first on line 1); keep one"),
])
def test_yaml_mistakes_name_their_line_and_why(workspace, monkeypatch, capsys, old, new, message):
    tmp_path, _ = workspace
    assert old in BLOCK_CONFIG
    (tmp_path / "job.yaml").write_text(BLOCK_CONFIG.replace(old, new, 1))
    code, out, err = main_in(tmp_path, monkeypatch, capsys, None, "score", "job.yaml")
    assert (code, err) == (2, f"error: job.yaml: {message}\n"), out
    assert_earlier_outputs_intact(tmp_path)


# ---------------------------------------------------------------- refused when the inputs are read


def test_csv_header_repeating_the_text_column(workspace, monkeypatch, capsys):
    """pyarrow keeps both columns and a row dict the last: the second column was scored, silently."""
    (workspace[0] / "cands" / "dup.csv").write_text("text,id,text\nfirst,1,second\n")
    assert_fails_in_process(workspace, monkeypatch, capsys,
                            "cands/dup.csv: 2 columns are named 'text' (columns 1, 3); rename all but one")


def test_parquet_repeating_the_text_column(workspace, monkeypatch, capsys):
    table = pa.Table.from_arrays([pa.array(["first"]), pa.array(["second"])], names=["text", "text"])
    pq.write_table(table, workspace[0] / "cands" / "dup.parquet")
    assert_fails_in_process(workspace, monkeypatch, capsys,
                            "cands/dup.parquet: 2 columns are named 'text' (columns 1, 2); rename all but one")


def test_parquet_text_of_integers_exits_cleanly_every_time(workspace):
    """The one line, then "terminate called without an active exception" and exit 134 in most runs:
    pyarrow's thread pool, started by the Parquet read, torn down at exit with polars loaded. Four
    runs at once (the old code crashed in 5 of 6 runs of this file)."""
    tmp_path, config = workspace
    pq.write_table(pa.table({"text": list(range(1000))}), tmp_path / "cands" / "ints.parquet")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(config))
    runs = [subprocess.Popen([sys.executable, "-m", "synque_ray", "score", "job.yaml"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    expected = "error: cands/ints.parquet: row 1 field 'text' is not text (got int)\n"
    assert results == [(2, "", expected)] * 4
    assert_earlier_outputs_intact(tmp_path)


def test_a_hub_model_that_is_not_in_the_cache_offline(workspace, monkeypatch, capsys):
    """No network (HF_HUB_OFFLINE=1, the CLI's default): one line before Ray, not a 316-line traceback."""
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE
    workspace[1]["embedding"] = {"model": "some-org/missing-model"}
    assert_fails_in_process(
        workspace, monkeypatch, capsys,
        f"embedding.model: 'some-org/missing-model' is neither a local folder nor in the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) and downloads are off (HF_HUB_OFFLINE=1): download it first "
        "(`hf download some-org/missing-model`) or give a local model folder")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_s3_output_is_one_line_before_any_work(workspace, monkeypatch, capsys):
    tmp_path, config = workspace
    uri = f"s3://bucket/out?endpoint_override=127.0.0.1:{closed_port()}&scheme=http"
    config["output"] = uri
    started = time.monotonic()
    code, out, err = main_in(tmp_path, monkeypatch, capsys, config)
    assert time.monotonic() - started < 20
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: job.yaml: output: '{uri}' cannot be reached (When getting information for "
                          "key 'out' in bucket 'bucket': AWS Error NETWORK_CONNECTION"), err
    assert err.endswith("); check the URI, the network and the credentials (for S3: AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY, or ~/.aws)\n"), err
    assert_earlier_outputs_intact(tmp_path)


# ---------------------------------------------------------------- outputs only where the user said


@pytest.mark.parametrize("make", ["fifo", "device"])
def test_report_out_is_a_regular_file_or_a_new_one(tmp_path, monkeypatch, capsys, make):
    """`--out /dev/full` (as root) replaced the device node with the page: refused before reading the run."""
    if make == "fifo":
        target = str(tmp_path / "pipe")
        os.mkfifo(target)
    else:
        target = "/dev/full"
        assert stat.S_ISCHR(os.stat(target).st_mode)
    code, _, err = main_in(tmp_path, monkeypatch, capsys, None, "report", "run", "--out", target)
    assert (code, err) == (2, f"error: {target}: is not a regular file (a device, a pipe or a socket); give the "
                              "HTML file to write, a new one or one to replace\n")
    assert not stat.S_ISREG(os.stat(target).st_mode)


def test_report_out_through_a_link_replaces_the_file_it_points_to(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "page.html").write_text("old")
    (tmp_path / "link.html").symlink_to(tmp_path / "shared" / "page.html")
    store, name = split_location(str(tmp_path / "link.html"))
    assert (store.root, name) == (str(tmp_path / "shared"), "page.html")
    store, name = split_location("s3://bucket/runs/report.html?endpoint_override=h:1")
    assert (store.location, name) == ("s3://bucket/runs?endpoint_override=h:1", "report.html")


# ---------------------------------------------------------------- what the CLI prints


def test_explain_into_a_closed_pipe_ends_quietly():
    """`synque explain | head`: the reader went away; no BrokenPipeError traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read: every write fails with EPIPE
    try:
        result = subprocess.run([sys.executable, "-m", "synque_ray", "explain"], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")


@pytest.mark.parametrize("quiet", [True, False])
def test_notes_about_the_output_go_to_stderr_even_when_quiet(capsys, quiet):
    from tests.ranking.test_best_set import simulated

    rankings = rank(simulated([1.0, 0.0], np.random.default_rng(0)), level=0.9)
    note = "took over the stale lock out/.lock: pid 7 on h (since then) is no longer running"
    summary = SimpleNamespace(rankings=rankings, notes=[note], counts={}, timings={}, failed={}, failures=[],
                              incomplete={}, missing_proxies={}, skipped_files={}, lens_skipped=[], output="out",
                              run_dir="out/runs/x")
    if not quiet:
        summary.counts = dict.fromkeys(["candidates_total", "candidates_scored", "candidates_reused",
                                        "candidates_failed", "rows_embedded", "rows_from_cache"], 0)
    cli._print_summary(summary, 0.9, quiet=quiet)
    captured = capsys.readouterr()
    assert captured.err == f"note: {note}\n"
    assert "note:" not in captured.out


def test_output_inside_a_nested_candidates_folder(workspace, monkeypatch, capsys):
    tmp_path, config = workspace
    (tmp_path / "data").mkdir()
    (tmp_path / "cands").rename(tmp_path / "data" / "cands")
    config["candidates"]["path"] = "data/cands"
    config["output"] = "data/cands/out"
    assert_fails_in_process(workspace, monkeypatch, capsys, "job.yaml: output: 'data/cands/out' is inside the "
                            "candidates folder 'data/cands'; the next run would read its files as candidates: give "
                            "a folder outside it")
