"""The LENS stage of a job: rubrics → judgements on Ray Data → debiased scores.

`run_lens` is what the pipeline calls, with Ray already initialised. Everything it
commits is keyed by what it depends on, so that a re-run reuses it:

- `rubrics/<candidate>/seed<seed>.json`: the rubric of one (candidate, seed), keyed
  by the candidate's and U_r's content, the writer, and the rubric settings;
- `lens/results/<key>.parquet`: one candidate's judgements over all seeds, keyed by
  the same plus the scorer, its settings and the digests of the rubrics used;
- `lens_judgements.parquet` (all candidates) and `lens_scores.parquet` (every
  variant of the score: label or expected judgements, debiased or biased).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import defaultdict

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from synque_ray.config import JobConfig
from synque_ray.errors import UserError
from synque_ray.lens import debias, prompts
from synque_ray.lens.engine import check_kv_memory, engine_settings, ray_resources
from synque_ray.lens.models import resolve_llm
from synque_ray.lens.rubric import (
    OpenAIWriter,
    Rubric,
    RubricRequest,
    approximate_tokens,
    fit_rows,
    load_rubric_file,
    prompt_budget,
    sample_rows,
    write_rubrics,
    write_rubrics_on_ray,
)
from synque_ray.lens.score import EXPECTED_COLUMNS, JUDGEMENT_COLUMNS, OUTPUT_SCHEMA, prefix_key, score_rows
from synque_ray.reading import RowSet
from synque_ray.storage import Store

SCORE_SCHEMA = {"dataset_id": pl.Utf8, "proxy": pl.Utf8, "seed": pl.Int64, "raw": pl.Float64, "score": pl.Float64}


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def judged_rows(count: int, max_rows: int | None, seed: int) -> list[int]:
    """Indices of the rows judged: all of them, or `max_rows` drawn reproducibly per seed."""
    if max_rows is None or count <= max_rows:
        return list(range(count))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(count, size=max_rows, replace=False))


def _check_resources(config: JobConfig) -> None:
    resources = config.resources
    if resources.tensor_parallel > 1 and resources.lens_gpus < resources.tensor_parallel:
        raise UserError(
            f"resources.tensor_parallel is {resources.tensor_parallel} but resources.lens_gpus is "
            f"{resources.lens_gpus:g}: each LENS actor needs one GPU per tensor-parallel rank"
        )


class _Writer:
    """Where rubrics come from: a file, an OpenAI-compatible endpoint, or a vLLM engine on Ray."""

    def __init__(self, config: JobConfig, candidates: list[RowSet]):
        lens = config.lens
        self.file_rubrics: dict[str, Rubric] | None = None
        self.endpoint: dict | None = None
        if lens.rubric_file:
            self.file_rubrics = load_rubric_file(lens.rubric_file, [c.name for c in candidates])
            self.model_id = "file:" + _digest({k: v.to_json() for k, v in self.file_rubrics.items()})
        elif isinstance(lens.rubric_writer, dict):
            self.endpoint = dict(lens.rubric_writer)
            self.model_id = f"{self.endpoint['model']}@{self.endpoint['openai_base_url']}"
        else:
            self.path, self.model_id = resolve_llm(lens.rubric_writer, "lens.rubric_writer")


def _rubric_key(config: JobConfig, candidate: RowSet, real_hash: str, writer_id: str) -> str:
    lens = config.lens
    return _digest({
        "candidate": candidate.content_hash, "real": real_hash, "writer": writer_id, "points": lens.rubric_points,
        "sample": lens.rubric_sample_size, "task": lens.task, "prompts": prompts.PROMPT_VERSION,
        "retries": lens.rubric_retries,
    })


def prepare_rubrics(config: JobConfig, candidates: list[RowSet], real: dict[int, RowSet], store: Store,
                    fresh: bool, counts: dict) -> dict[tuple[str, int], Rubric]:
    """The rubric of every (candidate, seed): reused from `rubrics/`, taken from the rubric file,
    or written (all missing ones in one go) and saved."""
    lens = config.lens
    writer = _Writer(config, candidates)
    rubrics: dict[tuple[str, int], Rubric] = {}
    needed: list[tuple[RowSet, int, str]] = []
    reused = 0
    for candidate in candidates:
        for seed, rowset in real.items():
            key = _rubric_key(config, candidate, rowset.content_hash, writer.model_id)
            path = f"rubrics/{candidate.name}/seed{seed}.json"
            saved = None if fresh else store.read_json(path)
            if isinstance(saved, dict) and saved.get("key") == key:
                try:
                    rubrics[(candidate.name, seed)] = Rubric.from_json(saved, store.display(path))
                    reused += 1
                    continue
                except UserError:
                    pass  # a damaged file: write it again
            if writer.file_rubrics is not None:
                rubrics[(candidate.name, seed)] = writer.file_rubrics[candidate.name]
                _save(store, path, key, candidate.name, seed, writer.file_rubrics[candidate.name])
                continue
            needed.append((candidate, seed, key))
    counts["lens_rubrics_reused"] = reused
    counts["lens_rubrics_written"] = len(needed)
    if not needed:
        return rubrics

    def samples(candidate: RowSet, seed: int) -> tuple[list[str], list[str]]:
        return (sample_rows(real[seed].texts, lens.rubric_sample_size, seed),
                sample_rows(candidate.texts, lens.rubric_sample_size, seed))

    if writer.endpoint is not None:
        requests = []
        budget = int(writer.endpoint.get("context_tokens", 8192))
        for candidate, seed, _ in needed:
            real_rows, synthetic_rows = samples(candidate, seed)
            real_rows, synthetic_rows = fit_rows(real_rows, synthetic_rows, prompt_budget(budget, lens.rubric_points),
                                                 approximate_tokens)
            requests.append(RubricRequest(candidate.name, seed, real_rows, synthetic_rows))
        written = write_rubrics(OpenAIWriter(writer.endpoint), requests, lens.task, lens.rubric_points,
                                lens.rubric_retries)
        results = dict(enumerate(written))
    else:
        rows = []
        for pair, (candidate, seed, _) in enumerate(needed):
            real_rows, synthetic_rows = samples(candidate, seed)
            rows.append({"pair": pair, "dataset_id": candidate.name, "seed": seed,
                         "real_rows": json.dumps(real_rows), "synthetic_rows": json.dumps(synthetic_rows)})
        settings = engine_settings(config, writer.path)
        results = write_rubrics_on_ray(settings, writer.model_id, rows, lens.task, lens.rubric_points,
                                       lens.rubric_retries, ray_resources(config))
    for pair, (candidate, seed, key) in enumerate(needed):
        result = results.get(pair, f"lens: no rubric came back for candidate '{candidate.name}' seed {seed}")
        if isinstance(result, str):
            raise UserError(result)
        result.source = writer.model_id
        _save(store, f"rubrics/{candidate.name}/seed{seed}.json", key, candidate.name, seed, result)
        rubrics[(candidate.name, seed)] = result
    return rubrics


def _save(store: Store, path: str, key: str, dataset_id: str, seed: int, rubric: Rubric) -> None:
    store.write_json(path, {"key": key, "dataset_id": dataset_id, "seed": seed, **rubric.to_json()})


def _prefixes(task: str, rubric: Rubric, pair: int) -> dict[str, str]:
    return {
        prefix_key(pair, "csr"): prompts.judge_prefix(task, rubric.commonalities, rubric.synthetic_vs_real, False),
        prefix_key(pair, "crs"): prompts.judge_prefix(task, rubric.commonalities, rubric.real_vs_synthetic, True),
    }


def judging_plan(task: str, candidates: list[RowSet], real: dict[int, RowSet],
                 rubrics: dict[tuple[str, int], Rubric]) -> tuple[dict[tuple[str, int], int], dict[str, str]]:
    """A number per (candidate, seed) pair, and the two rubric prefixes of each pair."""
    pairs: dict[tuple[str, int], int] = {}
    prefixes: dict[str, str] = {}
    for candidate in candidates:
        for seed in real:
            pairs[(candidate.name, seed)] = len(pairs)
            prefixes.update(_prefixes(task, rubrics[(candidate.name, seed)], pairs[(candidate.name, seed)]))
    return pairs, prefixes


def _result_key(config: JobConfig, candidate: RowSet, real: dict[int, RowSet], rubrics: dict, scorer_id: str) -> str:
    lens = config.lens
    return _digest({
        "candidate": candidate.content_hash, "scorer": scorer_id, "prompts": prompts.PROMPT_VERSION,
        "real": {str(s): r.content_hash for s, r in real.items()},
        "rubrics": {str(s): rubrics[(candidate.name, s)].digest for s in real},
        "max_rows": lens.max_rows, "max_row_tokens": lens.max_row_tokens, "max_model_len": lens.max_model_len,
        "task": lens.task, "dtype": lens.dtype,
    })


def _expected_rows(candidate: RowSet, real: dict[int, RowSet], max_rows: int | None) -> int:
    return sum(len(judged_rows(candidate.size, max_rows, s)) + len(judged_rows(r.size, max_rows, s))
               for s, r in real.items())


def _load(store: Store, key: str, expected: int) -> pa.Table | None:
    table = store.read_table(f"lens/results/{key}.parquet")
    if table is None or table.num_rows != expected or table.schema != OUTPUT_SCHEMA:
        return None
    return table


def build_block(candidate: RowSet, real: dict[int, RowSet], pairs: dict[tuple[str, int], int],
                max_rows: int | None) -> pa.Table:
    texts = candidate.texts
    parts = []
    for seed, rowset in real.items():
        pair = pairs[(candidate.name, seed)]
        for role, source in (("real", rowset.texts), ("synthetic", texts)):
            rows = judged_rows(len(source), max_rows, seed)
            parts.append(pa.table({
                "pair": pa.array([pair] * len(rows), pa.int64()),
                "dataset_id": pa.array([candidate.name] * len(rows), pa.string()),
                "seed": pa.array([seed] * len(rows), pa.int64()),
                "row_id": pa.array(rows, pa.int64()),
                "role": pa.array([role] * len(rows), pa.string()),
                "text": pa.array([source[i] for i in rows], pa.string()),
            }))
    return pa.concat_tables(parts)


def _check_prompt_room(scorer_path: str, prefixes: dict[str, str], pairs: dict[tuple[str, int], int],
                       max_model_len: int) -> None:
    """A rubric too long for the scorer's context is the user's to fix: say so before judging.

    Checked with the scorer's own tokenizer when it is a local folder (hub ids are
    left to the engine)."""
    from pathlib import Path

    if not Path(scorer_path).is_dir():
        return
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(scorer_path)
    room = max_model_len - 96  # the chat template, the question and a few tokens of the row
    names = {str(number): pair for pair, number in pairs.items()}
    for key, prefix in prefixes.items():
        length = len(tokenizer.encode(prefix, add_special_tokens=False))
        if length > room:
            (dataset_id, seed) = names[key.split(":")[0]]
            raise UserError(
                f"lens.max_model_len: the rubric of candidate '{dataset_id}' seed {seed} takes {length} tokens, "
                f"more than the {max_model_len} of lens.max_model_len leave for a row; raise it or lower "
                "lens.rubric_points"
            )


def score_table(judgements: pl.DataFrame) -> pl.DataFrame:
    """Every LENS variant per (candidate, seed): label/expected judgements × debiased/biased."""
    records = []
    for (dataset_id, seed), group in judgements.group_by(["dataset_id", "seed"], maintain_order=True):
        complete = group.filter(~pl.col("unparsed"))
        synthetic = complete.filter(pl.col("role") == "synthetic")
        real = complete.filter(pl.col("role") == "real")
        record = {"dataset_id": dataset_id, "seed": seed, "rows_judged": group.height,
                  "rows_unparsed": group.height - complete.height}
        for variant, columns in (("label", JUDGEMENT_COLUMNS), ("expected", EXPECTED_COLUMNS)):
            tables = [t.select([pl.col(c).alias(g) for c, g in zip(columns, debias.COLUMNS, strict=True)])
                      for t in (synthetic, real)]
            for debiased in (True, False):
                name = f"lens_{variant}" if debiased else f"lens_biased_{variant}"
                try:
                    record[name] = debias.lens_score(tables[0], tables[1], debiased=debiased)
                except ValueError:  # no complete real row: no baselines
                    record[name] = float("nan")
        records.append(record)
    return pl.DataFrame(records, schema={
        "dataset_id": pl.Utf8, "seed": pl.Int64, "rows_judged": pl.Int64, "rows_unparsed": pl.Int64,
        "lens_label": pl.Float64, "lens_biased_label": pl.Float64,
        "lens_expected": pl.Float64, "lens_biased_expected": pl.Float64,
    })


def run_lens(config: JobConfig, candidates: list[RowSet], real: dict[int, RowSet], store: Store,
             fresh: bool = False, progress: bool = False, report: dict | None = None,
             ) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Score every candidate with LENS; Ray must be initialised.

    Returns (score rows: dataset_id, proxy='lens', seed, raw, score — debiased, with
    the judgement kind of `lens.judgement`), the judgements table, and counts.
    `report`, when given, receives the model ids and the stage's timings.
    """
    from tqdm import tqdm

    _check_resources(config)
    lens = config.lens
    started = time.perf_counter()
    scorer_path, scorer_id = resolve_llm(lens.scorer, "lens.scorer")
    counts: dict = {}
    rubrics = prepare_rubrics(config, candidates, real, store, fresh, counts)
    rubric_seconds = time.perf_counter() - started

    judge_started = time.perf_counter()
    pairs, prefixes = judging_plan(lens.task, candidates, real, rubrics)

    tables: dict[str, pa.Table] = {}
    keys, expected, to_judge = {}, {}, []
    for candidate in candidates:
        keys[candidate.name] = _result_key(config, candidate, real, rubrics, scorer_id)
        expected[candidate.name] = _expected_rows(candidate, real, lens.max_rows)
        saved = None if fresh else _load(store, keys[candidate.name], expected[candidate.name])
        if saved is None:
            to_judge.append(candidate)
        else:
            tables[candidate.name] = saved
    counts["lens_rows_reused"] = sum(t.num_rows for t in tables.values())
    judged = unparsed = 0
    if to_judge:
        _check_prompt_room(scorer_path, prefixes, pairs, lens.max_model_len)
        settings = engine_settings(config, scorer_path)
        needed = {k for c in to_judge for s in real for k in (prefix_key(pairs[(c.name, s)], "csr"),
                                                               prefix_key(pairs[(c.name, s)], "crs"))}
        blocks = [build_block(c, real, pairs, lens.max_rows) for c in to_judge]
        total = sum(b.num_rows for b in blocks)
        bar = tqdm(total=total, desc="LENS judging rows", unit="row", disable=not progress)
        parts: dict[str, list[pa.Table]] = defaultdict(list)
        arrived: dict[str, int] = defaultdict(int)
        for batch in score_rows(blocks, settings, {k: prefixes[k] for k in needed}, lens.max_row_tokens,
                                lens.batch_rows, ray_resources(config)):
            del blocks[:]  # the driver no longer needs the texts
            batch = batch.select(OUTPUT_SCHEMA.names)
            for dataset_id in batch.column("dataset_id").unique().to_pylist():
                part = batch.filter(pc.equal(batch.column("dataset_id"), dataset_id))
                parts[dataset_id].append(part)
                arrived[dataset_id] += part.num_rows
                if arrived[dataset_id] == expected[dataset_id]:
                    table = pa.concat_tables(parts.pop(dataset_id)).cast(OUTPUT_SCHEMA)
                    store.write_table(f"lens/results/{keys[dataset_id]}.parquet", table)
                    tables[dataset_id] = table
            judged += batch.num_rows
            unparsed += int(pc.sum(batch.column("unparsed")).as_py() or 0)
            bar.update(batch.num_rows)
        bar.close()
        missing = [c.name for c in to_judge if c.name not in tables]
        if missing:
            raise RuntimeError(f"LENS: judgements incomplete for {', '.join(missing)}")
    counts["lens_rows_judged"] = judged
    counts["lens_rows_unparsed"] = unparsed

    ordered = [tables[c.name] for c in candidates]
    judgements = pl.from_arrow(pa.concat_tables(ordered)) if ordered else pl.DataFrame(schema=OUTPUT_SCHEMA)
    store.write_table("lens_judgements.parquet", judgements.to_arrow())
    variants = score_table(judgements)
    store.write_table("lens_scores.parquet", variants.to_arrow())
    column = f"lens_{lens.judgement}"
    usable = variants.filter(pl.col(column).is_not_nan())
    counts["lens_pairs_unscored"] = variants.height - usable.height
    scores = usable.select(
        "dataset_id", pl.lit("lens").alias("proxy"), "seed", pl.col(column).alias("raw"), pl.col(column).alias("score")
    ).cast(SCORE_SCHEMA)
    if report is not None:
        report.setdefault("models", {}).update({"lens_scorer": scorer_id,
                                                "lens_rubric_writer": _writer_id(config, candidates)})
        report.setdefault("timings", {}).update({"lens_rubrics": rubric_seconds,
                                                 "lens_judge": time.perf_counter() - judge_started})
    return scores, judgements, counts


def _writer_id(config: JobConfig, candidates: list[RowSet]) -> str:
    writer = config.lens.rubric_writer
    if config.lens.rubric_file:
        return f"file:{config.lens.rubric_file}"
    if isinstance(writer, dict):
        return f"{writer['model']}@{writer['openai_base_url']}"
    return resolve_llm(writer, "lens.rubric_writer")[1]


def check_lens(config: JobConfig, candidates: list[RowSet]) -> None:
    """The user's LENS settings, checked before any work: resources, model paths, rubric file."""
    _check_resources(config)
    scorer_path, _ = resolve_llm(config.lens.scorer, "lens.scorer")
    _Writer(config, candidates)
    engine = engine_settings(config, scorer_path)["engine"]
    if "kv_cache_memory_bytes" in engine and not os.environ.get("RAY_ADDRESS"):  # local: this machine runs it
        check_kv_memory(engine["kv_cache_memory_bytes"])
