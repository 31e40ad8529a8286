"""The CPU KV cache is sized in bytes from the job, never as a share of the machine."""

from __future__ import annotations

import json

import pytest

from synque_ray.config import parse_config
from synque_ray.errors import UserError
from synque_ray.lens import engine


def _model(tmp_path, **overrides):
    config = {"num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
              "hidden_size": 576, "dtype": "bfloat16", **overrides}
    (tmp_path / "config.json").write_text(json.dumps(config))
    return str(tmp_path)


def _config(**lens):
    return parse_config({"name": "t", "output": "out", "real": {"path": "r.json", "text": "t"},
                         "candidates": {"path": "c", "text": "t"}, "lens": lens})


def test_bytes_are_layers_kv_heads_head_dim_and_dtype_per_token(tmp_path):
    path = _model(tmp_path)
    # 2 (K and V) x 30 layers x 3 KV heads x 64 dims x 2 bytes = 23,040 bytes per token
    assert engine.kv_cache_bytes(path, 2048, sequences=4, block_size=32) == 4 * 2048 * 23_040
    # a length that is not a whole number of blocks rounds up to the next block
    assert engine.kv_cache_bytes(path, 2000, sequences=1, block_size=32) == 2016 * 23_040
    # float32 doubles it; no num_key_value_heads means one KV head per attention head
    assert engine.kv_cache_bytes(path, 32, 1, dtype="float32", block_size=32) == 32 * 2 * 30 * 3 * 64 * 4
    bare = _model(tmp_path, num_key_value_heads=None, head_dim=None)
    assert engine.kv_cache_bytes(bare, 32, 1, block_size=32) == 32 * 2 * 30 * 9 * 64 * 2


def test_cpu_engine_gets_bytes_not_a_share(tmp_path):
    path = _model(tmp_path)
    config = _config(max_model_len=1024, kv_cache_sequences=3)
    settings = engine.engine_settings(config.lens, config.resources, path)["engine"]
    assert "gpu_memory_utilization" not in settings
    assert settings["kv_cache_memory_bytes"] == 3 * 1024 * 23_040


def test_gpu_engine_keeps_a_share_of_the_gpu(tmp_path):
    config = parse_config({"name": "t", "output": "out", "real": {"path": "r.json", "text": "t"},
                           "candidates": {"path": "c", "text": "t"}, "resources": {"lens_gpus": 1}})
    settings = engine.engine_settings(config.lens, config.resources, _model(tmp_path))["engine"]
    assert settings["gpu_memory_utilization"] == 0.9 and "kv_cache_memory_bytes" not in settings


def test_too_little_memory_is_one_line_naming_needed_and_free(monkeypatch):
    monkeypatch.setattr(engine, "node_available_bytes", lambda: 2 * engine.GIB)
    engine.check_kv_memory(engine.GIB)  # fits: no error
    with pytest.raises(UserError) as err:
        engine.check_kv_memory(3 * engine.GIB)
    assert str(err.value) == (
        "lens: the KV cache needs 3.00 GiB (lens.max_model_len x lens.kv_cache_sequences) but only 2.00 GiB "
        "is free on this machine's memory node; lower them or free memory")


def test_node_memory_is_read_from_this_machine():
    free = engine.node_available_bytes()
    assert 0 < free < 1 << 50


def test_cpu_engine_core_runs_inline_for_a_writer_and_a_short_judging_job(tmp_path):
    path, config = _model(tmp_path), _config()
    inline = {rows: engine.engine_settings(config.lens, config.resources, path, rows)["inline_core"]
              for rows in (None, 1, engine.INLINE_CORE_MAX_ROWS, engine.INLINE_CORE_MAX_ROWS + 1)}
    assert inline == {None: True, 1: True, engine.INLINE_CORE_MAX_ROWS: True, engine.INLINE_CORE_MAX_ROWS + 1: False}
    gpu = parse_config({"name": "t", "output": "out", "real": {"path": "r.json", "text": "t"},
                        "candidates": {"path": "c", "text": "t"}, "resources": {"lens_gpus": 1}})
    assert not engine.engine_settings(gpu.lens, gpu.resources, path, None)["inline_core"]  # GPUs keep vLLM's default


# Every variable prepare_process may set in this process.
ENGINE_ENV = ("VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU",
              "VLLM_LOGGING_LEVEL", "TOKENIZERS_PARALLELISM", "OMP_NUM_THREADS", "TORCHDYNAMO_DISABLE")


def _unset_engine_env(monkeypatch) -> None:
    """Each of ENGINE_ENV unset for the test, and put back as it was afterwards, whatever prepare_process sets."""
    for name in ENGINE_ENV:
        monkeypatch.setenv(name, "")  # recorded first, so that the teardown restores it
        monkeypatch.delenv(name)


def test_prepare_process_keeps_the_core_inline_unless_the_user_said_otherwise(tmp_path, monkeypatch):
    path, config = _model(tmp_path), _config()
    _unset_engine_env(monkeypatch)
    engine.prepare_process(engine.engine_settings(config.lens, config.resources, path, None))
    assert engine.os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING")
    engine.prepare_process(engine.engine_settings(config.lens, config.resources, path, 10**6))
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in engine.os.environ  # a long job: vLLM's default
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    engine.prepare_process(engine.engine_settings(config.lens, config.resources, path, None))
    assert engine.os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "1"


def test_an_eager_cpu_engine_runs_its_sampler_helpers_without_dynamo(tmp_path, monkeypatch):
    """Eager on CPU, vLLM would still torch.compile two sampler helpers on first use (~3 s of the first
    judged batch); TORCHDYNAMO_DISABLE=1 runs them as plain torch. GPUs, an engine the user wants
    compiled, and the user's own value are left alone."""
    path, config = _model(tmp_path), _config()
    _unset_engine_env(monkeypatch)

    def dynamo_after(lens, resources):
        monkeypatch.delenv("TORCHDYNAMO_DISABLE", raising=False)
        engine.prepare_process(engine.engine_settings(lens, resources, path, None))
        return engine.os.environ.get("TORCHDYNAMO_DISABLE")

    assert dynamo_after(config.lens, config.resources) == "1"
    assert dynamo_after(config.lens.model_copy(update={"enforce_eager": False}), config.resources) is None
    gpu = parse_config({"name": "t", "output": "out", "real": {"path": "r.json", "text": "t"},
                        "candidates": {"path": "c", "text": "t"}, "resources": {"lens_gpus": 1}})
    assert dynamo_after(gpu.lens, gpu.resources) is None
    monkeypatch.setenv("TORCHDYNAMO_DISABLE", "0")
    engine.prepare_process(engine.engine_settings(config.lens, config.resources, path, None))
    assert engine.os.environ["TORCHDYNAMO_DISABLE"] == "0"


def test_the_engine_starts_with_the_imported_objects_frozen(tmp_path, monkeypatch):
    """vLLM is imported with the garbage collector paused (8.8-9.8 s instead of 12.1-12.7 s), and
    collects garbage while it starts; the objects torch and vLLM created at import are frozen first,
    so those collections skip them (LLM() 4.0-4.9 s after the imports instead of 6.3-6.6 s, BENCHMARKS.md)."""
    import gc
    import sys
    import types

    path, config = _model(tmp_path), _config()
    _unset_engine_env(monkeypatch)
    frozen_at_start, collecting_at_import = [], []

    class LLM:  # stands in for vllm.LLM: records what the garbage collector holds frozen when it is built
        def __init__(self, **kwargs):
            frozen_at_start.append(gc.get_freeze_count())

    class Vllm(types.ModuleType):  # stands in for the vllm module: records whether the collector runs at import
        def __getattr__(self, name):
            collecting_at_import.append(gc.isenabled())
            return LLM

    monkeypatch.setitem(sys.modules, "vllm", Vllm("vllm"))
    monkeypatch.setattr(engine, "check_kv_memory", lambda needed: None)
    gc.unfreeze()
    try:
        engine.build_engine(engine.engine_settings(config.lens, config.resources, path, None))
    finally:
        gc.unfreeze()
    assert frozen_at_start and frozen_at_start[0] > 0
    assert collecting_at_import and not any(collecting_at_import) and gc.isenabled()  # paused for the import only
