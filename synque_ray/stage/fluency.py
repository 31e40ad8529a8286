"""The fluency proxy as a stage (`synque_ray.fluency` holds the math).

First every U_r sample's scored rows get their token NLL (Ray tasks of `batch_size`
rows each, all at once), because every candidate is compared with them; then one Ray
task per candidate scores its seeded row sample and computes its result for every seed.
A text's row scores (token NLL, order gain, spelling and end surprise) depend only on the
text, the model and the length cap, so each distinct text is scored once (with its shuffle):
results are cached by text hash under `<cache_dir>/fluency/<model key>/` and reused by later
seeds, candidates and runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import polars as pl

from synque_ray.fluency import (CAUSES, GARBLED, GARBLED_AS, SIGNALS, FluencyParams, RowScores, fluency_score, has_text,
                                resolve_dtype, resolve_model, row_fluency, thresholds)
from synque_ray.reading import RowSet, row_hashes, seeded_indices
from synque_ray.stage.base import Commit, Committed, Fail, Job, StageOutcome, StageSpec, digest, real_hashes
from synque_ray.stage.tasks import TaskStage
from synque_ray.storage import Store

RESULT_VERSION = 3  # bumped when what a committed fluency result holds changes
NLL_VERSION = 3  # bumped when how a text's row scores are computed changes (invalidates the cache)
# The values of a text not scored, in the order of `RowScores`' fields: no tokens, no signal. They say
# each field's type and what a null cell reads as.
UNKNOWN: tuple[float | int, ...] = (math.nan, 0, math.nan, math.nan, math.nan)
# What the NLL cache keeps of a text: its RowScores by name.
CACHE_SCHEMA = {"text_hash": pl.Utf8, **{name: pl.Int64 if isinstance(default, int) else pl.Float64
                                         for name, default in zip(RowScores._fields, UNKNOWN, strict=True)}}
# A committed candidate's scored rows: its row signals and token count.
ROW_COLUMNS = {"dataset_id": pl.Utf8, "seed": pl.Int64, "row_index": pl.Int64, **CACHE_SCHEMA,
               GARBLED.name: GARBLED.dtype, GARBLED_AS.name: GARBLED_AS.dtype}
# The row signals joined onto row_scores.parquet.
JOINED = tuple(signal.name for signal in SIGNALS)


def stored(value: float | int) -> float | int | None:
    """One `RowScores` value as a cell of the NLL cache or row_scores.parquet: null for NaN (a signal
    the row lacks), else as it is."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def from_cells(columns: Sequence[Sequence[float | int | None]]) -> RowScores:
    """`RowScores` from cells in the order of its fields, a null read as `UNKNOWN`'s value."""
    return RowScores(*(np.array([default if v is None else v for v in column],
                                dtype=np.int64 if isinstance(default, int) else np.float64)
                       for column, default in zip(columns, UNKNOWN, strict=True)))


class NllCache:
    """`RowScores` by text hash for one model and length cap: parquet parts of CACHE_SCHEMA, each
    written atomically under a name of its content, so concurrent runs never clash and a part is
    whole or absent. A signal a row lacks is NaN (null)."""

    def __init__(self, store: Store):
        self.store = store
        self.known: dict[str, tuple] = {}  # text hash -> its RowScores values, as cells (`from_cells`)
        for name, is_folder in store.listing() or []:
            table = None if is_folder or not name.endswith(".parquet") else store.read_table(name)
            if table is not None and table.column_names == list(CACHE_SCHEMA):
                columns = [table.column(c).to_pylist() for c in CACHE_SCHEMA]
                for text_hash, *values in zip(*columns, strict=True):
                    self.known[text_hash] = tuple(values)  # cells: `lookup` reads a null as UNKNOWN's value

    def save(self, hashes: list[str], scores: RowScores) -> int:
        """Keep the rows with a finite NLL not known yet; returns how many were new."""
        new = {h: tuple(part[i].item() for part in scores) for i, h in enumerate(hashes)
               if h not in self.known and math.isfinite(scores.token_nll[i])}
        if new:
            columns = {name: [stored(row[k]) for row in new.values()] for k, name in enumerate(RowScores._fields)}
            table = pl.DataFrame({"text_hash": list(new), **columns}, schema=CACHE_SCHEMA)
            self.store.write_table(f"{digest(sorted(new))}.parquet", table.to_arrow())
            self.known.update(new)
        return len(new)

    def lookup(self, hashes: list[str]) -> RowScores:
        """`RowScores` per hash; `UNKNOWN`'s values where unknown."""
        rows = [self.known.get(h, UNKNOWN) for h in hashes]
        return from_cells([[row[k] for row in rows] for k in range(len(UNKNOWN))])


def score_texts(model_path: str, texts: list[str], params: FluencyParams, threads: int) -> RowScores:
    """One Ray task: `row_fluency` of some U_r rows."""
    return row_fluency(model_path, texts, params, threads)


def score_candidate(dataset_id: str, model_path: str, texts: list[str], indices: list[int],
                    known: RowScores, real: dict[int, np.ndarray], limits: dict[str, float], params: FluencyParams,
                    resamples: int, threads: int) -> tuple[list[dict], dict]:
    """One Ray task: (a result row per seed, the scored rows for every seed).

    texts: the candidate's scored rows (row numbers `indices`); known: their `RowScores` from the
    cache, NaN where the LM must score them now; real: {seed: U_r's token NLL}; limits: U_r's
    `thresholds` of the judging signals (every seed's rows together). A seed where either side has
    fewer than 2 rows with text is an error row: recorded, never ranked."""
    started = time.perf_counter()
    scores = RowScores(*(np.array(part) for part in known))
    todo = [i for i, text in enumerate(texts) if math.isnan(scores.token_nll[i]) and has_text(text)]
    if todo:
        fresh = row_fluency(model_path, [texts[i] for i in todo], params, threads)
        for part, new in zip(scores, fresh, strict=True):
            part[todo] = new
    nll = scores.token_nll
    scored = np.isfinite(nll)
    hashes = row_hashes(texts)
    results: list[dict] = []
    rows: list[dict] = []
    for seed, real_nll in real.items():
        garbled = np.full(len(texts), None, dtype=object)
        named = np.full(len(texts), None, dtype=object)
        try:
            score = fluency_score(nll[scored], real_nll, {name: getattr(scores, name)[scored] for name in CAUSES},
                                  limits, resamples, np.random.default_rng(seed))
            raw, replicates, error = score.energy, (-score.replicates).tolist(), None
            garbled[scored], named[scored] = score.garbled, score.garbled_as
        except ValueError as err:
            raw, replicates, error = math.nan, [], f"fluency: {err}"
        results.append({"dataset_id": dataset_id, "proxy": "fluency", "seed": seed, "raw": raw, "score": -raw,
                        "replicates": replicates, "error": error, "seconds": 0.0})
        for i, index in enumerate(indices):
            row = {"dataset_id": dataset_id, "seed": seed, "row_index": index, "text_hash": hashes[i]}
            row.update({name: stored(part[i].item()) for name, part in zip(RowScores._fields, scores, strict=True)})
            row.update({GARBLED.name: None if garbled[i] is None else bool(garbled[i]), GARBLED_AS.name: named[i]})
            rows.append(row)
    seconds = (time.perf_counter() - started) / max(1, len(real))
    for row in results:
        row["seconds"] = seconds
    return results, {column: [row[column] for row in rows] for column in ROW_COLUMNS}


def threshold_texts(scored: dict[int, list[str]], samples: dict[int, list[str]], rows: int | None) -> list[str]:
    """The U_r rows to score for the thresholds alone: none when the seeds' `scored` rows hold `rows`
    distinct texts (or `rows` is None), else as many more as are missing, drawn (seeded by the first
    seed) from the distinct texts of every seed's U_r sample (`samples`) not scored yet. Why: a
    percentile this far out moves with the rows it is taken over (on 30 tweets it flagged a clean
    12-row candidate in 1 draw of 20; on 64, 1 in 250: BENCHMARKS.md), and one seed scores 32 rows."""
    have = set(text for texts in scored.values() for text in texts)
    if rows is None or len(have) >= rows:
        return []
    pool = [text for text in dict.fromkeys(t for texts in samples.values() for t in texts) if text not in have]
    return [pool[i] for i in seeded_indices(len(pool), rows - len(have), next(iter(samples)))]


class FluencyStage(TaskStage):
    """The fluency proxy: U_r's rows first, then one task per candidate."""

    name = "fluency"
    row_schema = ROW_COLUMNS

    def __init__(self, params: FluencyParams, real: dict[int, RowSet], cache: Store, resamples: int, cpus: float,
                 gpus: float, retries: int, progress: bool = False):
        super().__init__()
        # once: the number format the tasks load the LM in, keyed with the results and the NLL cache
        params = params.model_copy(update={"dtype": resolve_dtype(params.dtype, gpus)})
        self.params, self.real, self.resamples, self.progress = params, real, resamples, progress
        self.model_path, model_id = resolve_model(params)  # once: a missing model stops the job here
        self.models = {"fluency": model_id}
        nll_key = digest({"model": model_id, "max_length": params.max_length, "dtype": params.dtype,
                          "version": NLL_VERSION})
        self.cache_store = cache.child(f"fluency/{nll_key}")
        self.num_cpus, self.num_gpus, self.retries = cpus, gpus, retries
        self.threads = max(1, int(cpus))
        self.cache: NllCache | None = None
        self.real_nll: dict[int, np.ndarray] = {}
        self.limits: dict[str, float] = {}

    def key_payload(self, candidate: RowSet) -> dict:
        return {"params": self.params.model_dump(), "model": self.models["fluency"],
                "real": real_hashes(self.real), "resamples": self.resamples, "version": RESULT_VERSION}

    def expected_results(self, candidate: RowSet) -> int:
        return len(self.real)

    def run(self, todo: list[RowSet], commit: Commit, fail: Fail) -> None:
        self.cache = cache = NllCache(self.cache_store)
        self.counts.update(fluency_rows_scored=0, fluency_rows_from_cache=0)
        started = time.perf_counter()
        self.real_nll, self.limits = self._score_real(cache)
        self.timings["fluency_real"] = time.perf_counter() - started

        def keep(dataset_id: str, committed: Committed) -> None:
            rows = committed.rows.unique("text_hash", keep="first")
            scores = from_cells([rows.get_column(name).to_list() for name in RowScores._fields])
            self.counts["fluency_rows_scored"] += cache.save(rows.get_column("text_hash").to_list(), scores)
            commit(dataset_id, committed)

        super().run(todo, keep, fail)

    def _score_real(self, cache: NllCache) -> tuple[dict[int, np.ndarray], dict[str, float]]:
        """({seed: token NLL of U_r's scored rows with text}, the `thresholds` of the judging signals),
        scoring the distinct texts the cache lacks. The thresholds are taken over every seed's distinct
        scored rows together, and `threshold_rows` of them at least where the seeds' U_r samples hold
        that many (`threshold_texts`)."""
        texts = {seed: [rowset.texts[i] for i in seeded_indices(rowset.size, self.params.real_rows, seed)]
                 for seed, rowset in self.real.items()}
        pooled = threshold_texts(texts, {seed: rowset.texts for seed, rowset in self.real.items()},
                                 self.params.threshold_rows)
        every = [*(text for rows in texts.values() for text in rows), *pooled]
        wanted = {h: t for h, t in zip(row_hashes(every), every, strict=True) if h not in cache.known and has_text(t)}
        hashes, missing = list(wanted), list(wanted.values())
        size = self.params.batch_size
        chunks = [missing[i:i + size] for i in range(0, len(missing), size)]
        scored = self.map_remote([(score_texts, (self.model_path, chunk, self.params, self.threads))
                                  for chunk in chunks])
        if scored:
            self.counts["fluency_rows_scored"] += cache.save(
                hashes, RowScores(*(np.concatenate(part) for part in zip(*scored, strict=True))))
        self.counts["fluency_rows_from_cache"] += len(every) - len(missing)
        distinct = list(dict.fromkeys(row_hashes(every)))
        limits = thresholds(cache.lookup(distinct)._asdict(), self.params.percentile)
        return {seed: (nll := cache.lookup(row_hashes(rows)).token_nll)[np.isfinite(nll)]
                for seed, rows in texts.items()}, limits

    def task(self, candidate: RowSet):
        assert self.cache is not None, "run() loads the cache before any task"
        indices = seeded_indices(candidate.size, self.params.max_rows, self.params.seed)
        all_texts = candidate.texts
        texts = [all_texts[i] for i in indices]
        known = self.cache.lookup(row_hashes(texts))
        self.counts["fluency_rows_from_cache"] += int(np.isfinite(known.token_nll).sum())
        return score_candidate, (candidate.name, self.model_path, texts, indices, known, self.real_nll,
                                 self.limits, self.params, self.resamples, self.threads)

    def finish(self, outcome: StageOutcome) -> None:
        super().finish(outcome)
        parts = [c.rows.select("dataset_id", "seed", "row_index", *JOINED) for c in outcome.committed.values()]
        outcome.row_columns = [pl.concat(parts)] if parts else []


def build(job: Job) -> FluencyStage:
    """The fluency stage of a job, its model resolved."""
    resources = job.config.resources
    return FluencyStage(job.config.fluency, job.real, Store(job.config.cache_location), job.config.ranking.resamples,
                        resources.proxy_cpus, resources.fluency_gpus, resources.task_retries, job.progress)


STAGE = StageSpec(FluencyStage.name, FluencyParams, build)
