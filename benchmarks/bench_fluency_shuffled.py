"""The issue's case on the demo: a word-shuffled copy of the best candidate, with and without fluency.

    PYTHONPATH=$PWD python benchmarks/bench_fluency_shuffled.py WORKDIR

Writes the demo data (synque_ray/demo.py: 12 candidates of 300 rows, U_r 150 rows per seed,
seeds 1 and 2), adds `gen00_shuffled` (every row of the best candidate, gen00, with its words
in a seeded random order: tests/_garble.py), and scores all 13 with the demo config's proxies
and fluency (mdm, mmd, pad, mauve, fluency). Then ranks the same committed results twice, the ensemble
over the four embedding proxies and over all five, and prints the top of each: rank,
interval, best set, garbled_share and flags. A second call on the same WORKDIR reuses every
result (nothing is computed again) and prints the same tables.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/_garble.py

from synque_ray.config import parse_config
from synque_ray.demo import write_demo_data
from synque_ray.pipeline import run_job
from synque_ray.reduce import add_ensemble, ensemble_weights, rank, split_failures
from tests._garble import shuffled_words

DEMO = Path(__file__).resolve().parent.parent / "synque_ray/demo.yaml"


def main() -> None:
    root = Path(sys.argv[1]).resolve()
    write_demo_data(root / "data")
    source = root / "data/candidates/gen00_degraded00.jsonl"
    rng = np.random.default_rng(11)
    rows = [json.loads(line)["text"] for line in source.read_text().splitlines()]
    (root / "data/candidates/gen00_shuffled.jsonl").write_text(
        "".join(json.dumps({"text": shuffled_words(t, rng)}) + "\n" for t in rows))
    raw = yaml.safe_load(DEMO.read_text())
    raw["proxies"] = [*raw["proxies"], "fluency"]
    raw["output"] = str(root / "out")
    raw["real"]["path"] = str(root / "data/real/pool.jsonl")
    raw["candidates"]["path"] = str(root / "data/candidates")
    started = time.perf_counter()
    summary = run_job(parse_config(raw))
    print(f"scored 13 candidates with {raw['proxies']} in {time.perf_counter() - started:.0f} s")
    results = pl.concat([pl.read_parquet(p) for p in (root / "out/results").glob("*.parquet")
                         if not p.name.endswith(".rows.parquet")], how="vertical_relaxed")
    findings = summary.rankings.select("dataset_id", "garbled_share", "flags").unique("dataset_id")
    for proxies in (["mdm", "mmd", "pad", "mauve"], ["mdm", "mmd", "pad", "mauve", "fluency"]):
        usable, _ = split_failures(results.filter(pl.col("proxy").is_in(proxies)))
        weights = ensemble_weights(usable, "robust")
        table = rank(add_ensemble(usable, weights=weights), level=0.9, top=5).filter(pl.col("proxy") == "ensemble")
        print(f"\nensemble over {', '.join(proxies)} (weights {', '.join(f'{k} {v:.2f}' for k, v in weights.items())})")
        shown = table.join(findings, on="dataset_id").sort("rank").select(
            "dataset_id", "rank", "rank_low", "rank_high", "tied_with_best", "garbled_share", "flags")
        with pl.Config(tbl_rows=20, fmt_str_lengths=60, tbl_width_chars=160):
            print(shown.head(4))


if __name__ == "__main__":
    main()
