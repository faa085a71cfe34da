"""Read listwatch's own import graph from its source (no import is executed).

Every ``import`` counts, including those inside functions (a lazy import is still a
dependency, and the usual way a cycle hides); only imports under ``if TYPE_CHECKING:`` are
left out, since they exist for the type checker alone.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import listwatch

PACKAGE_ROOT = Path(listwatch.__file__).parent


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int


def module_names() -> dict[str, Path]:
    """Every module of the package, by dotted name (a package by its ``__init__``)."""
    modules = {}
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def edges() -> list[Edge]:
    """Each import of a listwatch module by a listwatch module, resolved to the module.

    ``from listwatch.observe import _events`` is an edge to ``listwatch.observe._events``
    (the submodule), not to the package; ``from listwatch.errors import X`` to
    ``listwatch.errors``.
    """
    modules = module_names()
    result = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for imported in targets:
                if imported.split(".")[0] != "listwatch" or imported == name:
                    continue
                module = imported
                while module not in modules:  # listwatch.x.y where y is an attribute
                    module = module.rsplit(".", 1)[0]
                result.append(Edge(name, module, node.lineno))
    return result
