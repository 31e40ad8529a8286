"""The shape of synque_ray's imports: no circle between its modules, Ray only at
the edges, and no arrow from a lower module back up into the stages, LENS or the job.

Read from the source with `ast`, function-local imports included, so an import hidden in a
function body to dodge a circle at import time still counts. Imports under
`if TYPE_CHECKING:` do not: they never run and only name a type for the checker."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "synque_ray"

# The only modules that may import Ray: its plumbing, the stages, and the Ray Data pipelines
# of the embedding model and of LENS's engine.
RAY_ALLOWED = {"synque_ray.raycluster", "synque_ray.stage.tasks", "synque_ray.stage.embedding", "synque_ray.embed",
               "synque_ray.lens.judge", "synque_ray.lens.writers"}
# What stands above the math and the models: nothing below may import these, but for LENS's
# pure leaves (its prompt families, which the config checks names against, and the p̂ math,
# which declares LENS's row signal), themselves built on lower modules only.
UPPER = ("synque_ray.stage", "synque_ray.lens", "synque_ray.pipeline", "synque_ray.cli")
LENS_LEAVES = {"synque_ray.lens.prompts", "synque_ray.lens.debias"}
LOWER = ("synque_ray.proxies", "synque_ray.reduce", "synque_ray.findings", "synque_ray.rowsignals",
         "synque_ray.rowschema", "synque_ray.proxy_task", "synque_ray.embed", "synque_ray.onnx_embed",
         "synque_ray.perplexity", "synque_ray.models", "synque_ray.raycluster", "synque_ray.reading",
         "synque_ray.storage", "synque_ray.errors", "synque_ray.verdict", "synque_ray.legend", "synque_ray.evaluate")


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """{dotted name: file} of every module of the package (a package by its __init__.py)."""
    found = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every dotted name an import statement anywhere in `tree` brings in (`from X import a`
    gives X.a and X, so that a submodule imported by name counts as itself)."""
    names: set[str] = set()
    here = module if is_package else module.rpartition(".")[0]
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
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


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_reader_sees_local_relative_and_submodule_imports():
    tree = ast.parse("from typing import TYPE_CHECKING\nimport os\nfrom . import base\n"
                     "if TYPE_CHECKING:\n    from synque_ray.lens.proxy import Lens\n"
                     "def f():\n    from synque_ray.stage.tasks import TaskStage\n    import ray.data\n")
    names = imported(tree, "synque_ray.stage.embedding", is_package=False)
    assert {"os", "synque_ray.stage", "synque_ray.stage.base", "synque_ray.stage.tasks", "ray.data"} <= names
    assert "synque_ray.lens.proxy" not in names
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_of_synque_ray_imports_itself_in_a_circle():
    graph, _ = import_graph()
    assert find_cycle(graph) is None


def test_ray_is_imported_only_at_the_edges():
    _, external = import_graph()
    assert sorted(m for m, names in external.items() if "ray" in names and m not in RAY_ALLOWED) == []


def test_no_lower_module_reaches_up_into_the_stages_lens_or_the_job():
    graph, _ = import_graph()
    upward = {m: sorted(t for t in targets if _under(t, UPPER) and t not in LENS_LEAVES)
              for m, targets in graph.items() if _under(m, LOWER) or m in LENS_LEAVES}
    assert {m: t for m, t in upward.items() if t} == {}
