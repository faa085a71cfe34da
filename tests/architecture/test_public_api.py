"""The public surface is exactly what docs/architecture.md lists, so changing it is a
deliberate act: edit the document and the code together.

Public means: the top-level package and the public subpackages and modules (no leading
underscore anywhere in the dotted name). Each has an explicit ``__all__``; everything else
is implementation, free to change.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from tests.architecture.imports import module_names

DOC = Path(__file__).parents[2] / "docs" / "architecture.md"


def documented_surface() -> dict[str, set[str]]:
    block = re.search(r"```public-api\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/architecture.md has no ```public-api block"
    surface: dict[str, set[str]] = {}
    module = ""
    for line in block.group(1).splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            module, _, names = line.partition(":")
            surface[module.strip()] = set(names.split())
        else:
            surface[module] |= set(line.split())
    return surface


def public_modules() -> list[str]:
    return sorted(
        name for name in module_names() if not any(part.startswith("_") for part in name.split("."))
    )


def test_every_public_module_is_documented() -> None:
    assert sorted(documented_surface()) == public_modules()


@pytest.mark.parametrize("name", public_modules())
def test_the_public_names_are_the_documented_ones(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    assert set(exported) == documented_surface()[name]
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
