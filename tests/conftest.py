"""Shared fixtures, and the split between `make test-fast` and `make test`.

Every test is either fast (pure math, config, reading, reduce, evaluate, report rendering)
or `slow` (starts Ray, vLLM, a fine-tune, embedding-model inference, a browser or a cluster
of processes). The slow mark
is given here, from what a test uses, so a new test cannot forget it: `make test-fast` runs
`-m "not slow"` with SYNQUE_FAST_TESTS=1, under which starting Ray raises, so a test that
starts Ray while it is classed fast fails loudly instead of making the fast loop slow."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FAST_ENV = "SYNQUE_FAST_TESTS"  # "1": the fast loop; starting Ray is an error

# Fixtures that start Ray (directly or through a real run) or load the embedding model for
# real inference (tens of seconds on a shared CPU): a test using one is slow.
SLOW_FIXTURES = {"ray_session", "scored_run", "bundled_model_path"}
# Modules whose every test runs vLLM, a fine-tune, a browser or a multi-process cluster.
SLOW_MODULES = {
    "test_lens_e2e.py",        # vLLM server and engine
    "test_multinode.py",       # two-node Ray cluster of subprocesses
    "test_ray_job.py",         # `ray job submit` against a started cluster
    "test_report_browser.py",  # headless Chromium
    "test_fault_tolerance.py",  # kills drivers and actors of real runs
}
# Per module, fixtures that make a test slow there (the bundled LM loaded and fine-tuned).
SLOW_MODULE_FIXTURES = {"test_perplexity.py": {"base", "model_path"}}


def pytest_configure(config):
    if os.environ.get(FAST_ENV) == "1":
        _forbid_ray()


def _forbid_ray():
    """Make `ray.init` raise in this process: the fast loop must never start a cluster."""
    import ray

    def refuse(*args, **kwargs):
        raise RuntimeError(f"{FAST_ENV}=1 but this test starts Ray: it is slow; mark it `ray` "
                           "(or use the ray_session fixture) so `make test-fast` leaves it out")

    ray.init = refuse


def is_slow(item) -> bool:
    """Slow when the test uses a Ray fixture, carries its own `ray` mark, or sits in (or uses a
    fixture of) a module that runs vLLM, fine-tuning, a browser or a process cluster. A module-wide
    `ray` mark alone does not make its pure tests slow: the Ray guard catches any it misjudges."""
    module = item.path.name
    used = set(getattr(item, "fixturenames", ()))
    return (bool(used & (SLOW_FIXTURES | SLOW_MODULE_FIXTURES.get(module, set())))
            or module in SLOW_MODULES
            or any(mark.name in ("ray", "slow") for mark in item.own_markers))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if is_slow(item):
            item.add_marker(pytest.mark.slow)


SERVER_STASH = pytest.StashKey["object | None"]()  # a tests._vllm_server.Server started early
EXPORT_STASH = pytest.StashKey["subprocess.Popen | None"]()
SERVER_FIXTURE = "server_process"  # tests/lens/test_lens_e2e.py's fixture that uses the vLLM server


def pytest_collection_finish(session):
    """Start now, in the background, what slow tests will wait for, so that it overlaps the first,
    single-threaded tests: the LENS module's vLLM server when a selected test needs it
    (tests/_vllm_server.py, half a minute of start-up), and on a machine without it yet the bundled
    embedding model's fp32 ONNX export (~10 s; every CPU embedding actor needs it, and one that
    comes while it is being made waits on its lock, as in a real run)."""
    if os.environ.get(FAST_ENV) == "1" or session.config.option.collectonly:
        return
    if any(SERVER_FIXTURE in getattr(item, "fixturenames", ()) for item in session.items):
        from tests import _vllm_server

        session.config.stash[SERVER_STASH] = _vllm_server.start()
    if any(item.get_closest_marker("slow") for item in session.items):
        session.config.stash[EXPORT_STASH] = _export_in_background()


@pytest.fixture(scope="session")
def early_vllm_server(request):
    """The vLLM server started when the session was collected, handed over once (None after that, or
    when none was started): whoever takes it stops it."""
    server = request.config.stash.get(SERVER_STASH, None)
    request.config.stash[SERVER_STASH] = None
    return server


def _export_in_background():
    from synque_ray.models import resolve_model
    from synque_ray.onnx_embed import export_path

    path = Path(resolve_model("bundled-minilm", "embedding.model")[0])
    if export_path(path, quantize=False).is_file():
        return None
    code = "import sys; from pathlib import Path; from synque_ray.onnx_embed import exported_model; " \
           "exported_model(Path(sys.argv[1]), quantize=False)"
    return subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def pytest_sessionfinish(session):
    """Stop an early server that no test took over (the LENS module was deselected or never reached),
    and wait for a background export (a test that needed it has waited already)."""
    server = session.config.stash.get(SERVER_STASH, None)
    if server is not None:
        from tests import _vllm_server

        _vllm_server.stop(server)
    export = session.config.stash.get(EXPORT_STASH, None)
    if export is not None:
        try:
            export.wait(timeout=600)
        except subprocess.TimeoutExpired:
            export.kill()


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for every pipeline test of the session."""
    import ray

    if not ray.is_initialized():
        # Up to 6 idle workers stay alive (Ray's default: one per CPU). A run's pool actor takes over
        # an idle worker and takes it down when the run ends; at the default limit the other warm
        # worker went too, so every run's proxy tasks started in fresh workers that imported
        # scikit-learn, kmedoids and mauve again: 6.3-8.3 s for a small run against 3.9 s
        # (BENCHMARKS.md, the test loop's fourth pass).
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False,
                 _system_config={"num_workers_soft_limit": 6})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def bundled_model_path():
    from synque_ray.models import resolve_model

    return resolve_model("bundled-minilm", "embedding.model")[0]


@pytest.fixture(scope="session")
def scored_run(ray_session, tmp_path_factory):
    """A small real run for the report and select tests: `synque score` twice (history),
    then `synque evaluate`, on generated candidates in all four input formats."""
    from tests._scored_run import make_scored_run

    return make_scored_run(tmp_path_factory.mktemp("scored-run"))
