"""Stages by registry: `build_stages`, the proxy → stage mapping and the CLI's
wall times are read from `stage.registry.STAGES`, and the config's names agree with it."""

from types import SimpleNamespace

import pytest

from synque_ray import config as config_module
from synque_ray.stage import registry
from synque_ray.stage.registry import PROXY_STAGE, STAGES, Job, StageSpec, build_stages, wall_times


def test_each_proxy_belongs_to_one_stage_and_the_config_knows_every_one():
    proxies = [proxy for spec in STAGES.values() for proxy in spec.proxies]
    assert len(proxies) == len(set(proxies)) == len(PROXY_STAGE)
    assert set(config_module.PROXY_NAMES) == set(PROXY_STAGE)
    assert config_module.EMBEDDING_PROXY_NAMES == STAGES["embedding"].proxies
    assert set(config_module.STAGE_PROXY_NAMES) == {p for p, stage in PROXY_STAGE.items() if stage != "embedding"}
    fields = set(config_module.JobConfig.model_fields)
    assert set(STAGES) <= fields  # each stage's own section: embedding, perplexity, lens
    assert set(PROXY_STAGE) <= fields  # and each proxy's parameters


def test_lens_runs_last_so_that_its_cascade_reads_the_others():
    assert list(STAGES)[-1] == "lens"


def test_the_cli_prints_the_wall_times_of_every_registered_stage_in_run_order():
    assert wall_times() == ("read", "embed", "proxies", "perplexity", "fluency", "lens", "reduce",
                            "total")


@pytest.mark.parametrize(("proxies", "built"), [
    (["mdm"], ["embedding"]),
    (["lens", "mmd"], ["embedding", "lens"]),
    (["perplexity"], ["perplexity"]),
    (["lens", "perplexity", "pad"], ["embedding", "perplexity", "lens"]),
])
def test_a_stage_is_built_when_the_config_asks_for_one_of_its_proxies(monkeypatch, proxies, built):
    made = []

    def spec(name, produced):
        return StageSpec(name, produced, lambda job: made.append((name, job)) or name)

    fakes = {name: spec(name, s.proxies) for name, s in STAGES.items()}
    monkeypatch.setattr(registry, "STAGES", fakes)
    job = Job(SimpleNamespace(proxies=proxies), real={}, candidates=[])
    assert build_stages(job) == built
    assert [name for name, _ in made] == built and all(given is job for _, given in made)
