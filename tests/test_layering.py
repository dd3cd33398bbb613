"""Imports only run downward, components <- clearml_tasks <- pipelines, and no module of the three
imports itself through others (an import cycle). Read from the source, nothing is imported."""
from __future__ import annotations

import ast
import graphlib
from pathlib import Path

from helpers import ROOT

LAYERS = ("components", "clearml_tasks", "pipelines")


def project_modules() -> dict[str, Path]:
    return {".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): f
            for layer in LAYERS for f in (ROOT / layer).rglob("*.py")}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules a file imports, at any depth of the file (lazy imports inside functions count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module) if p)
            names = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) - {name} for name, path in modules.items()}


def layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def test_no_module_imports_a_layer_above_its_own():
    back_edges = sorted((a, b) for a, targets in import_graph().items() for b in targets if layer(b) > layer(a))
    assert back_edges == []


def test_no_import_cycles():
    graphlib.TopologicalSorter(import_graph()).prepare()  # raises CycleError naming the cycle


def test_the_check_sees_real_edges():
    graph = import_graph()
    assert "components.config" in graph["components.overrides"]
    assert "clearml_tasks.stages" in graph["pipelines.dag"]
    assert len(graph) > 40
