"""The embedding proxies as one stage: embed (Ray Data) → the registered proxies (Ray tasks).

Per candidate: one task for what looks at the candidate alone (MDM, near-duplicates)
and one per (candidate, seed) for what compares it with U_r. Tasks are submitted as
each candidate's embeddings land, so proxies run while the rest is still embedded.
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl

from synque_ray.config import EmbeddingConfig
from synque_ray.embed import CachedEmbeddings, EmbeddingCache, EmbeddingModel, embed_rowsets, resolve_embedding
from synque_ray.reading import InputChanged, RowSet, row_hashes
from synque_ray.vocabulary import RESULT_SCHEMA
from synque_ray.rowschema import ROW_SCHEMA
from synque_ray.proxy_task import TaskSpec, score_pair
from synque_ray.rowsignals import check_declared, reference
from synque_ray.stage.base import (Commit, Committed, Fail, Job, Stage, StageOutcome, StageSpec, one_line,
                                   real_hashes)
from synque_ray.storage import Store

RESULT_VERSION = 6  # bumped when what a committed result holds changes (2: replicates, errors, row signals;
#                   3: copies_real, text_chars; 4: copies_real's lexical rule, copies_eval;
#                   5: MAUVE's replicates, MDM on blocks; 6: density's and MDM's replicates)


def task_spec(config) -> TaskSpec:
    """Everything a proxy result depends on besides the embeddings: part of the result key."""
    params = {name: config.proxy_params(name).model_dump() for name in config.embedding_proxies}
    return TaskSpec(params, config.candidates.sample_size, config.ranking.resamples)


class EmbeddingStage(Stage):
    name = "embedding"

    def __init__(self, config, real: dict[int, RowSet], model: EmbeddingModel, cache: EmbeddingCache,
                 fresh: bool = False, progress: bool = False, evaluation: RowSet | None = None):
        """`evaluation`: the config's contamination set, whose copies make `copies_eval` (None: no such set)."""
        super().__init__()
        self.config, self.real, self.cache, self.fresh, self.progress = config, real, cache, fresh, progress
        self.model, self.spec, self.evaluation = model, task_spec(config), evaluation
        self.models = {"embedding": model.id}

    @property
    def references(self) -> list[RowSet]:
        """The row sets candidates are compared with, embedded before any candidate: U_r per seed, then
        the evaluation set."""
        return [*self.real.values(), *([self.evaluation] if self.evaluation is not None else [])]

    def key_payload(self, candidate: RowSet) -> dict:
        return {"real": real_hashes(self.real), "params": self.spec.params,
                "sample_size": self.spec.sample_size, "resamples": self.spec.resamples, "model": self.model.id,
                "contamination": None if self.evaluation is None else self.evaluation.content_hash,
                "version": RESULT_VERSION}

    def expected_results(self, candidate: RowSet) -> int:
        return len(self.spec.params) * len(self.real)

    def finish(self, outcome: StageOutcome) -> None:
        super().finish(outcome)
        outcome.rows = [committed.rows for committed in outcome.committed.values()]

    def run(self, todo: list[RowSet], commit: Commit, fail: Fail) -> None:
        """Embed what the cache lacks (reals first), feeding each candidate to its tasks as it lands."""
        missing = [rs for rs in [*self.references, *todo] if self.fresh or not self.cache.has(rs)]
        self.counts["rows_embedded"] = sum(rs.size for rs in missing)
        self.counts["rows_from_cache"] = sum(rs.size for rs in [*self.references, *todo]) - sum(
            rs.size for rs in missing)
        bar = Progress(self.counts["rows_embedded"], len(todo), self.progress)
        tasks = _ProxyTasks(self, {c.name: c for c in todo}, commit, fail, bar)
        started = time.perf_counter()
        try:
            self._embed(missing, todo, tasks, bar)
            self.timings["embed"] = time.perf_counter() - started
            bar.embedded()
            tasks.finish()
        finally:
            bar.close()
        self.timings["proxies"] = time.perf_counter() - started - self.timings["embed"]
        self.timings.update(tasks.compute_seconds())

    def _embed(self, missing: list[RowSet], todo: list[RowSet], tasks: _ProxyTasks, bar: Progress) -> None:
        import ray

        seed_of = {rowset.name: seed for seed, rowset in self.real.items()}
        missing_names = {rs.name for rs in missing}
        cached = [c for c in todo if c.name not in missing_names]
        tasks.real = {s: self.cache.handle(rs) for s, rs in self.real.items() if rs.name not in missing_names}
        if self.evaluation is not None and self.evaluation.name not in missing_names:
            tasks.evaluation = self.cache.handle(self.evaluation)
        if tasks.ready():
            tasks.submit_all(cached, self.cache)  # their proxies run while the rest is embedded
        def embedded(index: int, vectors: np.ndarray) -> None:
            rowset = missing[index]
            self.cache.save(rowset, vectors)  # committed before any task reads it
            if rowset.name in seed_of:
                tasks.real[seed_of[rowset.name]] = self.cache.handle(rowset)
            elif rowset is self.evaluation:
                tasks.evaluation = self.cache.handle(rowset)
            else:
                tasks.submit(rowset.name, self.cache.handle(rowset), block=False)

        resources = self.config.resources
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) // resources.embed_actors)
        embed_rowsets(missing, self.model, self.config.embedding.batch_size, resources.embed_actors,
                      resources.embed_gpus, cpus, embedded, bar.rows,
                      on_changed=lambda index, err: tasks.fail(missing[index].name, str(err)))
        tasks.submit_all(cached, self.cache)


class Progress:
    """The stage's progress, one bar at a time, each with its own rate and ETA: rows embedded
    while embedding runs (candidates scored so far beside it), then candidates scored.

    One bar, because the first proxy results land only once the first candidate is embedded:
    a bar of candidates alone sat at 0 for the whole embedding and then extrapolated its ETA
    from it. Two bars on one terminal overwrite each other whenever anything else prints.

    The rows bar's rate (and so its ETA) is measured from the end of the first batch: the
    time before it is Ray's start, the model's load and the pool's warm-up, not embedding,
    and counted in, it made the first ETAs several times the stage's whole length.
    """

    def __init__(self, rows: int, candidates: int, enabled: bool):
        from tqdm import tqdm

        self.tqdm, self.enabled, self.candidates, self.scored = tqdm, enabled, candidates, 0
        self.embedding = bool(rows)
        self.first_batch_seen = False
        if rows:
            self.bar = tqdm(total=rows, desc="embedded", unit="row", disable=not enabled)
            self.bar.set_postfix_str(f"scored 0/{candidates} candidates", refresh=False)
        else:
            self.bar = self._scored_bar()

    def rows(self, count: int) -> None:
        if self.first_batch_seen or not self.enabled:
            self.bar.update(count)
            return
        self.first_batch_seen = True
        started = self.bar.start_t
        self.bar.reset()  # the rate's clock starts now, its smoothed estimate cleared
        self.bar.start_t = started  # the elapsed time shown still counts from the start
        # No rate until the next batch: tqdm's fallback, (n - initial) / elapsed, is then 0 ("?").
        self.bar.initial = self.bar.n = self.bar.last_print_n = count
        self.bar.refresh()

    def scored_one(self) -> None:
        self.scored += 1
        if self.embedding:
            self.bar.set_postfix_str(f"scored {self.scored}/{self.candidates} candidates")
        else:
            self.bar.update(1)

    def embedded(self) -> None:
        """Embedding is over: from here on the bar counts candidates (those already scored included)."""
        if not self.embedding:
            return
        self.close()
        self.embedding = False
        self.bar = self._scored_bar()

    def _scored_bar(self):  # a tqdm bar (tqdm is untyped)
        return self.tqdm(total=self.candidates, initial=self.scored, desc="scored", unit="candidate",
                         disable=not self.enabled)

    def close(self) -> None:
        self.bar.close()


class _ProxyTasks:
    """The Ray tasks of the candidates being scored; commits each candidate when its tasks are done.

    Outside the embedding stage at most `limit` tasks are in flight, so the object store
    holds a bounded number of candidates whatever the size of the job.
    """

    def __init__(self, stage: EmbeddingStage, candidates: dict[str, RowSet], commit: Commit, fail: Fail,
                 bar: Progress):
        import ray

        self.ray = ray
        # A task whose worker dies is retried; an exception inside it marks the candidate failed.
        # SPREAD: on a cluster, proxy tasks go to every node rather than crowding the head.
        self.task = ray.remote(num_cpus=stage.config.resources.proxy_cpus,
                               max_retries=stage.config.resources.task_retries,
                               scheduling_strategy="SPREAD")(score_pair)
        self.stage, self.candidates, self.commit, self.fail, self.bar = stage, candidates, commit, fail, bar
        self.real: dict[int, CachedEmbeddings] = {}
        self.evaluation: CachedEmbeddings | None = None
        self.references: dict[int | None, object] = {}  # ObjectRefs of `Reference`s: per seed; None: evaluation
        self.texts: dict[str, list[str]] = {}  # of the candidates being scored
        self.pending: dict = {}  # ObjectRef -> dataset_id
        self.parts: dict[str, list[dict]] = {}
        self.failed: set[str] = set()
        self.done: list[pl.DataFrame] = []
        self.limit = max(4, 2 * int(ray.cluster_resources().get("CPU", 1)))

    def ready(self) -> bool:
        """Every reference (U_r per seed, the evaluation set) is embedded: candidates may be scored."""
        return len(self.real) == len(self.stage.real) and (self.stage.evaluation is None) == (self.evaluation is None)

    def reference(self, seed: int | None):
        """U_r of `seed` (None: the evaluation set, or None without one) as `rowsignals.copies` takes it:
        built once, in the object store for the tasks."""
        if seed not in self.references:
            rowset, vectors = ((self.stage.evaluation, self.evaluation) if seed is None
                               else (self.stage.real[seed], self.real[seed]))
            if rowset is None or vectors is None:
                return None
            self.references[seed] = self.ray.put(reference(rowset.texts, vectors.load()))
        return self.references[seed]

    def submit_all(self, candidates: list[RowSet], cache: EmbeddingCache) -> None:
        while candidates:
            candidate = candidates.pop(0)
            self.submit(candidate.name, cache.handle(candidate))

    def submit(self, dataset_id: str, embeddings: CachedEmbeddings, block: bool = True) -> None:
        """Queue the candidate's tasks.

        With `block`, wait while more than `limit` tasks are in flight. While embedding
        runs the driver must not block: the embedding actors may hold every CPU, and
        the proxy tasks could only start once the driver has drained the embeddings.
        """
        if not self.ready():
            raise RuntimeError("a candidate reached the proxy stage before every real sample and evaluation set")
        try:
            texts = self.candidates[dataset_id].texts  # the hashed rows, or InputChanged
        except InputChanged as err:
            self.fail(dataset_id, str(err))
            return
        self.parts[dataset_id], self.texts[dataset_id] = [], texts
        shared = self.ray.put(texts)  # once for all the candidate's tasks
        for seed, real in [(None, None), *self.real.items()]:
            copies_of = {} if seed is None else {"texts": shared, "copies_of": self.reference(seed),
                                                  "evaluation": self.reference(None)}
            task = self.task.remote(dataset_id, seed, embeddings, real, self.stage.spec, **copies_of)
            self.pending[task] = dataset_id
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
            self.texts.pop(dataset_id, None)
            self.failed.add(dataset_id)
            self.fail(dataset_id, one_line(err))
            return
        if dataset_id in self.failed:
            return
        parts = self.parts[dataset_id]
        parts.append(part)
        if len(parts) == len(self.stage.real) + 1:
            results, rows = assemble(dataset_id, self.parts.pop(dataset_id), list(self.stage.real),
                                     self.texts.pop(dataset_id))
            self.commit(dataset_id, Committed(results, rows))
            self.done.append(results)
            self.bar.scored_one()

    def finish(self) -> None:
        while self.pending:
            [done], _ = self.ray.wait(list(self.pending), num_returns=1)
            self._handle(done)

    def compute_seconds(self) -> dict[str, float]:
        """Per proxy: compute seconds summed over the tasks this run executed. The tasks run in
        parallel, so these add up to more than the stage's wall time."""
        if not self.done:
            return {}
        computed = pl.concat(self.done).group_by("proxy").agg(pl.col("seconds").sum())
        return dict(computed.iter_rows())


def assemble(dataset_id: str, parts: list[dict], seeds: list[int], texts: list[str]
             ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One candidate's (results, row signals) from its tasks' outputs.

    `seeds`: the job's seeds; `texts`: the candidate's rows. The candidate-only results
    (seed None) hold for every seed: they are repeated under each. `text_hash` and
    `text_chars` (length of the stripped text) are added here; `copies_eval` is null where
    the tasks had no evaluation set to compare with. A column ROW_SCHEMA does not declare
    is an error (`check_declared`), never dropped.
    """
    alone = next(part for part in parts if part["seed"] is None)
    scores = [row for part in parts if part is not alone for row in part["scores"]]
    scores += [{**row, "seed": seed} for row in alone["scores"] for seed in seeds]
    duplicates = pl.DataFrame(alone["rows"], schema={"row_index": pl.Int64, "duplicate_group": pl.Int64})
    row_parts = []
    for part in parts:
        if part is alone:
            continue
        mine = [texts[i] for i in part["rows"]["row_index"]]
        frame = pl.DataFrame(part["rows"]).with_columns(
            pl.lit(dataset_id).alias("dataset_id"), pl.lit(part["seed"], pl.Int64).alias("seed"),
            pl.Series("text_hash", row_hashes(mine), pl.Utf8),
            pl.Series("text_chars", [len(t.strip()) for t in mine], pl.Int64))
        row_parts.append(frame.join(duplicates, on="row_index", how="left"))
    rows = pl.concat(row_parts, how="diagonal_relaxed")
    check_declared(rows.columns, ROW_SCHEMA, f"the embedding stage, for {dataset_id},")
    rows = rows.with_columns([pl.lit(None, dtype).alias(c) for c, dtype in ROW_SCHEMA.items() if c not in rows.columns])
    return pl.DataFrame(scores, schema=RESULT_SCHEMA), rows.select(list(ROW_SCHEMA)).cast(ROW_SCHEMA)


def build(job: Job) -> EmbeddingStage:
    """The stage of a job's embedding proxies, its model resolved."""
    model = resolve_embedding(job.config)  # its id names precision and backend: no two share entries
    cache = EmbeddingCache(Store(job.config.cache_location), model.id)
    return EmbeddingStage(job.config, job.real, model, cache, job.fresh, job.progress, job.evaluation)


STAGE = StageSpec(EmbeddingStage.name, EmbeddingConfig, build, times=("embed", "proxies"), proxy_times=True)
