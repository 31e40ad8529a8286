"""The stages of a scoring job, one line each, in the order they run.

Each stage declares itself beside its code, as a proxy does: a `StageSpec` (`stage/base.py`) named
`STAGE` in its module, giving its name (its config section and its entry in run.json's counts),
its config section (which declares the proxies it produces), how it is built from the job, and
the wall times the CLI prints for it. `build_stages`, the proxy → stage mapping and the CLI's
times are read from `STAGES`, so adding a stage is its module and one line here (and its typed
field in `JobConfig`). LENS comes last: its cascade reads the ranking of the stages before it.
"""

from __future__ import annotations

from synque_ray.lens import proxy as lens
from synque_ray.stage import embedding, fluency, perplexity
from synque_ray.stage.base import Job, Stage, StageSpec

STAGES: dict[str, StageSpec] = {spec.name: spec for spec in (
    embedding.STAGE,
    perplexity.STAGE,
    fluency.STAGE,
    lens.STAGE,
)}

PROXY_STAGE: dict[str, str] = {proxy: spec.name for spec in STAGES.values() for proxy in spec.proxies}


def build_stages(job: Job) -> list[Stage]:
    """The job's stages in order: each registered stage that produces a proxy the config asks for."""
    wanted = set(job.config.proxies)
    return [spec.build(job) for spec in STAGES.values() if wanted.intersection(spec.proxies)]


def wall_times() -> tuple[str, ...]:
    """The keys of run.json's timings the CLI prints as the run's wall times, in the order they run."""
    return ("read", *(key for spec in STAGES.values() for key in spec.times or (spec.name,)), "reduce", "total")


def proxy_times() -> tuple[str, ...]:
    """The keys of run.json's timings the CLI prints as proxy compute summed over tasks (apart from the
    wall times: a proxy's tasks run side by side)."""
    return tuple(proxy for spec in STAGES.values() if spec.proxy_times for proxy in spec.proxies)


__all__ = ["PROXY_STAGE", "STAGES", "Job", "StageSpec", "build_stages", "proxy_times", "wall_times"]
