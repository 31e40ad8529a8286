"""LENS benchmark: the Ray Data stage beside a bare vllm.LLM.generate, in one run.

    python benchmarks/bench_lens.py SENTIMENT_DIR [--candidates 16] [--rows 24] [--points 5]
                                    [--nocache-rows 32] [--block-size N] [--repeats 2]
                                    [--ray-data-llm] [--workdir DIR]

SENTIMENT_DIR is the sentiment benchmark folder (synthetic/*.json, real/sample_seed42.json,
task_performance.csv). The subset: every other candidate in sorted file order
(`--candidates` of them), real sample seed 42, `--rows` rows of each candidate and of U_r
judged per candidate. Phases run one after another, each in its own process, so that only
one engine holds the cores at a time:

1. `stage`: `Lens.run` on local Ray (rubrics written once by the bundled model on Ray
   Data, then every row judged on Ray Data by a `JudgeActor`).
2. `bare`: the same token prompts (same rubrics, same rows, same sampling) through a bare
   `vllm.LLM.generate`, in one call, and again in calls of one Ray Data batch each; its
   engine start-up is measured apart. The stage's steady throughput is measured after
   its first batch (`lens_first_batch` in its timings), which pays the actor's start-up.
Each phase is a function of this module (`stage_phase`, `bare_phase`,
`ray_data_llm_phase`) using synque_ray's public API (`synque_ray.lens.Lens`, the
judging plan and prompt builder); `--phase NAME CONFIG ...` runs one and prints JSON.
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


def _job(config_path: str):
    """(config, real, candidates, lens) of a bench config: the public API only."""
    from synque_ray.config import load_config
    from synque_ray.lens import Lens
    from synque_ray.pipeline import read_candidates, read_real

    config = load_config(config_path)
    return config, read_real(config), read_candidates(config), Lens(config.lens, config.resources)


def stage_phase(config_path: str) -> dict:
    """The LENS stage on local Ray: rubrics (written by the first repeat, then reused), every row judged."""
    import shutil

    from synque_ray.raycluster import ensure_ray
    from synque_ray.storage import Store

    config, real, candidates, lens = _job(config_path)
    shutil.rmtree(Path(config.output) / "results", ignore_errors=True)  # judge again; rubrics are kept
    ensure_ray()
    started = time.perf_counter()
    report = lens.run(candidates, real, Store(config.output))
    wall = time.perf_counter() - started
    Store(config.output).write_table("lens_scores.parquet", report.variants.to_arrow())
    judged = report.judgements
    return {"rubric_s": report.timings["lens_rubrics"], "rubrics_written": report.counts["lens_rubrics_written"],
            "judge_wall_s": report.timings["lens_judge"], "stage_wall_s": wall, "rows": judged.height,
            "first_batch_s": report.timings["lens_first_batch"],
            "first_batch_rows": report.counts["lens_first_batch_rows"],
            "prompts": 4 * judged.height, "prompt_tokens": int(judged["prompt_tokens"].sum()),
            "cached_tokens": int(judged["cached_tokens"].sum())}


def _token_prompts(config_path: str, tokenizer_of) -> tuple[object, list[list[int]], int, list]:
    """(the engine or tokenizer, every judging prompt as token ids, rows, label ids): the stage's prompts.
    `tokenizer_of(lens, rows)` gives (the engine or tokenizer, its tokenizer) for judging `rows` rows."""
    from synque_ray.lens.plan import build_block, judging_plan
    from synque_ray.lens.judge import PromptBuilder, label_token_ids
    from synque_ray.storage import Store

    config, real, candidates, lens = _job(config_path)
    rubrics = lens.rubrics(candidates, real, Store(config.output))
    assert rubrics.written == 0, "the stage phase writes the rubrics first"
    pairs, prefixes = judging_plan(config.lens.task, candidates, list(real), rubrics.by_pair)
    blocks = [build_block(c, real, pairs, config.lens.max_rows) for c in candidates]
    owner, tokenizer = tokenizer_of(lens, sum(block.num_rows for block in blocks))
    builder = PromptBuilder(tokenizer, prefixes, config.lens.max_row_tokens, config.lens.max_model_len)
    rows = [(p, t) for b in blocks for p, t in zip(b.column("pair").to_pylist(), b.column("text").to_pylist())]
    return owner, [ids for p, t in rows for ids in builder.prompts_for(p, t)], len(rows), label_token_ids(tokenizer)


def bare_phase(config_path: str, mode: str, nocache_rows: int) -> dict:
    """The same token prompts through a bare `vllm.LLM.generate` (mode throughput), or prefix
    caching on vs off on the first rows' prompts (mode cache)."""
    from synque_ray.lens.engine import prepare_process
    from synque_ray.lens.judge import judge_prompts

    out, engine = {}, {}

    def build(lens, rows):
        settings = lens.judge_settings(rows)  # what the stage's engine gets for these rows (its core inline or not)
        prepare_process(settings)
        from vllm import LLM

        engine.update(settings["engine"])
        started = time.perf_counter()
        llm = LLM(**engine)
        out["engine_startup_s"] = time.perf_counter() - started
        return llm, llm.get_tokenizer()

    llm, prompts, out["rows"], label_ids = _token_prompts(config_path, build)
    out["prompts"], out["prompt_tokens"] = len(prompts), sum(len(p) for p in prompts)
    if mode == "cache":
        return {**out, **_cache_on_off(llm, engine, prompts[: 4 * nocache_rows], label_ids)}
    # one small warm-up call (first-call kernel set-up), so that neither timing below pays it
    judge_prompts(llm, prompts[:8], label_ids)
    llm.reset_prefix_cache()
    started = time.perf_counter()
    _, _, outputs = judge_prompts(llm, prompts, label_ids)
    out["generate_s"] = time.perf_counter() - started
    out["cached_tokens"] = sum(o.num_cached_tokens or 0 for o in outputs)
    # the same prompts again in calls of one Ray Data batch each (the stage's call pattern)
    llm.reset_prefix_cache()
    chunk = 4 * yaml.safe_load(Path(config_path).read_text())["lens"].get("batch_rows", 64)
    started = time.perf_counter()
    for start in range(0, len(prompts), chunk):
        judge_prompts(llm, prompts[start:start + chunk], label_ids)
    out["generate_chunked_s"] = time.perf_counter() - started
    return out


def _cache_on_off(llm, engine: dict, subset: list[list[int]], label_ids) -> dict:
    import gc

    from synque_ray.lens.judge import judge_prompts

    out = {"subset_prompts": len(subset), "subset_tokens": sum(len(p) for p in subset)}
    started = time.perf_counter()
    judge_prompts(llm, subset, label_ids)
    out["subset_cache_on_s"] = time.perf_counter() - started
    del llm
    gc.collect()
    from vllm import LLM

    llm = LLM(**dict(engine, enable_prefix_caching=False))
    started = time.perf_counter()
    judge_prompts(llm, subset, label_ids)
    out["subset_cache_off_s"] = time.perf_counter() - started
    return out


def ray_data_llm_phase(config_path: str) -> dict:
    """The same prompts through `ray.data.llm`'s vLLM processor."""
    from synque_ray.lens import prompts as lens_prompts
    from synque_ray.raycluster import ensure_ray

    def tokenizer_only(lens, rows):
        from transformers import AutoTokenizer

        return lens, AutoTokenizer.from_pretrained(lens.scorer_path)

    lens, token_prompts, _, label_ids = _token_prompts(config_path, tokenizer_only)
    ensure_ray()
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    engine = {k: v for k, v in lens.settings["engine"].items() if k != "model"}
    processor = build_processor(
        vLLMEngineProcessorConfig(
            model_source=lens.scorer_path, engine_kwargs=engine, batch_size=4 * lens.config.batch_rows,
            concurrency=1, placement_group_config={"bundles": [{"CPU": 1}]}, log_engine_metrics=False,
            chat_template_stage=False, tokenize_stage=False, detokenize_stage=False,
        ),
        preprocess=lambda row: {"tokenized_prompt": row["ids"], "sampling_params": {
            "temperature": 0.0, "max_tokens": 1, "logprobs": 5, "logprob_token_ids": label_ids,
            "structured_outputs": {"choice": list(lens_prompts.ANSWERS)}}},
        postprocess=lambda row: {"text": row["generated_text"]},
    )
    started = time.perf_counter()
    rows = processor(ray.data.from_items([{"ids": ids} for ids in token_prompts])).take_all()
    wall = time.perf_counter() - started
    parsed = sum(lens_prompts.parse_judgement(r["text"]) is not None for r in rows)
    return {"prompts": len(rows), "parsed": parsed, "wall_incl_startup_s": wall}


PHASES = {"stage": stage_phase, "bare": bare_phase, "ray_data_llm": ray_data_llm_phase}


def run_phase(phase: str, *args: str, log: Path) -> dict:
    """One phase in its own process (only one engine holds the cores at a time)."""
    with open(log, "w") as handle:
        result = subprocess.run([sys.executable, __file__, "--phase", phase, *args], stdout=subprocess.PIPE,
                                stderr=handle, text=True, cwd=REPO)
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
    if len(sys.argv) > 2 and sys.argv[1] == "--phase":  # a phase in its own process: its result as JSON
        args = [int(a) if a.isdigit() else a for a in sys.argv[3:]]
        print(json.dumps(PHASES[sys.argv[2]](*args)))
        return
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
        entry["stage"] = run_phase("stage", str(config), log=work / f"stage-{number}.log")
        entry["bare"] = run_phase("bare", str(config), "throughput", "0", log=work / f"bare-{number}.log")
        if args.ray_data_llm:
            entry["ray_data_llm"] = run_phase("ray_data_llm", str(config), log=work / f"ray_data_llm-{number}.log")
        entry["load_after"] = os.getloadavg()[0]
        repeats.append(entry)
    cache = run_phase("bare", str(config), "cache", str(args.nocache_rows), log=work / "cache.log")
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

    def cell(v: float | None) -> str:
        return "n/a (constant)" if v is None else f"{v:.2f}"

    for name, values in quality.items():
        if name == "n_candidates":
            continue
        print(f"| {name} | {cell(values['spearman'])} | {cell(values['pearson'])} | {values['distinct_values']} |")
    print(f"\nload average at start {load[0]:.1f}, at end {os.getloadavg()[0]:.1f}; total {result['wall_s']:.0f} s")


def report(stage: dict, bare: dict, rdllm: dict | None, config: Path) -> None:
    """The stage's steady state is what follows its first batch (the first pays the actor's start-up:
    Ray worker, imports, engine); the bare engine's start-up is measured apart."""
    steady_s = stage["judge_wall_s"] - stage["first_batch_s"]
    stage_rows = (stage["rows"] - stage["first_batch_rows"]) / steady_s
    bare_rows, chunked_rows = bare["rows"] / bare["generate_s"], bare["rows"] / bare["generate_chunked_s"]
    bare_wall = bare["generate_s"] + bare["engine_startup_s"]
    print("| measure | LENS stage (Ray Data) | bare LLM.generate | ratio |")
    print("|---|---|---|---|")
    print(f"| prompts (rows × 4) | {stage['prompts']} | {bare['prompts']} | |")
    print(f"| prompt tokens | {stage['prompt_tokens']} | {bare['prompt_tokens']} | |")
    print(f"| engine start-up (vllm.LLM constructor), s | | {bare['engine_startup_s']:.1f} | |")
    print(f"| stage: first batch ({stage['first_batch_rows']} rows; actor, imports, engine and its work), s | "
          f"{stage['first_batch_s']:.1f} | | |")
    print(f"| rows/s (stage: after its first batch) | {stage_rows:.2f} | {bare_rows:.2f} | "
          f"{stage_rows / bare_rows:.2f} |")
    print(f"| rows/s, bare in calls of one stage batch | {stage_rows:.2f} | {chunked_rows:.2f} | "
          f"{stage_rows / chunked_rows:.2f} |")
    print(f"| cached prompt tokens | {stage['cached_tokens'] / stage['prompt_tokens']:.0%} | "
          f"{bare['cached_tokens'] / bare['prompt_tokens']:.0%} | |")
    print(f"| judging wall incl. start-up, s | {stage['judge_wall_s']:.1f} | {bare_wall:.1f} | "
          f"{bare_wall / stage['judge_wall_s']:.2f} |")
    if rdllm:
        print(f"| ray.data.llm processor, same prompts: wall incl. start-up, s | {rdllm['wall_incl_startup_s']:.1f} "
              f"({rdllm['parsed']}/{rdllm['prompts']} parsed) | | |")


if __name__ == "__main__":
    main()
