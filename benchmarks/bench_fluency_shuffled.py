"""A word-shuffled copy of a good candidate, ranked by the default proxy set with and without the fluency screen.

    PYTHONPATH=$PWD python benchmarks/bench_fluency_shuffled.py WORKDIR [--source demo|tweets]

demo: the demo data (synque_ray/demo.py: 12 candidates of 300 rows, U_r 150 rows per seed, seeds
1 and 2) and `gen00_shuffled`, every row of the best candidate, gen00, with its words in a seeded
random order (tests/_garble.py), scored with synque_ray/demo.yaml's proxies.
tweets: financial tweets, whose tickers and links give real rows a heavy tail of token NLL. U_r
is the sentiment benchmark's real samples of seeds 42 and 43 (198 tweets each); the candidates
are `tweets` (300 other real tweets, from its test set), `tweets_shuffled` (their words shuffled)
and the first 300 rows of four of its LLM-written candidates; scored with the default proxies.

Then the same committed results are ranked twice: as the engine ranks them (fluency a screen:
never in the ensemble; a candidate over the garbled_share limit passed over and ranked after
every other) and as without the screen (the ensemble of the embedding proxies, nothing passed
over). Prints, for each, the lead ranking's top and the shuffled copy's place: rank, interval,
best set, garbled_share, what the garbled rows showed (garbled_as) and flags; then the verdict's
first line. A second call on the same WORKDIR reuses every result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/_garble.py

from synque_ray.config import DEFAULT_PROXIES, parse_config
from synque_ray.demo import write_demo_data
from synque_ray.findings import SCREENS
from synque_ray.pipeline import run_job
from synque_ray.reduce import add_ensemble, rank, split_failures
from synque_ray.verdict import verdict
from tests._garble import POOLS, shuffled_words

DEMO = Path(__file__).resolve().parent.parent / "synque_ray/demo.yaml"
LLM_CANDIDATES = ("llama3.3-70b_few-shot_v1", "qwen2.5-7b_zero-shot_v1", "qwen2.5-32b_few-shot_bg_v1",
                  "llama3.1-8b_zero-shot_v1")


def write_jsonl(path: Path, texts: list[str]) -> None:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


def demo_job(root: Path) -> tuple[dict, str, str]:
    write_demo_data(root / "data")
    source = root / "data/candidates/gen00_degraded00.jsonl"
    rng = np.random.default_rng(11)
    rows = [json.loads(line)["text"] for line in source.read_text().splitlines()]
    write_jsonl(root / "data/candidates/gen00_shuffled.jsonl", [shuffled_words(t, rng) for t in rows])
    raw = yaml.safe_load(DEMO.read_text())
    raw["real"]["path"] = str(root / "data/real/pool.jsonl")
    raw["candidates"]["path"] = str(root / "data/candidates")
    return raw, "gen00_degraded00", "gen00_shuffled"


def tweets_job(root: Path) -> tuple[dict, str, str]:
    bench = next((p.parent.parent for p in POOLS if p.is_file()), None)
    if bench is None:
        sys.exit("the sentiment benchmark (../shared/bench/sentiment) is not here")
    folder = root / "candidates"
    folder.mkdir(parents=True, exist_ok=True)
    tweets = [row["headline"] for row in json.loads((bench / "real/test_set.json").read_text())][:300]
    rng = np.random.default_rng(11)
    write_jsonl(folder / "tweets.jsonl", tweets)
    write_jsonl(folder / "tweets_shuffled.jsonl", [shuffled_words(t, rng) for t in tweets])
    for name in LLM_CANDIDATES:
        rows = json.loads((bench / f"synthetic/{name}.json").read_text())[:300]
        write_jsonl(folder / f"{name}.jsonl", [row["headline"] for row in rows])
    raw = {"name": "fluency-tweets", "proxies": list(DEFAULT_PROXIES),
           "real": {"samples": [str(bench / f"real/sample_seed{s}.json") for s in (42, 43)], "seeds": [42, 43],
                    "text": "headline"},
           "candidates": {"path": str(folder), "text": "text"}, "embedding": {"model": "bundled-minilm"},
           "resources": {"embed_actors": 1, "embed_gpus": 0}}
    return raw, "tweets", "tweets_shuffled"


def show(title: str, table: pl.DataFrame, findings: pl.DataFrame, shuffled: str) -> None:
    lead = table.filter(pl.col("proxy") == "ensemble").join(findings, on="dataset_id").sort("rank")
    print(f"\n{title}")
    with pl.Config(tbl_rows=20, fmt_str_lengths=60, tbl_width_chars=160):
        print(lead.select("dataset_id", "rank", "rank_low", "rank_high", "tied_with_best", "garbled_share",
                          "flags").head(4))
    row = lead.filter(pl.col("dataset_id") == shuffled).row(0, named=True)
    print(f"{shuffled}: rank {row['rank']} of {lead.height} ({row['rank_low']}-{row['rank_high']}), "
          f"{'in' if row['tied_with_best'] else 'outside'} the best set; garbled rows: {row['garbled_as']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--source", choices=("demo", "tweets"), default="demo")
    args = parser.parse_args()
    root = args.workdir.resolve()
    raw, source, shuffled = (demo_job if args.source == "demo" else tweets_job)(root)
    raw["output"] = str(root / "out")
    started = time.perf_counter()
    summary = run_job(parse_config(raw))
    print(f"scored {summary.counts['candidates_total']} candidates with {raw['proxies']} in "
          f"{time.perf_counter() - started:.0f} s")
    findings = summary.rankings.select("dataset_id", "garbled_share", "garbled_as", "flags").unique("dataset_id")
    show("as the engine ranks them (fluency a screen)", summary.rankings, findings, shuffled)
    results = pl.concat([pl.read_parquet(p) for p in (root / "out/results").glob("*.parquet")
                         if not p.name.endswith(".rows.parquet")], how="vertical_relaxed")
    usable, _ = split_failures(results.filter(~pl.col("proxy").is_in(list(SCREENS))))
    show("without the screen (the embedding proxies' ensemble, nothing passed over)",
         rank(add_ensemble(usable), level=0.9, top=5), findings, shuffled)
    ranks = dict(summary.rankings.filter(pl.col("proxy") == "fluency").select("dataset_id", "rank").iter_rows())
    print(f"\nfluency's own rank: {source} {ranks.get(source)}, {shuffled} {ranks.get(shuffled)} of {len(ranks)}")
    print(verdict(summary.rankings)[0])


if __name__ == "__main__":
    main()
