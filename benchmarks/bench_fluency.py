"""The fluency screen on real headlines: its row signals, and what it costs on a CPU.

    PYTHONPATH=$PWD python benchmarks/bench_fluency.py [--source sentiment|demo|llm] [--rows 40] [--real 60]
        [--threads 1] [--draws 4000] [--dtype auto|float32|bfloat16]

sentiment / demo: from the sentiment benchmark's real pool
(../shared/bench/sentiment/real/pool.json: financial tweets, with tickers, cashtags and links) or
the demo's grammar of fluent news headlines (synque_ray/demo.py): U_r = `--real` rows, a clean
candidate = `--rows` other rows, and three copies of it damaged by tests/_garble.py (words shuffled,
15% of letters replaced, cut after half of the words). Each row is scored as the engine scores it
(`row_fluency`: the row and its shuffle under the bundled SmolLM2-135M in `--dtype` (auto: as the
engine resolves it), `--threads` threads). Prints, per candidate, the median token NLL and the
energy distance to U_r (the proxy's score, lower is better), the share of rows beyond U_r's
percentile of each judging signal (order gain below its 5th percentile, the rule before, and below
`fluency.percentile`; spelling and end surprise above 100 − it), and the share garbled by the rule
before (order gain alone, 5th percentile) and now (any of the three); rows judged per second, each
row being two forward passes (model loading excluded). Then how often a candidate would be flagged
(`garbled_share` over its limit), by the rule before and now: `--draws` bootstrap draws of U_r (30,
64 and 160 rows, as one seed of a small test, the demo's two seeds of 32 and the benchmark's five)
and of a 16-row candidate (12 beside 30), from the real rows (U_r's and the clean ones together) or
from a damaged copy's.

llm: the false flags that matter: U_r = the sentiment benchmark's real samples of seeds 42 and 43,
32 rows of each drawn as the engine draws them (`real_rows`), and its 32 LLM-written candidates,
16 rows of each (`max_rows`, seed 0): fluent headlines unlike tweets. Prints each candidate's
garbled share by the rule before and now, and what the garbled rows showed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/_garble.py

from synque_ray.demo import _headline
from synque_ray.findings import LIMITS
from synque_ray.fluency import (CAUSES, ORDER_GAIN, FluencyParams, RowScores, _model, energy_distance, garbled_rows,
                                resolve_dtype, resolve_model, row_fluency, thresholds)
from synque_ray.reading import seeded_indices
from tests._garble import POOLS, cut_mid_sentence, noised_chars, real_headlines, shuffled_words

BEFORE = 5.0  # the rule before: order gain alone, below U_r's 5th percentile


def signals(scores: RowScores) -> np.ndarray:
    """Shape (rows, 3): the judging signals of CAUSES, in its order."""
    return np.column_stack([getattr(scores, name) for name in CAUSES])


def rule(real: np.ndarray, percentile: float, gain_only: bool = False) -> dict[str, float]:
    """The limits that U_r's `real` rows (shape (rows, 3)) set: the rule now, or the order gain alone."""
    limits = thresholds(dict(zip(CAUSES, real.T, strict=True)), percentile)
    return {name: limit if name == ORDER_GAIN.name or not gain_only else np.nan for name, limit in limits.items()}


def garbled(rows: np.ndarray, limits: dict[str, float]) -> np.ndarray:
    """Shape (judged rows,): True for a garbled row by `limits` (`rule`)."""
    flags, _ = garbled_rows(dict(zip(CAUSES, rows.T, strict=True)), limits)
    return flags[flags != None].astype(bool)  # noqa: E711 (an object array: None is not judged)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--real", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--source", choices=("sentiment", "demo", "llm"), default="sentiment")
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto")
    args = parser.parse_args()
    params = FluencyParams(dtype=resolve_dtype(args.dtype))
    print(f"the LM in {params.dtype}")
    path = resolve_model(params)[0]
    _model(path, params.dtype)  # loaded once, outside the timings
    if args.source == "llm":
        return llm_candidates(path, params, args.threads)
    if args.source == "demo":
        grammar = np.random.default_rng(7)
        pool: list[str] | None = [_headline(grammar, 1.0) for _ in range(args.real + args.rows)]
    else:
        pool = real_headlines()
    if pool is None:
        sys.exit("the sentiment benchmark's real pool (../shared/bench/sentiment) is not here")
    order = np.random.default_rng(0).permutation(len(pool))
    real = [pool[i] for i in order[: args.real]]
    clean = [pool[i] for i in order[args.real : args.real + args.rows]]
    rng = np.random.default_rng(1)
    candidates = {"clean": clean, "shuffled": [shuffled_words(t, rng) for t in clean],
                  "noised": [noised_chars(t, rng) for t in clean], "cut": [cut_mid_sentence(t) for t in clean]}
    started = time.perf_counter()
    real_scores = row_fluency(path, real, params, args.threads)
    rows, seconds = len(real), time.perf_counter() - started
    real_signals, pct = signals(real_scores), params.percentile
    limits = thresholds(real_scores._asdict(), pct)
    print(f"U_r: {len(real)} rows, median token NLL {np.median(real_scores.token_nll):.2f}; medians (U_r's "
          f"percentile {pct:g} / {100 - pct:g}): " + ", ".join(
              f"{name} {np.nanmedian(getattr(real_scores, name)):.2f} ({limits[name]:.2f})" for name in CAUSES))
    header = ["median NLL", "energy", f"gain<p{BEFORE:g}", f"gain<p{pct:g}", f"spell>p{100 - pct:g}",
              f"end>p{100 - pct:g}", "before", "now"]
    print(f"{'candidate':<10} " + " ".join(f"{h:>11}" for h in header))
    damaged = {}
    for name, texts in candidates.items():
        started = time.perf_counter()
        scores = row_fluency(path, texts, params, args.threads)
        seconds += time.perf_counter() - started
        rows += len(texts)
        damaged[name] = signals(scores)
        beyond = [np.nanmean(np.where(np.isfinite(column), column > limit if high else column < limit, np.nan))
                  for column, (limit, (_, high)) in zip(damaged[name].T, zip(limits.values(), CAUSES.values(),
                                                                              strict=True), strict=True)]
        before = garbled(damaged[name], rule(real_signals, BEFORE, gain_only=True)).mean()
        now = garbled(damaged[name], rule(real_signals, pct)).mean()
        values = [np.median(scores.token_nll), energy_distance(scores.token_nll, real_scores.token_nll), before,
                  *beyond, before, now]
        print(f"{name:<10} {values[0]:>11.2f} {values[1]:>11.2f} " + " ".join(f"{v:>11.0%}" for v in values[2:]))
    print(f"{rows} rows judged (each with its shuffle) in {seconds:.1f} s: {rows / seconds:.2f} rows/s on "
          f"{args.threads} thread(s)")
    flagged_shares(np.vstack([real_signals, damaged.pop("clean")]), damaged, pct, args.draws)


def flagged_shares(real: np.ndarray, damaged: dict[str, np.ndarray], percentile: float, draws: int) -> None:
    """Print, per U_r size, the share of bootstrap draws in which a candidate drawn from `real` (a
    false flag) or from each damaged copy's rows has `garbled_share` over its limit, by the rule
    before (order gain alone at its 5th percentile) and now (any signal beyond `percentile`)."""
    limit = LIMITS["garbled_share"]
    print(f"\nshare of {draws} draws flagged (garbled_share > {limit:.0%}): before / now")
    for size, rows in ((30, 12), (64, 16), (160, 16)):
        rng = np.random.default_rng(0)
        counts = {name: [0, 0] for name in ["clean", *damaged]}
        for _ in range(draws):
            sample = real[rng.integers(len(real), size=size)]
            before, now = rule(sample, BEFORE, gain_only=True), rule(sample, percentile)
            for name, pool in (("clean", real), *damaged.items()):
                drawn = pool[rng.integers(len(pool), size=rows)]
                counts[name][0] += garbled(drawn, before).mean() > limit
                counts[name][1] += garbled(drawn, now).mean() > limit
        print(f"U_r {size:>3} rows, candidate {rows}: " + ", ".join(
            f"{name} {before / draws:.1%} / {now / draws:.1%}" for name, (before, now) in counts.items()))


def llm_candidates(path: str, params: FluencyParams, threads: int) -> None:
    """The sentiment benchmark's LLM-written candidates against two seeds' U_r, as the engine samples them."""
    base = next((p.parent.parent for p in POOLS if p.is_file()), None)
    if base is None:
        sys.exit("the sentiment benchmark (../shared/bench/sentiment) is not here")
    real = []
    for seed in (42, 43):
        rows = [row["headline"] for row in json.loads((base / "real" / f"sample_seed{seed}.json").read_text())]
        real += [rows[i] for i in seeded_indices(len(rows), params.real_rows, seed)]
    real_signals = signals(row_fluency(path, list(dict.fromkeys(real)), params, threads))
    limits, gain_limits = rule(real_signals, params.percentile), rule(real_signals, BEFORE, gain_only=True)
    print(f"U_r: {len(set(real))} distinct rows of seeds 42 and 43; limits " +
          ", ".join(f"{name} {value:.2f}" for name, value in limits.items()))
    shares = []
    for file in sorted((base / "synthetic").glob("*.json")):
        rows = [row["headline"] for row in json.loads(file.read_text())]
        texts = [rows[i] for i in seeded_indices(len(rows), params.max_rows, params.seed)]
        scored = signals(row_fluency(path, texts, params, threads))
        before = garbled(scored, gain_limits).mean()
        flags, named = garbled_rows(dict(zip(CAUSES, scored.T, strict=True)), limits)
        now = flags[flags != None].astype(bool).mean()  # noqa: E711
        seen = ", ".join(f"{c} {sum(c in (n or '') for n in named)}" for c, _ in CAUSES.values())
        shares.append((before, now))
        print(f"{file.stem:<48} before {before:>4.0%}  now {now:>4.0%}  ({seen})")
    before, now = np.array(shares).T
    limit = LIMITS["garbled_share"]
    print(f"over the {limit:.0%} limit: before {np.sum(before > limit)}, now {np.sum(now > limit)} of {len(shares)}; "
          f"largest share before {before.max():.0%}, now {now.max():.0%}")


if __name__ == "__main__":
    main()
