"""Embedding-proxy benchmark: engine cold and warm runs beside a bare encode, in one run.

    python benchmarks/bench_embedding.py CONFIG [--workdir DIR]

Phases run one after another as separate processes, so that each one's peak memory
is its own: (1) a bare `SentenceTransformer.encode` over exactly the rows the config
embeds, (2) `synque score` cold (empty output and cache), (3) the same again, warm.
Prints a Markdown table and writes bench.json into the work dir.
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

# The bare phases (here fp32, int8 in bench_precision.py) share how rows are read and what is
# printed; only the model between t1 and t3 differs.
READ_ROWS = r"""
import json, resource, sys, time
from synque_ray.config import load_config
from synque_ray.models import resolve_model
from synque_ray.pipeline import read_candidates, read_real
t0 = time.perf_counter()
config = load_config(sys.argv[1])
texts = [t for rs in read_real(config).values() for t in rs.texts]
texts += [t for rs in read_candidates(config) for t in rs.texts]
"""
PRINT_TIMES = r"""
print(json.dumps({"rows": len(texts), "load_s": t2 - t1, "encode_s": t3 - t2, "total_s": t3 - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
BARE = READ_ROWS + r"""
from sentence_transformers import SentenceTransformer
path, _ = resolve_model(config.embedding.model, "embedding.model")
t1 = time.perf_counter()
model = SentenceTransformer(path, device="cpu")
t2 = time.perf_counter()
model.encode(texts, batch_size=config.embedding.batch_size, show_progress_bar=False)
t3 = time.perf_counter()
""" + PRINT_TIMES


def run_engine(config_path: Path) -> dict:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "synque_ray", "score", str(config_path)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    load = os.getloadavg()[0]
    output = yaml.safe_load(config_path.read_text())["output"]
    run = json.loads(Path(output, "run.json").read_text())
    return {"wall_s": wall, "timings": run["timings"], "counts": run["counts"], "load_avg_1min_after": load}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="synque-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(Path(args.config).read_text())
    raw["output"] = str(workdir / "out")
    raw.pop("cache_dir", None)
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw))

    bare = json.loads(subprocess.run([sys.executable, "-c", BARE, str(config_path)], check=True,
                                     capture_output=True, text=True).stdout.strip().splitlines()[-1])
    bare["load_avg_1min_after"] = os.getloadavg()[0]  # other work on the machine skews every ratio
    cold = run_engine(config_path)
    warm = run_engine(config_path)
    rows = cold["counts"]["rows_embedded"]
    assert rows == bare["rows"], (rows, bare["rows"])
    result = {
        "rows": rows,
        "bare": bare,
        "cold": cold,
        "warm": warm,
        "embed_rows_per_s_engine": rows / cold["timings"]["embed"],
        "embed_rows_per_s_bare_encode": rows / bare["encode_s"],
        "embed_rows_per_s_bare_load_and_encode": rows / (bare["load_s"] + bare["encode_s"]),
    }
    result["ratio_embed_vs_bare_encode"] = result["embed_rows_per_s_engine"] / result["embed_rows_per_s_bare_encode"]
    result["ratio_embed_vs_bare_load_and_encode"] = (
        result["embed_rows_per_s_engine"] / result["embed_rows_per_s_bare_load_and_encode"]
    )
    result["ratio_cold_total_vs_bare_encode"] = cold["timings"]["total"] / bare["encode_s"]
    result["ratio_warm_vs_cold"] = warm["timings"]["total"] / cold["timings"]["total"]
    (workdir / "bench.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
