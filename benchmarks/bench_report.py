"""The report at 300 candidates: page weight, time to generate it, time for Chromium to load it.

A real run, not fabricated tables: the demo grammar writes N small candidates, `synque
score` scores them (MDM, MMD², PAD; MAUVE is left out only to keep the run to minutes on
two cores: the report's size and cost depend on the candidates, not on how many proxies),
then the report is generated and opened in headless Chromium several times.

    python benchmarks/bench_report.py [--candidates 300] [--rows 40] [--loads 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from synque_ray import cli
from synque_ray.demo import write_demo_data
from synque_ray.report import write_report
from synque_ray.report.browser import Browser


def score(workdir: Path, candidates: int, rows: int) -> tuple[Path, float]:
    """Generate and score the candidates; (output folder, seconds)."""
    write_demo_data(workdir / "data", n_candidates=candidates, rows=rows, pool_rows=200)
    output = workdir / "out"
    config = {"name": f"bench-report-{candidates}", "output": str(output),
              "real": {"path": str(workdir / "data" / "real" / "pool.jsonl"), "text": "text", "sample_size": 40,
                       "seeds": [1, 2]},
              "candidates": {"path": str(workdir / "data" / "candidates"), "text": "text"},
              "proxies": ["mdm", "mmd", "pad"], "embedding": {"model": "bundled-minilm", "batch_size": 128}}
    (workdir / "job.yaml").write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["score", str(workdir / "job.yaml")]) == 0
    return output, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-report-"))
    output, scoring = score(workdir, args.candidates, args.rows)
    started = time.perf_counter()
    [page] = write_report(str(output), [str(workdir / "report.html")])
    generation = time.perf_counter() - started
    loads, rows = [], None
    with Browser() as browser:
        for _ in range(args.loads):
            session, visit = browser.open(Path(page))
            assert not visit.console_errors, visit.console_errors
            loads.append(visit.load_seconds)
            rows = browser.evaluate(session, "document.querySelectorAll('#ranking-table tbody tr').length")
    size = Path(page).stat().st_size
    print(f"candidates {args.candidates} x {args.rows} rows, 2 seeds | score run {scoring:.1f}s")
    print(f"page: {size / 1e6:.2f} MB, {rows} ranking rows | generation {generation:.1f}s | "
          f"chromium load (navigate to load event) median {statistics.median(loads):.2f}s over {len(loads)} "
          f"({', '.join(f'{s:.2f}' for s in loads)}) | load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
