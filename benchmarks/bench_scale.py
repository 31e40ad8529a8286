"""Scale benchmark: N generated candidates x R rows through the four embedding proxies.

    python benchmarks/bench_scale.py --candidates 30 100 300 --rows 1000 [--workdir DIR]

For each N: a cold run (empty output and cache) and a warm re-run of the same config,
each `synque score` in its own process; reports wall time, rows/s, time per stage and
the driver's peak RSS (from run.json) as Markdown and JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from synque_ray.demo import write_demo_data


def score(config_path: Path) -> dict:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "synque_ray", "score", str(config_path)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    run = json.loads((Path(yaml.safe_load(config_path.read_text())["output"]) / "run.json").read_text())
    return {"process_wall_s": wall, "timings": run["timings"], "counts": run["counts"],
            "load_avg_1min_after": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candidates", type=int, nargs="+", default=[30, 100, 300])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="synque-scale-"))
    results = {}
    for n in args.candidates:
        data = workdir / f"data-{n}"
        write_demo_data(data, n_candidates=n, rows=args.rows, pool_rows=2000)
        config_path = workdir / f"scale-{n}.yaml"
        config_path.write_text(yaml.safe_dump({
            "name": f"scale-{n}", "output": str(workdir / f"out-{n}"),
            "real": {"path": str(data / "real/pool.jsonl"), "text": "text", "sample_size": 200, "seeds": args.seeds},
            "candidates": {"path": str(data / "candidates"), "text": "text"},
            "embedding": {"model": "bundled-minilm", "batch_size": 256},
            "proxies": ["mdm", "mmd", "pad", "mauve"],
        }))
        cold, warm = score(config_path), score(config_path)
        rows = cold["counts"]["rows_embedded"]
        results[n] = {
            "cold": cold, "warm": warm, "rows": rows,
            "rows_per_s": rows / cold["timings"]["total"],
            "warm_over_cold": warm["timings"]["total"] / cold["timings"]["total"],
        }
        print(json.dumps({n: results[n]}, indent=1), flush=True)
    (workdir / "scale.json").write_text(json.dumps(results, indent=2))
    print("| candidates | rows embedded | cold total s | embed s | proxies s | rows/s | driver peak MB | warm s "
          "| warm/cold |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, r in results.items():
        t = r["cold"]["timings"]
        print(f"| {n} | {r['rows']} | {t['total']:.0f} | {t['embed']:.0f} | {t['proxies']:.0f} | "
              f"{r['rows_per_s']:.0f} | {r['cold']['counts']['driver_peak_rss_mb']:.0f} | "
              f"{r['warm']['timings']['total']:.1f} | {r['warm_over_cold']:.3f} |")


if __name__ == "__main__":
    main()
