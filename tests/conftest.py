import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for every pipeline test of the session."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
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
