"""A scoring job end to end: read → embed (Ray Data) → proxies (Ray tasks) → reduce → write.

Per-candidate results are committed as they finish under `results/`, keyed by
everything they depend on, so that a re-run or a resumed run only scores what is
new or changed, and rankings are always recomputed over all candidates.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata

import numpy as np
import polars as pl

from synque_ray.config import JobConfig
from synque_ray.embed import CachedEmbeddings, EmbeddingCache, embed_rowsets
from synque_ray.errors import UserError
from synque_ray.models import resolve_model
from synque_ray.reading import RowSet, list_candidates, read_texts, row_hashes, sample_pool
from synque_ray.reduce import (
    RESULT_SCHEMA,
    ROW_SCHEMA,
    SCORE_SCHEMA,
    add_ensemble,
    incomplete,
    rank,
    row_scores_table,
    split_failures,
)
from synque_ray.scoring import TaskSpec, score_pair
from synque_ray.storage import Store

RESULT_COLUMNS = list(RESULT_SCHEMA)
TASK_RETRIES = 3


@dataclass
class RunSummary:
    output: str
    run_dir: str
    counts: dict
    timings: dict
    rankings: pl.DataFrame
    scores: pl.DataFrame = field(repr=False)
    failed: dict[str, str] = field(default_factory=dict)  # candidate -> why its tasks failed
    failures: list[dict] = field(default_factory=list)  # (candidate, proxy, seed) results that are not numbers
    incomplete: dict[str, list[str]] = field(default_factory=dict)  # candidate -> proxy@seed it lacks


# ---------------------------------------------------------------- reading and checks


def read_real(config: JobConfig) -> dict[int, RowSet]:
    real = config.real
    if real.samples is not None:
        return {
            seed: RowSet(f"real/seed{seed}", read_texts(path, real.text))
            for seed, path in zip(real.seeds, real.samples, strict=True)
        }
    pool = read_texts(real.path, real.text)
    return {
        seed: RowSet(f"real/seed{seed}", sample_pool(pool, real.sample_size, seed, real.path)) for seed in real.seeds
    }


def minimum_rows(config: JobConfig, real: bool = False) -> tuple[int, str]:
    """The fewest rows a candidate (or a real sample) may have, and which proxy needs them."""
    needs = [(1, "scoring")]
    for name in config.embedding_proxies:
        params = config.proxy_params(name)
        needs.append(params.min_real_rows() if real else params.min_rows())
    return max(needs)


def check_size(rowset: RowSet, source: str, config: JobConfig, real: bool = False) -> None:
    least, reason = minimum_rows(config, real)
    if real is False and config.candidates.sample_size is not None:
        least = max(least, 1)
    if rowset.size < least:
        raise UserError(f"{source}: {rowset.size} rows, fewer than the {least} that {reason} needs")
    sample = config.candidates.sample_size
    if not real and sample is not None and sample < least:
        raise UserError(f"candidates.sample_size: {sample} rows, fewer than the {least} that {reason} needs")


def read_candidates(config: JobConfig) -> list[RowSet]:
    rowsets = []
    for dataset_id, path in list_candidates(config.candidates.path):
        rowset = RowSet(dataset_id, path=path, spec=config.candidates.text)
        check_size(rowset, str(path), config)
        rowsets.append(rowset)
    return rowsets


# ---------------------------------------------------------------- keys


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


RESULT_VERSION = 2  # bumped when what a committed result holds changes (2: replicates, errors, row signals)


def result_key(candidate: RowSet, real_hashes: dict[int, str], spec: TaskSpec, model_id: str) -> str:
    return _digest(
        {"candidate": candidate.content_hash, "real": {str(s): h for s, h in real_hashes.items()},
         "params": spec.params, "sample_size": spec.sample_size, "resamples": spec.resamples, "model": model_id,
         "version": RESULT_VERSION}
    )


def task_spec(config: JobConfig) -> TaskSpec:
    """Everything a proxy result depends on besides the embeddings: part of the result key."""
    params = {name: config.proxy_params(name).model_dump() for name in config.embedding_proxies}
    return TaskSpec(params, config.candidates.sample_size, config.ranking.resamples)


# ---------------------------------------------------------------- Ray


def ensure_ray() -> None:
    """Join the cluster named by RAY_ADDRESS (set inside a Ray job), else start a local one."""
    address = os.environ.get("RAY_ADDRESS")
    if not address and "ray" not in sys.modules:
        # A local cluster keeps Ray's default token authentication; saying so is what stops Ray
        # warning about it on every start. Ray reads the mode once, at import: set after that,
        # the cluster it starts would expect a token its own driver does not send.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level="WARNING")
    else:
        ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)


def _versions() -> dict:
    names = ["ray", "sentence-transformers", "torch", "scikit-learn", "xgboost", "kmedoids", "mauve-text", "polars"]
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"python": platform.python_version(), **found}


# ---------------------------------------------------------------- the job


class _ProxyStage:
    """Submits a candidate's Ray tasks as its embeddings arrive; commits each candidate when done.

    Per candidate: one task for what looks at the candidate alone (MDM, near-duplicates)
    and one per (candidate, seed) for what compares it with U_r. Outside the embedding
    stage at most `limit` tasks are in flight, so the object store holds a bounded number
    of candidates whatever the size of the job.
    """

    def __init__(self, config: JobConfig, store: Store, real: dict, spec: TaskSpec, keys: dict,
                 candidates: dict[str, RowSet], progress):
        import ray

        self.ray = ray
        # A task whose worker dies is retried; an exception inside it marks the candidate failed.
        # SPREAD: on a cluster, proxy tasks go to every node rather than crowding the head.
        self.task = ray.remote(
            num_cpus=config.resources.proxy_cpus, max_retries=TASK_RETRIES, scheduling_strategy="SPREAD"
        )(score_pair)
        self.store, self.real, self.spec, self.keys, self.progress = store, real, spec, keys, progress
        self.candidates = candidates
        self.seeds = len(config.real.seeds)
        self.pending: dict = {}  # ObjectRef -> dataset_id
        self.parts: dict[str, list[dict]] = {}
        self.limit = max(4, 2 * int(ray.cluster_resources().get("CPU", 1)))
        self.results: list[tuple[pl.DataFrame, pl.DataFrame]] = []
        self.failed: dict[str, str] = {}

    def submit(self, dataset_id: str, embeddings: CachedEmbeddings, block: bool = True) -> None:
        """Queue the candidate's tasks.

        With `block`, wait while more than `limit` tasks are in flight. While embedding
        runs the driver must not block: the embedding actors may hold every CPU, and
        the proxy tasks could only start once the driver has drained the embeddings.
        """
        if len(self.real) != self.seeds:
            raise RuntimeError("a candidate reached the proxy stage before every real sample")
        self.parts[dataset_id] = []
        for seed, real in [(None, None), *self.real.items()]:
            self.pending[self.task.remote(dataset_id, seed, embeddings, real, self.spec)] = dataset_id
        if block:
            while len(self.pending) > self.limit:
                [done], _ = self.ray.wait(list(self.pending), num_returns=1)
                self._handle(done)
        else:
            done, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
            for ref in done:
                self._handle(ref)

    def _handle(self, done) -> None:
        dataset_id = self.pending.pop(done)
        try:
            part = self.ray.get(done)
        except self.ray.exceptions.RayError as err:
            self.parts.pop(dataset_id, None)
            lines = [line for line in str(err).strip().splitlines() if line.strip()]
            self.failed.setdefault(dataset_id, lines[-1] if lines else type(err).__name__)
            return
        if dataset_id in self.failed:
            return
        parts = self.parts[dataset_id]
        parts.append(part)
        if len(parts) == self.seeds + 1:
            result = _assemble(dataset_id, self.parts.pop(dataset_id), list(self.real),
                               self.candidates[dataset_id].texts)
            _commit(self.store, self.keys[dataset_id], *result)
            self.results.append(result)
            self.progress.update(1)

    def finish(self) -> list[tuple[pl.DataFrame, pl.DataFrame]]:
        while self.pending:
            [done], _ = self.ray.wait(list(self.pending), num_returns=1)
            self._handle(done)
        return self.results


def _assemble(dataset_id: str, parts: list[dict], seeds: list[int], texts: list[str]
              ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One candidate's (results, row signals) from its tasks' outputs. The candidate-only
    results (seed None) hold for every seed: they are repeated under each."""
    alone = next(part for part in parts if part["seed"] is None)
    scores = [row for part in parts if part is not alone for row in part["scores"]]
    scores += [{**row, "seed": seed} for row in alone["scores"] for seed in seeds]
    duplicates = pl.DataFrame(alone["rows"], schema={"row_index": pl.Int64, "duplicate_group": pl.Int64})
    hashes = row_hashes(texts)
    row_parts = []
    for part in parts:
        if part is alone:
            continue
        frame = pl.DataFrame(part["rows"]).with_columns(pl.lit(dataset_id).alias("dataset_id"),
                                                        pl.lit(part["seed"], pl.Int64).alias("seed"))
        frame = frame.with_columns(pl.col("row_index").map_elements(hashes.__getitem__, pl.Utf8).alias("text_hash"))
        row_parts.append(frame.join(duplicates, on="row_index", how="left"))
    rows = pl.concat(row_parts, how="diagonal_relaxed")
    rows = rows.with_columns([pl.lit(None, dtype).alias(c) for c, dtype in ROW_SCHEMA.items() if c not in rows.columns])
    return pl.DataFrame(scores, schema=RESULT_SCHEMA), rows.select(list(ROW_SCHEMA)).cast(ROW_SCHEMA)


def _commit(store: Store, key: str, results: pl.DataFrame, rows: pl.DataFrame) -> None:
    """Row signals first, results last: a results file is the mark of a complete commit."""
    store.write_table(f"results/{key}.rows.parquet", rows.to_arrow())
    store.write_table(f"results/{key}.parquet", results.to_arrow())


def _load_result(store: Store, key: str, expected_rows: int) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """A committed (results, row signals), or None when absent, unreadable or incomplete (then it is redone)."""
    table = store.read_table(f"results/{key}.parquet")
    rows = store.read_table(f"results/{key}.rows.parquet")
    if table is None or rows is None or table.num_rows != expected_rows or table.column_names != RESULT_COLUMNS:
        return None
    if rows.column_names != list(ROW_SCHEMA):
        return None
    return pl.from_arrow(table), pl.from_arrow(rows)


def _embed_and_score(config: JobConfig, real: dict[int, RowSet], to_score: list[RowSet], model_path: str,
                     cache: EmbeddingCache, stage_args: dict, fresh: bool, counts: dict, timings: dict, progress: bool
                     ) -> tuple[list[tuple[pl.DataFrame, pl.DataFrame]], dict[str, str]]:
    """Embed what the cache lacks (reals first), feeding each candidate to the proxy stage as it lands.

    Returns the (results, row signals) of every candidate scored, and the failed ones' reasons."""
    from tqdm import tqdm

    ensure_ray()
    import ray

    seed_of = {rowset.name: seed for seed, rowset in real.items()}
    missing = [rs for rs in [*real.values(), *to_score] if fresh or not cache.has(rs)]
    missing_names = {rs.name for rs in missing}
    cached = [c for c in to_score if c.name not in missing_names]
    counts["rows_embedded"] = sum(rs.size for rs in missing)
    counts["rows_from_cache"] = sum(rs.size for rs in [*real.values(), *to_score]) - counts["rows_embedded"]

    real_cached = {seed: cache.handle(rs) for seed, rs in real.items() if rs.name not in missing_names}
    # One bar: candidates scored, with the rows embedded so far beside it (two bars on one
    # terminal overwrite each other whenever anything else prints).
    bar = tqdm(total=len(to_score), desc="scored", unit="candidate", disable=not progress)
    embedded_rows = [0]

    def rows_done(count: int) -> None:
        embedded_rows[0] += count
        bar.set_postfix_str(f"embedded {embedded_rows[0]}/{counts['rows_embedded']} rows")

    stage = _ProxyStage(config, real=real_cached, progress=bar, **stage_args)

    def submit_cached() -> None:
        for candidate in cached:
            stage.submit(candidate.name, cache.handle(candidate))
        cached.clear()

    if len(real_cached) == len(real):
        submit_cached()  # their proxies can run while the rest is embedded

    def embedded(index: int, vectors: np.ndarray) -> None:
        rowset = missing[index]
        cache.save(rowset, vectors)  # committed before any task reads it
        if rowset.name in seed_of:
            real_cached[seed_of[rowset.name]] = cache.handle(rowset)
        else:
            stage.submit(rowset.name, cache.handle(rowset), block=False)

    started = time.perf_counter()
    resources = config.resources
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) // resources.embed_actors)
    embed_rowsets(missing, model_path, config.embedding.batch_size,
                  resources.embed_actors, resources.embed_gpus, cpus, embedded, rows_done)
    timings["embed"] = time.perf_counter() - started
    submit_cached()
    results = stage.finish()
    bar.close()
    return results, stage.failed


def run_job(config: JobConfig, fresh: bool = False, progress: bool = False) -> RunSummary:
    started = time.perf_counter()
    timings: dict[str, float] = {}

    # Everything the user gave is read and checked before anything is written.
    real = read_real(config)
    for seed, rowset in real.items():
        check_size(rowset, f"real sample for seed {seed}", config, real=True)
    candidates = read_candidates(config)
    model_path, model_id = resolve_model(config.embedding.model, "embedding.model")
    if "lens" in config.proxies:  # LENS (synque_ray/lens): settings checked before any work
        from synque_ray.lens.stage import check_lens

        check_lens(config, candidates)
    timings["read"] = time.perf_counter() - started

    store = Store(config.output)
    cache = EmbeddingCache(Store(config.cache_location), model_id)
    spec = task_spec(config)
    real_hashes = {seed: rowset.content_hash for seed, rowset in real.items()}
    keys = {c.name: result_key(c, real_hashes, spec, model_id) for c in candidates}
    expected_rows = len(spec.params) * len(real)

    results: list[tuple[pl.DataFrame, pl.DataFrame]] = []
    to_score: list[RowSet] = []
    for candidate in candidates:
        reused = None if fresh else _load_result(store, keys[candidate.name], expected_rows)
        (to_score.append(candidate) if reused is None else results.append(reused))
    counts = {
        "candidates_total": len(candidates),
        "candidates_scored": len(to_score),
        "candidates_reused": len(candidates) - len(to_score),
        "rows_embedded": 0,
        "rows_from_cache": 0,
        "lens_rows_judged": 0,
        "lens_rows_unparsed": 0,
    }

    stage_started = time.perf_counter()
    timings["embed"] = 0.0
    failed: dict[str, str] = {}
    scored: list[tuple[pl.DataFrame, pl.DataFrame]] = []
    if to_score and spec.params:
        stage_args = {"store": store, "spec": spec, "keys": keys, "candidates": {c.name: c for c in to_score}}
        scored, failed = _embed_and_score(config, real, to_score, model_path, cache, stage_args, fresh, counts,
                                          timings, progress)
        results += scored
    counts["candidates_failed"] = len(failed)
    counts["candidates_scored"] -= len(failed)
    score_frames = [frame for frame, _ in results]
    lens_report: dict = {}
    if "lens" in config.proxies:  # LENS: its own stage (rubrics, vLLM judges on Ray Data), after the others
        from synque_ray.lens.stage import run_lens

        lens_started = time.perf_counter()
        ensure_ray()
        lens_scores, _, lens_counts = run_lens(config, candidates, real, store, fresh, progress, lens_report)
        counts.update(lens_counts)
        timings["lens"] = time.perf_counter() - lens_started
        score_frames.append(lens_scores.with_columns(
            pl.lit(None, pl.List(pl.Float64)).alias("replicates"), pl.lit(None, pl.Utf8).alias("error"),
            pl.lit(None, pl.Float64).alias("seconds")))
    if not score_frames:
        raise RuntimeError(f"every candidate failed; first error: {next(iter(failed.values()))}")
    timings["proxies"] = time.perf_counter() - stage_started - timings["embed"] - timings.get("lens", 0.0)

    reduce_started = time.perf_counter()
    # Per embedding proxy: compute seconds summed over the tasks this run executed. The
    # tasks run in parallel, so these add up to more than the stage's wall time.
    if scored:
        computed = pl.concat([frame for frame, _ in scored])
        for name, seconds in computed.group_by("proxy").agg(pl.col("seconds").sum()).iter_rows():
            timings[name] = seconds
    usable, failures = split_failures(pl.concat(score_frames, how="vertical_relaxed"))
    with_ensemble = add_ensemble(usable)
    scores = with_ensemble.select(list(SCORE_SCHEMA)).sort(["proxy", "dataset_id", "seed"])
    rankings = rank(with_ensemble, level=config.ranking.level)
    row_scores = row_scores_table([rows for _, rows in results])
    missing = incomplete(usable, list(real))
    counts["results_failed"] = failures.height
    counts["candidates_incomplete"] = len(missing)
    timings["reduce"] = time.perf_counter() - reduce_started
    timings["total"] = time.perf_counter() - started
    counts["driver_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    run_dir = f"runs/{stamp}"
    run_info = {
        "name": config.name,
        "started_at": stamp,
        "config": config.model_dump(),
        "fresh": fresh,
        "versions": _versions(),
        "models": {"embedding": model_id, **lens_report.get("models", {})},
        "content_hashes": {
            "candidates": {c.name: c.content_hash for c in candidates},
            "real": {str(seed): h for seed, h in real_hashes.items()},
        },
        "result_keys": keys,
        "timings": {k: round(v, 4) for k, v in {**timings, **lens_report.get("timings", {})}.items()},
        "counts": counts,
        "failed": failed,
        "failures": failures.to_dicts(),
        "incomplete": missing,
        "command": " ".join(sys.argv),
    }
    # History first, then the latest tables at the top level: each write is atomic.
    for prefix in (f"{run_dir}/", ""):
        store.write_table(f"{prefix}scores.parquet", scores.to_arrow())
        store.write_table(f"{prefix}rankings.parquet", rankings.to_arrow())
        store.write_table(f"{prefix}row_scores.parquet", row_scores.to_arrow())
        store.write_json(f"{prefix}run.json", run_info)
    return RunSummary(store.display(), store.display(run_dir), counts, timings, rankings, scores, failed,
                      failures.to_dicts(), missing)
