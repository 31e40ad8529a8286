"""The fluency proxy as a stage (`synque_ray.fluency` holds the math).

First every U_r sample's scored rows get their token NLL (Ray tasks of `batch_size`
rows each, all at once), because every candidate is compared with them; then one Ray
task per candidate scores its seeded row sample and computes its result for every seed.
A text's token NLL and order gain depend only on the text, the model and the length cap,
so each distinct text is scored once (with its shuffle): results are cached by text hash
under `<cache_dir>/fluency/<model key>/` and reused by later seeds, candidates and runs.
"""

from __future__ import annotations

import math
import time

import numpy as np
import polars as pl

from synque_ray.fluency import (GARBLED, ORDER_GAIN, TOKEN_NLL, FluencyParams, fluency_score, gain_threshold, has_text,
                                resolve_model, row_fluency)
from synque_ray.reading import RowSet, row_hashes, seeded_indices
from synque_ray.stage.base import Commit, Committed, Fail, Job, StageOutcome, StageSpec, digest, real_hashes
from synque_ray.stage.tasks import TaskStage
from synque_ray.storage import Store

RESULT_VERSION = 2  # bumped when what a committed fluency result holds changes
NLL_VERSION = 2  # bumped when how a text's token NLL or order gain is computed changes (invalidates the cache)
# A committed candidate's scored rows: its row signals, and what the NLL cache keeps of them.
ROW_COLUMNS = {"dataset_id": pl.Utf8, "seed": pl.Int64, "row_index": pl.Int64, "text_hash": pl.Utf8,
               TOKEN_NLL.name: TOKEN_NLL.dtype, "token_count": pl.Int64, ORDER_GAIN.name: ORDER_GAIN.dtype,
               GARBLED.name: GARBLED.dtype}
CACHE_SCHEMA = {"text_hash": pl.Utf8, "token_nll": pl.Float64, "token_count": pl.Int64, "order_gain": pl.Float64}
Scored = tuple[np.ndarray, np.ndarray, np.ndarray]  # per row: token NLL, token count, order gain


class NllCache:
    """Token NLL, token count and order gain by text hash for one model and length cap: parquet
    parts of CACHE_SCHEMA, each written atomically under a name of its content, so concurrent runs
    never clash and a part is whole or absent. A gain is NaN (null) for a row without an order."""

    def __init__(self, store: Store):
        self.store = store
        self.known: dict[str, tuple[float, int, float]] = {}
        for name, is_folder in store.listing() or []:
            table = None if is_folder or not name.endswith(".parquet") else store.read_table(name)
            if table is not None and table.column_names == list(CACHE_SCHEMA):
                for text_hash, nll, count, gain in zip(*(table.column(c).to_pylist() for c in CACHE_SCHEMA),
                                                       strict=True):
                    self.known[text_hash] = (nll, count, math.nan if gain is None else gain)

    def save(self, hashes: list[str], nll: np.ndarray, counts: np.ndarray, gain: np.ndarray) -> int:
        """Keep the rows with a finite NLL not known yet; returns how many were new."""
        new = {h: (float(v), int(c), float(g)) for h, v, c, g in zip(hashes, nll, counts, gain, strict=True)
               if h not in self.known and math.isfinite(v)}
        if new:
            table = pl.DataFrame({"text_hash": list(new), "token_nll": [v for v, _, _ in new.values()],
                                  "token_count": [c for _, c, _ in new.values()],
                                  "order_gain": [g if math.isfinite(g) else None for _, _, g in new.values()]},
                                 schema=CACHE_SCHEMA)
            self.store.write_table(f"{digest(sorted(new))}.parquet", table.to_arrow())
            self.known.update(new)
        return len(new)

    def lookup(self, hashes: list[str]) -> Scored:
        """(token NLL, token count, order gain) per hash; NaN, 0 and NaN where unknown."""
        rows = [self.known.get(h, (math.nan, 0, math.nan)) for h in hashes]
        return (np.array([v for v, _, _ in rows], dtype=np.float64), np.array([c for _, c, _ in rows], dtype=np.int64),
                np.array([g for _, _, g in rows], dtype=np.float64))


def score_texts(model_path: str, texts: list[str], params: FluencyParams, threads: int) -> Scored:
    """One Ray task: `row_fluency` of some U_r rows."""
    return row_fluency(model_path, texts, params, threads)


def score_candidate(dataset_id: str, model_path: str, texts: list[str], indices: list[int],
                    known: Scored, real: dict[int, np.ndarray], gain_below: float, params: FluencyParams,
                    resamples: int, threads: int) -> tuple[list[dict], dict]:
    """One Ray task: (a result row per seed, the scored rows for every seed).

    texts: the candidate's scored rows (row numbers `indices`); known: their (token NLL, count,
    order gain) from the cache, NaN where the LM must score them now; real: {seed: U_r's token
    NLL}; gain_below: U_r's threshold of order gain (`gain_threshold`, every seed's rows together).
    A seed where either side has fewer than 2 rows with text is an error row: recorded, never ranked."""
    started = time.perf_counter()
    nll, counts, gain = (np.array(part) for part in known)
    todo = [i for i, text in enumerate(texts) if math.isnan(nll[i]) and has_text(text)]
    if todo:
        nll[todo], counts[todo], gain[todo] = row_fluency(model_path, [texts[i] for i in todo], params, threads)
    scored = np.isfinite(nll)
    hashes = row_hashes(texts)
    results: list[dict] = []
    rows: list[dict] = []
    for seed, real_nll in real.items():
        try:
            score = fluency_score(nll[scored], real_nll, gain[scored], gain_below, resamples,
                                  np.random.default_rng(seed))
            raw, replicates, error = score.energy, (-score.replicates).tolist(), None
            garbled = np.full(len(texts), None, dtype=object)
            garbled[scored] = score.garbled
        except ValueError as err:
            raw, replicates, error = math.nan, [], f"fluency: {err}"
            garbled = np.full(len(texts), None, dtype=object)
        results.append({"dataset_id": dataset_id, "proxy": "fluency", "seed": seed, "raw": raw, "score": -raw,
                        "replicates": replicates, "error": error, "seconds": 0.0})
        rows.extend({"dataset_id": dataset_id, "seed": seed, "row_index": index, "text_hash": hashes[i],
                     TOKEN_NLL.name: float(nll[i]) if scored[i] else None, "token_count": int(counts[i]),
                     ORDER_GAIN.name: float(gain[i]) if np.isfinite(gain[i]) else None,
                     GARBLED.name: None if garbled[i] is None else bool(garbled[i])}
                    for i, index in enumerate(indices))
    seconds = (time.perf_counter() - started) / max(1, len(real))
    for row in results:
        row["seconds"] = seconds
    return results, {column: [row[column] for row in rows] for column in ROW_COLUMNS}


class FluencyStage(TaskStage):
    """The fluency proxy: U_r's rows first, then one task per candidate."""

    name = "fluency"
    row_schema = ROW_COLUMNS

    def __init__(self, params: FluencyParams, real: dict[int, RowSet], cache: Store, resamples: int, cpus: float,
                 gpus: float, retries: int, progress: bool = False):
        super().__init__()
        self.params, self.real, self.resamples, self.progress = params, real, resamples, progress
        self.model_path, model_id = resolve_model(params)  # once: a missing model stops the job here
        self.models = {"fluency": model_id}
        nll_key = digest({"model": model_id, "max_length": params.max_length, "version": NLL_VERSION})
        self.cache_store = cache.child(f"fluency/{nll_key}")
        self.num_cpus, self.num_gpus, self.retries = cpus, gpus, retries
        self.threads = max(1, int(cpus))
        self.cache: NllCache | None = None
        self.real_nll: dict[int, np.ndarray] = {}
        self.gain_below = float("nan")

    def key_payload(self, candidate: RowSet) -> dict:
        return {"params": self.params.model_dump(), "model": self.models["fluency"],
                "real": real_hashes(self.real), "resamples": self.resamples, "version": RESULT_VERSION}

    def expected_results(self, candidate: RowSet) -> int:
        return len(self.real)

    def run(self, todo: list[RowSet], commit: Commit, fail: Fail) -> None:
        self.cache = cache = NllCache(self.cache_store)
        self.counts.update(fluency_rows_scored=0, fluency_rows_from_cache=0)
        started = time.perf_counter()
        self.real_nll, self.gain_below = self._score_real(cache)
        self.timings["fluency_real"] = time.perf_counter() - started

        def keep(dataset_id: str, committed: Committed) -> None:
            rows = committed.rows.unique("text_hash", keep="first")
            self.counts["fluency_rows_scored"] += cache.save(
                rows.get_column("text_hash").to_list(), rows.get_column(TOKEN_NLL.name).fill_null(math.nan).to_numpy(),
                rows.get_column("token_count").to_numpy(),
                rows.get_column(ORDER_GAIN.name).fill_null(math.nan).to_numpy())
            commit(dataset_id, committed)

        super().run(todo, keep, fail)

    def _score_real(self, cache: NllCache) -> tuple[dict[int, np.ndarray], float]:
        """({seed: token NLL of U_r's scored rows with text}, the threshold of order gain over every
        seed's distinct scored rows), scoring the distinct texts the cache lacks."""
        texts = {seed: [rowset.texts[i] for i in seeded_indices(rowset.size, self.params.real_rows, seed)]
                 for seed, rowset in self.real.items()}
        wanted = {h: t for rows in texts.values() for h, t in zip(row_hashes(rows), rows, strict=True)
                  if h not in cache.known and has_text(t)}
        hashes, missing = list(wanted), list(wanted.values())
        size = self.params.batch_size
        chunks = [missing[i:i + size] for i in range(0, len(missing), size)]
        scored = self.map_remote([(score_texts, (self.model_path, chunk, self.params, self.threads))
                                  for chunk in chunks])
        if scored:
            self.counts["fluency_rows_scored"] += cache.save(hashes, *(np.concatenate(part) for part in zip(*scored)))
        self.counts["fluency_rows_from_cache"] += sum(len(rows) for rows in texts.values()) - len(missing)
        distinct = list(dict.fromkeys(h for rows in texts.values() for h in row_hashes(rows)))
        gain_below = gain_threshold(cache.lookup(distinct)[2], self.params.percentile)
        return {seed: (nll := cache.lookup(row_hashes(rows))[0])[np.isfinite(nll)]
                for seed, rows in texts.items()}, gain_below

    def task(self, candidate: RowSet):
        assert self.cache is not None, "run() loads the cache before any task"
        indices = seeded_indices(candidate.size, self.params.max_rows, self.params.seed)
        all_texts = candidate.texts
        texts = [all_texts[i] for i in indices]
        known = self.cache.lookup(row_hashes(texts))
        self.counts["fluency_rows_from_cache"] += int(np.isfinite(known[0]).sum())
        return score_candidate, (candidate.name, self.model_path, texts, indices, known, self.real_nll,
                                 self.gain_below, self.params, self.resamples, self.threads)

    def finish(self, outcome: StageOutcome) -> None:
        super().finish(outcome)
        parts = [c.rows.select("dataset_id", "seed", "row_index", TOKEN_NLL.name, ORDER_GAIN.name, GARBLED.name)
                 for c in outcome.committed.values()]
        outcome.row_columns = [pl.concat(parts)] if parts else []


def build(job: Job) -> FluencyStage:
    """The fluency stage of a job, its model resolved."""
    resources = job.config.resources
    return FluencyStage(job.config.fluency, job.real, Store(job.config.cache_location), job.config.ranking.resamples,
                        resources.proxy_cpus, resources.fluency_gpus, resources.task_retries, job.progress)


STAGE = StageSpec(FluencyStage.name, FluencyParams, build)
