"""What a newcomer sees: a `synque score` run prints progress, the ranking and where the
outputs are; no warning or error line from Ray whose cause is ours. (Ray core's line that
a Ray Data pool actor "has constructor arguments in the object store and max_restarts > 0"
stays: Ray Data passes every restartable pool actor its context by reference, and the
restarts are what the fault-tolerance tests rely on; see stage/tasks.py.)"""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synque_ray.demo import write_demo_data

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
