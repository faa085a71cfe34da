"""The README's pytest example runs as written, as a user's project would run it.

The files of the example (the code blocks of "Testing your code" that open with a
``# NAME.py`` line) are written to a directory of their own and run by a child pytest in
pytest-asyncio's strict mode, with no plugin loaded but the ones named (so nothing of this
repository's conftest.py or of the environment's installed plugins helps it pass).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"


def section(markdown: str, title: str) -> str:
    start = markdown.index(f"\n## {title}")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else None]


def example_files(text: str) -> dict[str, str]:
    """``{name: source}`` of every python block whose first line is ``# name.py``."""
    files = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        first, _, rest = block.partition("\n")
        if match := re.fullmatch(r"# (\w+\.py)", first.strip()):
            files[match.group(1)] = rest
    return files


def test_the_testing_section_has_a_conftest_and_a_test() -> None:
    files = example_files(section((REPO / "README.md").read_text(), "Testing your code"))
    assert set(files) == {"conftest.py", "test_sync.py"}
    assert 'pytest_plugins = ["listwatch.testing.pytest_plugin"]' in files["conftest.py"]


def test_the_readme_pytest_example_passes_in_strict_mode(tmp_path: Path) -> None:
    files = example_files(section((REPO / "README.md").read_text(), "Testing your code"))
    for name, source in files.items():
        (tmp_path / name).write_text(source)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # the root: no configuration above it
    env = os.environ | {
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "asyncio"]
    command += ["-o", "asyncio_mode=strict"]
    # An unclosed client or session fails the run, as in this repository's own tests.
    command += [
        "-W",
        "error::ResourceWarning",
        "-W",
        "error::pytest.PytestUnraisableExceptionWarning",
    ]
    ran = subprocess.run(
        command,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "1 passed" in ran.stdout
