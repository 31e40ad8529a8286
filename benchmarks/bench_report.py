"""The report's cost: page weight and generation at 300 candidates, and at the demo's 12 the
wall of `synque report` and of a re-run with nothing to compute.

At 300 (the default): a real run, not fabricated tables: the demo grammar writes N small
candidates, `synque score` scores them (MDM, MMD², PAD; MAUVE is left out only to keep the
run to minutes on two cores: the report's size and cost depend on the candidates, not on
how many proxies), then the report is generated and opened in headless Chromium.

    python benchmarks/bench_report.py [--candidates 300] [--rows 40] [--loads 3] [--workdir DIR]

On an existing run (e.g. the demo's, after `synque demo`): `synque report RUN_DIR` and, with
--config, `synque score CONFIG` once more (every result reused), each as a fresh process
timed --repeats times: wall and CPU seconds (user + system, the process and its children).
Whichever synque_ray PYTHONPATH names is measured, so one command compares two trees:

    PYTHONPATH=OTHER_TREE python benchmarks/bench_report.py --run results/demo --config synque_ray/demo.yaml
    PYTHONPATH=OTHER_TREE python benchmarks/bench_report.py --phases --config synque_ray/demo.yaml
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import statistics
import subprocess
import sys
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


def timed(command: list[str], repeats: int) -> tuple[float, float, list[float]]:
    """(median wall, median CPU seconds, every wall) of `command` run `repeats` times as a fresh process."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus), walls


PHASES = """
import sys, time
start = time.process_time()
from synque_ray.config import load_config
from synque_ray.pipeline import run_job
imported = time.process_time()
summary = run_job(load_config(sys.argv[1]))
ran = time.process_time()
from synque_ray.report import write_report
report_imported = time.process_time()
write_report(summary.output, [summary.output + "/report.html"])
done = time.process_time()
print(f"CPU s: imports {imported - start:.2f} | run_job {ran - imported:.2f} | report imports "
      f"{report_imported - ran:.2f} | report {done - report_imported:.2f} | total {done - start:.2f}")
"""


def phases(config: str) -> None:
    """Where a re-run with nothing to compute spends its CPU, phase by phase, in a fresh process."""
    subprocess.run([sys.executable, "-P", "-c", PHASES, config], check=True)


def existing_run(run_dir: str, config: str | None, repeats: int) -> None:
    """`synque report` on a finished run and, with a config, a re-run of it with nothing to compute."""
    target = Path(tempfile.mkdtemp(prefix="bench-report-")) / "report.html"
    cli = [sys.executable, "-P", "-m", "synque_ray"]  # -P: PYTHONPATH, not the current folder, says which tree
    if config:  # once first, so that nothing is left to compute
        subprocess.run([*cli, "score", config], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = [("synque report", timed([*cli, "report", run_dir, "--out", str(target)], repeats))]
    if config:
        rows.append(("synque score (nothing to compute)", timed([*cli, "score", config], repeats)))
    print(f"{run_dir} | {repeats} runs each | load average {os.getloadavg()[0]:.1f} | "
          f"synque_ray from {os.environ.get('PYTHONPATH') or 'the installed package'}")
    for name, (wall, cpu, walls) in rows:
        print(f"{name}: median wall {wall:.2f}s, median CPU {cpu:.2f}s ({', '.join(f'{w:.2f}' for w in walls)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--run", default=None, help="time `synque report` on this finished run instead")
    parser.add_argument("--config", default=None, help="with --run: also time a re-run of this config")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--phases", action="store_true", help="with --config: CPU of each phase of a re-run")
    args = parser.parse_args()
    if args.phases and args.config:
        phases(args.config)
        return
    if args.run:
        existing_run(args.run, args.config, args.repeats)
        return
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
