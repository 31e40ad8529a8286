"""Names, twins and a too-small candidate through `run_job`, on 3 demo candidates (30 rows each,
U_r 20 rows × 2 seeds), with the code that PYTHONPATH selects:

    PYTHONPATH=$PWD python benchmarks/identity_before_after.py

1. a byte-identical copy `twin.jsonl` of the first candidate: a first run, then a re-run;
2. the twin removed and the third candidate renamed to `renamed.jsonl`: a re-run;
3. a 1-row `tiny.jsonl` added: a re-run.
Each step prints the ensemble's candidates, the failed ones and the run's counts (or the error).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import polars as pl
import ray

from synque_ray.config import parse_config
from synque_ray.demo import write_demo_data
from synque_ray.pipeline import run_job


def attempt(config, label: str) -> None:
    try:
        summary = run_job(config)
    except Exception as err:  # noqa: BLE001 - the error is what the step measures
        print(label, "error:", type(err).__name__, str(err).splitlines()[0], flush=True)
        return
    ranked = summary.rankings.filter(pl.col("proxy") == "ensemble")["dataset_id"].to_list()
    c = summary.counts
    print(label, "ranked", sorted(ranked), "| failed", summary.failed,
          f"| scored {c['candidates_scored']} reused {c['candidates_reused']} failed {c['candidates_failed']}"
          f" rows embedded {c['rows_embedded']}", flush=True)


def main() -> None:
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    root = Path(tempfile.mkdtemp())
    write_demo_data(root, n_candidates=3, rows=30, pool_rows=60)
    cands = root / "candidates"
    names = sorted(p.stem for p in cands.iterdir())
    shutil.copyfile(cands / f"{names[0]}.jsonl", cands / "twin.jsonl")
    config = parse_config({
        "name": "identity", "output": str(root / "out"),
        "real": {"path": str(root / "real" / "pool.jsonl"), "text": "text", "sample_size": 20, "seeds": [1, 2]},
        "candidates": {"path": str(cands), "text": "text"},
        "embedding": {"model": "bundled-minilm", "batch_size": 32}, "resources": {"embed_actors": 1}})
    attempt(config, "twin, first run:")
    attempt(config, "twin, re-run:")
    (cands / "twin.jsonl").unlink()
    (cands / f"{names[2]}.jsonl").rename(cands / "renamed.jsonl")
    attempt(config, f"{names[2]} renamed to renamed, re-run:")
    (cands / "tiny.jsonl").write_text('{"text": "one row"}\n')
    attempt(config, "a 1-row candidate added:")
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
