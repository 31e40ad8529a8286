"""Building one vLLM engine inside a Ray actor, the same way on CPU and on GPU.

The settings are computed on the driver (`engine_settings`) and the engine is built
in the actor (`build_engine`), never on the driver, so that a CPU laptop and a GPU
cluster run the same code. On CPU, vLLM reserves its KV cache from RAM; it is sized
in bytes from what the job needs (`kv_cache_bytes`), never as a share of the machine,
because vLLM reads a share against the NUMA node's memory and one that fits one
machine fails on the next. Its OpenMP threads are pinned to the cores this process
may use unless the user pinned them already (VLLM_CPU_OMP_THREADS_BIND).

vLLM runs its engine core in a child process by default, which imports torch and vLLM
again and loads the model there: on CPU that is 26-29 s of a 30-s start-up, against 4-5 s
with the core in the actor's own process, which judges 2.5-7% slower (BENCHMARKS.md,
"vLLM's engine core"). So on CPU a short-lived engine (the rubric writer, or a judge of
few rows) keeps its core inline; a long judging job keeps vLLM's default.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from synque_ray.config import LensConfig, ResourcesConfig
from synque_ray.errors import UserError

CPU_BLOCK_SIZE = 32  # tokens per KV block on CPU (BENCHMARKS.md, LENS)
_DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2}
GIB = 1024**3
# Up to this many rows (x4 prompts) to judge, the ~23 s an inline core saves at start-up outweigh
# the 2.5-7% it loses in throughput at CPU speeds (~4 rows/s with the bundled model).
INLINE_CORE_MAX_ROWS = 2000


def _model_config(model_path: str) -> dict:
    local = Path(model_path) / "config.json"
    if local.is_file():
        return json.loads(local.read_text())
    from transformers import AutoConfig  # a hub id: its config from the local hub cache

    try:
        return AutoConfig.from_pretrained(model_path).to_dict()
    except Exception:  # noqa: BLE001 - any failure to load the config is the same user error
        raise UserError(f"lens: cannot read the model config of '{model_path}' to size its KV cache") from None


def kv_cache_bytes(model_path: str, max_model_len: int, sequences: int, dtype: str = "auto",
                   block_size: int = CPU_BLOCK_SIZE) -> int:
    """Bytes of KV cache that hold `sequences` sequences of `max_model_len` tokens.

    Per token a decoder keeps a key and a value per layer and KV head:
    2 x layers x kv_heads x head_dim x bytes per element; lengths round up to whole blocks.
    """
    config = _model_config(model_path)
    config = config.get("text_config", config)
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    stored = config.get("dtype") or config.get("torch_dtype") or "bfloat16"
    element = _DTYPE_BYTES.get(dtype if dtype != "auto" else str(stored).removeprefix("torch."), 2)
    per_token = 2 * config["num_hidden_layers"] * kv_heads * head_dim * element
    tokens = math.ceil(max_model_len / block_size) * block_size
    return sequences * tokens * per_token


def node_available_bytes() -> int:
    """Memory vLLM on CPU can take: the emptiest NUMA node's free + reclaimable (vLLM's own
    count), or the machine's available memory where no NUMA node is exposed."""
    nodes = sorted(Path("/sys/devices/system/node").glob("node[0-9]*/meminfo"))
    best = 0
    for meminfo in nodes:
        fields = {}
        for line in meminfo.read_text().splitlines():
            parts = line.split()  # "Node 0 MemFree: 123 kB"
            if len(parts) >= 4:
                fields[parts[2].rstrip(":")] = int(parts[3]) * 1024
        best = max(best, sum(fields.get(k, 0) for k in ("MemFree", "Active(file)", "Inactive(file)",
                                                         "SReclaimable")))
    if best:
        return best
    import psutil

    return psutil.virtual_memory().available


def check_kv_memory(needed: int, what: str = "lens") -> None:
    """One line naming the bytes needed and free, before an engine that cannot fit is started."""
    free = node_available_bytes()
    if needed > free:
        raise UserError(
            f"{what}: the KV cache needs {needed / GIB:.2f} GiB (lens.max_model_len x lens.kv_cache_sequences) "
            f"but only {free / GIB:.2f} GiB is free on this machine's memory node; lower them or free memory"
        )


def check_resources(resources: ResourcesConfig) -> None:
    """Each LENS actor needs one GPU per tensor-parallel rank."""
    if resources.tensor_parallel > 1 and resources.lens_gpus < resources.tensor_parallel:
        raise UserError(
            f"resources.tensor_parallel is {resources.tensor_parallel} but resources.lens_gpus is "
            f"{resources.lens_gpus:g}: each LENS actor needs one GPU per tensor-parallel rank"
        )


def engine_settings(lens: LensConfig, resources: ResourcesConfig, model_path: str,
                    rows: int | None = None) -> dict:
    """Keyword arguments for vllm.LLM, plus what the actor needs: its process set-up and its GPUs.

    `rows`: the rows the engine will judge, or None for a rubric writer (a few prompts);
    on a CPU with one engine process per actor, up to INLINE_CORE_MAX_ROWS the core runs inline.
    """
    on_gpu = resources.lens_gpus > 0
    engine: dict[str, Any] = {  # vllm.LLM's keyword arguments
        "model": model_path,
        "tensor_parallel_size": resources.tensor_parallel,
        "max_model_len": lens.max_model_len,
        "enable_prefix_caching": lens.prefix_caching,
        "enforce_eager": (not on_gpu) if lens.enforce_eager is None else lens.enforce_eager,
        "dtype": lens.dtype,
        "seed": 0,
        "disable_log_stats": True,
    }
    if lens.block_size or not on_gpu:
        # On CPU vLLM's default block is 128 tokens; prefixes are cached per whole block,
        # so 32 keeps more of each rubric prefix cached (BENCHMARKS.md, LENS).
        engine["block_size"] = lens.block_size or CPU_BLOCK_SIZE
    if on_gpu:
        engine["gpu_memory_utilization"] = lens.gpu_memory_utilization or 0.9  # a share of the GPU's memory
    else:
        engine["kv_cache_memory_bytes"] = kv_cache_bytes(model_path, lens.max_model_len, lens.kv_cache_sequences,
                                                         lens.dtype, engine["block_size"])
    if resources.tensor_parallel > 1:
        engine["distributed_executor_backend"] = "mp"  # workers inside this actor's GPUs
    inline_core = (not on_gpu and resources.tensor_parallel == 1
                   and (rows is None or rows <= INLINE_CORE_MAX_ROWS))
    return {"engine": engine, "on_gpu": on_gpu, "actors": resources.lens_actors, "num_gpus": resources.lens_gpus,
            "inline_core": inline_core}


def prepare_process(settings: dict) -> None:
    """Environment for vLLM in this process; call before importing vllm."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if settings["inline_core"]:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the user's own setting wins
    if not settings["on_gpu"] and settings["engine"]["enforce_eager"]:
        # Eager, vLLM still torch.compiles two sampler helpers on first use (the sampled token's
        # logprob rank; top-k/top-p): ~3 s of a CPU judge's first batch (BENCHMARKS.md). Without
        # dynamo they run as plain torch, with the same judgements. The user's own setting wins.
        os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
    if settings["on_gpu"] or "VLLM_CPU_OMP_THREADS_BIND" in os.environ:
        return
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if settings["actors"] <= 1 and cores:
        # One engine per machine: its threads get every core (vLLM would otherwise keep
        # one back for its scheduler, half of a two-core laptop).
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(c) for c in cores)
        os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
    else:
        # Several engines share the machine: let the OS place their threads.
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
        share = max(1, len(cores) // max(1, settings["actors"])) if cores else 1
        os.environ.setdefault("OMP_NUM_THREADS", str(share))


def build_engine(settings: dict):
    import gc

    prepare_process(settings)
    if "kv_cache_memory_bytes" in settings["engine"]:
        check_kv_memory(settings["engine"]["kv_cache_memory_bytes"])
    # Importing torch and vLLM creates millions of objects that are never garbage, and the cyclic
    # collector walks them again at every collection the import triggers (1,871 of them, 9 full):
    # paused, the import took 8.8-9.8 s on CPU against 12.1-12.7 s (BENCHMARKS.md). It resumes after.
    collecting = gc.isenabled()
    gc.disable()
    try:
        from vllm import LLM
    finally:
        if collecting:
            gc.enable()
    # vLLM also collects while it starts; frozen, the import-time objects are left out of those
    # collections (LLM() took 6.3-6.6 s after the imports on CPU, 4.0-4.9 s frozen: BENCHMARKS.md).
    gc.freeze()
    return LLM(**settings["engine"])
