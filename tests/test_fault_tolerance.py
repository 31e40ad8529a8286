"""Nothing lost: killed workers are retried, a killed driver resumes without redoing work."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import psutil
import pytest
import yaml

from synque_ray.config import load_config
from synque_ray.demo import write_demo_data
from synque_ray.pipeline import run_job
from tests._scored_run import run_cli

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def job(ray_session, tmp_path_factory):
    """A config over generated data, and the rankings of an undisturbed run of it (in this process:
    the runs under test are the subprocesses that get killed)."""
    root = tmp_path_factory.mktemp("fault")
    write_demo_data(root / "data", n_candidates=6, rows=80, pool_rows=200)

    def config(name):
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump({
            "name": name, "output": str(root / name),
            "real": {"path": str(root / "data/real/pool.jsonl"), "text": "text", "sample_size": 60, "seeds": [1, 2]},
            "candidates": {"path": str(root / "data/candidates"), "text": "text"},
            "embedding": {"model": "bundled-minilm", "batch_size": 16},
        }))
        return path

    run_job(load_config(config("reference")))
    return config, pl.read_parquet(root / "reference" / "rankings.parquet")


def start(config_path):
    return subprocess.Popen([sys.executable, "-m", "synque_ray", "score", str(config_path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def descendants_titled(process, prefix):
    found = []
    for child in psutil.Process(process.pid).children(recursive=True):
        try:
            if " ".join(child.cmdline()).startswith(prefix):
                found.append(child)
        except psutil.Error:
            pass
    return found


def kill_first(process, prefix, timeout=300):
    """SIGKILL the first descendant whose process title starts with `prefix` (a busy Ray worker)."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        victims = descendants_titled(process, prefix)
        if victims:
            victims[0].kill()
            return victims[0].pid
        time.sleep(0.05)
    raise AssertionError(f"no process titled {prefix!r} appeared")


def assert_same_rankings(output, reference):
    rankings = pl.read_parquet(Path(output) / "rankings.parquet")
    joined = rankings.join(reference, on=["dataset_id", "proxy"], suffix="_ref")
    assert joined.height == reference.height
    assert (joined["rank"] == joined["rank_ref"]).all()
    assert ((joined["score_mean"] - joined["score_mean_ref"]).abs() < 1e-4).all()


def test_killed_embedding_actor_and_proxy_worker_are_retried(job):
    config, reference = job
    path = config("killed-workers")
    process = start(path)
    try:
        kill_first(process, "ray::MapWorker(MapBatches(Embedder)).submit")  # mid-batch
        kill_first(process, "ray::score_pair")
        out, err = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, err
    assert "6 scored, 0 reused, 0 failed" in out
    assert_same_rankings(yaml.safe_load(path.read_text())["output"], reference)


def committed_results(output: Path) -> list[Path]:
    """One file per committed candidate: `<key>.parquet` (its row signals, `<key>.rows.parquet`, land first)."""
    return [p for p in (output / "results").glob("*.parquet") if not p.name.endswith(".rows.parquet")]


def test_killed_driver_resumes_without_recomputing_committed_candidates(job):
    config, reference = job
    path = config("killed-driver")
    output = Path(yaml.safe_load(path.read_text())["output"])
    process = start(path)
    helpers = []
    try:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            helpers = psutil.Process(process.pid).children(recursive=True)
            if committed_results(output):
                break
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        for helper in helpers:  # Ray's own processes of that driver
            try:
                helper.kill()
            except psutil.Error:
                pass
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    committed = {p: p.stat().st_mtime_ns for p in committed_results(output)}
    assert 1 <= len(committed) < 6, "the driver must be killed mid-run"
    assert not (output / "rankings.parquet").exists()

    # The resumed run is a new driver (here in this process, on the session's Ray): the killed one's
    # cluster is gone with it, and what it committed is all the new one can know of it.
    resumed = run_cli("score", str(path))
    assert f"{6 - len(committed)} scored, {len(committed)} reused" in resumed
    assert {p: p.stat().st_mtime_ns for p in committed} == committed  # untouched
    assert_same_rankings(output, reference)
