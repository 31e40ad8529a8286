"""What a newcomer sees: a `synque score` run opens with the verdict, prints progress, the
ranking and where the outputs are, and no line at warning or error level — Ray's included
(its core worker's notice that a Ray Data pool actor "has constructor arguments in the
object store and max_restarts > 0" is kept off the terminal: see raycluster.py). The CLI
says its version, explains its terms and has help on every argument."""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synque_ray import __version__, cli
from synque_ray.config import load_config
from synque_ray.demo import write_demo_data
from synque_ray.pipeline import read_candidates
from synque_ray.legend import LEGEND
from tests._scored_run import demo_job

REPO = Path(__file__).resolve().parents[2]
NOISE = [
    "Token authentication is enabled",  # Ray's warning when the auth mode is left to its default
    "ray_remote_args",  # Ray's deprecation warning for map_batches' unnamed remote arguments
    "Progress bars disabled",  # Ray Data's notice that its bars are off (ours replace them)
    "Traceback",
    "has constructor arguments in the object store",  # Ray core's notice for every Ray Data pool actor
]
# A line at warning or error level: Ray's C++ log ("[2026-12-01 10:00:00,000 E 123 456] ...")
# or Python logging's ("... WARNING ...", "... ERROR ...").
LOUD = re.compile(r"\[\d{4}-\d\d-\d\d [^\]]* [EWF] \d+ \d+\]|\b(WARNING|ERROR|CRITICAL)\b")


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("first-screen")
    write_demo_data(root / "data", n_candidates=3, rows=40, pool_rows=80)
    return demo_job(root, "first-screen", root / "out", sample_size=30, seeds=[1], batch_size=16)


def synque(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "synque_ray", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def cli_run(job):
    return synque("score", str(job))


@pytest.mark.ray
def test_run_succeeds_and_prints_the_ranking(cli_run):
    assert cli_run.returncode == 0, cli_run.stderr
    assert "rank by proxy" in cli_run.stdout


@pytest.mark.ray
@pytest.mark.parametrize("line", NOISE)
def test_no_noise_of_ours(cli_run, line):
    assert line not in cli_run.stdout + cli_run.stderr


@pytest.mark.ray
def test_a_healthy_run_prints_no_warning_or_error_line(cli_run):
    lines = re.split(r"[\r\n]+", cli_run.stdout + cli_run.stderr)
    assert [line for line in lines if LOUD.search(line)] == []


@pytest.mark.ray
def test_the_verdict_comes_first(cli_run):
    first = cli_run.stdout.splitlines()[0]
    assert first.startswith("train on: "), cli_run.stdout
    assert cli_run.stdout.index("train on: ") < cli_run.stdout.index("rank by proxy")


@pytest.mark.ray
def test_the_verdict_is_also_the_last_thing_said(cli_run):
    """About 45 lines follow the verdict; a 24-line terminal would scroll it off, so it comes again
    just before the report's path."""
    lines = cli_run.stdout.rstrip("\n").splitlines()
    opening = lines[: lines.index("")] if "" in lines else lines
    block = [line for line in opening if not line.startswith("flagged:")]
    tail = lines[-len(block) - 1:-1]
    assert block[0].startswith("train on: ") and tail == block, cli_run.stdout
    assert lines[-1].startswith("report: ")


@pytest.mark.ray
def test_embedding_progress_counts_rows_with_their_own_rate(cli_run):
    bars = re.split(r"[\r\n]+", cli_run.stderr)
    embedded = [b for b in bars if b.startswith("embedded:")]
    assert embedded and all("row/s" in b or "s/row" in b for b in embedded[1:]), cli_run.stderr
    assert re.search(r"embedded: 100%\|.*\| (\d+)/\1 ", cli_run.stderr)  # every row counted
    assert any(b.startswith("scored:") for b in bars)  # then the candidates, with their own ETA


@pytest.mark.ray
def test_quiet_prints_the_table_only(job, cli_run):
    quiet = synque("score", str(job), "--quiet")  # everything reused
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.startswith("rank by proxy")
    assert "train on:" not in quiet.stdout and "report:" not in quiet.stdout and "time:" not in quiet.stdout
    assert quiet.stderr == ""


def test_version():
    done = synque("--version", timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"synque {__version__}"


def test_explain_prints_the_legend():
    done = synque("explain", timeout=60)
    assert done.returncode == 0, done.stderr
    assert all(f"\n  {name}\n" in done.stdout for name in LEGEND)


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_argument_has_help():
    missing = [f"{parser.prog} {action.dest}" for parser in _parsers(cli.build_parser())
               for action in parser._actions
               if not action.help and not isinstance(action, argparse._SubParsersAction)]
    assert missing == []
    subcommands = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert all(choice.help for choice in subcommands._choices_actions)


FILTERED = r'''
import os, sys, time
from synque_ray.raycluster import without_restart_notice
notice = (b"[2026-12-01 10:00:00,123 E 4242 4243] core_worker.cc:2194: Actor with class name: "
          b"'MapWorker(MapBatches(Embedder))' and ID: 'ab12' has constructor arguments in the object store and "
          b"max_restarts > 0. If the arguments in the object store go out of scope or are lost, the actor "
          b"restart will fail. See https://github.com/ray-project/ray/issues/53727 for more details.\n")
with without_restart_notice():
    os.write(2, b"\rscored 0/3 [00:00<?, ?candidate/s]")
    os.write(2, notice)
    time.sleep(0.3)
    os.write(2, b"\rscored 1/3 [00:01<00:02, 1.0candidate/s]")
    os.write(2, b"[2026-12-01 10:00:01,000 E 4242 4243] core_worker.cc:99: Failed to register actor\n")
    sys.stderr.write("a real warning\n")
    os.write(2, notice[:60])  # the notice in two writes
    time.sleep(0.01)
    os.write(2, notice[60:])
raise SystemExit("after the filter")
'''


def test_the_stderr_filter_drops_only_rays_restart_notice():
    done = subprocess.run([sys.executable, "-c", FILTERED], cwd=REPO, capture_output=True, timeout=60)
    assert done.stderr.decode() == (
        "\rscored 0/3 [00:00<?, ?candidate/s]\rscored 1/3 [00:01<00:02, 1.0candidate/s]"
        "[2026-12-01 10:00:01,000 E 4242 4243] core_worker.cc:99: Failed to register actor\n"
        "a real warning\nafter the filter\n")


# ---------------------------------------------------------------- what a newcomer's own files meet


def newcomer_job(root, candidates, text, **extra):
    """A config over the newcomer's candidate files {name: content} and a small pool."""
    (root / "cands").mkdir()
    for name, content in candidates.items():
        (root / "cands" / name).write_text(content)
    (root / "pool.jsonl").write_text("".join(json.dumps({"text": f"a real row {i}"}) + "\n" for i in range(20)))
    job = {"name": "mine", "output": str(root / "out"), "real": {"path": str(root / "pool.jsonl"), "text": "text",
           "sample_size": 10}, "candidates": {"path": str(root / "cands"), "text": text, **extra}}
    (root / "job.yaml").write_text(yaml.safe_dump(job))
    return root / "job.yaml"


def test_a_misspelt_key_gets_the_nearest_valid_one(tmp_path, capsys):
    job = newcomer_job(tmp_path, {"a.json": json.dumps([{"text": "x"}] * 5)}, "text", sampel_size=3)
    assert cli.main(["score", str(job)]) == 2
    assert capsys.readouterr().err == (f"error: {job}: unknown key 'candidates.sampel_size' "
                                       "(did you mean 'sample_size'?)\n")


def test_a_template_over_a_numeric_field_formats_it(tmp_path):
    rows = [{"stars": i % 5 + 1, "helpful": i % 2 == 0, "text": f"review {i}"} for i in range(6)]
    config = load_config(newcomer_job(tmp_path, {"reviews.jsonl": "".join(json.dumps(r) + "\n" for r in rows)},
                                      "{stars} stars ({helpful}): {text}"))
    (candidate,) = read_candidates(config)
    assert candidate.texts[:2] == ["1 stars (True): review 0", "2 stars (False): review 1"]


def test_a_json_object_of_id_to_task_is_one_row_per_entry(tmp_path):
    tasks = {f"Site--{i}": f"Find the opening hours of shop {i}" for i in range(5)}
    records = {f"r{i}": {"ques": f"Book table {i}", "web": "x"} for i in range(5)}
    config = load_config(newcomer_job(tmp_path, {"tasks.json": json.dumps(tasks),
                                                 "records.json": json.dumps(records)}, "ques"))
    by_name = {c.name: c.texts for c in read_candidates(config)}
    assert by_name == {"records": [f"Book table {i}" for i in range(5)], "tasks": list(tasks.values())}
