"""The shape of synque_ray's imports: the package stands in floors, every import goes to its own
floor or one below, no two modules import each other in a circle, and Ray is imported only at
the edges (docs/architecture.md, "The floors").

Read from the source with `ast`: function-local imports and imports under `if TYPE_CHECKING:`
count like any other, so an import moved into a function or made type-only to dodge a circle or
a floor is still seen."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "synque_ray"

# The only modules that may import Ray: its plumbing, the stages, and the Ray Data pipelines
# of the embedding model and of LENS's engine.
RAY_ALLOWED = {"synque_ray.raycluster", "synque_ray.stage.tasks", "synque_ray.stage.embedding", "synque_ray.embed",
               "synque_ray.lens.judge", "synque_ray.lens.writers"}

# The floors, lowest first. A module imports only from its own floor or lower ones. A name ending in
# `.*` is a package with every module under it; a module named on its own is placed by that name
# (stage/registry.py stands a floor above the stages it lists). Every module must be placed: a new
# one fails `test_every_module_stands_on_one_floor` until it is given its floor here.
FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("vocabulary", ("synque_ray.vocabulary", "synque_ray.errors", "synque_ray.lens_families")),
    ("math", ("synque_ray.ranks", "synque_ray.rowsignals", "synque_ray.proxies.*", "synque_ray.reduce",
              "synque_ray.findings", "synque_ray.verdict", "synque_ray.lens_debias")),
    ("models and files", ("synque_ray.models", "synque_ray.onnx_embed", "synque_ray.embed", "synque_ray.perplexity",
                          "synque_ray.fluency", "synque_ray.proxy_task", "synque_ray.rowschema", "synque_ray.legend",
                          "synque_ray.reading", "synque_ray.storage", "synque_ray.runfiles", "synque_ray.evaluate",
                          "synque_ray.raycluster", "synque_ray.reaper", "synque_ray.config")),
    ("stages and LENS", ("synque_ray.stage.*", "synque_ray.lens.*")),
    ("job", ("synque_ray.stage.registry", "synque_ray.pipeline")),
    ("entry", ("synque_ray", "synque_ray.__main__", "synque_ray.api", "synque_ray.cli", "synque_ray.report.*",
               "synque_ray.selection", "synque_ray.demo")),
)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """{dotted name: file} of every module of the package (a package by its __init__.py)."""
    found = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every dotted name an import statement anywhere in `tree` brings in, in a function body or under
    `if TYPE_CHECKING:` too (`from X import a` gives X.a and X, so that a submodule imported by
    name counts as itself)."""
    names: set[str] = set()
    here = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(package: Path = PACKAGE) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> the package's modules it imports, module -> every top-level package it imports)."""
    found = modules(package)
    graph, external = {}, {}
    for module, path in found.items():
        names = imported(ast.parse(path.read_text(encoding="utf-8")), module, path.name == "__init__.py")
        inside = set()
        for name in names:
            if name in found:
                inside.add(name)
            elif name.rpartition(".")[0] in found and name.startswith(package.name):
                inside.add(name.rpartition(".")[0])  # `from X import function`: X itself
        graph[module] = inside - {module}
        external[module] = {name.split(".")[0] for name in names}
    return graph, external


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports (its modules in order, the first repeated at the end), else None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def floor_of(module: str, floors=FLOORS) -> int | None:
    """The index (0 = lowest) of the floor `module` stands on: the floor naming it, else the one
    naming the closest package above it with `.*`; None when no floor holds it."""
    for index, (_, names) in enumerate(floors):
        if module in names:
            return index
    packages = [(len(name), index) for index, (_, names) in enumerate(floors) for name in names
                if name.endswith(".*") and (module == name[:-2] or module.startswith(name[:-1]))]
    return max(packages)[1] if packages else None


def upward(graph: dict[str, set[str]], floors=FLOORS) -> dict[str, list[str]]:
    """{module: the modules it imports from a floor above its own}, for the modules that do."""
    found = {}
    for module, targets in graph.items():
        here = floor_of(module, floors)
        if here is None:  # unplaced: test_every_module_stands_on_one_floor names it
            continue
        above = sorted(t for t in targets if (floor_of(t, floors) or 0) > here)
        if above:
            found[module] = above
    return found


def test_the_reader_sees_local_relative_type_only_and_submodule_imports():
    tree = ast.parse("from typing import TYPE_CHECKING\nimport os\nfrom . import base\n"
                     "if TYPE_CHECKING:\n    from synque_ray.lens.proxy import Lens\n"
                     "def f():\n    from synque_ray.stage.tasks import TaskStage\n    import ray.data\n")
    names = imported(tree, "synque_ray.stage.embedding", is_package=False)
    assert {"os", "synque_ray.stage", "synque_ray.stage.base", "synque_ray.stage.tasks", "ray.data",
            "synque_ray.lens.proxy"} <= names
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_floor_check_finds_an_import_that_runs_up():
    floors = (("low", ("p.low", "p.pkg.*")), ("high", ("p.high", "p.pkg.top")))
    assert [floor_of(m, floors) for m in ("p.low", "p.pkg", "p.pkg.a", "p.pkg.top", "p.high", "p.pkgx")] == [
        0, 0, 0, 1, 1, None]
    graph = {"p.low": {"p.pkg.a"}, "p.pkg.a": {"p.pkg.top", "p.low"}, "p.high": {"p.low", "p.pkg.top"},
             "p.pkg.top": {"p.pkg.a"}}
    assert upward(graph, floors) == {"p.pkg.a": ["p.pkg.top"]}


def test_every_module_stands_on_one_floor():
    found = modules()
    assert sorted(m for m in found if floor_of(m) is None) == []
    named = [name for _, names in FLOORS for name in names]
    assert len(named) == len(set(named))
    assert sorted(n for n in named if n.removesuffix(".*") not in found) == []  # no floor names a module gone


def test_no_import_runs_up_a_floor():
    graph, _ = import_graph()
    assert upward(graph) == {}


def test_the_bottom_floor_imports_nothing_of_the_package():
    graph, _ = import_graph()
    _, bottom = FLOORS[0]
    assert {m: sorted(graph[m]) for m in bottom if graph[m]} == {}


def test_no_module_of_synque_ray_imports_itself_in_a_circle():
    """Type-only imports included: a circle that only the type checker walks is still one module
    that cannot be read without the other."""
    graph, _ = import_graph()
    assert find_cycle(graph) is None


def test_ray_is_imported_only_at_the_edges():
    _, external = import_graph()
    assert sorted(m for m, names in external.items() if "ray" in names and m not in RAY_ALLOWED) == []


def test_importing_the_job_and_every_stage_loads_no_heavy_library():
    """The registry imports LENS at its top, so the job's import holds every stage module; none
    may load what a re-run with nothing to compute never needs (pandas alone is a third of a
    second: `pyarrow.Schema.empty_table()` loads it, which is why LENS builds its schema from
    no batches)."""
    code = ("import sys\nimport synque_ray.pipeline, synque_ray.stage.registry, synque_ray.lens.proxy\n"
            "print(sorted(m for m in ('pandas', 'scipy.stats', 'torch', 'transformers', 'vllm') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[]"]
