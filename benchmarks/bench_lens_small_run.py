"""A small LENS run in a fresh process: what its driver imports, and how long it takes.

    python benchmarks/bench_lens_small_run.py WORKDIR

2 generated candidates x 6 rows, a U_r of 6 rows, one seed, a rubric file (so no writer engine):
`run_job` with `proxies: [lens]`, starting its own local Ray, as `synque score` would. Prints the
wall time, the rows judged, and whether transformers and torch were imported on the driver.
Run it on two trees to compare them (BENCHMARKS.md, "The test loop, sixth pass").
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from synque_ray.config import parse_config
from synque_ray.demo import _headline, candidate_rows
from synque_ray.pipeline import run_job


def _write_jsonl(path: Path, texts: list[str]) -> None:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


def main() -> None:
    root = Path(sys.argv[1])
    (root / "candidates").mkdir(parents=True, exist_ok=True)
    _write_jsonl(root / "real.jsonl", [_headline(np.random.default_rng(5), 1.0) for _ in range(6)])
    for i, (name, level) in enumerate({"clean": 0.0, "degraded": 0.9}.items()):
        _write_jsonl(root / "candidates" / f"{name}.jsonl", candidate_rows(level, 6, np.random.default_rng(i)))
    (root / "rubric.json").write_text(json.dumps({
        "commonalities": ["Rows are short news headlines"], "real_vs_synthetic": ["Real rows name firms"],
        "synthetic_vs_real": ["Synthetic rows repeat themselves"]}))
    config = parse_config({
        "name": "lens-small", "output": str(root / "out"),
        "real": {"path": str(root / "real.jsonl"), "text": "text", "sample_size": 6, "seeds": [1]},
        "candidates": {"path": str(root / "candidates"), "text": "text"},
        "embedding": {"model": "bundled-minilm"}, "proxies": ["lens"],
        "lens": {"rubric_file": str(root / "rubric.json"), "task": "sentiment", "max_model_len": 2048,
                 "batch_rows": 16},
        "resources": {"lens_actors": 1}})
    started = time.perf_counter()
    summary = run_job(config, fresh=True)
    print(f"run_job {time.perf_counter() - started:.1f} s, judged {summary.counts['lens_rows_judged']} rows; "
          f"on the driver: transformers {'transformers' in sys.modules}, torch {'torch' in sys.modules}")


if __name__ == "__main__":
    main()
