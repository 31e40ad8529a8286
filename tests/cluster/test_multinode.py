"""The pipeline on a two-node Ray cluster on this machine.

A driver process (isolated: its own session, private Ray temp dir, see
tests/_ray_procs.py) builds a `ray.cluster_utils.Cluster` with a head and one worker
node of 1 CPU each, points RAY_ADDRESS at it (so `ensure_ray()` joins it, as inside a
`ray job`), and runs `synque_ray.pipeline.run_job`. Each embedding batch and each
proxy task records the id of the node it ran on; the test checks that both nodes
did embedding work and both ran proxy tasks, and that the outputs are complete.

With 1 CPU per node, the two embedding actors (1 CPU each) cannot share a node, Ray
Data is told to start both before it hands out batches, and the proxy tasks (1 CPU
each) are queued beyond what one node can run when the actors free the CPUs, so both
nodes must do both kinds of work.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _ray_procs import free_ports, ray_processes_naming, run_isolated, short_temp_dir

from synque_ray.config import load_config
from synque_ray.demo import write_demo_data

pytestmark = [pytest.mark.ray, pytest.mark.timeout(420)]

N_CANDIDATES = 6
SEEDS = [1, 2, 3]  # tasks are submitted one per seed at once: more than one node can run

DRIVER = r'''
import json, os, sys, uuid
from pathlib import Path

config_path, record_dir, report_path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
head_ports = json.loads(sys.argv[4])


def record(kind):
    """Runs inside Ray workers: note which node did this piece of work."""
    import ray

    entry = {"kind": kind, "node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
    (record_dir / f"{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json").write_text(json.dumps(entry))


# Ray Data starts the whole actor pool before it hands out the first batch, so both
# embedding actors (one per node) get batches, however long one takes to load its model.
os.environ["RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S"] = "300"

import ray
from ray.cluster_utils import Cluster

import synque_ray.embed as embed
import synque_ray.pipeline as pipeline
import synque_ray.raycluster as raycluster
import synque_ray.stage.embedding as embedding_stage
from synque_ray.config import load_config

# Observe, without changing them, the two places where work runs: proxy tasks
# (score_pair, made remote by the embedding stage) and embedding actors (embed.Embedder,
# the Ray Data map_batches class). Both are looked up by name when a job runs.
assert callable(embedding_stage.score_pair) and isinstance(embed.Embedder, type), "pipeline hooks moved"
_score_pair = embedding_stage.score_pair


def score_pair(*args, **kwargs):
    record("proxy")
    return _score_pair(*args, **kwargs)


class Embedder(embed.Embedder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        record("embed_actor")

    def __call__(self, batch):
        record("embed")
        return super().__call__(batch)


embedding_stage.score_pair = score_pair
embed.Embedder = Embedder

def start_cluster():
    """Head + one worker node, 1 CPU each. Raylet start-up has a fixed 30 s budget in
    Ray; on a loaded machine it can run out, so a failed start is retried."""
    for attempt in range(3):
        cluster = Cluster(shutdown_at_exit=True)
        try:
            cluster.add_node(
                num_cpus=1, num_gpus=0, include_dashboard=False,
                dashboard_agent_listen_port=head_ports[2 * attempt],
                metrics_export_port=head_ports[2 * attempt + 1],
                object_store_memory=200 * 1024 * 1024,
            )
            cluster.add_node(num_cpus=1, num_gpus=0, object_store_memory=200 * 1024 * 1024)
            cluster.wait_for_nodes()
            return cluster
        except Exception as err:
            print(f"cluster start-up attempt {attempt + 1} failed: {err}", flush=True)
            cluster.shutdown()
    raise RuntimeError("could not start the two-node cluster")


cluster = start_cluster()
try:
    os.environ["RAY_ADDRESS"] = cluster.address  # as inside a `ray job`: ensure_ray() joins it
    raycluster.ensure_ray()
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    resources = ray.cluster_resources()
    summary = pipeline.run_job(load_config(config_path))
    report = {"nodes": nodes, "cpus": resources.get("CPU"), "counts": summary.counts,
              "output": summary.output}
    report_path.write_text(json.dumps(report))
finally:
    ray.shutdown()
    cluster.shutdown()
'''


@pytest.fixture()
def job_config(tmp_path: Path) -> Path:
    write_demo_data(tmp_path / "data", n_candidates=N_CANDIDATES, rows=40, pool_rows=80)
    config = {
        "name": "multinode-test",
        "output": str(tmp_path / "out"),
        "real": {"path": str(tmp_path / "data/real/pool.jsonl"), "text": "text", "sample_size": 30, "seeds": SEEDS},
        "candidates": {"path": str(tmp_path / "data/candidates"), "text": "text"},
        "embedding": {"model": "bundled-minilm", "batch_size": 16},
        "proxies": ["mdm", "mmd"],
        "resources": {"embed_actors": 2, "embed_gpus": 0, "proxy_cpus": 1},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    load_config(path)
    return path


def test_pipeline_runs_on_both_nodes(job_config: Path, tmp_path: Path) -> None:
    temp_dir = short_temp_dir("raym")
    records = tmp_path / "records"
    records.mkdir()
    report_path = tmp_path / "report.json"
    started = time.monotonic()
    try:
        result = run_isolated(
            DRIVER, [str(job_config), str(records), str(report_path), json.dumps(free_ports(6))],
            temp_dir, timeout=360,
        )
        print(f"\ntwo-node run took {time.monotonic() - started:.1f}s")
        assert result.returncode == 0, result.stdout[-6000:]
        assert ray_processes_naming(str(temp_dir)) == []  # the cluster is gone
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)

    report = json.loads(report_path.read_text())
    nodes = set(report["nodes"])
    assert len(nodes) == 2 and report["cpus"] == 2

    work = [json.loads(p.read_text()) for p in records.glob("*.json")]
    actor_nodes = [w["node"] for w in work if w["kind"] == "embed_actor"]
    assert set(actor_nodes) == nodes, f"embedding actors on {actor_nodes}, cluster nodes {nodes}"
    embed_nodes = {w["node"] for w in work if w["kind"] == "embed"}
    proxy_nodes = {w["node"] for w in work if w["kind"] == "proxy"}
    proxy_tasks = [w for w in work if w["kind"] == "proxy"]
    for kind in ("embed", "proxy"):
        per_node = {n[:8]: sum(1 for w in work if w["kind"] == kind and w["node"] == n) for n in nodes}
        print(f"{kind} work per node: {per_node}")
    assert embed_nodes == nodes, f"embedding batches ran on {embed_nodes}, cluster nodes {nodes}"
    assert proxy_nodes == nodes, f"proxy tasks ran on {proxy_nodes}, cluster nodes {nodes}"
    assert len(proxy_tasks) >= N_CANDIDATES * len(SEEDS)  # one per (candidate, seed), retries aside

    assert report["counts"]["candidates_scored"] == N_CANDIDATES
    out = tmp_path / "out"
    rankings = pq.read_table(out / "rankings.parquet").to_pylist()
    scores = pq.read_table(out / "scores.parquet").to_pylist()
    candidates = {p.stem for p in (tmp_path / "data/candidates").glob("*.jsonl")}
    assert {r["dataset_id"] for r in rankings} == candidates
    for proxy in ("mdm", "mmd"):
        assert {(r["dataset_id"], r["seed"]) for r in scores if r["proxy"] == proxy} == {
            (c, s) for c in candidates for s in SEEDS
        }
        assert sorted(r["rank"] for r in rankings if r["proxy"] == proxy) == list(range(1, N_CANDIDATES + 1))
