"""Stages by registry: `build_stages`, the proxy → stage mapping and the CLI's
wall times are read from `stage.registry.STAGES`, and the config's names agree with it."""

import dataclasses
from types import SimpleNamespace

import pytest

from synque_ray import config as config_module
from synque_ray.proxies import REGISTRY
from synque_ray.stage import registry
from synque_ray.proxies.base import section_proxies
from synque_ray.stage.registry import PROXY_STAGE, STAGES, Job, build_stages, proxy_times, wall_times


def test_each_proxy_belongs_to_one_stage_and_the_config_knows_every_one():
    proxies = [proxy for spec in STAGES.values() for proxy in spec.proxies]
    assert len(proxies) == len(set(proxies)) == len(PROXY_STAGE)
    assert set(config_module.PROXY_NAMES) == set(PROXY_STAGE)
    assert config_module.EMBEDDING_PROXY_NAMES == STAGES["embedding"].proxies
    assert set(config_module.STAGE_PROXY_NAMES) == {p for p, stage in PROXY_STAGE.items() if stage != "embedding"}
    fields = set(config_module.JobConfig.model_fields)
    assert set(STAGES) <= fields  # each stage's own section: embedding, perplexity, lens
    assert set(PROXY_STAGE) <= fields  # and each proxy's parameters


def test_the_config_reads_its_proxies_from_the_sections_the_registry_declares():
    """JobConfig's sections are typed fields (for mypy): each stage's section is the field named after
    the stage, typed by the section the stage declares, and the sections that declare proxies are the
    registry's stages', in run order. So the config knows exactly the proxies the stages produce, in
    the order they run, without a list of its own."""
    fields = config_module.JobConfig.model_fields
    for name, spec in STAGES.items():
        assert fields[name].annotation is spec.section and isinstance(fields[name].default, spec.section)
        assert spec.proxies and spec.proxies == tuple(about.name for about in section_proxies(spec.section))
    declaring = [name for name, field in fields.items() if section_proxies(field.annotation)]
    assert declaring == list(STAGES)
    assert config_module.PROXY_NAMES == tuple(PROXY_STAGE) == tuple(a.name for a in config_module.PROXY_ABOUTS)


def test_a_section_must_declare_its_proxies_as_descriptions():
    class Wrong:
        PROXIES = ("mdm",)

    with pytest.raises(TypeError, match="Wrong.PROXIES must be a tuple of About"):
        section_proxies(Wrong)
    assert section_proxies(int) == ()


def test_lens_runs_last_so_that_its_cascade_reads_the_others():
    assert list(STAGES)[-1] == "lens"


def test_the_cli_prints_the_wall_times_of_every_registered_stage_in_run_order():
    assert wall_times() == ("read", "embed", "proxies", "perplexity", "fluency", "lens", "reduce",
                            "total")
    assert proxy_times() == tuple(REGISTRY)  # the embedding proxies' compute, summed over their tasks


@pytest.mark.parametrize(("proxies", "built"), [
    (["mdm"], ["embedding"]),
    (["lens", "mmd"], ["embedding", "lens"]),
    (["perplexity"], ["perplexity"]),
    (["lens", "perplexity", "pad"], ["embedding", "perplexity", "lens"]),
])
def test_a_stage_is_built_when_the_config_asks_for_one_of_its_proxies(monkeypatch, proxies, built):
    made = []

    def fake(name):
        return lambda job: made.append((name, job)) or name

    fakes = {name: dataclasses.replace(s, build=fake(name)) for name, s in STAGES.items()}
    monkeypatch.setattr(registry, "STAGES", fakes)
    job = Job(SimpleNamespace(proxies=proxies), real={}, candidates=[])
    assert build_stages(job) == built
    assert [name for name, _ in made] == built and all(given is job for _, given in made)
