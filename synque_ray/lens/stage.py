"""LENS as a stage of the job: rubrics (`prepare`), judgements on Ray Data (`run`), scores (`finish`).

Per candidate it commits, like every stage, `results/<key>.rows.parquet` (the
candidate's judgements, every seed) then `results/<key>.parquet` (its score variants
per seed), keyed by the candidate's and U_r's content, the scorer and its settings
and the digests of the rubrics used. With `lens.candidates` (the cascade) it judges
only the top candidates of the cheaper proxies' ranking; the others are `skipped`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from synque_ray.config import LensConfig
from synque_ray.lens import prompts
from synque_ray.lens.plan import build_block, expected_rows, judging_plan, rubrics_too_long
from synque_ray.lens.results import VARIANT_SCHEMA, lens_results, p_hat_table, score_table
from synque_ray.lens.rubric_source import Rubrics, RubricSource
from synque_ray.lens.judge import OUTPUT_SCHEMA, score_rows
from synque_ray.lens_debias import P_REAL
from synque_ray.reading import RowSet
from synque_ray.reduce import DEFAULT_ENSEMBLE, top_by
from synque_ray.stage.base import Commit, Committed, Fail, Stage, StageOutcome, real_hashes
from synque_ray.storage import Store
from synque_ray.vocabulary import LENS_JUDGEMENTS_FILE, LENS_SCORES_FILE, RESULT_SCHEMA

# from_batches, not `empty_table()`, which imports pandas (a third of a second) on every run that imports the stages
JUDGEMENT_SCHEMA = dict(pl.from_arrow(pa.Table.from_batches([], schema=OUTPUT_SCHEMA)).schema)


@dataclass
class LensReport:
    """What a LENS run gives back."""

    scores: pl.DataFrame  # RESULT_SCHEMA, proxy "lens": raw = score = mean p̂, replicates for rank intervals
    variants: pl.DataFrame  # VARIANT_SCHEMA: every variant per (candidate, seed) (lens_scores.parquet)
    judgements: pl.DataFrame  # every judged row's four judgements (lens_judgements.parquet)
    p_hat: pl.DataFrame  # dataset_id, seed, row_index, p_hat: each judged candidate row
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)  # lens_scorer, lens_rubric_writer
    failed: dict[str, str] = field(default_factory=dict)  # candidate -> why it has no LENS score
    skipped: list[str] = field(default_factory=list)  # left out by the cascade


class LensSetup(Protocol):
    """What the stage reads of LENS's resolved models and settings. `lens.proxy.Lens` is one, and
    builds the stage: the stage names what it needs here rather than importing the module that
    imports it."""

    config: LensConfig
    scorer_id: str  # a stable id of the scorer model, for result keys
    scorer_path: str  # what vLLM loads
    source: RubricSource
    models: dict[str, str]  # lens_scorer, lens_rubric_writer

    def judge_settings(self, rows: int) -> dict: ...


class LensStage(Stage):
    name = "lens"
    result_schema = VARIANT_SCHEMA
    row_schema = JUDGEMENT_SCHEMA

    def __init__(self, lens: LensSetup, real: dict[int, RowSet], resamples: int, progress: bool = False,
                 ensemble: str = DEFAULT_ENSEMBLE):
        super().__init__()
        self.lens, self.real, self.resamples, self.progress = lens, real, resamples, progress
        self.ensemble = ensemble  # ranking.ensemble: the cascade picks by the ranking the user configured
        self.rubrics = Rubrics()
        self.models = dict(lens.models)
        self.p_hat = pl.DataFrame(schema={})

    def select(self, candidates: list[RowSet], earlier: list[StageOutcome]) -> tuple[list[RowSet], list[str]]:
        """The cascade: the top `lens.candidates.top` by the cheaper proxies' ranking, else all."""
        cascade = self.lens.config.candidates
        if cascade is None:
            return candidates, []
        frames = [outcome.scores for outcome in earlier]
        scores = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame(schema=RESULT_SCHEMA)
        top = set(top_by(scores, cascade.by, cascade.top, self.ensemble))
        return [c for c in candidates if c.name in top], [c.name for c in candidates if c.name not in top]

    def prepare(self, candidates: list[RowSet], store: Store, fresh: bool) -> dict[str, str]:
        started = time.perf_counter()
        self.rubrics = self.lens.source.prepare(candidates, self.real, store, fresh)
        self.counts.update(lens_rubrics_written=self.rubrics.written, lens_rubrics_reused=self.rubrics.reused,
                           lens_rows_judged=0, lens_rows_unparsed=0)
        self.timings["lens_rubrics"] = time.perf_counter() - started
        return self.rubrics.failed

    def key_payload(self, candidate: RowSet) -> dict:
        lens = self.lens.config
        return {"scorer": self.lens.scorer_id, "prompts": prompts.PROMPT_VERSION,
                "real": real_hashes(self.real),
                "rubrics": {str(s): self.rubrics.by_pair[(candidate.name, s)].digest for s in self.real},
                "max_rows": lens.max_rows, "max_row_tokens": lens.max_row_tokens,
                "max_model_len": lens.max_model_len, "task": lens.task, "dtype": lens.dtype}

    def expected_results(self, candidate: RowSet) -> int:
        return len(self.real)  # one row of score variants per seed

    def run(self, todo: list[RowSet], commit: Commit, fail: Fail) -> None:
        started = time.perf_counter()
        lens = self.lens.config
        pairs, prefixes = judging_plan(lens.task, todo, list(self.real), self.rubrics.by_pair)
        too_long = rubrics_too_long(self.lens.scorer_path, prefixes, pairs, lens.max_model_len)
        for dataset_id, reason in too_long.items():
            fail(dataset_id, reason)
        todo = [c for c in todo if c.name not in too_long]
        if todo:
            blocks = [build_block(c, self.real, pairs, lens.max_rows) for c in todo]
            expected = {c.name: expected_rows(c, self.real, lens.max_rows) for c in todo}
            settings = self.lens.judge_settings(sum(expected.values()))
            batches = score_rows(blocks, settings, prefixes, lens.max_row_tokens, lens.batch_rows)
            self._collect(batches, expected, commit, started)
        self.timings["lens_judge"] = time.perf_counter() - started

    def _collect(self, batches, expected: dict[str, int], commit: Commit, started: float) -> None:
        """Commit each candidate as its last judged row arrives; time the first batch (engine start-up
        and that batch's work) apart as `lens_first_batch`, and its rows as `lens_first_batch_rows`."""
        from tqdm import tqdm

        bar = tqdm(total=sum(expected.values()), desc="LENS judging rows", unit="row", disable=not self.progress)
        parts: dict[str, list[pa.Table]] = defaultdict(list)
        arrived: dict[str, int] = defaultdict(int)
        for batch in batches:
            if "lens_first_batch" not in self.timings:
                self.timings["lens_first_batch"] = time.perf_counter() - started
                self.counts["lens_first_batch_rows"] = batch.num_rows
            batch = batch.select(OUTPUT_SCHEMA.names)
            for dataset_id in batch.column("dataset_id").unique().to_pylist():
                part = batch.filter(pc.equal(batch.column("dataset_id"), dataset_id))
                parts[dataset_id].append(part)
                arrived[dataset_id] += part.num_rows
                if arrived[dataset_id] == expected[dataset_id]:
                    judgements = pl.from_arrow(pa.concat_tables(parts.pop(dataset_id)).cast(OUTPUT_SCHEMA))
                    commit(dataset_id, Committed(score_table(judgements), judgements))
            self.counts["lens_rows_judged"] += batch.num_rows
            self.counts["lens_rows_unparsed"] += int(pc.sum(batch.column("unparsed")).as_py() or 0)
            bar.update(batch.num_rows)
        bar.close()

    def finish(self, outcome: StageOutcome) -> None:
        committed = outcome.committed
        judgements = (pl.concat([c.rows for c in committed.values()]) if committed
                      else pl.DataFrame(schema=JUDGEMENT_SCHEMA))
        variants = (pl.concat([c.results for c in committed.values()]) if committed
                    else pl.DataFrame(schema=VARIANT_SCHEMA))
        self.p_hat = p_hat_table(judgements, self.lens.config.judgement)
        outcome.scores = lens_results(variants, self.p_hat, self.lens.config.judgement, self.resamples)
        outcome.tables = {LENS_JUDGEMENTS_FILE: judgements, LENS_SCORES_FILE: variants}
        outcome.row_columns = [self.p_hat.rename({"p_hat": P_REAL.name})]
        self.counts["lens_rows_reused"] = sum(c.rows.height for name, c in committed.items()
                                              if name not in outcome.computed)
        self.counts["lens_pairs_unscored"] = variants.height - outcome.scores.height

    def report(self, outcome: StageOutcome) -> LensReport:
        return LensReport(outcome.scores, outcome.tables[LENS_SCORES_FILE],
                          outcome.tables[LENS_JUDGEMENTS_FILE], self.p_hat, dict(outcome.counts),
                          {"lens": outcome.seconds, **self.timings}, dict(self.models), dict(outcome.failed),
                          list(outcome.skipped))
