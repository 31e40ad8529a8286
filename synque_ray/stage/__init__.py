"""Stages of a scoring job: one abstraction (`base`), Ray at its edge (`tasks`), the embedding proxies."""

from synque_ray.stage.base import Committed, Stage, StageOutcome, digest, run_stage
from synque_ray.stage.tasks import TaskStage, map_actor_pool

__all__ = ["Committed", "Stage", "StageOutcome", "TaskStage", "digest", "map_actor_pool", "run_stage"]
