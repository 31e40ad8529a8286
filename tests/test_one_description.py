"""Each proxy is described once, beside its code: the legend and the report's titles are built from
what the proxies declare, and a proxy's name is spelled nowhere else in the package."""

from __future__ import annotations

import ast
from pathlib import Path

from synque_ray.fluency import ABOUT as FLUENCY
from synque_ray.legend import PROXY_LEGEND, PROXY_TITLES
from synque_ray.lens_debias import ABOUT as LENS
from synque_ray.perplexity import ABOUT as PERPLEXITY
from synque_ray.proxies import REGISTRY

PACKAGE = Path(__file__).resolve().parent.parent / "synque_ray"


def test_the_legend_and_titles_are_the_proxies_own_declarations():
    declared = {**{name: proxy.about for name, proxy in REGISTRY.items()},
                **{about.name: about for about in (PERPLEXITY, FLUENCY, LENS)}}
    assert set(PROXY_LEGEND) == set(declared) | {"ensemble"} == set(PROXY_TITLES)
    for name, about in declared.items():
        assert about.name == name and len(about.legend) > 40 and about.title
        assert PROXY_LEGEND[name] is about.legend and PROXY_TITLES[name] == about.title


def _string_constants(path: Path) -> set[str]:
    return {node.value for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_an_embedding_proxys_name_is_spelled_only_in_its_module():
    """`density` as a string lives in proxies/coverage.py alone (config.py names its section as a
    field, which a type checker keeps in step); every other module reads it from the registry."""
    for name, proxy in REGISTRY.items():
        home = Path(__import__(proxy.compute.__module__, fromlist=["_"]).__file__).resolve()
        spelled = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                         if path.resolve() != home and name in _string_constants(path))
        assert spelled == [], (name, spelled)
