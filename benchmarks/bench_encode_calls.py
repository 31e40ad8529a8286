"""How the size of each `SentenceTransformer.encode` call changes its speed, in one process.

    python benchmarks/bench_encode_calls.py CONFIG [--candidates 5]

`encode` sorts its input by length before cutting it into batches, so the rows given
to one call decide how much padding each batch carries. This times the same rows
(the first N candidates of CONFIG) embedded in calls of 256 rows, ~1,000 rows (one
candidate) and one call over everything, all at the config's batch size, and then
one call at encoder batch sizes 32 and 64. It is why the engine gives each actor call
a whole block of a row set (synque_ray/embed.py, ENCODER_BATCHES_PER_CALL).
"""

from __future__ import annotations

import argparse
import time

from synque_ray.config import load_config
from synque_ray.models import resolve_model
from synque_ray.pipeline import read_candidates


def timed(model, texts: list[str], rows_per_call: int, batch_size: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), rows_per_call):
        model.encode(texts[start:start + rows_per_call], batch_size=batch_size, show_progress_bar=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--candidates", type=int, default=5)
    args = parser.parse_args()
    config = load_config(args.config)
    candidates = read_candidates(config)[: args.candidates]
    texts = [t for rs in candidates for t in rs.texts]
    batch_size = config.embedding.batch_size

    from sentence_transformers import SentenceTransformer

    path, _ = resolve_model(config.embedding.model, "embedding.model")
    model = SentenceTransformer(path, device="cpu")
    model.encode(texts[:batch_size], batch_size=batch_size, show_progress_bar=False)  # warm-up
    per_candidate = max(rs.size for rs in candidates)
    print(f"{len(texts)} rows from {len(candidates)} candidates, encoder batch size {batch_size}\n")
    print("| rows per encode call | encoder batch size | seconds |")
    print("|---|---|---|")
    for rows_per_call in (batch_size, per_candidate, len(texts)):
        print(f"| {rows_per_call} | {batch_size} | {timed(model, texts, rows_per_call, batch_size):.1f} |")
    for small in (32, 64):
        print(f"| {len(texts)} | {small} | {timed(model, texts, len(texts), small):.1f} |")


if __name__ == "__main__":
    main()
