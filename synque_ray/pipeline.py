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
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata

import numpy as np
import polars as pl

from synque_ray.config import JobConfig
from synque_ray.embed import EmbeddingCache, embed_rowsets
from synque_ray.errors import UserError
from synque_ray.models import resolve_model
from synque_ray.proxies import min_rows_for_holdout
from synque_ray.reading import RowSet, list_candidates, read_texts, sample_pool
from synque_ray.reduce import SCORE_SCHEMA, add_ensemble, rank
from synque_ray.scoring import proxy_params, score_pair
from synque_ray.storage import Store

RESULT_COLUMNS = [*SCORE_SCHEMA, "seconds"]


@dataclass
class RunSummary:
    output: str
    run_dir: str
    counts: dict
    timings: dict
    rankings: pl.DataFrame
    scores: pl.DataFrame = field(repr=False)


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
    if len(rowset.texts) < least:
        raise UserError(f"{source}: {len(rowset.texts)} rows, fewer than the {least} that {reason} needs")


def read_candidates(config: JobConfig) -> list[RowSet]:
    rowsets = []
    for dataset_id, path in list_candidates(config.candidates.path):
        rowset = RowSet(dataset_id, read_texts(path, config.candidates.text))
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
    """Submits (candidate, seed) tasks as embeddings become available; commits per candidate."""

    def __init__(self, config, store, real_refs, params, keys, progress):
        import ray

        self.ray = ray
        self.task = ray.remote(num_cpus=config.resources.proxy_cpus, max_retries=3)(score_pair)
        self.store, self.real_refs, self.params, self.keys = store, real_refs, params, keys
        self.pending: dict = {}  # ObjectRef -> dataset_id
        self.waiting: dict[str, int] = {}
        self.rows: dict[str, list] = {}
        self.limit = max(4, 2 * int(ray.cluster_resources().get("CPU", 1)))
        self.progress = progress
        self.results: list[pl.DataFrame] = []

    def submit(self, dataset_id: str, embeddings: np.ndarray) -> None:
        ref = self.ray.put(embeddings)
        self.waiting[dataset_id] = len(self.real_refs)
        self.rows[dataset_id] = []
        for seed, real_ref in self.real_refs.items():
            self.pending[self.task.remote(dataset_id, seed, ref, real_ref, self.params)] = dataset_id
        while len(self.pending) > self.limit:
            self._collect(1)

    def _collect(self, count: int) -> None:
        done, _ = self.ray.wait(list(self.pending), num_returns=count)
        for ref in done:
            dataset_id = self.pending.pop(ref)
            self.rows[dataset_id].extend(self.ray.get(ref))
            self.waiting[dataset_id] -= 1
            if self.waiting[dataset_id] == 0:
                frame = pl.DataFrame(self.rows.pop(dataset_id), schema={**SCORE_SCHEMA, "seconds": pl.Float64})
                self.store.write_table(f"results/{self.keys[dataset_id]}.parquet", frame.to_arrow())
                self.results.append(frame)
                self.progress.update(1)

    def finish(self) -> list[pl.DataFrame]:
        while self.pending:
            self._collect(1)
        return self.results


def _load_result(store: Store, key: str, expected_rows: int) -> pl.DataFrame | None:
    table = store.read_table(f"results/{key}.parquet")
    if table is None or table.num_rows != expected_rows or table.column_names != RESULT_COLUMNS:
        return None
    return pl.from_arrow(table)


def run_job(config: JobConfig, fresh: bool = False, progress: bool = False) -> RunSummary:
    from tqdm import tqdm

    started = time.perf_counter()
    timings: dict[str, float] = {}

    # Everything the user gave is read and checked before anything is written.
    real = read_real(config)
    for seed, rowset in real.items():
        check_size(rowset, f"real sample for seed {seed}", config, real=True)
    candidates = read_candidates(config)
    model_path, model_id = resolve_model(config.embedding.model, "embedding.model")
    if "lens" in config.proxies:
        raise UserError("proxies: 'lens' is not available in this version yet; remove it from the list")
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
        if reused is None:
            to_score.append(candidate)
        else:
            results.append(reused)
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
    if to_score:
        ensure_ray()
        import ray

        real_refs: dict[int, object] = {}
        bar = tqdm(total=len(to_score), desc="scoring candidates", unit="cand", disable=not progress)
        stage = None
        cached: list[tuple[RowSet, np.ndarray]] = []
        missing: list[RowSet] = []
        for seed, rowset in real.items():
            vectors = None if fresh else cache.load(rowset)
            (missing.append(rowset) if vectors is None else cached.append((rowset, vectors)))
        for candidate in to_score:
            vectors = None if fresh else cache.load(candidate)
            if vectors is None:
                missing.append(candidate)
            else:
                cached.append((candidate, vectors))
                del vectors
        counts["rows_from_cache"] = sum(len(rs.texts) for rs, _ in cached)
        counts["rows_embedded"] = sum(len(rs.texts) for rs in missing)
        real_names = {rs.name: seed for seed, rs in real.items()}

        def deliver(rowset: RowSet, vectors: np.ndarray) -> None:
            nonlocal stage
            if rowset.name in real_names:
                real_refs[real_names[rowset.name]] = ray.put(vectors)
                return
            if stage is None:
                stage = _ProxyStage(config, store, real_refs, params, keys, bar)
            stage.submit(rowset.name, vectors)

        # Real samples first: every proxy task needs them.
        cached.sort(key=lambda item: item[0].name not in real_names)
        missing.sort(key=lambda rs: rs.name not in real_names)
        for rowset, vectors in [item for item in cached if item[0].name in real_names]:
            deliver(rowset, vectors)
        embed_started = time.perf_counter()

        def embedded(index: int, vectors: np.ndarray) -> None:
            cache.save(missing[index], vectors)
            if len(real_refs) == len(real) or missing[index].name in real_names:
                deliver(missing[index], vectors)
            else:  # a candidate can only arrive after the reals, since they are sorted first
                raise RuntimeError("embedding order broken: candidate before real samples")

        resources = config.resources
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) // resources.embed_actors)
        embed_rowsets(
            missing, model_path, config.embedding.batch_size, resources.embed_actors,
            resources.embed_gpus, min(cpus, 4) if resources.embed_gpus else cpus, embedded,
        )
        timings["embed"] = time.perf_counter() - embed_started
        for rowset, vectors in [item for item in cached if item[0].name not in real_names]:
            deliver(rowset, vectors)
        cached.clear()
        results.extend(stage.finish() if stage else [])
        bar.close()
    else:
        timings["embed"] = 0.0
    timings["proxies"] = time.perf_counter() - stage_started - timings["embed"]

    reduce_started = time.perf_counter()
    all_rows = pl.concat(results) if results else pl.DataFrame(schema={**SCORE_SCHEMA, "seconds": pl.Float64})
    for name in params:
        timings[f"{name}_task_seconds"] = float(
            pl.concat([r for r in results if r is not None]).filter(pl.col("proxy") == name)["seconds"].sum()
        ) if results else 0.0
    scores = add_ensemble(all_rows.select(list(SCORE_SCHEMA))).sort(["proxy", "dataset_id", "seed"])
    rankings = rank(scores)
    timings["reduce"] = time.perf_counter() - reduce_started
    timings["total"] = time.perf_counter() - started

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    run_dir = f"runs/{stamp}"
    run_info = {
        "name": config.name,
        "started_at": stamp,
        "config": config.model_dump(),
        "fresh": fresh,
        "versions": _versions(),
        "models": {"embedding": model_id},
        "content_hashes": {
            "candidates": {c.name: c.content_hash for c in candidates},
            "real": {str(seed): h for seed, h in real_hashes.items()},
        },
        "result_keys": keys,
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "counts": counts,
        "command": " ".join(sys.argv),
    }
    # History first, then the latest tables at the top level: each write is atomic.
    for prefix in (f"{run_dir}/", ""):
        store.write_table(f"{prefix}scores.parquet", scores.to_arrow())
        store.write_table(f"{prefix}rankings.parquet", rankings.to_arrow())
        store.write_json(f"{prefix}run.json", run_info)
    return RunSummary(store.display(), store.display(run_dir), counts, timings, rankings, scores)
