"""Nothing lost: killed workers are retried, a killed driver resumes without redoing work."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import psutil
import pytest
import yaml

import synque_ray
from synque_ray.demo import write_demo_data
from tests._scored_run import EMBEDDING_DEFAULTS, demo_job, run_cli

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def job(ray_session, tmp_path_factory):
    """A config over generated data, and the rankings of an undisturbed run of it (in this process:
    the runs under test are the subprocesses that get killed)."""
    root = tmp_path_factory.mktemp("fault")
    write_demo_data(root / "data", n_candidates=6, rows=80, pool_rows=200)

    def config(name):  # one stage: the kills below land in the embedding stage's work
        return demo_job(root, name, root / name, sample_size=60, seeds=[1, 2], batch_size=16,
                        proxies=EMBEDDING_DEFAULTS)

    return config, synque_ray.score(config("reference")).rankings


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


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _title(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:80]
    except psutil.Error:
        return ""


def test_nothing_of_a_killed_drivers_ray_is_alive_30_s_later(tmp_path):
    """`kill -9` of `synque score` mid-run (the driver alone, as the OOM killer or a user does): every
    process of the local Ray it started (GCS, raylet, agents, workers) is gone within 30 s."""
    from tests._ray_procs import kill_ray_processes, new_token_file, ray_env, short_temp_dir

    write_demo_data(tmp_path / "data", n_candidates=3, rows=80, pool_rows=200)
    path = demo_job(tmp_path, "killed-cleanup", tmp_path / "out", sample_size=60, seeds=[1], batch_size=8)
    temp_dir = short_temp_dir("rayk")  # this run's Ray alone names it (the session lives under it)
    env = ray_env(temp_dir, new_token_file(temp_dir))
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    process = subprocess.Popen([sys.executable, "-m", "synque_ray", "score", str(path)], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ray_side: list[psutil.Process] = []
    try:
        appear_by = time.time() + 300
        while time.time() < appear_by and not descendants_titled(process, "ray::MapWorker"):
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.1)
        ray_side = psutil.Process(process.pid).children(recursive=True)
        assert any(" ".join(p.cmdline()).startswith("ray::DashboardAgent") for p in ray_side)
        os.kill(process.pid, signal.SIGKILL)  # the driver alone
        process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in ray_side):
            time.sleep(0.5)
        print(f"{len(ray_side)} processes under the driver, waited {time.monotonic() - deadline + 30:.1f} s")
        left = [title for p in ray_side if _alive(p) and (title := _title(p))]
        assert not left, f"alive 30 s after the driver was killed: {left}"
    finally:
        if process.poll() is None:
            process.kill()
        kill_ray_processes([p.pid for p in ray_side], str(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_a_cluster_that_ray_start_left_dead_does_not_hold_up_the_next_local_start():
    """`ray start` records its address in <temp>/ray/ray_current_cluster and a killed one leaves it:
    Ray's default `ray.init()` then joins that address and waits on its dead GCS (over 100 s,
    BENCHMARKS.md). The engine's local cluster is always a new one."""
    from tests._ray_procs import free_ports, run_isolated, short_temp_dir

    temp_dir = short_temp_dir("rays")
    try:
        (temp_dir / "ray").mkdir()
        (temp_dir / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{free_ports(1)[0]}")
        script = ("import time; from synque_ray.raycluster import ensure_ray; start = time.perf_counter(); "
                  "ensure_ray(); import ray; print('answer', ray.get(ray.remote(lambda: 7).remote()), "
                  "round(time.perf_counter() - start, 1))")
        done = run_isolated(script, [], temp_dir, timeout=120)
        assert done.returncode == 0 and "answer 7" in done.stdout, done.stdout[-2000:]
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
