"""The package's layering, read from the source: who may import whom, no import cycle, small modules.

Every ``import`` counts, the ones inside functions included (a lazy import hides a cycle from Python, not from a
reader); only ``if TYPE_CHECKING:`` blocks are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lima_align"
ENTRY_POINT = "lima_align.__main__"  # `python -m lima_align`: the CLI's own shim


def _module_name(path: Path) -> str:
    parts = ["lima_align", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(tree: ast.AST, here: str, is_package: bool) -> set[str]:
    """Project modules a module imports (``from pkg import mod`` names the submodule when there is one)."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".") if is_package else here.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return {m for m in found if m in MODULES and m != here}


GRAPH = {name: _imported(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py")
         for name, path in MODULES.items()}


def _importers_of(prefix: str) -> dict[str, set[str]]:
    return {m: {d for d in deps if d == prefix or d.startswith(prefix + ".")} for m, deps in GRAPH.items()}


def test_the_graph_sees_lazy_imports():
    # pipeline.steps imports the sources inside a function; the graph must still see it
    assert "lima_align.sources" in GRAPH["lima_align.pipeline.steps"]
    assert "lima_align.cli.curate" in GRAPH["lima_align.cli"]


def test_only_the_cli_imports_the_cli():
    offenders = {m: d for m, d in _importers_of("lima_align.cli").items()
                 if d and not m.startswith("lima_align.cli") and m != ENTRY_POINT}
    assert offenders == {}


@pytest.mark.parametrize("package, forbidden", [
    ("lima_align.evaluate", "lima_align.train"),
    ("lima_align.annotate", "lima_align.sources"),
    ("lima_align.generate", "lima_align.train"),
    ("lima_align.sources", "lima_align.pipeline"),
    ("lima_align.curate", "lima_align.pipeline"),
    ("lima_align.train", "lima_align.pipeline"),
    ("lima_align.evaluate", "lima_align.pipeline"),
])
def test_lower_layers_do_not_import_upper_ones(package, forbidden):
    offenders = {m: d for m, d in _importers_of(forbidden).items()
                 if d and (m == package or m.startswith(package + "."))}
    assert offenders == {}


def test_no_import_cycle():
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_module_over_400_lines():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in sizes.items() if n > 400} == {}


def test_each_step_is_defined_once():
    """run, demo and ablate share the steps of pipeline.steps: no driver defines its own curate/mix/train/..."""
    steps = {"curate", "mix", "train", "select", "generate", "judge_pairs", "judge_likert", "report"}
    defined = {}
    for name, path in MODULES.items():
        if name.startswith("lima_align.pipeline."):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:
                if isinstance(node, ast.FunctionDef) and node.name in steps | {f"run_{s}" for s in steps}:
                    defined.setdefault(node.name, []).append(name)
    assert defined == {s: ["lima_align.pipeline.steps"] for s in steps}
