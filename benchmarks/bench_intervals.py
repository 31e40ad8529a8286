"""Rank intervals: what they cost, whether they hold on unseen U_r samples, and whether each
proxy's replicates are as wide as the truth.

    python benchmarks/bench_intervals.py CONFIG [--cost-candidates 8]
    python benchmarks/bench_intervals.py --calibration [--draws 60] [--slow-draws 25] [--truth-draws 300]
                                         [--mauve-cells] [--sentiment FOLDER] [--before REV]

Needs a finished `synque score CONFIG` (its committed per-candidate results hold the
bootstrap replicates). Two measurements:
- cost: the proxy tasks of the first candidates run in this process with 0 and with
  `ranking.resamples` replicates; the extra CPU seconds over the proxy compute;
- coverage: for every split of the seeds into 2 and the rest, intervals computed from
  the 2 seeds are checked against the rank each candidate gets from the mean score over
  the other seeds (a re-run on U_r samples the intervals never saw). Reported per proxy:
  the share of candidates whose unseen rank falls inside, and the mean interval width.

`--calibration` needs no run: per proxy, setting and sizes, `replicate_spread_ratio` (mean
replicate sd over the sd of the value across independent draws of a fresh candidate and a
fresh U_r: 16-d Gaussians, equal or the candidate's mean shifted by 0.5 on 4 coordinates),
and the CPU cost of one proxy task with `ranking.resamples` = 200 replicates over one
without, at 300 candidate and 200 U_r rows. With `--before REV` the same table is computed
again for the proxies of git revision REV (extracted to a temporary folder and run there in
a subprocess), side by side. MAUVE's spread is skewed near its ceiling (a rare pair falls
far), so its true sd is read on `--truth-draws` pairs (values only; its replicates on the
first `--slow-draws`). `--mauve-cells` adds a table of MAUVE alone at other sizes, in 32
dimensions and at larger shifts; `--sentiment FOLDER` adds real text to it: headlines of
FOLDER/real/test_set.json embedded with the bundled MiniLM, the candidate and U_r drawn
from them without overlap ("equal") or the candidate from the first file of
FOLDER/synthetic/ ("synthetic").
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from scipy.stats import rankdata

from synque_ray.config import load_config
from synque_ray.embed import EmbeddingCache
from synque_ray.models import resolve_model
from synque_ray.pipeline import read_candidates, read_real
from synque_ray.stage.embedding import task_spec
from synque_ray.reduce import add_ensemble, rank, split_failures
from synque_ray.proxy_task import score_pair
from synque_ray.storage import Store


def cost(config, candidates: int) -> tuple[float, float]:
    """CPU seconds of the proxy tasks without and with replicates, same (candidate, seed) pairs."""
    cache = EmbeddingCache(Store(config.cache_location), resolve_model(config.embedding.model, "model")[1])
    real = {seed: cache.load(rs) for seed, rs in list(read_real(config).items())[:2]}
    vectors = [(c.name, cache.load(c)) for c in read_candidates(config)[:candidates]]
    spec = task_spec(config)
    seconds = []
    for resamples in (0, spec.resamples):
        run_spec = dataclasses.replace(spec, resamples=resamples)
        started = time.process_time()
        for name, synthetic in vectors:
            score_pair(name, None, synthetic, None, run_spec)
            for seed, real_vectors in real.items():
                score_pair(name, seed, synthetic, real_vectors, run_spec)
        seconds.append(time.process_time() - started)
    return seconds[0], seconds[1]


def committed_results(config) -> pl.DataFrame:
    store = Store(config.output)
    keys = store.read_json("run.json")["result_keys"]["embedding"]  # the embedding stage's, by candidate
    frames = [pl.from_arrow(store.read_table(f"results/{key}.parquet")) for key in keys.values()]
    return split_failures(pl.concat(frames))[0]


def coverage(results: pl.DataFrame, level: float) -> dict[str, tuple[float, float]]:
    seeds = sorted(results["seed"].unique().to_list())
    hits: dict[str, list] = {}
    for shown in itertools.combinations(seeds, 2):
        seen = add_ensemble(results.filter(pl.col("seed").is_in(shown)))
        unseen = add_ensemble(results.filter(~pl.col("seed").is_in(shown)))
        intervals = rank(seen, level=level)
        for (proxy,), group in unseen.group_by(["proxy"]):
            mean = group.group_by("dataset_id").agg(pl.col("score").mean()).sort("dataset_id")
            truth = dict(zip(mean["dataset_id"], rankdata(-mean["score"].to_numpy(), method="min"), strict=True))
            part = intervals.filter(pl.col("proxy") == proxy)
            for row in part.iter_rows(named=True):
                inside = row["rank_low"] <= truth[row["dataset_id"]] <= row["rank_high"]
                hits.setdefault(proxy, []).append((inside, row["rank_high"] - row["rank_low"] + 1))
    return {p: (float(np.mean([h for h, _ in v])), float(np.mean([w for _, w in v]))) for p, v in hits.items()}


DIMS, SHIFTED_DIMS = 16, 4
# (proxy, its parameters, label); the slow ones get --slow-draws
CALIBRATED = [("mmd", {"estimator": "biased"}, "mmd (biased)"), ("mmd", {"estimator": "unbiased"}, "mmd (unbiased)"),
              ("density", {}, "density"), ("coverage", {}, "coverage"), ("mauve", {}, "mauve"), ("pad", {}, "pad"),
              ("mdm", {}, "mdm")]
SLOW = {"mauve", "pad", "mdm"}
SIZES = [(40, 60), (150, 60), (50, 120), (300, 200)]
SETTINGS = [("equal", 0.0), ("shifted", 0.5)]


def _gaussians(n: int, m: int, shift: float, dims: int = DIMS, shifted_dims: int = SHIFTED_DIMS):
    mean = np.zeros(dims)
    mean[:shifted_dims] = shift
    return lambda rng: (rng.normal(size=(n, dims)) + mean, rng.normal(size=(m, dims)))


SKEWED = {"mauve"}  # proxies whose true sd is read on --truth-draws pairs
# MAUVE alone, beyond the main table: (label, candidate rows, U_r rows, shift, dims, shifted dims)
MAUVE_CELLS = [("equal 32-d", 100, 100, 0.0, 32, 4), ("shift 1.0 32-d", 100, 100, 1.0, 32, 4),
               ("equal 32-d", 200, 80, 0.0, 32, 4), ("shifted 32-d", 200, 80, 0.5, 32, 4),
               ("shift 1.0 on 8", 60, 150, 1.0, 16, 8), ("equal", 30, 30, 0.0, 16, 4),
               ("equal", 500, 300, 0.0, 16, 4), ("shifted", 500, 300, 0.5, 16, 4)]
TEXT_SIZES = [(150, 100), (300, 200)]


def _sentiment_draws(folder: str) -> dict:
    """{label: draw factory (n, m) → draw}: rows of real and synthetic headlines embedded with the
    bundled MiniLM (ONNX Runtime, fp32, one thread), the candidate and U_r drawn without overlap."""
    from synque_ray.embed import ENCODERS
    from synque_ray.models import BUNDLED_EMBEDDING

    encode = ENCODERS[("fp32", "onnxruntime")](resolve_model(BUNDLED_EMBEDDING, "embedding.model")[0], 1)
    root = Path(folder)
    candidate_file = sorted((root / "synthetic").glob("*.json"))[0]
    real, synthetic = (np.asarray(encode([row["headline"] for row in json.loads(path.read_text())], 64),
                                  dtype=np.float64) for path in (root / "real" / "test_set.json", candidate_file))

    def equal(n: int, m: int):
        def draw(rng):
            rows = rng.permutation(len(real))
            return real[rows[:n]], real[rows[n:n + m]]
        return draw

    def other(n: int, m: int):
        return lambda rng: (synthetic[rng.permutation(len(synthetic))[:n]], real[rng.permutation(len(real))[:m]])

    return {"text equal": equal, f"text synthetic ({candidate_file.stem})": other}


def calibration_table(draws: int, slow_draws: int, spread_ratio, truth_draws: int = 0, mauve_cells: bool = False,
                      sentiment: str | None = None) -> dict:
    """{"proxies": {label: {"ratios": {"setting n×m": ratio}, "cost": (CPU s without, with 200 replicates)}},
    "mauve": {"cell": ratio}} for the proxies importable here; `spread_ratio` is `replicate_spread_ratio`
    (passed in, so that an older tree's proxies are measured by this tree's yardstick)."""
    import warnings

    from threadpoolctl import threadpool_limits

    from synque_ray.proxies import REGISTRY

    warnings.filterwarnings("ignore")
    table, mauve = {}, {}
    with threadpool_limits(1):  # small matrices: a second BLAS thread only adds overhead
        for name, params, label in CALIBRATED:
            proxy = REGISTRY[name]
            model = proxy.params.model_validate(params)
            truth = {"truth_draws": truth_draws} if name in SKEWED else {}
            ratios = {f"{setting} {n}x{m}": spread_ratio(proxy, model, _gaussians(n, m, shift),
                                                        slow_draws if name in SLOW else draws, 60, **truth)
                      for setting, shift in SETTINGS for n, m in SIZES}
            synthetic, real = _gaussians(300, 200, 0.5)(np.random.default_rng(0))
            seconds = []
            for resamples in (0, 200):
                started = time.process_time()
                for seed in range(3):
                    proxy.compute(synthetic, real, model, seed, resamples)
                seconds.append((time.process_time() - started) / 3)
            table[label] = {"ratios": ratios, "cost": seconds}
            print(f"  measured {label}", file=sys.stderr, flush=True)
        proxy = REGISTRY["mauve"]
        cells = [(f"{label} {n}x{m}", _gaussians(n, m, shift, dims, shifted)) for label, n, m, shift, dims, shifted
                 in (MAUVE_CELLS if mauve_cells else [])]
        if sentiment:
            cells += [(f"{label} {n}x{m}", factory(n, m)) for label, factory in _sentiment_draws(sentiment).items()
                      for n, m in TEXT_SIZES]
        for cell, draw in cells:
            mauve[cell] = spread_ratio(proxy, proxy.params(), draw, slow_draws, 60, truth_draws=truth_draws)
            print(f"  measured mauve {cell}", file=sys.stderr, flush=True)
    return {"proxies": table, "mauve": mauve}


def _before(rev: str, options: list[str]) -> dict:
    """The table for the proxies of git revision `rev`, measured in a subprocess on its tree."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as folder:
        archive = subprocess.run(["git", "-C", str(root), "archive", rev, "synque_ray"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": folder}
        out = subprocess.run([sys.executable, __file__, "--calibration-json", *options], env=env, check=True,
                             capture_output=True, text=True)
        return json.loads(out.stdout)


def _this_trees_ratio():
    """`replicate_spread_ratio` of this tree's base.py, loaded from its file so that a subprocess
    running an older tree (which lacks it) measures with the same yardstick."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "synque_ray" / "proxies" / "base.py"
    spec = importlib.util.spec_from_file_location("_yardstick", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.replicate_spread_ratio


def print_calibration(after: dict, before: dict | None) -> None:
    rows, old_rows = after["proxies"], (before or {}).get("proxies", {})
    columns = list(next(iter(rows.values()))["ratios"])
    print("replicate sd / true sd (1 is right; before → after where measured):\n")
    print("| proxy | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for label, row in rows.items():
        old = old_rows.get(label)
        cells = [(f"{old['ratios'][c]:.2f} → " if old else "") + f"**{row['ratios'][c]:.2f}**" for c in columns]
        print(f"| {label} | " + " | ".join(cells) + " |")
    if after["mauve"]:
        print("\nMAUVE at other sizes, dimensions and shifts (replicate sd / true sd):\n")
        print("| cell | " + ("before | " if before else "") + "after |")
        print("|---|" + ("---|" if before else "") + "---|")
        for cell, ratio in after["mauve"].items():
            old_ratio = (before or {}).get("mauve", {}).get(cell)
            print(f"| {cell} | " + (f"{old_ratio:.2f} | " if before else "") + f"**{ratio:.2f}** |")
    print("\nCPU seconds of one proxy task at 300 × 200 rows, without → with 200 replicates (the ratio):\n")
    print("| proxy | " + ("before | " if before else "") + "after |")
    print("|---|" + ("---|" if before else "") + "---|")
    for label, row in rows.items():
        cells = [old_rows.get(label), row] if before else [row]
        text = [f"{c['cost'][0]:.3f} → {c['cost'][1]:.3f} ({c['cost'][1] / c['cost'][0]:.2f}x)" for c in cells if c]
        print(f"| {label} | " + " | ".join(text) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", nargs="?")
    parser.add_argument("--cost-candidates", type=int, default=8)
    parser.add_argument("--calibration", action="store_true")
    parser.add_argument("--calibration-json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--draws", type=int, default=60)
    parser.add_argument("--slow-draws", type=int, default=25)
    parser.add_argument("--truth-draws", type=int, default=300, help="pairs MAUVE's true sd is read on")
    parser.add_argument("--mauve-cells", action="store_true")
    parser.add_argument("--sentiment", help="the sentiment benchmark's folder: MAUVE on real text too")
    parser.add_argument("--before")
    args = parser.parse_args()
    measure = dict(draws=args.draws, slow_draws=args.slow_draws, truth_draws=args.truth_draws,
                   mauve_cells=args.mauve_cells, sentiment=args.sentiment)
    if args.calibration_json:
        print(json.dumps(calibration_table(spread_ratio=_this_trees_ratio(), **measure)))
        return
    if args.calibration:
        options = ["--draws", str(args.draws), "--slow-draws", str(args.slow_draws), "--truth-draws",
                   str(args.truth_draws), *(["--mauve-cells"] if args.mauve_cells else []),
                   *(["--sentiment", args.sentiment] if args.sentiment else [])]
        before = _before(args.before, options) if args.before else None
        print_calibration(calibration_table(spread_ratio=_this_trees_ratio(), **measure), before)
        return
    if not args.config:
        parser.error("give a CONFIG, or --calibration")
    config = load_config(args.config)
    plain, with_replicates = cost(config, args.cost_candidates)
    print(f"proxy tasks of {args.cost_candidates} candidates x 2 seeds: {plain:.1f} CPU s without replicates, "
          f"{with_replicates:.1f} with {config.ranking.resamples}: +{(with_replicates / plain - 1) * 100:.1f}%\n")
    print(f"| proxy | unseen rank inside the {config.ranking.level:.0%} interval | mean interval width (ranks) |")
    print("|---|---|---|")
    for proxy, (share, width) in sorted(coverage(committed_results(config), config.ranking.level).items()):
        print(f"| {proxy} | {share:.0%} | {width:.1f} |")


if __name__ == "__main__":
    main()
