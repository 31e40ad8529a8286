"""One resumable stage abstraction for every proxy family (embedding proxies, LENS, ...).

A `Stage` says what its per-candidate result depends on (`key_payload`), how many
result rows a complete one holds, and how to compute the candidates it is given
(`run`, calling `commit` or `fail` once per candidate). `run_stage` owns the rest, the
same way for every stage:

- keys: `digest` of the stage's name, the candidate's content hash and its payload;
- reuse: a committed `results/<key>.parquet` (with its `results/<key>.rows.parquet`)
  of the right shape is loaded instead of recomputed, and relabelled with the
  candidate's current id: results are reused by content, so a renamed file keeps its
  results and every table names it as it is called now;
- twins: candidates with the same key (the same texts, e.g. a copied file or a BOM or
  CRLF variant of one) are computed once, and each gets that result under its own id;
- commit: row signals first, results last, each write atomic, so a results file is
  the mark of a complete candidate and a crash leaves it redone, never half-trusted;
- failure: a candidate that fails is recorded with a one-line reason and the others
  go on; an exception out of `run` fails only the candidates not yet committed;
- pinned inputs: a candidate whose file changed since it was hashed (`InputChanged`,
  raised when its texts are read) fails for this run, and the stage goes on with the rest;
- counts and wall time per stage.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import polars as pl

from synque_ray.errors import UserError
from synque_ray.proxies.base import section_proxies
from synque_ray.raycluster import ensure_ray, without_restart_notice
from synque_ray.reading import InputChanged, RowSet
from synque_ray.vocabulary import RESULT_SCHEMA
from synque_ray.rowschema import ROW_SCHEMA
from synque_ray.storage import Store

if TYPE_CHECKING:
    from synque_ray.config import JobConfig

T = TypeVar("T")


def digest(payload: object) -> str:
    """The key of anything JSON can describe: 32 hex digits of its canonical JSON's SHA-256."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def real_hashes(real: dict[int, RowSet]) -> dict[str, str]:
    """{seed: content hash} of the U_r samples, as result keys and run.json record them."""
    return {str(seed): rowset.content_hash for seed, rowset in real.items()}


def one_line(err: BaseException) -> str:
    """The last non-empty line of an error (a Ray error's own cause comes last)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


@dataclass
class Committed:
    """One candidate's committed result: `results` (the stage's `result_schema`, one row per
    proxy and seed for most stages) and per-row signals (its `row_schema`)."""

    results: pl.DataFrame
    rows: pl.DataFrame


Commit = Callable[[str, Committed], None]
Fail = Callable[[str, str], None]


class Stage(ABC):
    """What a proxy family declares; `run_stage` does keys, reuse, commit and failures."""

    name: str = ""
    result_schema: dict = RESULT_SCHEMA
    row_schema: dict = ROW_SCHEMA

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}  # what `run` adds to run.json's counts
        self.timings: dict[str, float] = {}  # and to its timings
        self.models: dict[str, str] = {}  # model ids, for run.json

    def select(self, candidates: list[RowSet], earlier: list[StageOutcome]) -> tuple[list[RowSet], list[str]]:
        """(the candidates this stage computes, those it leaves out on purpose); all by default."""
        return candidates, []

    def prepare(self, candidates: list[RowSet], store: Store, fresh: bool) -> dict[str, str]:
        """Work every key needs before keys are computed (LENS: its rubrics); returns failures."""
        return {}

    @abstractmethod
    def key_payload(self, candidate: RowSet) -> dict:
        """Everything the candidate's result depends on besides its own content."""

    @abstractmethod
    def expected_results(self, candidate: RowSet) -> int:
        """Rows of `results` in a complete commit (a shorter file is redone)."""

    @abstractmethod
    def run(self, todo: list[RowSet], commit: Commit, fail: Fail) -> None:
        """Compute `todo`; call `commit` or `fail` once per candidate as each finishes."""

    def finish(self, outcome: StageOutcome) -> None:
        """After every candidate is in: fill `outcome.scores` (RESULT_SCHEMA rows of every candidate
        the stage holds a result for), and where the stage has them, `outcome.rows` (parts of
        row_scores.parquet), `outcome.row_columns` (columns joined onto it by dataset_id, seed,
        row_index) and `outcome.tables` (extra outputs by file name)."""
        frames = [c.results for c in outcome.committed.values()]
        outcome.scores = pl.concat(frames) if frames else pl.DataFrame(schema=RESULT_SCHEMA)


@dataclass(frozen=True)
class Job:
    """What a stage is built from: the checked config, U_r per seed, the candidates, the run's flags,
    and the contamination (evaluation) set when the config names one."""

    config: JobConfig
    real: dict[int, RowSet]
    candidates: list[RowSet]
    fresh: bool = False
    progress: bool = False
    evaluation: RowSet | None = None


@dataclass(frozen=True)
class StageSpec:
    """What a stage declares beside its code, as a `Proxy` does (one `STAGE` in its module, listed in
    `stage/registry.py`).

    name: the stage's name, its config section's key (a `JobConfig` field typed by `section`) and
        its entry in run.json's counts;
    section: its config section's model, which declares the proxies the stage produces (`PROXIES`,
        read by `section_proxies`): the stage runs when the config asks for any of them;
    build: the stage, checked (models resolved, settings sane) before any work;
    times: its keys of run.json's timings that the CLI prints as wall times (its name when empty);
    proxy_times: whether run.json's timings hold each of its proxies' compute, summed over tasks
        (the CLI prints them apart from the wall times)."""

    name: str
    section: type
    build: Callable[[Job], Stage]
    times: tuple[str, ...] = ()
    proxy_times: bool = False

    @property
    def proxies(self) -> tuple[str, ...]:
        """The names of the proxies it produces, in its section's order."""
        return tuple(about.name for about in section_proxies(self.section))


@dataclass
class StageOutcome:
    name: str
    keys: dict[str, str]
    committed: dict[str, Committed] = field(default_factory=dict)  # candidate -> result, in candidate order
    computed: list[str] = field(default_factory=list)  # committed by this run (the rest were reused)
    failed: dict[str, str] = field(default_factory=dict)  # candidate -> one-line reason
    skipped: list[str] = field(default_factory=list)  # left out on purpose by `Stage.select`
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    scores: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=RESULT_SCHEMA))
    rows: list[pl.DataFrame] = field(default_factory=list)  # parts of row_scores.parquet (ROW_SCHEMA)
    row_columns: list[pl.DataFrame] = field(default_factory=list)  # more columns for it, by (id, seed, row)
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)


def result_paths(key: str) -> tuple[str, str]:
    """(row signals, results) of one committed candidate: results last, the completion mark."""
    return f"results/{key}.rows.parquet", f"results/{key}.parquet"


def relabelled(committed: Committed, dataset_id: str) -> Committed:
    """`committed` with its `dataset_id` column (in results and row signals, where the schema has
    one) set to `dataset_id`. A result is keyed by content, not by name: the id it holds is the
    one it was computed under, which may be another file's (a twin) or a file's old name."""
    def named(frame: pl.DataFrame) -> pl.DataFrame:
        if "dataset_id" not in frame.columns:
            return frame
        return frame.with_columns(pl.lit(dataset_id, frame.schema["dataset_id"]).alias("dataset_id"))
    return Committed(named(committed.results), named(committed.rows))


def load_committed(store: Store, key: str, stage: Stage, expected_rows: int) -> Committed | None:
    """A committed result as it was written (relabel it with `relabelled`), or None when absent,
    unreadable or of another shape (then it is redone)."""
    rows_path, results_path = result_paths(key)
    results = store.read_table(results_path)
    if results is None or results.num_rows != expected_rows or results.column_names != list(stage.result_schema):
        return None
    rows = store.read_table(rows_path)
    if rows is None or rows.column_names != list(stage.row_schema):
        return None
    return Committed(pl.from_arrow(results), pl.from_arrow(rows))


def write_committed(store: Store, key: str, stage: Stage, committed: Committed) -> Committed:
    """Commit one candidate (row signals first, results last); returns it as a reload would read it."""
    rows_path, results_path = result_paths(key)
    rows = committed.rows.select(list(stage.row_schema)).cast(stage.row_schema)
    results = committed.results.select(list(stage.result_schema)).cast(stage.result_schema)
    store.write_table(rows_path, rows.to_arrow())
    store.write_table(results_path, results.to_arrow())
    return Committed(results, rows)


def run_stage(stage: Stage, candidates: list[RowSet], store: Store, fresh: bool = False,
              earlier: list[StageOutcome] | None = None) -> StageOutcome:
    """Run one stage over the candidates it selects: reuse what is committed, compute the rest."""
    started = time.perf_counter()
    chosen, skipped = stage.select(candidates, earlier or [])
    failed: dict[str, str] = {}
    failed.update(pinned(lambda rest: stage.prepare(rest, store, fresh), chosen, failed) or {})
    chosen = [c for c in chosen if c.name not in failed]
    outcome = StageOutcome(stage.name, {c.name: stage_key(stage, c) for c in chosen}, failed=dict(failed),
                           skipped=skipped)
    first, twins = twin_groups(chosen, outcome.keys)
    todo = []
    for candidate in first:
        reused = None if fresh else load_committed(store, outcome.keys[candidate.name], stage,
                                                   stage.expected_results(candidate))
        if reused is None:
            todo.append(candidate)
        else:
            outcome.committed[candidate.name] = relabelled(reused, candidate.name)
    _compute(stage, todo, store, outcome)
    for name, twin in twins.items():  # computed once, under the first of them: each has it under its own id
        if twin in outcome.committed:
            outcome.committed[name] = relabelled(outcome.committed[twin], name)
        elif twin in outcome.failed:
            outcome.failed[name] = f"{outcome.failed[twin]} (scored once with {twin}, which holds the same texts)"
    order = {c.name: i for i, c in enumerate(candidates)}
    outcome.committed = dict(sorted(outcome.committed.items(), key=lambda item: order[item[0]]))
    stage.finish(outcome)
    outcome.counts = {"scored": len(outcome.computed), "reused": len(outcome.committed) - len(outcome.computed),
                      "failed": len(outcome.failed), "skipped": len(skipped), **stage.counts}
    outcome.seconds = time.perf_counter() - started
    return outcome


def twin_groups(candidates: list[RowSet], keys: dict[str, str]) -> tuple[list[RowSet], dict[str, str]]:
    """(the first candidate of each key, in order; {every later one: the first of its key}).

    Candidates with one key hold the same texts (a copied file, a BOM or CRLF variant) and
    would get the same result: it is computed or loaded once, for the first."""
    first: dict[str, str] = {}
    twins = {}
    for candidate in candidates:
        key = keys[candidate.name]
        if key in first:
            twins[candidate.name] = first[key]
        else:
            first[key] = candidate.name
    return [c for c in candidates if c.name not in twins], twins


def stage_key(stage: Stage, candidate: RowSet) -> str:
    return digest({"stage": stage.name, "candidate": candidate.content_hash, **stage.key_payload(candidate)})


def pinned(call: Callable[[list[RowSet]], T], candidates: list[RowSet], failed: dict[str, str]) -> T:
    """`call(candidates)`; when a candidate's file changed since it was hashed, that candidate is
    failed (with the one-line reason) and `call` runs again on the rest not failed yet."""
    while True:
        try:
            return call([c for c in candidates if c.name not in failed])
        except InputChanged as err:
            if err.name in failed or err.name not in {c.name for c in candidates}:
                raise
            failed[err.name] = str(err)


def _compute(stage: Stage, todo: list[RowSet], store: Store, outcome: StageOutcome) -> None:
    """`stage.run` with the commit and failure rules applied."""
    expected = {c.name: stage.expected_results(c) for c in todo}

    def commit(dataset_id: str, committed: Committed) -> None:
        if dataset_id in outcome.failed or dataset_id in outcome.committed:
            return
        if committed.results.height != expected[dataset_id]:
            fail(dataset_id, f"{committed.results.height} result rows, expected {expected[dataset_id]}")
            return
        outcome.committed[dataset_id] = write_committed(store, outcome.keys[dataset_id], stage, committed)
        outcome.computed.append(dataset_id)

    def fail(dataset_id: str, reason: str) -> None:
        if dataset_id not in outcome.committed:
            outcome.failed.setdefault(dataset_id, reason)

    if todo:
        ensure_ray()
        try:
            # A rerun after a changed file skips what is committed: only the rest is computed again.
            with without_restart_notice():  # a healthy run shows no error line (raycluster.py)
                pinned(lambda rest: stage.run([c for c in rest if c.name not in outcome.committed], commit, fail),
                       todo, outcome.failed)
        except UserError:
            raise  # the user's to fix, and the same for every candidate: one line, nothing more
        except Exception as err:  # noqa: BLE001 - one candidate's failure rule for every stage
            for candidate in todo:
                fail(candidate.name, f"{stage.name}: {one_line(err)}")
    for candidate in todo:  # a stage that neither committed nor failed a candidate lost it
        if candidate.name not in outcome.committed:
            fail(candidate.name, f"{stage.name}: no result came back")
