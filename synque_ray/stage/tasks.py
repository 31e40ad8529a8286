"""A stage of one Ray task per candidate (`TaskStage`); Ray's plumbing is in `synque_ray.raycluster`."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import polars as pl

from synque_ray.reading import InputChanged, RowSet
from synque_ray.stage.base import Commit, Committed, Fail, Stage, one_line


class TaskStage(Stage):
    """A stage that runs one Ray task per candidate (a GPU each where `num_gpus` says so).

    A subclass gives `task(candidate) -> (function, args)`: a pure function (it must not
    need Ray) returning `(results, rows)` — result rows as dicts of `result_schema`'s
    columns and row signals as a dict of `row_schema`'s columns. A task whose worker
    dies is retried `retries` times; an exception inside it fails that candidate only.

    A proxy that is not computed from embeddings is one such class, its declaration beside it
    (`STAGE = StageSpec(...)`, docs/extending.md) and one line in `stage/registry.py`'s
    `STAGES`, e.g.::

        class PerplexityStage(TaskStage):
            name = "perplexity"

            def __init__(self, config, real):
                super().__init__()
                self.params, self.real = config.perplexity, real
                self.num_gpus, self.retries = ..., config.resources.task_retries

            def key_payload(self, candidate):
                return {"params": self.params.model_dump(),
                        "real": {str(s): r.content_hash for s, r in self.real.items()}}

            def expected_results(self, candidate):
                return len(self.real)  # one score row per seed

            def task(self, candidate):
                return perplexity_task, (candidate.name, candidate.texts,
                                         {s: r.texts for s, r in self.real.items()}, self.params)

        STAGE = StageSpec(PerplexityStage.name, PerplexityParams,
                          lambda job: PerplexityStage(job.config, job.real))
    """

    num_cpus: float = 1
    num_gpus: float = 0
    retries: int = 3
    progress: bool = False  # a bar of candidates done, on the terminal

    @abstractmethod
    def task(self, candidate: RowSet) -> tuple[Callable, tuple]:
        """The pure function that computes `candidate`'s result, and its arguments."""

    def _remote(self, function: Callable, remotes: dict[Callable, Any]) -> Any:
        """`function` as a Ray remote function with this stage's resources (made once per function)."""
        import ray

        if function not in remotes:
            remotes[function] = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                                           max_retries=self.retries)(function)
        return remotes[function]

    def map_remote(self, calls: list[tuple[Callable, tuple]]) -> list[Any]:
        """Run each (pure function, args) of `calls` as a Ray task with this stage's resources, all
        at once; their results in the order of `calls`. Work that every candidate's task needs (the
        fluency stage's U_r rows) is done this way first; an exception in one raises here."""
        import ray

        remotes: dict[Callable, Any] = {}
        return ray.get([self._remote(function, remotes).remote(*args) for function, args in calls])

    def run(self, todo: list[RowSet], commit: Commit, fail: Fail) -> None:
        import ray
        from tqdm import tqdm

        remotes: dict[Callable, Any] = {}  # Ray's remote functions
        pending = {}
        for candidate in todo:
            try:
                function, args = self.task(candidate)  # reads its texts: the hashed rows, or InputChanged
            except InputChanged as err:
                fail(candidate.name, str(err))
                continue
            pending[self._remote(function, remotes).remote(*args)] = candidate.name
        with tqdm(total=len(pending), desc=self.name, unit="candidate", disable=not self.progress) as bar:
            while pending:
                [done], _ = ray.wait(list(pending), num_returns=1)
                dataset_id = pending.pop(done)
                bar.update(1)
                try:
                    results, rows = ray.get(done)
                except ray.exceptions.RayError as err:
                    fail(dataset_id, f"{self.name}: {one_line(err)}")
                    continue
                commit(dataset_id, Committed(pl.DataFrame(results, schema=self.result_schema),
                                             pl.DataFrame(rows, schema=self.row_schema)))
