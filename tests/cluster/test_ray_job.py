"""The `ray job` path end to end.

A real Ray head (`ray start --head`, dashboard, token auth) on 127.0.0.1 with free
ports and a private temp dir; a job submitted with the Jobs CLI exactly as a user
does (`ray job submit --working-dir <repo> --runtime-env cluster/runtime_env.yaml --
python jobs/score.py CONFIG`); the Parquet outputs checked; the head stopped after
the test whatever happened (see tests/_ray_procs.py: no `ray stop`, which would
stop every Ray instance on the machine).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _ray_procs import REPO, RUNTIME_ENV_FILE, VENV_BIN, dashboard_get, ray_head, ray_processes_naming

from synque_ray.config import load_config
from synque_ray.demo import write_demo_data

pytestmark = [pytest.mark.ray, pytest.mark.timeout(420)]

N_CANDIDATES = 3


def _ray(head, *args: str, env_update: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(head.env)
    env.update(env_update or {})
    return subprocess.run(
        [str(VENV_BIN / "ray"), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


@pytest.fixture()
def job_config(tmp_path: Path) -> Path:
    write_demo_data(tmp_path / "data", n_candidates=N_CANDIDATES, rows=40, pool_rows=80)
    config = {
        "name": "ray-job-test",
        # A pyarrow filesystem URI, as a cluster job would use (s3://, gs://, ...).
        "output": (tmp_path / "out").as_uri(),
        "real": {"path": str(tmp_path / "data/real/pool.jsonl"), "text": "text", "sample_size": 30, "seeds": [1, 2]},
        "candidates": {"path": str(tmp_path / "data/candidates"), "text": "text"},
        "embedding": {"model": "bundled-minilm", "batch_size": 64},
        "proxies": ["mdm", "mmd"],
        "mdm": {"k": 3},
        "resources": {"embed_actors": 1, "embed_gpus": 0},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    load_config(path)  # the job must get a valid config: a failure here is the test's own
    return path


def test_ray_job_submit_scores_and_writes_parquet(job_config: Path, tmp_path: Path) -> None:
    submission_id = f"synque-test-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    with ray_head(num_cpus=2) as head:
        print(f"\nhead up after {time.monotonic() - started:.1f}s")
        # Token auth is on: the Jobs API turns away a request without the token or with
        # a wrong one, and takes the cluster's token.
        assert dashboard_get(head, "/api/jobs/") == 401
        assert dashboard_get(head, "/api/jobs/", token="0" * 64) in (401, 403)
        assert dashboard_get(head, "/api/jobs/", token=head.token_file.read_text().strip()) == 200

        submitted = _ray(
            head, "job", "submit", "--address", head.dashboard_url, "--submission-id", submission_id,
            "--working-dir", str(REPO), "--runtime-env", str(RUNTIME_ENV_FILE),
            "--", "python", "jobs/score.py", str(job_config),
            timeout=300,
        )
        logs = submitted.stdout + submitted.stderr
        print(f"job done after {time.monotonic() - started:.1f}s")
        assert submitted.returncode == 0, logs[-6000:]
        assert "succeeded" in logs.lower(), logs[-6000:]

        # The CLI streamed the job's own output: the ranking table and the summary.
        assert "rank by proxy" in logs
        assert f"candidates: {N_CANDIDATES} total, {N_CANDIDATES} scored" in logs

        # The job's driver joined this cluster (it did not start a Ray of its own):
        # its proxy tasks are in this head's task table.
        tasks = _ray(
            head, "list", "tasks", "--address", f"127.0.0.1:{head.gcs_port}",
            "--filter", "func_or_class_name=score_pair", "--format", "json", "--limit", "1000",
        )
        assert tasks.returncode == 0, tasks.stderr[-3000:]
        print(f"task table read after {time.monotonic() - started:.1f}s")
        task_rows = json.loads(tasks.stdout)
        assert len(task_rows) >= N_CANDIDATES * 2  # one per (candidate, seed)
        assert all(row.get("job_id") == task_rows[0].get("job_id") for row in task_rows)

    print(f"head stopped after {time.monotonic() - started:.1f}s")
    # Stopped: nothing that names the head's temp dir is left running.
    assert ray_processes_naming(str(head.temp_dir)) == []

    out = tmp_path / "out"
    scores = pq.read_table(out / "scores.parquet").to_pylist()
    rankings = pq.read_table(out / "rankings.parquet").to_pylist()
    assert set(pq.read_schema(out / "scores.parquet").names) >= {"dataset_id", "proxy", "seed", "raw", "score"}
    assert set(pq.read_schema(out / "rankings.parquet").names) >= {
        "dataset_id", "proxy", "score_mean", "score_std", "rank",
    }
    candidates = {p.stem for p in (tmp_path / "data/candidates").glob("*.jsonl")}
    assert {r["dataset_id"] for r in scores} == candidates
    assert {(r["proxy"], r["seed"]) for r in scores if r["proxy"] != "ensemble"} == {
        (proxy, seed) for proxy in ("mdm", "mmd") for seed in (1, 2)
    }
    for proxy in ("mdm", "mmd", "ensemble"):
        ranks = sorted(r["rank"] for r in rankings if r["proxy"] == proxy)
        assert ranks == list(range(1, N_CANDIDATES + 1)), (proxy, ranks)
    # The demo data is graded by construction: the undegraded candidate ranks first.
    best = next(r["dataset_id"] for r in rankings if r["proxy"] == "ensemble" and r["rank"] == 1)
    assert best.endswith("degraded00")

    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["candidates_scored"] == N_CANDIDATES
    assert run["counts"]["rows_embedded"] == N_CANDIDATES * 40 + 2 * 30
