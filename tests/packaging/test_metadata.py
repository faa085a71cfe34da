"""What pyproject.toml and the docs promise about installing listwatch."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_pytest_plugin_is_not_an_entry_point() -> None:
    """It is opted into (``pytest_plugins``), never loaded into every pytest run."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "pytest11" not in project.get("entry-points", {})


def test_no_advice_installs_listwatch_by_name_from_an_index() -> None:
    """listwatch is not on PyPI: ``pip install listwatch`` would install nothing, or
    another project's package. Every instruction installs from a clone."""
    by_name = re.compile(r"pip install\s+['\"]?listwatch\b")
    paths = [REPO / "README.md", REPO / "Dockerfile"]
    for folder in ("docs", "src", "examples", "benchmarks"):
        paths += sorted((REPO / folder).rglob("*.py")) + sorted((REPO / folder).rglob("*.md"))
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for path in paths
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if by_name.search(line)
    ]
    assert offenders == []
