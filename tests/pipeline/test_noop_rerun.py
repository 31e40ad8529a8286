"""A re-run with nothing to compute answers without Ray, and a local cluster starts without
its dashboard unless asked."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from synque_ray import raycluster

NO_RAY = """
import sys
import ray

def refuse(*args, **kwargs):
    raise AssertionError("ray.init on a re-run with nothing to compute")

ray.init = refuse  # whoever would start Ray (a stage, Ray Data's auto-init) fails the run
from synque_ray import cli

code = cli.main(["score", sys.argv[1]])
assert code == 0, code
assert not ray.is_initialized()
# what a re-run never needs, each a quarter second or more of start-up (BENCHMARKS.md)
heavy = [m for m in ("scipy.stats", "scipy.special", "scipy.sparse", "pandas", "torch") if m in sys.modules]
assert not heavy, heavy
"""


@pytest.mark.ray
def test_a_rerun_with_every_result_reused_never_starts_ray(scored_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(scored_run.output, out)  # the session's run stays as its other tests expect it
    config = yaml.safe_load((scored_run.root / "job.yaml").read_text())
    (tmp_path / "job.yaml").write_text(yaml.safe_dump({**config, "output": str(out)}))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", NO_RAY, str(tmp_path / "job.yaml")], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "0 scored, 4 reused, 0 failed" in done.stdout
    latest = json.loads((out / "run.json").read_text())
    assert latest["counts"]["candidates_reused"] == 4 and (out / "report.html").is_file()
    assert len(list((out / "runs").iterdir())) == 3  # a run of its own, written without Ray


@pytest.mark.parametrize(("value", "dashboard"), [(None, False), ("1", True), ("0", False)])
def test_a_local_cluster_starts_without_the_dashboard_unless_asked(monkeypatch, value, dashboard):
    import ray

    started = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if value is None:
        monkeypatch.delenv(raycluster.DASHBOARD_ENV, raising=False)
    else:
        monkeypatch.setenv(raycluster.DASHBOARD_ENV, value)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: started.append(kwargs))
    raycluster.ensure_ray()
    assert len(started) == 1 and started[0]["include_dashboard"] is dashboard
