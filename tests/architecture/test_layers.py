"""The package's imports follow the layers written in docs/architecture.md, without cycles.

The layer table is read from the document itself, so the rule a reader sees is the rule
this test holds the code to.
"""

from __future__ import annotations

import fnmatch
import re
from collections import defaultdict
from pathlib import Path

from tests.architecture.imports import Edge, edges, module_names

DOC = Path(__file__).parents[2] / "docs" / "architecture.md"


def layer_table() -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """``layer -> module patterns`` and ``layer -> what it may import`` (layer or module
    names), from the ``layers`` block of docs/architecture.md."""
    block = re.search(r"```layers\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/architecture.md has no ```layers block"
    patterns: dict[str, list[str]] = {}
    allowed: dict[str, set[str]] = {}
    for line in block.group(1).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, rest = line.split(":", 1)
        modules, _, may = rest.partition("->")
        patterns[name.strip()] = modules.split()
        allowed[name.strip()] = set(may.split())
    return patterns, allowed


def layer_of(module: str, patterns: dict[str, list[str]]) -> str:
    """The layer whose most specific pattern matches ``module``."""
    best = max(
        (
            (len(p), layer)
            for layer, ps in patterns.items()
            for p in ps
            if fnmatch.fnmatch(module, p)
        ),
        default=None,
    )
    assert best, f"{module} is in no layer of docs/architecture.md"
    return best[1]


def test_every_module_belongs_to_a_layer() -> None:
    patterns, allowed = layer_table()
    for module in module_names():
        layer_of(module, patterns)
    for layer, may in allowed.items():
        unknown = {m for m in may if m not in patterns and m not in module_names()}
        assert not unknown, f"layer {layer} may import unknown names {unknown}"


def test_no_import_goes_against_the_layers() -> None:
    patterns, allowed = layer_table()
    wrong = []
    for edge in edges():
        source, target = layer_of(edge.source, patterns), layer_of(edge.target, patterns)
        if source == target or target in allowed[source] or edge.target in allowed[source]:
            continue
        wrong.append(f"{edge.source}:{edge.line} imports {edge.target} ({source} -> {target})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], Edge] = {}
    for edge in edges():
        graph[edge.source].add(edge.target)
        where[(edge.source, edge.target)] = edge
    found = cycles(graph)
    described = [
        " -> ".join(component)
        + ": "
        + ", ".join(
            f"{a}:{where[(a, b)].line}->{b}"
            for a in component
            for b in component
            if (a, b) in where
        )
        for component in found
    ]
    assert not found, "import cycles:\n" + "\n".join(described)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
