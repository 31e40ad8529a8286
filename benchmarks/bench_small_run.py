"""The fixed cost of a small run: `run_job` of 4 demo candidates x 40 rows, 2 seeds of 30, in process.

    python benchmarks/bench_small_run.py [--runs N] [--repeat R]

Each repeat starts one process per fp32 backend (sentence-transformers on torch, then the
fp32 ONNX export on ONNX Runtime), alternating; in each, a local Ray is started and the
same job runs N times with `fresh=True` (everything embedded and scored again), so every
run pays what a small job pays: the embedding actor's start, its model load, the proxy
tasks. Prints each run's wall time and the embedding step's (`timings.embed` in run.json).
The torch backend is what CPUs ran before; it is forced here by resolving the job's
backend to it on the driver (the actors get it from there).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

PHASE = r"""
import json, sys, tempfile, time
from pathlib import Path
import ray
import synque_ray.embed as embed
from synque_ray.config import parse_config
from synque_ray.demo import write_demo_data
from synque_ray.pipeline import run_job

backend, runs = sys.argv[1], int(sys.argv[2])
choose = embed._backend
embed._backend = lambda path, precision, on_gpus: backend if precision == "fp32" else choose(path, precision, on_gpus)
root = Path(tempfile.mkdtemp(prefix="synque-small-run-"))
write_demo_data(root / "data", n_candidates=4, rows=40, pool_rows=80)
ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
config = parse_config({"name": "small", "output": str(root / "out"),
    "real": {"path": str(root / "data/real/pool.jsonl"), "text": "text", "sample_size": 30, "seeds": [1, 2]},
    "candidates": {"path": str(root / "data/candidates"), "text": "text"},
    "embedding": {"model": "bundled-minilm", "batch_size": 32}, "resources": {"embed_actors": 1}})
for _ in range(runs):
    started = time.perf_counter()
    run_job(config, fresh=True)
    wall = time.perf_counter() - started
    run = json.loads((root / "out" / "run.json").read_text())
    print(json.dumps({"wall_s": wall, "embed_s": run["timings"]["embed"], "model": run["models"]["embedding"]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print("| repeat | backend | run | wall | embedding step |")
    print("|---|---|---|---|---|")
    for repeat in range(args.repeat):
        for backend in ("sentence-transformers", "onnxruntime"):
            out = subprocess.run([sys.executable, "-c", PHASE, backend, str(args.runs)], check=True,
                                 capture_output=True, text=True).stdout
            for number, line in enumerate(line for line in out.splitlines() if line.startswith("{")):
                result = json.loads(line)
                assert ("#fp32-onnxruntime" in result["model"]) == (backend == "onnxruntime"), result["model"]
                print(f"| {repeat + 1} | {backend} | {number + 1} | {result['wall_s']:.1f} s | "
                      f"{result['embed_s']:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
