"""The import contract: the package's layers only point down, and no module reaches itself again.

Every `import` is followed, those inside functions too (only `if TYPE_CHECKING:` blocks are exempt), so a cycle
cannot hide behind an import placed in a function body. A module may import its own layer or any layer below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hf_transfer"

# Bottom to top. A problem type and an input kind are asked for their rules by the recipe schema that names them,
# so `problems` and `data` (whose `modalities` are the input kinds) sit below `config`; their modules import
# nothing heavy at module level, so `hf-transfer validate` still loads no torch, datasets or scikit-learn.
LAYERS = (
    "core",
    "metrics",
    "problems",
    "data",
    "config",
    "backbones",
    "train",
    "strategies",
    "runs",
    "hub",
    "apps",
    "",  # hf_transfer/__init__.py: the public API, above everything it re-exports
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1] if len(parts) > 1 else "")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: set[str]):
        self.package = module if is_package else module.rpartition(".")[0]
        self.known = known
        self.found: list[tuple[str, int]] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _add(self, name: str, line: int) -> None:
        while name and name not in self.known:  # `from pkg.mod import function` -> pkg.mod
            name = name.rpartition(".")[0]
        if name:
            self.found.append((name, line))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] == "hf_transfer":
                self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            name = ".".join([*base, *([node.module] if node.module else [])])
        else:
            name = node.module or ""
        if name.split(".")[0] != "hf_transfer":
            return
        for alias in node.names:
            candidate = f"{name}.{alias.name}"
            self._add(candidate if candidate in self.known else name, node.lineno)


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: line of the first such import}."""
    files = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    graph: dict[str, dict[str, int]] = {}
    for module, path in files.items():
        visitor = _Imports(module, path.name == "__init__.py", set(files))
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        edges: dict[str, int] = {}
        for target, line in visitor.found:
            if target != module:  # importing a submodule runs its package's __init__ too, but that is no edge
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def _where(module: str) -> str:
    path = Path(*module.split("."))
    return str(path / "__init__.py") if (PACKAGE.parent / path).is_dir() else f"{path}.py"


def upward_imports(graph) -> list[str]:
    return [
        f"{_where(module)}:{line} imports {_where(target)} ({LAYERS[layer_of(module)] or 'hf_transfer'} may not "
        f"import {LAYERS[layer_of(target)] or 'hf_transfer'})"
        for module, edges in graph.items()
        for target, line in edges.items()
        if layer_of(target) > layer_of(module)
    ]


def cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_belongs_to_a_layer():
    unplaced = [m for m in import_graph() if m.count(".") >= 1 and m.split(".")[1] not in LAYERS]
    assert not unplaced, f"modules outside every layer (add them to a package in LAYERS): {unplaced}"


def test_no_import_points_up_a_layer():
    assert not upward_imports(import_graph()), "\n".join(upward_imports(import_graph()))


def test_no_import_cycle_even_through_imports_inside_functions():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(_where(m) for m in c) for c in found)


def test_the_contract_sees_an_import_inside_a_function(tmp_path):
    source = "def f():\n    from hf_transfer.apps.cli import main\n"
    visitor = _Imports("hf_transfer.core.x", False, {"hf_transfer.apps.cli", "hf_transfer.core.x"})
    visitor.visit(ast.parse(source))
    assert visitor.found == [("hf_transfer.apps.cli", 2)]
    graph = {"hf_transfer.core.x": {"hf_transfer.apps.cli": 2}, "hf_transfer.apps.cli": {"hf_transfer.core.x": 1}}
    assert upward_imports(graph) and cycles(graph) == [["hf_transfer.apps.cli", "hf_transfer.core.x"]]


@pytest.mark.parametrize("guard", ["TYPE_CHECKING", "typing.TYPE_CHECKING"])
def test_imports_for_type_checking_only_are_not_edges(guard):
    source = f"if {guard}:\n    from hf_transfer.apps.cli import main\n"
    visitor = _Imports("hf_transfer.core.x", False, {"hf_transfer.apps.cli"})
    visitor.visit(ast.parse(source))
    assert visitor.found == []
