"""Each proxy and each stage is described once, beside its code: the legend and the report's titles are
built from what the proxies declare, and a proxy's or a stage's name is spelled nowhere else in the package."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from synque_ray.fluency import ABOUT as FLUENCY
from synque_ray.legend import PROXY_LEGEND, PROXY_TITLES
from synque_ray.lens_debias import ABOUT as LENS
from synque_ray.perplexity import ABOUT as PERPLEXITY
from synque_ray.proxies import REGISTRY
from synque_ray.proxies.base import section_proxies
from synque_ray.stage.registry import PROXY_STAGE, STAGES

PACKAGE = Path(__file__).resolve().parent.parent / "synque_ray"


def test_the_legend_and_titles_are_the_proxies_own_declarations():
    declared = {**{name: proxy.about for name, proxy in REGISTRY.items()},
                **{about.name: about for about in (PERPLEXITY, FLUENCY, LENS)}}
    assert set(PROXY_LEGEND) == set(declared) | {"ensemble"} == set(PROXY_TITLES)
    for name, about in declared.items():
        assert about.name == name and len(about.legend) > 40 and about.title
        assert PROXY_LEGEND[name] is about.legend and PROXY_TITLES[name] == about.title


def spellings(source: str) -> set[tuple[str, int]]:
    """(word, line) of every place `source` spells a word as data: a string that is exactly the word
    (a key, a column value, `proxy == "lens"`, an f-string's literal part), an attribute read under
    that name (a config key: `config.lens.scorer`) or a keyword argument. Prose (a docstring, a
    message naming `lens.scorer` for the user), comments and a module's own identifiers are not."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add((node.value, node.lineno))
        elif isinstance(node, ast.Attribute):
            found.add((node.attr, node.lineno))
        elif isinstance(node, ast.keyword) and node.arg is not None:
            found.add((node.arg, node.value.lineno))
    return found


def test_the_reader_counts_strings_config_keys_and_keywords_only():
    source = ('"""density is prose."""\nimport coverage\nx = {"density": 1}\ny = config.lens.scorer\n'
              'f(mmd=2)\nz = f"{a}pad"\nw = "pad"\nprint("mauve.k is prose")\n# perplexity\n')
    assert {word for word, _ in spellings(source)} >= {"density", "lens", "scorer", "mmd", "pad"}
    assert not {"coverage", "mauve", "perplexity"} & {word for word, _ in spellings(source)}
    assert ("pad", 7) in spellings(source) and ("density", 3) in spellings(source)


def _module_file(module: str) -> str:
    return str(Path(sys.modules[module].__file__).resolve().relative_to(PACKAGE))


def homes() -> dict[str, set[str]]:
    """{proxy or stage name: the files (relative to the package) that may spell it}: the module that
    declares the proxy (its `Proxy`'s or its `About`'s), the module of each stage that produces it
    (its `STAGE`) and of that stage's config section, and, for LENS, its package."""
    places: dict[str, set[str]] = {}
    for spec in STAGES.values():
        stage_files = {_module_file(spec.build.__module__), _module_file(spec.section.__module__)}
        places.setdefault(spec.name, set()).update(stage_files)
        for about in section_proxies(spec.section):
            proxy = REGISTRY.get(about.name)
            declared = proxy.compute.__module__ if proxy else next(
                name for name, module in list(sys.modules.items())
                if name.startswith("synque_ray.") and getattr(module, "ABOUT", None) is about)
            places.setdefault(about.name, set()).update({_module_file(declared)}, stage_files)
    lens_package = {str(path.relative_to(PACKAGE)) for path in (PACKAGE / "lens").glob("*.py")}
    places[STAGES["lens"].name] |= lens_package
    return places


# Where a name is spelled outside its homes for a reason of its own, with the reason.
ALLOWED: dict[tuple[str, str], str] = {
    ("embed.py", "embedding"): "the embedding model's module: it reads its section (config.embedding.model, "
                               "precision) and names the vector column of its cache tables",
    ("report/__init__.py", "embedding"): "run.json's models.embedding (the embedding model's id), read back",
    ("report/load.py", "embedding"): "run.json's models.embedding (the embedding model's id), read back",
    ("findings.py", "fluency"): "SCREENS: the screen that feeds garbled_share; the ranking (math floor) reads it "
                                "and cannot import the fluency module, which stands above it",
}


def test_a_proxys_or_a_stages_name_is_spelled_only_where_it_is_declared():
    """`density` as a string or a config key lives in proxies/coverage.py, the embedding stage's
    module and config.py (its `JobConfig` field, typed for mypy, and the section that declares it:
    tests/pipeline/test_stage_registry.py keeps the fields in step with the registry). Every other module
    reads names from the registries (`proxies.REGISTRY`, `stage.registry.STAGES`, `config.PROXY_NAMES`,
    `legend.ABOUTS`); a list of names spelled out anywhere else fails here."""
    places = homes()
    assert set(places) == set(PROXY_STAGE) | set(STAGES)  # every proxy and every stage
    assert "proxies/coverage.py" in places["density"] and "config.py" in places["density"]
    stray = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = str(path.relative_to(PACKAGE))
        for word, line in spellings(path.read_text(encoding="utf-8")):
            if word in places and relative not in places[word] and (relative, word) not in ALLOWED:
                stray.append(f"{relative}:{line}: {word}")
    assert sorted(stray) == []
    for (relative, word), reason in ALLOWED.items():  # each exception is still needed, and says why
        assert (PACKAGE / relative).is_file() and reason
        assert word in {w for w, _ in spellings((PACKAGE / relative).read_text(encoding="utf-8"))}, relative


def test_the_config_spells_names_only_as_its_sections():
    """config.py may name a section (a field, `self.lens.candidates`) but holds no string of a proxy's
    or a stage's name: its lists of names are read from the sections' declarations."""
    words = {word for word, _ in spellings((PACKAGE / "config.py").read_text(encoding="utf-8"))
             if word in set(PROXY_STAGE) | set(STAGES)}
    source = (PACKAGE / "config.py").read_text(encoding="utf-8")
    strings = {node.value for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert words and not strings & (set(PROXY_STAGE) | set(STAGES))
