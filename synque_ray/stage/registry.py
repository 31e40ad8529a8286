"""The stages of a scoring job, one line each, in the order they run.

A stage is registered with its name (its config section, its entry in run.json's counts),
the proxies it produces, how it is built from the job, and the wall times the CLI prints
for it. `build_stages`, the proxy → stage mapping and the CLI's list of times are read
from `STAGES`, so adding a stage is its module and one line here. LENS comes last: its
cascade reads the ranking of the stages before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from synque_ray.embed import EmbeddingCache, resolve_embedding
from synque_ray.lens.proxy import Lens
from synque_ray.proxies import REGISTRY
from synque_ray.reading import RowSet
from synque_ray.stage.base import Stage
from synque_ray.stage.embedding import EmbeddingStage
from synque_ray.stage.fluency import FluencyStage
from synque_ray.stage.perplexity import PerplexityStage
from synque_ray.storage import Store

if TYPE_CHECKING:
    from synque_ray.config import JobConfig


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
    """name: the stage's name; proxies: what it produces (it runs when the config asks for any);
    build: the stage, checked (models resolved, settings sane) before any work; times: its keys
    of run.json's timings that the CLI prints as wall times (its name when empty)."""

    name: str
    proxies: tuple[str, ...]
    build: Callable[[Job], Stage]
    times: tuple[str, ...] = ()


def _embedding(job: Job) -> Stage:
    model = resolve_embedding(job.config)  # its id names precision and backend: no two share entries
    cache = EmbeddingCache(Store(job.config.cache_location), model.id)
    return EmbeddingStage(job.config, job.real, model, cache, job.fresh, job.progress, job.evaluation)


def _perplexity(job: Job) -> Stage:
    resources = job.config.resources
    return PerplexityStage(job.config.perplexity, job.real, job.config.ranking.resamples, resources.proxy_cpus,
                           resources.perplexity_gpus, resources.task_retries, job.progress)


def _fluency(job: Job) -> Stage:
    resources = job.config.resources
    return FluencyStage(job.config.fluency, job.real, Store(job.config.cache_location), job.config.ranking.resamples,
                        resources.proxy_cpus, resources.fluency_gpus, resources.task_retries, job.progress)


def _lens(job: Job) -> Stage:
    """LENS's models resolve (and its engine starts) only for a job that asks for LENS."""
    lens = Lens(job.config.lens, job.config.resources)
    lens.check(job.candidates)
    return lens.stage(job.real, job.config.ranking.resamples, job.progress, job.config.ranking.ensemble)


STAGES: dict[str, StageSpec] = {spec.name: spec for spec in (
    StageSpec("embedding", tuple(REGISTRY), _embedding, times=("embed", "proxies")),
    StageSpec("perplexity", ("perplexity",), _perplexity),
    StageSpec("fluency", ("fluency",), _fluency),
    StageSpec("lens", ("lens",), _lens),
)}

PROXY_STAGE: dict[str, str] = {proxy: spec.name for spec in STAGES.values() for proxy in spec.proxies}


def build_stages(job: Job) -> list[Stage]:
    """The job's stages in order: each registered stage that produces a proxy the config asks for."""
    wanted = set(job.config.proxies)
    return [spec.build(job) for spec in STAGES.values() if wanted.intersection(spec.proxies)]


def wall_times() -> tuple[str, ...]:
    """The keys of run.json's timings the CLI prints as the run's wall times, in the order they run."""
    return ("read", *(key for spec in STAGES.values() for key in spec.times or (spec.name,)), "reduce", "total")
