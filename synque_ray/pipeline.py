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
from synque_ray.proxies import min_rows_for_holdout
from synque_ray.reading import RowSet, list_candidates, read_texts, sample_pool
from synque_ray.reduce import SCORE_SCHEMA, add_ensemble, rank
from synque_ray.scoring import proxy_params, score_pair
from synque_ray.storage import Store

RESULT_COLUMNS = [*SCORE_SCHEMA, "seconds"]
TASK_RETRIES = 3


@dataclass
class RunSummary:
    output: str
    run_dir: str
    counts: dict
    timings: dict
    rankings: pl.DataFrame
    scores: pl.DataFrame = field(repr=False)
    failed: dict[str, str] = field(default_factory=dict)


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


def minimum_rows(config: JobConfig) -> tuple[int, str]:
    """The fewest rows a candidate or real sample may have, and which proxy needs them."""
    needs = [(1, "scoring")]
    if "mdm" in config.proxies:
        needs.append((config.mdm.k, f"mdm.k = {config.mdm.k}"))
    if "pad" in config.proxies:
        needs.append((min_rows_for_holdout(config.pad.holdout), f"PAD's {config.pad.holdout:g} holdout"))
    return max(needs)


def check_size(rowset: RowSet, source: str, config: JobConfig, real: bool = False) -> None:
    least, reason = minimum_rows(config)
    if real and reason.startswith("mdm"):  # MDM looks at the candidate only
        least, reason = (min_rows_for_holdout(config.pad.holdout), "PAD's holdout") if "pad" in config.proxies else (1, "")
    if rowset.size < least:
        raise UserError(f"{source}: {rowset.size} rows, fewer than the {least} that {reason} needs")


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


def result_key(candidate: RowSet, real_hashes: dict[int, str], params: dict, model_id: str) -> str:
    return _digest(
        {"candidate": candidate.content_hash, "real": {str(s): h for s, h in real_hashes.items()},
         "params": params, "model": model_id}
    )


# ---------------------------------------------------------------- Ray


def ensure_ray() -> None:
    """Join the cluster named by RAY_ADDRESS (set inside a Ray job), else start a local one."""
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
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
    """Submits (candidate, seed) Ray tasks as embeddings arrive; commits each candidate when done.

    Outside the embedding stage at most `limit` tasks are in flight, so the object
    store holds a bounded number of candidates whatever the size of the job.
    """

    def __init__(self, config: JobConfig, store: Store, real: dict, params: dict, keys: dict, progress):
        import ray

        self.ray = ray
        # A task whose worker dies is retried; an exception inside it marks the candidate failed.
        # SPREAD: on a cluster, proxy tasks go to every node rather than crowding the head.
        self.task = ray.remote(
            num_cpus=config.resources.proxy_cpus, max_retries=TASK_RETRIES, scheduling_strategy="SPREAD"
        )(score_pair)
        self.store, self.real, self.params, self.keys, self.progress = store, real, params, keys, progress
        self.seeds = len(config.real.seeds)
        self.pending: dict = {}  # ObjectRef -> dataset_id
        self.rows: dict[str, list] = {}
        self.limit = max(4, 2 * int(ray.cluster_resources().get("CPU", 1)))
        self.results: list[pl.DataFrame] = []
        self.failed: dict[str, str] = {}

    def submit(self, dataset_id: str, embeddings: CachedEmbeddings, block: bool = True) -> None:
        """Queue the candidate's (candidate, seed) tasks.

        With `block`, wait while more than `limit` tasks are in flight. While embedding
        runs the driver must not block: the embedding actors may hold every CPU, and
        the proxy tasks could only start once the driver has drained the embeddings.
        """
        if len(self.real) != self.seeds:
            raise RuntimeError("a candidate reached the proxy stage before every real sample")
        self.rows[dataset_id] = []
        for seed, real in self.real.items():
            self.pending[self.task.remote(dataset_id, seed, embeddings, real, self.params)] = dataset_id
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
            new_rows = self.ray.get(done)
        except self.ray.exceptions.RayError as err:
            self.rows.pop(dataset_id, None)
            lines = [line for line in str(err).strip().splitlines() if line.strip()]
            self.failed.setdefault(dataset_id, lines[-1] if lines else type(err).__name__)
            return
        if dataset_id in self.failed:
            return
        rows = self.rows[dataset_id]
        rows.extend(new_rows)
        if len(rows) == self.seeds * len(self.params):
            frame = pl.DataFrame(self.rows.pop(dataset_id), schema={**SCORE_SCHEMA, "seconds": pl.Float64})
            self.store.write_table(f"results/{self.keys[dataset_id]}.parquet", frame.to_arrow())
            self.results.append(frame)
            self.progress.update(1)

    def finish(self) -> list[pl.DataFrame]:
        while self.pending:
            [done], _ = self.ray.wait(list(self.pending), num_returns=1)
            self._handle(done)
        return self.results


def _load_result(store: Store, key: str, expected_rows: int) -> pl.DataFrame | None:
    """A committed result, or None when absent, unreadable or incomplete (then it is redone)."""
    table = store.read_table(f"results/{key}.parquet")
    if table is None or table.num_rows != expected_rows or table.column_names != RESULT_COLUMNS:
        return None
    return pl.from_arrow(table)


def _embed_and_score(config: JobConfig, real: dict[int, RowSet], to_score: list[RowSet], model_path: str,
                     cache: EmbeddingCache, stage_args: dict, fresh: bool, counts: dict, timings: dict, progress: bool) -> list[pl.DataFrame]:
    """Embed what the cache lacks (reals first), feeding each candidate to the proxy stage as it lands."""
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
    scored_bar = tqdm(total=len(to_score), desc="scored", unit="candidate", disable=not progress, position=1)
    stage = _ProxyStage(config, real=real_cached, progress=scored_bar, **stage_args)

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
    rows_bar = tqdm(total=counts["rows_embedded"], desc="embedded", unit="row", disable=not progress or not missing,
                    position=0)
    resources = config.resources
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) // resources.embed_actors)
    embed_rowsets(missing, model_path, config.embedding.batch_size,
                  resources.embed_actors, resources.embed_gpus, cpus, embedded, rows_bar.update)
    rows_bar.close()
    timings["embed"] = time.perf_counter() - started
    submit_cached()
    results = stage.finish()
    scored_bar.close()
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
    params = proxy_params(config)
    real_hashes = {seed: rowset.content_hash for seed, rowset in real.items()}
    keys = {c.name: result_key(c, real_hashes, params, model_id) for c in candidates}
    expected_rows = len(params) * len(real)

    results: list[pl.DataFrame] = []
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
    scored: list[pl.DataFrame] = []
    if to_score and params:
        stage_args = {"store": store, "params": params, "keys": keys}
        scored, failed = _embed_and_score(config, real, to_score, model_path, cache, stage_args, fresh, counts,
                                          timings, progress)
        results += scored
    counts["candidates_failed"] = len(failed)
    counts["candidates_scored"] -= len(failed)
    lens_report: dict = {}
    if "lens" in config.proxies:  # LENS: its own stage (rubrics, vLLM judges on Ray Data), after the others
        from synque_ray.lens.stage import run_lens

        lens_started = time.perf_counter()
        ensure_ray()
        lens_scores, _, lens_counts = run_lens(config, candidates, real, store, fresh, progress, lens_report)
        counts.update(lens_counts)
        timings["lens"] = time.perf_counter() - lens_started
        results.append(lens_scores)
    if not results:
        raise RuntimeError(f"every candidate failed; first error: {next(iter(failed.values()))}")
    timings["proxies"] = time.perf_counter() - stage_started - timings["embed"] - timings.get("lens", 0.0)

    reduce_started = time.perf_counter()
    # Per embedding proxy: compute seconds summed over the tasks this run executed. The
    # tasks run in parallel, so these add up to more than the stage's wall time.
    if scored:
        for name, seconds in pl.concat(scored).group_by("proxy").agg(pl.col("seconds").sum()).iter_rows():
            timings[name] = seconds
    all_rows = pl.concat([frame.select(list(SCORE_SCHEMA)) for frame in results])
    scores = add_ensemble(all_rows).sort(["proxy", "dataset_id", "seed"])
    rankings = rank(scores)
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
        "command": " ".join(sys.argv),
    }
    # History first, then the latest tables at the top level: each write is atomic.
    for prefix in (f"{run_dir}/", ""):
        store.write_table(f"{prefix}scores.parquet", scores.to_arrow())
        store.write_table(f"{prefix}rankings.parquet", rankings.to_arrow())
        store.write_json(f"{prefix}run.json", run_info)
    return RunSummary(store.display(), store.display(run_dir), counts, timings, rankings, scores, failed)
