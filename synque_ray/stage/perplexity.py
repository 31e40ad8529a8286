"""The perplexity proxy as a stage: one Ray task per candidate fine-tunes the LM once and
scores every seed's U_r sample (`synque_ray.perplexity` holds the math)."""

from __future__ import annotations

import math
import time

import numpy as np

from synque_ray.perplexity import PerplexityParams, perplexity_after_finetune, resampled_perplexity, resolve_model
from synque_ray.reading import RowSet
from synque_ray.rowschema import ROW_SCHEMA
from synque_ray.stage.base import Job, StageSpec, real_hashes
from synque_ray.stage.tasks import TaskStage

RESULT_VERSION = 1  # bumped when what a committed perplexity result holds changes


def score_candidate(dataset_id: str, model_path: str, train_texts: list[str], real: dict[int, list[str]],
                    params: PerplexityParams, resamples: int, threads: int) -> tuple[list[dict], dict]:
    """One Ray task: (a result row per seed, no row signals). A fine-tune or a perplexity that
    fails (a non-finite loss, an overflow) is an error row of every seed: recorded, never ranked."""
    started = time.perf_counter()
    try:
        scores = perplexity_after_finetune(model_path, train_texts, real, params, threads)
        errors = {}
    except (ValueError, ArithmeticError) as err:
        scores, errors = {}, {seed: f"perplexity: {str(err).splitlines()[0]}" for seed in real}
    seconds = (time.perf_counter() - started) / len(real)
    rows = []
    for seed in real:
        if seed in errors:
            raw, replicates = math.nan, []
        else:
            raw = scores[seed].perplexity
            replicates = (-resampled_perplexity(scores[seed], resamples, np.random.default_rng(seed))).tolist()
        rows.append({"dataset_id": dataset_id, "proxy": "perplexity", "seed": seed, "raw": raw, "score": -raw,
                     "replicates": replicates, "error": errors.get(seed), "seconds": seconds})
    return rows, {column: [] for column in ROW_SCHEMA}


class PerplexityStage(TaskStage):
    """The perplexity proxy (docs/proxies.md): lower perplexity on U_r after fine-tuning on the candidate is better."""

    name = "perplexity"

    def __init__(self, params: PerplexityParams, real: dict[int, RowSet], resamples: int, cpus: float,
                 gpus: float, retries: int, progress: bool = False):
        super().__init__()
        self.params, self.real, self.resamples, self.progress = params, real, resamples, progress
        self.model_path, model_id = resolve_model(params)  # once: a missing model stops the job here
        self.models = {"perplexity": model_id}
        self.num_cpus, self.num_gpus, self.retries = cpus, gpus, retries

    def key_payload(self, candidate: RowSet) -> dict:
        return {"params": self.params.model_dump(), "model": self.models["perplexity"],
                "real": real_hashes(self.real), "resamples": self.resamples,
                "version": RESULT_VERSION}

    def expected_results(self, candidate: RowSet) -> int:
        return len(self.real)

    def task(self, candidate: RowSet):
        real = {seed: rowset.texts for seed, rowset in self.real.items()}
        return score_candidate, (candidate.name, self.model_path, candidate.texts, real, self.params,
                                 self.resamples, max(1, int(self.num_cpus)))


def build(job: Job) -> PerplexityStage:
    """The perplexity stage of a job, its model resolved."""
    resources = job.config.resources
    return PerplexityStage(job.config.perplexity, job.real, job.config.ranking.resamples, resources.proxy_cpus,
                           resources.perplexity_gpus, resources.task_retries, job.progress)


STAGE = StageSpec(PerplexityStage.name, PerplexityParams, build)
