"""`pipeline.reduce_outcomes`: what the run's summary says of the stages' outcomes, read from the
stages themselves (no stage's name is spelled in the pipeline)."""

from __future__ import annotations

import polars as pl

from synque_ray.config import RankingConfig
from synque_ray.lens.stage import LensStage
from synque_ray.pipeline import reduce_outcomes
from synque_ray.vocabulary import RESULT_SCHEMA
from synque_ray.stage.base import StageOutcome
from synque_ray.stage.embedding import EmbeddingStage

SEEDS = [1, 2]


def outcome(name: str, proxy: str, candidates: list[str], skipped: list[str] | None = None) -> StageOutcome:
    """A stage's outcome: `proxy` scored for each candidate and seed (the first best), `skipped` left out."""
    rows = [{"dataset_id": c, "proxy": proxy, "seed": seed, "raw": float(k), "score": -float(k) - seed / 10,
             "replicates": None, "error": None, "seconds": 0.0}
            for k, c in enumerate(candidates) for seed in SEEDS]
    return StageOutcome(name, {}, scores=pl.DataFrame(rows, schema=RESULT_SCHEMA), skipped=skipped or [],
                        counts={"scored": len(candidates), "reused": 0, "failed": 0, "skipped": len(skipped or [])})


def test_the_candidates_the_lens_cascade_skipped_are_named_and_only_those():
    embedding = outcome(EmbeddingStage.name, "mdm", ["a", "b", "c"])
    lens = outcome(LensStage.name, "lens", ["a", "b"], skipped=["c"])
    _, summary = reduce_outcomes([embedding, lens], [], SEEDS, RankingConfig())
    assert summary["lens_skipped"] == ["c"]
    assert summary["counts"]["stages"][LensStage.name]["skipped"] == 1
    # a candidate another stage leaves out is not LENS's to report
    other = outcome("another", "pad", ["a", "b"], skipped=["c"])
    _, summary = reduce_outcomes([embedding, other], [], SEEDS, RankingConfig())
    assert summary["lens_skipped"] == []
    _, summary = reduce_outcomes([embedding], [], SEEDS, RankingConfig())
    assert summary["lens_skipped"] == []
