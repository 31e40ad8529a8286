"""LENS as one object, in the manner of vLLM's `LLM`: models resolved once, then `check` and `run`.

    lens = Lens(config.lens, config.resources)   # resolves the scorer and the rubric writer
    lens.check(candidates)                        # settings the user must fix, before any work
    report = lens.run(candidates, real, Store(config.output))   # -> LensReport

Inside a scoring job the same object gives the pipeline its stage (`lens.stage(real)`).
"""

from __future__ import annotations

import os

from synque_ray.config import LensConfig, ResourcesConfig
from synque_ray.lens.engine import check_kv_memory, check_resources, engine_settings
from synque_ray.lens.rubric_source import Rubrics, RubricSource
from synque_ray.lens.stage import LensReport, LensStage
from synque_ray.models import resolve_llm
from synque_ray.reading import RowSet
from synque_ray.reduce import DEFAULT_ENSEMBLE, DEFAULT_RESAMPLES
from synque_ray.stage.base import Job, StageSpec, run_stage
from synque_ray.storage import Store


class Lens:
    def __init__(self, lens: LensConfig, resources: ResourcesConfig):
        check_resources(resources)
        self.config, self.resources = lens, resources
        self.scorer_path, self.scorer_id = resolve_llm(lens.scorer, "lens.scorer")
        self.source = RubricSource(lens, resources)
        self.settings = engine_settings(lens, resources, self.scorer_path)
        self.models = {"lens_scorer": self.scorer_id, "lens_rubric_writer": self.source.model_id}

    def judge_settings(self, rows: int) -> dict:
        """The judging engine's settings for a run that judges `rows` rows (the core inline for few)."""
        return engine_settings(self.config, self.resources, self.scorer_path, rows)

    def check(self, candidates: list[RowSet]) -> None:
        """What the user must fix, before any work: a rubric file lacking a candidate, a KV cache
        that does not fit this machine (checked only where this machine runs the engine)."""
        self.source.from_file(candidates)
        engine = self.settings["engine"]
        if "kv_cache_memory_bytes" in engine and not os.environ.get("RAY_ADDRESS"):
            check_kv_memory(engine["kv_cache_memory_bytes"])

    def stage(self, real: dict[int, RowSet], resamples: int = DEFAULT_RESAMPLES,
              progress: bool = False, ensemble: str = DEFAULT_ENSEMBLE) -> LensStage:
        return LensStage(self, real, resamples, progress, ensemble)

    def rubrics(self, candidates: list[RowSet], real: dict[int, RowSet], store: Store,
                fresh: bool = False) -> Rubrics:
        """The rubric of every (candidate, seed): reused from `store`, or written and saved there."""
        return self.source.prepare(candidates, real, store, fresh)

    def run(self, candidates: list[RowSet], real: dict[int, RowSet], store: Store, fresh: bool = False,
            progress: bool = False, resamples: int = DEFAULT_RESAMPLES) -> LensReport:
        """Judge `candidates` against U_r (`real`, one sample per seed); Ray must be initialised.
        Results are committed per candidate under `store` and reused by a later run."""
        stage = self.stage(real, resamples, progress)
        return stage.report(run_stage(stage, candidates, store, fresh))


def build(job: Job) -> LensStage:
    """The LENS stage of a job: its models resolved and what the user must fix checked, before any work."""
    lens = Lens(job.config.lens, job.config.resources)
    lens.check(job.candidates)
    return lens.stage(job.real, job.config.ranking.resamples, job.progress, job.config.ranking.ensemble)


STAGE = StageSpec(LensStage.name, LensConfig, build)  # LENS runs last: its cascade reads the others' ranking
