"""embedding.precision int8 against fp32: speed side by side, and what it does to rankings.

    python benchmarks/bench_precision.py speed CONFIG [--candidates N] [--repeat R] [--workdir DIR]
    python benchmarks/bench_precision.py agreement FP32_OUTPUT INT8_OUTPUT --performance CSV \
        --id-column dataset_name --metric test_f1

`speed` alternates, R times over the same rows (the config's U_r samples and its
first N candidates), each phase its own process: a bare fp32
`SentenceTransformer.encode`, a bare int8 `OnnxEncoder.encode`, and `synque score`
cold (fresh output and embedding cache) at int8 and at fp32. The engine's figure is
its embedding stage (actor start-up, model load and the driver's collection
included); the bare ones exclude imports and model load, so the ratio is the
engine's disadvantage. The machine's int8 export is made before the first phase (once
per machine; its cost is printed on its own). Repeating and alternating the phases is
what makes the ratios usable on a machine shared with other work; the 1-minute load
average after each phase is recorded.

`agreement` reads two finished runs of one config that differ only in precision:
per proxy and seed, Spearman between the candidates' fp32 and int8 scores; and per
proxy, the mean over seeds of the Spearman with measured performance (what
`synque evaluate` reports) for each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import yaml
from scipy import stats

sys.path.insert(0, str(Path(__file__).parent))
from bench_embedding import BARE, PRINT_TIMES, READ_ROWS, run_engine  # the fp32 phase and the engine runner, shared

BARE_INT8 = READ_ROWS + r"""
from synque_ray.onnx_embed import OnnxEncoder
path, _ = resolve_model(config.embedding.model, "embedding.model")
t1 = time.perf_counter()
encoder = OnnxEncoder(path, threads=int(sys.argv[2]))
t2 = time.perf_counter()
encoder.encode(texts, config.embedding.batch_size)
t3 = time.perf_counter()
""" + PRINT_TIMES

EXPORT = r"""
import sys, time
from pathlib import Path
from synque_ray.models import resolve_model
from synque_ray.onnx_embed import export_path, exported_model
path = Path(resolve_model("bundled-minilm", "m")[0])
existed = export_path(path).is_file()
t = time.perf_counter()
exported_model(path)
print(f"int8 export: {'already on this machine' if existed else f'made in {time.perf_counter() - t:.1f} s'}")
"""


def bare(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, *args], check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load_avg_1min_after"] = os.getloadavg()[0]
    return result


def speed(args) -> None:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="synque-precision-"))
    workdir.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(Path(args.config).read_text())
    raw.pop("cache_dir", None)
    folder = Path(raw["candidates"]["path"])
    if args.candidates:  # the first N candidates, through a folder of links
        picked = workdir / "candidates"
        picked.mkdir(exist_ok=True)
        for source in sorted(p for p in folder.iterdir() if p.is_file())[:args.candidates]:
            link = picked / source.name
            if not link.exists():
                link.symlink_to(source.resolve())
        raw["candidates"]["path"] = str(picked)
    print(subprocess.run([sys.executable, "-c", EXPORT], check=True, capture_output=True, text=True).stdout.strip())
    threads = str(os.cpu_count())  # the bare phases use every core, as the one-actor engine does
    rounds = []
    for repeat in range(args.repeat):
        phases: dict = {"bare_fp32": None, "bare_int8": None}
        base = workdir / f"round{repeat}"
        for precision in ("int8", "fp32"):
            config = {**raw, "output": str(base / precision),
                      "embedding": {**raw.get("embedding", {}), "precision": precision}}
            path = base / f"{precision}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(config))
            if phases["bare_fp32"] is None:
                phases["bare_fp32"] = bare(BARE, str(path))
                phases["bare_int8"] = bare(BARE_INT8, str(path), threads)
            phases[f"engine_{precision}"] = run_engine(path)
        rows = phases["bare_fp32"]["rows"]
        for precision in ("int8", "fp32"):
            assert phases[f"engine_{precision}"]["counts"]["rows_embedded"] == rows
        reference = rows / phases["bare_fp32"]["encode_s"]
        summary = {
            "rows": rows,
            "rows_per_s": {
                "bare_fp32_encode": reference,
                "bare_int8_encode": rows / phases["bare_int8"]["encode_s"],
                "engine_int8_embed_stage": rows / phases["engine_int8"]["timings"]["embed"],
                "engine_fp32_embed_stage": rows / phases["engine_fp32"]["timings"]["embed"],
            },
            "peak_rss_mb": {"bare_fp32": phases["bare_fp32"]["peak_rss_mb"],
                            "bare_int8": phases["bare_int8"]["peak_rss_mb"]},
            "load_avg_1min_after": {name: phase["load_avg_1min_after"] for name, phase in phases.items()},
        }
        summary["ratio_to_bare_fp32"] = {name: value / reference for name, value in summary["rows_per_s"].items()}
        rounds.append({"summary": summary, "phases": phases})
        print(json.dumps(summary, indent=2), flush=True)
    (workdir / "bench-precision.json").write_text(json.dumps(rounds, indent=2))


def agreement(args) -> None:
    from synque_ray.evaluate import evaluate_scores, read_performance

    performance = read_performance(args.performance, args.id_column, args.metric)
    runs = {name: {table: pl.read_parquet(Path(folder, f"{table}.parquet")) for table in ("scores", "rankings")}
            for name, folder in (("fp32", args.fp32), ("int8", args.int8))}
    joined = runs["fp32"]["scores"].join(runs["int8"]["scores"], on=["dataset_id", "proxy", "seed"],
                                         suffix="_int8")
    evaluations = {name: evaluate_scores(run["scores"], run["rankings"], performance)["proxies"]
                   for name, run in runs.items()}
    table = {}
    for proxy in joined["proxy"].unique(maintain_order=True):
        part = joined.filter(pl.col("proxy") == proxy)
        per_seed = {int(seed): float(stats.spearmanr(group["score"], group["score_int8"]).statistic)
                    for (seed,), group in part.group_by(["seed"], maintain_order=True)}
        table[proxy] = {"agreement_per_seed": per_seed, "agreement_min": min(per_seed.values()),
                        "spearman_f1_fp32": evaluations["fp32"][proxy]["spearman"],
                        "spearman_f1_int8": evaluations["int8"][proxy]["spearman"]}
        table[proxy]["f1_drop"] = table[proxy]["spearman_f1_fp32"] - table[proxy]["spearman_f1_int8"]
    print(json.dumps(table, indent=2))
    print("\n| proxy | agreement with fp32, per seed | min | Spearman with F1, fp32 → int8 |")
    print("|---|---|---|---|")
    for proxy, row in table.items():
        seeds = ", ".join(f"{v:.3f}" for v in row["agreement_per_seed"].values())
        print(f"| {proxy} | {seeds} | {row['agreement_min']:.3f} | "
              f"{row['spearman_f1_fp32']:.3f} → {row['spearman_f1_int8']:.3f} |")
    assert np.isfinite([row["agreement_min"] for row in table.values()]).all()


def cached(args) -> None:
    """Agreement on the candidates already embedded at both precisions in a config's cache, for the
    cheap proxies (MDM, MMD², density, coverage), computed here without the engine: an indication
    while the full run (which `agreement` reads) is not done."""
    from synque_ray.config import load_config
    from synque_ray.embed import EmbeddingCache, resolve_embedding
    from synque_ray.pipeline import read_candidates, read_real
    from synque_ray.proxies.coverage import coverage, density
    from synque_ray.proxies.mdm import mdm
    from synque_ray.proxies.mmd import mmd_squared
    from synque_ray.storage import Store

    config = load_config(args.config)
    caches = {}
    for precision in ("fp32", "int8"):
        raw = config.model_dump()
        raw["embedding"]["precision"] = precision
        caches[precision] = EmbeddingCache(Store(config.cache_location),
                                           resolve_embedding(type(config).model_validate(raw)).id)
    real = {seed: {p: c.load(rs) for p, c in caches.items()} for seed, rs in read_real(config).items()}
    candidates = [rs for rs in read_candidates(config) if all(c.has(rs) for c in caches.values())]
    alone = {"mdm": lambda s, r: mdm(s, k=3)}
    paired = {"mmd": lambda s, r: -mmd_squared(s, r, estimator="unbiased"),
              "density": density, "coverage": coverage}
    scores: dict = {}
    for rs in candidates:
        vectors = {p: c.load(rs) for p, c in caches.items()}
        for seed, reals in real.items():
            for name, proxy in {**alone, **paired}.items():
                for p in caches:
                    scores.setdefault((name, seed, p), []).append(proxy(vectors[p], reals[p]))
    print(f"{len(candidates)} candidates embedded at both precisions")
    for name in {**alone, **paired}:
        rho = [stats.spearmanr(scores[(name, seed, "fp32")], scores[(name, seed, "int8")]).statistic
               for seed in real]
        print(f"| {name} | {', '.join(f'{r:.3f}' for r in rho)} | {min(rho):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    timing = commands.add_parser("speed")
    timing.add_argument("config")
    timing.add_argument("--candidates", type=int, default=None)
    timing.add_argument("--repeat", type=int, default=2)
    timing.add_argument("--workdir", default=None)
    timing.set_defaults(run=speed)
    compare = commands.add_parser("agreement")
    compare.add_argument("fp32")
    compare.add_argument("int8")
    compare.add_argument("--performance", required=True)
    compare.add_argument("--id-column", required=True)
    compare.add_argument("--metric", required=True)
    compare.set_defaults(run=agreement)
    partial = commands.add_parser("cached")
    partial.add_argument("config")
    partial.set_defaults(run=cached)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
