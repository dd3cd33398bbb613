"""Imports only run downward, components <- clearml_tasks <- pipelines, and no module of the three
imports itself through others (an import cycle). Inside components/ the sub-packages have their own order,
core <- data, backends, analysis <- stages, and no stage module imports another stage. Read from the
source, nothing is imported."""
from __future__ import annotations

import ast
import graphlib
from pathlib import Path

from helpers import ROOT

LAYERS = ("components", "clearml_tasks", "pipelines")
# components/ sub-packages by rank: a module imports its own sub-package and core; stages import anything below.
SUBPACKAGES = {"core": 0, "data": 1, "backends": 1, "analysis": 1, "stages": 2, "fleet": 2}
# Plain data that core reads: the backend registry names each backend as a "module:Class" string and imports
# only core, so core.config can list generation.backend's choices without importing a backend.
CORE_LEVEL = {"components.backends.registry"}


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
    assert "components.core.config" in graph["components.core.overrides"]
    assert "components.analysis.qa_summary" in graph["components.stages.merge"]
    assert "clearml_tasks.stages" in graph["pipelines.dag"]
    assert len(graph) > 40


def subpackage(module: str) -> str:
    return "core" if module in CORE_LEVEL else module.split(".")[1]


def component_edges() -> list[tuple[str, str]]:
    graph = import_graph()
    return [(a, b) for a, targets in graph.items() if a.startswith("components.") and a.count(".") > 1
            for b in targets if b.count(".") > 1]


def allowed(a: str, b: str) -> bool:
    sa, sb = subpackage(a), subpackage(b)
    return sa == sb or SUBPACKAGES[sb] == 0 or SUBPACKAGES[sb] < SUBPACKAGES[sa]


def test_components_are_in_subpackages_and_every_one_is_ranked():
    flat = [p.name for p in (ROOT / "components").glob("*.py") if p.name != "__init__.py"]
    assert flat == []
    found = {p.name for p in (ROOT / "components").iterdir() if (p / "__init__.py").is_file()}
    assert found == set(SUBPACKAGES)


def test_subpackages_import_only_their_own_and_lower_ones():
    assert sorted((a, b) for a, b in component_edges() if not allowed(a, b)) == []


def test_no_stage_module_imports_another_stage():
    from clearml_tasks.stages import STAGE_NAMES

    stage_modules = {f"components.stages.{name}" for name in STAGE_NAMES}
    assert sorted((a, b) for a, b in component_edges() if a in stage_modules and b in stage_modules) == []


def test_the_subpackage_rule_sees_a_back_edge():
    assert not allowed("components.core.config", "components.data.schema")
    assert not allowed("components.data.readers", "components.backends.models"), "siblings stay apart"
    assert allowed("components.stages.eval", "components.backends.base")
    assert allowed("components.core.config", "components.backends.registry")


def test_test_files_have_unique_names():
    # tests/ has no __init__.py, so pytest imports each test file by its bare name: two files with one name
    # in different folders stop collection ("import file mismatch") on a clean clone.
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(ROOT)} and {path.relative_to(ROOT)}")
        seen.setdefault(path.name, path)
    assert not clashes, "test files share a name: " + "; ".join(clashes)
