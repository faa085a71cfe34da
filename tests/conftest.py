"""Fixtures shared by the suites that run listwatch against the fake API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from listwatch.testing import FakeApiServer
from tests.clients.helpers import KubectlUnavailable, find_kubectl

# postgres_server and postgres_dsn: a real PostgreSQL server that the tests start themselves.
# fake_apiserver: listwatch's pytest plugin, opted into as its users do (tests/fake_server).
pytest_plugins = ("tests.postgres_server", "listwatch.testing.pytest_plugin")


@pytest.fixture
async def server() -> AsyncIterator[FakeApiServer]:
    """A fake API server with quick bookmarks and a short wait before 504 too-large.

    Plain HTTP for now: a few tests of tests/core and tests/cli build their clients from
    ``server.url`` alone (no CA). Clients made by ``server.api_client()`` or from
    ``server.write_kubeconfig`` work over either; tests/fake_server runs over both.
    """
    async with FakeApiServer(bookmark_interval=0.05, too_large_wait=0.2, tls=False) as fake:
        yield fake


@pytest.fixture
def kubeconfig(server: FakeApiServer, tmp_path: Path) -> Path:
    """A kubeconfig for the fake server, loaded as a real one would be."""
    path = tmp_path / "kubeconfig"
    server.write_kubeconfig(path)
    return path


@pytest.fixture
async def api_client(server: FakeApiServer) -> AsyncIterator[Any]:
    client = server.api_client()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="session")
def kubectl_binary() -> str:
    """The kubectl to test with (``find_kubectl``); fails, never skips, without one."""
    try:
        return find_kubectl()
    except KubectlUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
