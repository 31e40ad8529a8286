"""The LENS front door (`lens/proxy.py`): what `Lens(config.lens, config.resources)` resolves before
any work (its models, its engine's settings), what `check` refuses, and the stage it gives a job.

No model runs: the scorer is a folder holding a config.json, which is all the KV cache's size needs."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from synque_ray.config import LensConfig, ResourcesConfig
from synque_ray.errors import UserError
from synque_ray.lens import engine
from synque_ray.lens.proxy import STAGE, Lens
from synque_ray.lens.stage import LensStage
from synque_ray.models import local_model_id
from synque_ray.reading import RowSet
from synque_ray.stage.base import Job

ENDPOINT = {"openai_base_url": "http://127.0.0.1:9/v1", "model": "writer-7b"}
LAYERS, HEADS, KV_HEADS, HIDDEN = 3, 8, 2, 128
REAL = {7: RowSet("real", ["Acme shares rise", "Bolt cuts jobs"])}


@pytest.fixture
def scorer(tmp_path):
    folder = tmp_path / "scorer"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS, "torch_dtype": "float32"}))
    return folder


def test_the_scorer_and_the_writer_are_resolved_once_into_the_models_run_json_records(scorer):
    lens = Lens(LensConfig(scorer=str(scorer), rubric_writer=ENDPOINT), ResourcesConfig())
    assert (lens.scorer_path, lens.scorer_id) == (str(scorer.resolve()), local_model_id(scorer))
    assert lens.models == {"lens_scorer": local_model_id(scorer), "lens_rubric_writer": "writer-7b@http://127.0.0.1:9/v1"}
    assert lens.source.endpoint == ENDPOINT


def test_on_a_cpu_the_kv_cache_is_sized_in_bytes_from_the_scorers_shape(scorer):
    lens = Lens(LensConfig(scorer=str(scorer), rubric_writer=ENDPOINT, max_model_len=100, kv_cache_sequences=5),
                ResourcesConfig())
    engine_args = lens.settings["engine"]
    # per token: a key and a value, per layer and KV head, of head_dim float32s; 100 tokens fill 4 blocks of 32
    per_token = 2 * LAYERS * KV_HEADS * (HIDDEN // HEADS) * 4
    assert engine_args["kv_cache_memory_bytes"] == 5 * 4 * 32 * per_token
    assert (engine_args["model"], engine_args["block_size"], engine_args["enforce_eager"]) == (
        str(scorer.resolve()), 32, True)
    assert "gpu_memory_utilization" not in engine_args and lens.settings["on_gpu"] is False
    # a short judging run keeps vLLM's core inline (a faster start), a long one its own process
    assert lens.judge_settings(engine.INLINE_CORE_MAX_ROWS)["inline_core"] is True
    assert lens.judge_settings(engine.INLINE_CORE_MAX_ROWS + 1)["inline_core"] is False


def test_on_a_gpu_the_engine_takes_a_share_of_its_memory(scorer):
    lens = Lens(LensConfig(scorer=str(scorer), rubric_writer=ENDPOINT, gpu_memory_utilization=0.5),
                ResourcesConfig(lens_gpus=1, lens_actors=2))
    engine_args = lens.settings["engine"]
    assert engine_args["gpu_memory_utilization"] == 0.5 and "kv_cache_memory_bytes" not in engine_args
    assert engine_args["enforce_eager"] is False and "block_size" not in engine_args
    assert (lens.settings["actors"], lens.settings["num_gpus"], lens.settings["inline_core"]) == (2, 1, False)


def test_settings_the_user_must_fix_stop_it_before_any_model_is_resolved(tmp_path, scorer):
    with pytest.raises(UserError, match=r"resources\.tensor_parallel is 2 but resources\.lens_gpus is 1"):
        Lens(LensConfig(scorer=str(tmp_path / "nowhere"), rubric_writer=ENDPOINT),
             ResourcesConfig(tensor_parallel=2, lens_gpus=1))
    with pytest.raises(UserError, match=r"^lens\.scorer: model path '.*nowhere' does not exist$"):
        Lens(LensConfig(scorer=str(tmp_path / "nowhere"), rubric_writer=ENDPOINT), ResourcesConfig())


def test_check_refuses_a_rubric_file_without_every_candidate_and_a_cache_that_cannot_fit(
        tmp_path, scorer, monkeypatch):
    rubric = {"commonalities": ["c"], "real_vs_synthetic": ["r"], "synthetic_vs_real": ["s"]}
    path = tmp_path / "rubrics.json"
    path.write_text(json.dumps({"a": rubric}))
    lens = Lens(LensConfig(scorer=str(scorer), rubric_file=str(path)), ResourcesConfig())
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    needed = lens.settings["engine"]["kv_cache_memory_bytes"]
    monkeypatch.setattr(engine, "node_available_bytes", lambda: needed)
    lens.check([RowSet("a", ["x"])])  # fits exactly: nothing to fix
    with pytest.raises(UserError, match=r"rubrics\.json: no rubric for candidate 'b'"):
        lens.check([RowSet("a", ["x"]), RowSet("b", ["y"])])
    monkeypatch.setattr(engine, "node_available_bytes", lambda: needed - 1)
    with pytest.raises(UserError, match=r"^lens: the KV cache needs .* GiB .* but only .* GiB is free"):
        lens.check([RowSet("a", ["x"])])
    monkeypatch.setenv("RAY_ADDRESS", "ray://cluster:10001")  # the engine runs on the cluster: not checked here
    lens.check([RowSet("a", ["x"])])


def test_a_job_gets_the_lens_stage_built_from_its_config(scorer, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray://cluster:10001")
    config = SimpleNamespace(lens=LensConfig(scorer=str(scorer), rubric_writer=ENDPOINT),
                             resources=ResourcesConfig(), ranking=SimpleNamespace(resamples=40, ensemble="mean"))
    stage = STAGE.build(Job(config, real=REAL, candidates=[RowSet("a", ["x"])], progress=True))
    assert isinstance(stage, LensStage) and stage.name == STAGE.name
    assert (stage.real, stage.resamples, stage.progress, stage.ensemble) == (REAL, 40, True, "mean")
    assert stage.lens.scorer_id == local_model_id(scorer) and stage.models == stage.lens.models
    assert STAGE.section is LensConfig and STAGE.proxies == (STAGE.name,)
    assert math.isclose(stage.lens.settings["engine"]["kv_cache_memory_bytes"],
                        engine.kv_cache_bytes(str(scorer), 4096, 16, "auto"))


def test_a_job_whose_rubric_file_lacks_a_candidate_is_refused_when_its_stage_is_built(tmp_path, scorer):
    path = tmp_path / "rubrics.json"
    path.write_text(json.dumps({"a": {"commonalities": ["c"], "real_vs_synthetic": ["r"],
                                      "synthetic_vs_real": ["s"]}}))
    config = SimpleNamespace(lens=LensConfig(scorer=str(scorer), rubric_file=str(path)),
                             resources=ResourcesConfig(), ranking=SimpleNamespace(resamples=40, ensemble="mean"))
    with pytest.raises(UserError, match=r"no rubric for candidate 'b'"):
        STAGE.build(Job(config, real=REAL, candidates=[RowSet("a", ["x"]), RowSet("b", ["y"])]))
