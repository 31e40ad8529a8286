"""What a newcomer sees: a `synque score` run prints progress, the ranking and where the
outputs are; no warning or error line from Ray whose cause is ours. (Ray core's line that
a Ray Data pool actor "has constructor arguments in the object store and max_restarts > 0"
stays: Ray Data passes every restartable pool actor its context by reference, and the
restarts are what the fault-tolerance tests rely on; see stage/tasks.py.)"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synque_ray import cli
from synque_ray.config import load_config
from synque_ray.demo import write_demo_data
from synque_ray.pipeline import read_candidates

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parent.parent
NOISE = [
    "Token authentication is enabled",  # Ray's warning when the auth mode is left to its default
    "ray_remote_args",  # Ray's deprecation warning for map_batches' unnamed remote arguments
    "Progress bars disabled",  # Ray Data's notice that its bars are off (ours replace them)
    "Traceback",
]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("first-screen")
    write_demo_data(root / "data", n_candidates=3, rows=40, pool_rows=80)
    config = root / "job.yaml"
    config.write_text(yaml.safe_dump({
        "name": "first-screen", "output": str(root / "out"),
        "real": {"path": str(root / "data/real/pool.jsonl"), "text": "text", "sample_size": 30, "seeds": [1]},
        "candidates": {"path": str(root / "data/candidates"), "text": "text"},
        "embedding": {"model": "bundled-minilm", "batch_size": 16},
    }))
    return subprocess.run([sys.executable, "-m", "synque_ray", "score", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def test_run_succeeds_and_prints_the_ranking(cli_run):
    assert cli_run.returncode == 0, cli_run.stderr
    assert "rank by proxy" in cli_run.stdout


@pytest.mark.parametrize("line", NOISE)
def test_no_noise_of_ours(cli_run, line):
    assert line not in cli_run.stdout + cli_run.stderr


# ---------------------------------------------------------------- what a newcomer's own files meet (issue 16 §2)


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
