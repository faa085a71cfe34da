"""Fixtures for driving clients nobody here wrote (kubectl, the official Python client).

The fake server runs over HTTPS with its own CA, as a real cluster does: kubectl sends
its bearer token only over TLS, and every client here verifies the server's certificate
through the kubeconfig's ``certificate-authority-data``.
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
