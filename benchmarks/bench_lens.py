"""LENS benchmark: the Ray Data stage beside a bare vllm.LLM.generate, in one run.

    python benchmarks/bench_lens.py SENTIMENT_DIR [--candidates 16] [--rows 24] [--points 5]
                                    [--nocache-rows 32] [--block-size N] [--repeats 2]
                                    [--ray-data-llm] [--workdir DIR]

SENTIMENT_DIR is the sentiment benchmark folder (synthetic/*.json, real/sample_seed42.json,
task_performance.csv). The subset: every other candidate in sorted file order
(`--candidates` of them), real sample seed 42, `--rows` rows of each candidate and of U_r
judged per candidate. Phases run one after another, each in its own process, so that only
one engine holds the cores at a time:

1. `stage`: the LENS stage on local Ray (rubrics written once by the bundled model on
   Ray Data, then every row judged on Ray Data by a `JudgeActor`); start-up (actor,
   imports, engine) is the time to the first batch less that batch's own work.
2. `bare`: the same token prompts (same rubrics, same rows, same sampling) through a bare
   `vllm.LLM.generate`, in one call, and again in calls of one Ray Data batch each.
3. optionally (`--ray-data-llm`), the same prompts through `ray.data.llm`'s vLLM processor.
Phases 1-3 are repeated `--repeats` times, alternating, since other processes on a shared
machine change the load from minute to minute. Then:
4. `cache`: on the first `--nocache-rows` rows' prompts, a fresh engine with prefix
   caching on vs a second one with it off.
5. Spearman / Pearson of every LENS variant against the candidates' test F1.

Prints a Markdown summary and writes bench_lens.json into the work dir.
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

REPO = Path(__file__).resolve().parents[1]


def make_config(data: Path, work: Path, n_candidates: int, rows: int, points: int, block_size: int | None) -> Path:
    files = sorted((data / "synthetic").glob("*.json"))[::2][:n_candidates]
    folder = work / "candidates"
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        link = folder / file.name
        if not link.exists():
            link.symlink_to(file.resolve())
    lens = {"scorer": "bundled-smollm2", "rubric_writer": "bundled-smollm2", "rubric_points": points,
            "rubric_sample_size": 40, "task": "sentiment", "max_rows": rows}
    if block_size:
        lens["block_size"] = block_size
    config = {
        "name": "bench-lens", "output": str(work / "out"),
        "real": {"samples": [str(data / "real" / "sample_seed42.json")], "seeds": [42], "text": "headline"},
        "candidates": {"path": str(folder), "text": "headline"},
        "proxies": ["lens"], "lens": lens,
        "resources": {"lens_actors": 1, "lens_gpus": 0},
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


STAGE = r"""
import json, sys, time
import numpy as np, polars as pl, pyarrow as pa
from synque_ray.config import load_config
from synque_ray.pipeline import ensure_ray, read_candidates, read_real
from synque_ray.storage import Store
from synque_ray.lens import stage
from synque_ray.lens.engine import engine_settings, ray_resources
from synque_ray.lens.models import resolve_llm
from synque_ray.lens.score import OUTPUT_SCHEMA, score_rows

config = load_config(sys.argv[1])
real, candidates = read_real(config), read_candidates(config)
store = Store(config.output)
ensure_ray()
t0 = time.perf_counter()
counts = {}
rubrics = stage.prepare_rubrics(config, candidates, real, store, False, counts)
t1 = time.perf_counter()
pairs, prefixes = stage.judging_plan(config.lens.task, candidates, real, rubrics)
blocks = [stage.build_block(c, real, pairs, config.lens.max_rows) for c in candidates]
path, _ = resolve_llm(config.lens.scorer, "lens.scorer")
settings = engine_settings(config, path)
rows = tokens = cached = 0
startup = batch_s = 0.0
first = None
parts = []
t2 = time.perf_counter()
for batch in score_rows(blocks, settings, prefixes, config.lens.max_row_tokens, config.lens.batch_rows,
                        ray_resources(config)):
    if first is None:  # start-up = time to the first batch less that batch's own work
        first = time.perf_counter() - t2 - float(np.sum(batch.column("_batch_s").to_numpy()))
    rows += batch.num_rows
    tokens += int(np.sum(batch.column("prompt_tokens").to_numpy()))
    cached += int(np.sum(batch.column("cached_tokens").to_numpy()))
    startup = max(startup, float(batch.column("_engine_startup_s")[0].as_py()))
    batch_s += float(np.sum(batch.column("_batch_s").to_numpy()))
    parts.append(batch.select(OUTPUT_SCHEMA.names))
t3 = time.perf_counter()
# the scores from these judgements, as the stage computes them
judgements = pl.from_arrow(pa.concat_tables(parts).cast(OUTPUT_SCHEMA))
store.write_table("lens_judgements.parquet", judgements.to_arrow())
store.write_table("lens_scores.parquet", stage.score_table(judgements).to_arrow())
print(json.dumps({"rubric_s": t1 - t0, "rubrics_written": counts["lens_rubrics_written"],
                  "judge_wall_s": t3 - t2, "engine_startup_s": startup, "stage_startup_s": first,
                  "batch_s": batch_s,
                  "rows": rows, "prompts": 4 * rows, "prompt_tokens": tokens, "cached_tokens": cached}))
"""

BARE = r"""
import json, sys, time
from synque_ray.config import load_config
from synque_ray.pipeline import read_candidates, read_real
from synque_ray.storage import Store
from synque_ray.lens import stage
from synque_ray.lens.engine import engine_settings, prepare_process
from synque_ray.lens.models import resolve_llm
from synque_ray.lens.score import PromptBuilder, judge_prompts, label_token_ids

def main():
    config = load_config(sys.argv[1])
    mode, nocache_rows = sys.argv[2], int(sys.argv[3])
    real, candidates = read_real(config), read_candidates(config)
    store = Store(config.output)
    counts = {}
    rubrics = stage.prepare_rubrics(config, candidates, real, store, False, counts)
    assert counts["lens_rubrics_written"] == 0, "the stage phase writes the rubrics first"
    pairs, prefixes = stage.judging_plan(config.lens.task, candidates, real, rubrics)
    blocks = [stage.build_block(c, real, pairs, config.lens.max_rows) for c in candidates]
    path, _ = resolve_llm(config.lens.scorer, "lens.scorer")
    settings = engine_settings(config, path)
    prepare_process(settings)
    from vllm import LLM
    out = {}
    t0 = time.perf_counter()
    llm = LLM(**settings["engine"])
    out["engine_startup_s"] = time.perf_counter() - t0
    tokenizer = llm.get_tokenizer()
    builder = PromptBuilder(tokenizer, prefixes, config.lens.max_row_tokens, config.lens.max_model_len)
    label_ids = label_token_ids(tokenizer)
    rows = [(p, t) for b in blocks for p, t in zip(b.column("pair").to_pylist(), b.column("text").to_pylist())]
    prompts = [ids for p, t in rows for ids in builder.prompts_for(p, t)]
    out["rows"], out["prompts"] = len(rows), len(prompts)
    out["prompt_tokens"] = sum(len(p) for p in prompts)
    if mode == "throughput":
        # one small warm-up call (first-call kernel set-up), so that neither timing below pays it
        # (the stage pays it in its first batch); then an empty prefix cache
        judge_prompts(llm, prompts[:8], label_ids)
        llm.reset_prefix_cache()
        t0 = time.perf_counter()
        answers, retried, outputs = judge_prompts(llm, prompts, label_ids)
        out["generate_s"] = time.perf_counter() - t0
        out["cached_tokens"] = sum(o.num_cached_tokens or 0 for o in outputs)
        # the same prompts again in calls of one Ray Data batch each (the stage's call pattern)
        llm.reset_prefix_cache()
        chunk = 4 * config.lens.batch_rows
        t0 = time.perf_counter()
        for start in range(0, len(prompts), chunk):
            judge_prompts(llm, prompts[start:start + chunk], label_ids)
        out["generate_chunked_s"] = time.perf_counter() - t0
    else:  # prefix caching on (this fresh engine) vs off (a second one), on the first rows' prompts
        subset = prompts[: 4 * nocache_rows]
        out["subset_prompts"] = len(subset)
        out["subset_tokens"] = sum(len(p) for p in subset)
        t0 = time.perf_counter()
        judge_prompts(llm, subset, label_ids)
        out["subset_cache_on_s"] = time.perf_counter() - t0
        del llm
        import gc; gc.collect()
        llm = LLM(**dict(settings["engine"], enable_prefix_caching=False))
        t0 = time.perf_counter()
        judge_prompts(llm, subset, label_ids)
        out["subset_cache_off_s"] = time.perf_counter() - t0
    print(json.dumps(out))

if __name__ == "__main__":
    main()
"""


RAY_DATA_LLM = r"""
import json, sys, time
from synque_ray.config import load_config
from synque_ray.pipeline import ensure_ray, read_candidates, read_real
from synque_ray.storage import Store
from synque_ray.lens import prompts as lens_prompts, stage
from synque_ray.lens.engine import engine_settings
from synque_ray.lens.models import resolve_llm
from synque_ray.lens.score import PromptBuilder, label_token_ids

config = load_config(sys.argv[1])
real, candidates = read_real(config), read_candidates(config)
rubrics = stage.prepare_rubrics(config, candidates, real, Store(config.output), False, {})
pairs, prefixes = stage.judging_plan(config.lens.task, candidates, real, rubrics)
blocks = [stage.build_block(c, real, pairs, config.lens.max_rows) for c in candidates]
path, _ = resolve_llm(config.lens.scorer, "lens.scorer")
settings = engine_settings(config, path)
from transformers import AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(path)
builder = PromptBuilder(tokenizer, prefixes, config.lens.max_row_tokens, config.lens.max_model_len)
label_ids = label_token_ids(tokenizer)
token_prompts = [ids for b in blocks for p, t in zip(b.column("pair").to_pylist(), b.column("text").to_pylist())
                 for ids in builder.prompts_for(p, t)]
ensure_ray()
import ray
from ray.data.llm import build_processor, vLLMEngineProcessorConfig
engine = {k: v for k, v in settings["engine"].items() if k != "model"}
processor = build_processor(
    vLLMEngineProcessorConfig(
        model_source=path, engine_kwargs=engine, batch_size=4 * config.lens.batch_rows, concurrency=1,
        placement_group_config={"bundles": [{"CPU": 1}]}, log_engine_metrics=False,
        chat_template_stage=False, tokenize_stage=False, detokenize_stage=False,
    ),
    preprocess=lambda row: {"tokenized_prompt": row["ids"], "sampling_params": {
        "temperature": 0.0, "max_tokens": 1, "logprobs": 5, "logprob_token_ids": label_ids,
        "structured_outputs": {"choice": list(lens_prompts.ANSWERS)}}},
    postprocess=lambda row: {"text": row["generated_text"]},
)
t0 = time.perf_counter()
rows = processor(ray.data.from_items([{"ids": ids} for ids in token_prompts])).take_all()
wall = time.perf_counter() - t0
parsed = sum(lens_prompts.parse_judgement(r["text"]) is not None for r in rows)
print(json.dumps({"prompts": len(rows), "parsed": parsed, "wall_incl_startup_s": wall}))
"""


def run_phase(code: str, *args: str, log: Path) -> dict:
    with open(log, "w") as handle:
        result = subprocess.run([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=handle,
                                text=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"phase failed; see {log}")
    for line in reversed(result.stdout.splitlines()):  # vLLM may log to stdout after the result
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit(f"phase printed no result; see {log}")


def correlations(out_dir: Path, performance: Path) -> dict:
    import polars as pl
    from scipy.stats import pearsonr, spearmanr

    scores = pl.read_parquet(out_dir / "lens_scores.parquet")
    truth = pl.read_csv(performance).rename({"dataset_name": "dataset_id"})
    joined = scores.join(truth, on="dataset_id")
    result = {}
    for column in ("lens_label", "lens_expected", "lens_biased_label", "lens_biased_expected"):
        x, y = joined[column].to_numpy(), joined["test_f1"].to_numpy()
        constant = float(x.std()) == 0.0
        result[column] = {
            "spearman": None if constant else float(spearmanr(x, y).statistic),
            "pearson": None if constant else float(pearsonr(x, y).statistic),
            "distinct_values": int(len(set(x.round(12).tolist()))),
        }
    result["n_candidates"] = joined.height
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--points", type=int, default=5)
    parser.add_argument("--nocache-rows", type=int, default=32)
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--ray-data-llm", action="store_true",
                        help="also run the same prompts through ray.data.llm's vLLM processor")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-lens-"))
    work.mkdir(parents=True, exist_ok=True)
    config = make_config(args.data.resolve(), work, args.candidates, args.rows, args.points, args.block_size)
    load = os.getloadavg()
    started = time.perf_counter()
    repeats = []
    for number in range(args.repeats):  # alternated, so that load from other processes hits both alike
        entry = {"load_before": os.getloadavg()[0]}
        entry["stage"] = run_phase(STAGE, str(config), log=work / f"stage-{number}.log")
        entry["bare"] = run_phase(BARE, str(config), "throughput", "0", log=work / f"bare-{number}.log")
        if args.ray_data_llm:
            entry["ray_data_llm"] = run_phase(RAY_DATA_LLM, str(config), log=work / f"ray_data_llm-{number}.log")
        entry["load_after"] = os.getloadavg()[0]
        repeats.append(entry)
    cache = run_phase(BARE, str(config), "cache", str(args.nocache_rows), log=work / "cache.log")
    quality = correlations(work / "out", args.data / "task_performance.csv")
    result = {"config": str(config), "repeats": repeats, "cache": cache, "quality": quality,
              "load_average_at_start": load, "load_average_at_end": os.getloadavg(),
              "wall_s": time.perf_counter() - started}
    (work / "bench_lens.json").write_text(json.dumps(result, indent=2))
    print(f"workdir: {work}")
    for number, entry in enumerate(repeats):
        print(f"\n### repeat {number + 1} (load average {entry['load_before']:.1f} before, "
              f"{entry['load_after']:.1f} after)")
        report(entry["stage"], entry["bare"], entry.get("ray_data_llm"), config)
    print()
    print(f"prefix caching, bare generate of {cache['subset_prompts']} prompts ({cache['subset_tokens']} tokens): "
          f"on {cache['subset_cache_on_s']:.1f} s, off {cache['subset_cache_off_s']:.1f} s, "
          f"speed-up {cache['subset_cache_off_s'] / cache['subset_cache_on_s']:.1f}x")
    first = repeats[0]["stage"]
    print(f"rubrics: {first['rubrics_written']} written in {first['rubric_s']:.1f} s (incl. engine start-up)")
    print()
    print(f"| LENS variant ({quality['n_candidates']} candidates, seed 42) | Spearman | Pearson | distinct scores |")
    print("|---|---|---|---|")
    for name, values in quality.items():
        if name == "n_candidates":
            continue
        cell = lambda v: "n/a (constant)" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"| {name} | {cell(values['spearman'])} | {cell(values['pearson'])} | {values['distinct_values']} |")
    print(f"\nload average at start {load[0]:.1f}, at end {os.getloadavg()[0]:.1f}; total {result['wall_s']:.0f} s")


def report(stage: dict, bare: dict, rdllm: dict | None, config: Path) -> None:
    steady = stage["judge_wall_s"] - stage["stage_startup_s"]
    print("| measure | LENS stage (Ray Data) | bare LLM.generate | ratio |")
    print("|---|---|---|---|")
    print(f"| prompts (rows × 4) | {stage['prompts']} | {bare['prompts']} | |")
    print(f"| prompt tokens | {stage['prompt_tokens']} | {bare['prompt_tokens']} | |")
    print(f"| engine start-up (vllm.LLM constructor), s | {stage['engine_startup_s']:.1f} | "
          f"{bare['engine_startup_s']:.1f} | |")
    print(f"| stage start-up (actor, imports, engine; to first batch), s | {stage['stage_startup_s']:.1f} | | |")
    print(f"| judging wall, s (excl. start-up) | {steady:.1f} | {bare['generate_s']:.1f} | |")
    stage_rows, bare_rows = stage["rows"] / steady, bare["rows"] / bare["generate_s"]
    chunked_rows = bare["rows"] / bare["generate_chunked_s"]
    print(f"| rows/s | {stage_rows:.2f} | {bare_rows:.2f} | {stage_rows / bare_rows:.2f} |")
    print(f"| prompt tokens/s | {stage['prompt_tokens'] / steady:.0f} | "
          f"{bare['prompt_tokens'] / bare['generate_s']:.0f} | {stage_rows / bare_rows:.2f} |")
    print(f"| rows/s, bare in calls of {4 * yaml.safe_load(config.read_text())['lens'].get('batch_rows', 64)} "
          f"prompts (the stage's batches) | {stage_rows:.2f} | {chunked_rows:.2f} | {stage_rows / chunked_rows:.2f} |")
    print(f"| cached prompt tokens | {stage['cached_tokens'] / stage['prompt_tokens']:.0%} | "
          f"{bare['cached_tokens'] / bare['prompt_tokens']:.0%} | |")
    print(f"| judging wall incl. start-up, s | {stage['judge_wall_s']:.1f} | "
          f"{bare['generate_s'] + bare['engine_startup_s']:.1f} | "
          f"{(bare['generate_s'] + bare['engine_startup_s']) / stage['judge_wall_s']:.2f} |")
    if rdllm:
        print(f"| ray.data.llm processor, same prompts: wall incl. start-up, s | {rdllm['wall_incl_startup_s']:.1f} "
              f"({rdllm['parsed']}/{rdllm['prompts']} parsed) | | |")


if __name__ == "__main__":
    main()
