"""The perplexity stage (`stage/perplexity.py`): the result rows one task makes of a fine-tune's
scores, its failures, its result key, the task it hands Ray and how a job builds it.

The fine-tune is replaced by a double (the LM's math is tests/proxies/test_perplexity.py's): it returns
per-row NLLs set by the test, so every number below is computed again here by hand."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from synque_ray.config import ResourcesConfig
from synque_ray.errors import UserError
from synque_ray.models import local_model_id
from synque_ray.perplexity import PerplexityParams, SampleScore
from synque_ray.reading import RowSet
from synque_ray.vocabulary import RESULT_SCHEMA
from synque_ray.rowschema import ROW_SCHEMA
from synque_ray.stage import perplexity as stage_module
from synque_ray.stage.base import Job, stage_key
from synque_ray.stage.perplexity import STAGE, PerplexityStage, score_candidate

# Per seed: each U_r row's mean NLL per token and its token count, as the fine-tuned LM would give.
NLL = {3: (np.array([1.0, 2.0, 0.5]), np.array([4, 2, 6])), 11: (np.array([3.0, 1.5]), np.array([5, 5]))}
REAL = {3: RowSet("real-3", ["u1", "u2", "u3"]), 11: RowSet("real-11", ["v1", "v2"])}


def scores_by_hand(seed: int) -> SampleScore:
    nll, tokens = NLL[seed]
    return SampleScore(math.exp((nll * tokens).sum() / tokens.sum()), nll, tokens)


@pytest.fixture
def finetune(monkeypatch):
    """The fine-tune's double: records what it is given and scores every seed by `NLL`."""
    calls = []

    def fake(model_path, train_texts, real, params, threads):
        calls.append({"model_path": model_path, "train": train_texts, "real": real, "params": params,
                      "threads": threads})
        return {seed: scores_by_hand(seed) for seed in real}

    monkeypatch.setattr(stage_module, "perplexity_after_finetune", fake)
    return calls


@pytest.fixture
def model(tmp_path):
    folder = tmp_path / "lm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return folder


def test_a_task_gives_one_row_per_seed_with_replicates_over_u_rs_rows(finetune):
    params = PerplexityParams(steps=3)
    real = {seed: rowset.texts for seed, rowset in REAL.items()}
    rows, signals = score_candidate("cand", "/lm", ["a", "b"], real, params, resamples=50, threads=2)
    assert finetune == [{"model_path": "/lm", "train": ["a", "b"], "real": real, "params": params, "threads": 2}]
    assert [(r["dataset_id"], r["proxy"], r["seed"], r["error"]) for r in rows] == [
        ("cand", STAGE.name, 3, None), ("cand", STAGE.name, 11, None)]
    for row in rows:
        nll, tokens = NLL[row["seed"]]
        assert row["raw"] == pytest.approx(math.exp((nll * tokens).sum() / tokens.sum()))
        assert row["score"] == -row["raw"]  # lower perplexity is better
        # U_r's rows drawn with replacement, the seed's own stream: each draw's token-weighted perplexity
        draws = np.random.default_rng(row["seed"]).multinomial(len(nll), np.full(len(nll), 1 / len(nll)), size=50)
        by_hand = [-math.exp((w * nll * tokens).sum() / (w * tokens).sum()) for w in draws]
        np.testing.assert_allclose(row["replicates"], by_hand)
    assert rows[0]["seconds"] == rows[1]["seconds"] >= 0  # the task's time, shared out over its seeds
    assert signals == {column: [] for column in ROW_SCHEMA}  # no per-row signals
    committed = pl.DataFrame(rows, schema=RESULT_SCHEMA)  # the rows are the stage's result schema
    assert committed.height == 2 and PerplexityStage.result_schema == RESULT_SCHEMA


@pytest.mark.parametrize("error", [ValueError("loss is nan\nat step 3"), OverflowError("math range error")])
def test_a_fine_tune_that_fails_is_an_error_row_of_every_seed_never_ranked(monkeypatch, error):
    def broken(*args):
        raise error

    monkeypatch.setattr(stage_module, "perplexity_after_finetune", broken)
    rows, _ = score_candidate("cand", "/lm", ["a"], {3: ["u"], 11: ["v"]}, PerplexityParams(), 20, 1)
    first_line = str(error).splitlines()[0]
    assert [r["error"] for r in rows] == [f"perplexity: {first_line}"] * 2
    assert all(math.isnan(r["raw"]) and math.isnan(r["score"]) and r["replicates"] == [] for r in rows)


def test_an_unexpected_failure_is_not_taken_for_a_score(monkeypatch):
    def broken(*args):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(stage_module, "perplexity_after_finetune", broken)
    with pytest.raises(RuntimeError, match="out of memory"):  # the stage fails the candidate with it
        score_candidate("cand", "/lm", ["a"], {3: ["u"]}, PerplexityParams(), 20, 1)


def test_the_result_key_holds_the_parameters_the_model_u_r_and_the_resamples(model):
    def stage(real=REAL, resamples=40, **params):
        return PerplexityStage(PerplexityParams(model=str(model), **params), real, resamples, cpus=1, gpus=0,
                               retries=0)

    candidate = RowSet("cand", ["a", "b"])
    base = stage()
    assert base.models == {STAGE.name: local_model_id(model)}
    payload = base.key_payload(candidate)
    assert payload["model"] == local_model_id(model) and payload["resamples"] == 40
    assert payload["real"] == {"3": REAL[3].content_hash, "11": REAL[11].content_hash}
    assert payload["params"] == base.params.model_dump()
    key = stage_key(base, candidate)
    assert stage_key(stage(), RowSet("renamed", ["a", "b"])) == key  # by content, not by name
    others = [stage_key(stage(), RowSet("cand", ["a", "c"])), stage_key(stage(resamples=41), candidate),
              stage_key(stage(steps=2), candidate),
              stage_key(stage(real={3: REAL[3]}), candidate)]
    assert key not in others and len(set(others)) == len(others)
    assert base.expected_results(candidate) == 2 == stage(real=REAL).expected_results(RowSet("x", ["y"]))


def test_a_missing_model_stops_the_job_when_the_stage_is_built(tmp_path):
    with pytest.raises(UserError, match=r"perplexity\.model: model path '.*nowhere' does not exist"):
        PerplexityStage(PerplexityParams(model=str(tmp_path / "nowhere")), REAL, 40, cpus=1, gpus=0, retries=0)


@pytest.mark.parametrize(("cpus", "threads"), [(0.5, 1), (1, 1), (3.7, 3)])
def test_the_task_fine_tunes_once_on_the_candidate_and_scores_every_seed(model, cpus, threads):
    params = PerplexityParams(model=str(model))
    stage = PerplexityStage(params, REAL, 30, cpus=cpus, gpus=0.5, retries=2)
    function, args = stage.task(RowSet("cand", ["a", "b"]))
    assert function is score_candidate
    assert args == ("cand", str(model.resolve()), ["a", "b"], {3: ["u1", "u2", "u3"], 11: ["v1", "v2"]}, params,
                    30, threads)  # torch threads: the CPUs Ray reserves for the task, at least one
    assert (stage.num_cpus, stage.num_gpus, stage.retries) == (cpus, 0.5, 2)


def test_a_job_builds_it_from_its_section_and_resources(model):
    config = SimpleNamespace(perplexity=PerplexityParams(model=str(model), steps=5),
                             ranking=SimpleNamespace(resamples=60),
                             resources=ResourcesConfig(proxy_cpus=2, perplexity_gpus=1, task_retries=4))
    stage = STAGE.build(Job(config, real=REAL, candidates=[], progress=True))
    assert isinstance(stage, PerplexityStage) and stage.name == STAGE.name
    assert (stage.params, stage.real, stage.resamples, stage.progress) == (config.perplexity, REAL, 60, True)
    assert (stage.num_cpus, stage.num_gpus, stage.retries) == (2, 1, 4)
    assert STAGE.section is PerplexityParams and STAGE.proxies == (STAGE.name,)
