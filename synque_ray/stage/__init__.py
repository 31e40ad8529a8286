"""Stages of a scoring job: one abstraction (`base`), one Ray task per candidate (`tasks`), the embedding proxies."""

from synque_ray.stage.base import Committed, Stage, StageOutcome, digest, run_stage
from synque_ray.stage.tasks import TaskStage

__all__ = ["Committed", "Stage", "StageOutcome", "TaskStage", "digest", "run_stage"]
