"""The PERPLEXITY proxy on a SynQuE benchmark: agreement with measured performance, and its cost.

    python benchmarks/bench_perplexity.py [--bench DIR] [--field headline] [--seeds 42 43 44 45 46]
        [--every 1] [--eval-rows N] [--steps 16] [--threads 2] [--scores FILE]

For each candidate of `DIR/synthetic/` (every `--every`-th of the sorted names), fine-tunes
the LM once and scores each seed's `DIR/real/sample_seed<seed>.json`, timing wall and
process (CPU, all threads) seconds. Scores are appended to `--scores` (JSON) after every
candidate, and a rerun with the same parameters skips the candidates already there, so a
long run can be resumed. Then prints Spearman/Pearson of score = −perplexity against
`DIR/task_performance.csv`'s `test_f1`, per seed and averaged over seeds (SPEC §9, through
`synque_ray.evaluate.evaluate_scores`), the top-3 performance, and the cost per candidate.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import polars as pl

from synque_ray.evaluate import evaluate_scores, read_performance
from synque_ray.perplexity import PerplexityParams, perplexity_after_finetune, resolve_model
from synque_ray.reading import list_candidates, read_texts


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench", default="/work/shared/bench/sentiment")
    parser.add_argument("--field", default="headline")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44, 45, 46])
    parser.add_argument("--every", type=int, default=1, help="score every n-th candidate of the sorted names")
    parser.add_argument("--eval-rows", type=int, default=None, help="cap on U_r rows scored per seed")
    parser.add_argument("--steps", type=int, default=PerplexityParams().steps)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scores", default="perplexity_scores.json")
    return parser.parse_args()


def load_done(path: Path, params: PerplexityParams, seeds: list[int]) -> dict:
    """Results of an earlier run with the same parameters and seeds, else an empty record."""
    fresh = {"params": params.model_dump(), "seeds": seeds, "candidates": {}}
    if not path.is_file():
        return fresh
    done = json.loads(path.read_text())
    return done if (done["params"], done["seeds"]) == (fresh["params"], fresh["seeds"]) else fresh


def score_all(args: argparse.Namespace, params: PerplexityParams) -> dict:
    bench, path = Path(args.bench), Path(args.scores)
    real = {seed: read_texts(bench / "real" / f"sample_seed{seed}.json", args.field) for seed in args.seeds}
    model_path = resolve_model(params)[0]
    record = load_done(path, params, args.seeds)
    for name, file in list_candidates(str(bench / "synthetic"))[:: args.every]:
        if name in record["candidates"]:
            continue
        wall, cpu = time.perf_counter(), time.process_time()
        result = perplexity_after_finetune(model_path, read_texts(file, args.field), real, params, args.threads)
        record["candidates"][name] = {
            "perplexity": {str(seed): score.perplexity for seed, score in result.items()},
            "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "load": os.getloadavg()[0],
        }
        path.write_text(json.dumps(record, indent=1))
        print(f"{name}: {record['candidates'][name]}", flush=True)
    return record


def report(record: dict, performance_csv: Path) -> None:
    candidates = record["candidates"]
    scores = pl.DataFrame([{"dataset_id": name, "seed": int(seed), "proxy": "perplexity", "score": -value}
                           for name, row in candidates.items() for seed, value in row["perplexity"].items()])
    means = scores.group_by("dataset_id").agg(pl.col("score").mean()).sort(["score", "dataset_id"],
                                                                           descending=[True, False])
    rankings = means.with_columns(proxy=pl.lit("perplexity"), rank=pl.int_range(1, means.height + 1))
    performance = read_performance(str(performance_csv), "dataset_name", "test_f1")
    result = evaluate_scores(scores, rankings, performance, top_k=min(3, means.height))["proxies"]["perplexity"]
    wall = np.array([row["wall_s"] for row in candidates.values()])
    cpu = np.array([row["cpu_s"] for row in candidates.values()])
    print(f"\ncandidates: {len(candidates)}; seeds: {record['seeds']}; params: {record['params']}")
    print("| proxy | Spearman | ± std over seeds | Pearson | top-3 F1 | s per candidate (wall) | CPU s per candidate |")
    print("|---|---|---|---|---|---|---|")
    print(f"| perplexity | {result['spearman']:.3f} | {result['spearman_std']:.3f} | {result['pearson']:.3f} | "
          f"{result['top_k_performance']:.3f} | {wall.mean():.1f} (min {wall.min():.1f}, max {wall.max():.1f}) | "
          f"{cpu.mean():.1f} |")
    ppl = scores.group_by("dataset_id").agg(pl.col("score").mean())["score"].to_numpy()
    print(f"perplexity over candidates (mean over seeds): min {-ppl.max():.1f}, max {-ppl.min():.1f}")


def main() -> None:
    args = arguments()
    params = PerplexityParams(steps=args.steps, eval_rows=args.eval_rows)
    record = score_all(args, params)
    report(record, Path(args.bench) / "task_performance.csv")


if __name__ == "__main__":
    main()
