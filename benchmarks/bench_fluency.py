"""The fluency screen on real headlines: its row signals, and what it costs on a CPU.

    PYTHONPATH=$PWD python benchmarks/bench_fluency.py [--source sentiment|demo] [--rows 40] [--real 60]
        [--threads 1]

From the sentiment benchmark's real pool (../shared/bench/sentiment/real/pool.json: financial
tweets, with tickers, cashtags and links) or the demo's grammar of fluent news headlines
(synque_ray/demo.py): U_r = `--real` rows, a clean candidate = `--rows` other rows, and three
copies of it damaged by tests/_garble.py (words shuffled, 15% of letters replaced,
cut after half of the words). Each row is scored as the engine scores it (`row_fluency`: the
row and its shuffle under the bundled SmolLM2-135M, torch fp32, `--threads` threads). Prints,
per candidate, the median token NLL and the share of rows above U_r's 95th percentile of it
(the rule before the order gain), the median order gain and the share of rows below U_r's 5th
percentile of it (`garbled_share` now), the energy distance to U_r (the proxy's score, lower is
better), and rows judged per second, each row being two forward passes (model loading excluded).
Then how often a candidate would be flagged (`garbled_share` over its limit): `--draws` bootstrap
draws of U_r (30, 64 and 160 rows, as one seed of a small test, the demo's two seeds of 32 and
the benchmark's five) and of a 16-row candidate (12 beside 30), from the real rows (U_r's and
the clean ones together) or from a damaged copy's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/_garble.py

from synque_ray.demo import _headline
from synque_ray.findings import LIMITS
from synque_ray.fluency import FluencyParams, _model, energy_distance, gain_threshold, resolve_model, row_fluency
from tests._garble import cut_mid_sentence, noised_chars, real_headlines, shuffled_words


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--real", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--source", choices=("sentiment", "demo"), default="sentiment")
    parser.add_argument("--draws", type=int, default=4000)
    args = parser.parse_args()
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
    params = FluencyParams()
    path = resolve_model(params)[0]
    _model(path)  # loaded once, outside the timings
    started = time.perf_counter()
    real_nll, _, real_gain = row_fluency(path, real, params, args.threads)
    rows, seconds = len(real), time.perf_counter() - started
    above, below = np.percentile(real_nll, 95), gain_threshold(real_gain, params.percentile)
    print(f"U_r: {len(real)} rows, median token NLL {np.median(real_nll):.2f} (95th percentile {above:.2f}), "
          f"median order gain {np.nanmedian(real_gain):.2f} (5th percentile {below:.2f})")
    print(f"{'candidate':<10} {'median NLL':>10} {'NLL>p95':>8} {'median gain':>11} {'gain<p5':>8} {'energy':>7}")
    gains = {}
    for name, texts in candidates.items():
        started = time.perf_counter()
        nll, _, gain = row_fluency(path, texts, params, args.threads)
        seconds += time.perf_counter() - started
        rows += len(texts)
        gains[name] = gain[np.isfinite(gain)]
        print(f"{name:<10} {np.median(nll):>10.2f} {np.mean(nll > above):>8.0%} {np.nanmedian(gain):>11.2f} "
              f"{np.mean(gains[name] < below):>8.0%} {energy_distance(nll, real_nll):>7.2f}")
    print(f"{rows} rows judged (each with its shuffle) in {seconds:.1f} s: {rows / seconds:.2f} rows/s on "
          f"{args.threads} thread(s)")
    flagged_shares(np.concatenate([real_gain[np.isfinite(real_gain)], gains.pop("clean")]), gains, params.percentile,
                   args.draws)


def flagged_shares(real: np.ndarray, damaged: dict[str, np.ndarray], percentile: float, draws: int) -> None:
    """Print, per U_r size, the share of bootstrap draws in which a candidate drawn from `real` (a
    false flag) or from each damaged copy's gains has `garbled_share` over its limit."""
    rng, limit = np.random.default_rng(0), LIMITS["garbled_share"]
    print(f"\nshare of {draws} draws flagged (garbled_share > {limit:.0%})")
    for size, rows in ((30, 12), (64, 16), (160, 16)):
        counts = dict.fromkeys(["clean", *damaged], 0)
        for _ in range(draws):
            below = gain_threshold(rng.choice(real, size), percentile)
            for name, pool in (("clean", real), *damaged.items()):
                counts[name] += np.mean(rng.choice(pool, rows) < below) > limit
        print(f"U_r {size:>3} rows, candidate {rows}: " + ", ".join(f"{name} {count / draws:.1%}"
                                                                   for name, count in counts.items()))


if __name__ == "__main__":
    main()
