"""Fixtures for the FakeApiServer tests: the server, typed and raw clients for it.

The server under test comes from the plugin's ``fake_apiserver`` fixture (configured with
``@pytest.mark.fake_apiserver(...)``), so every test also exercises the plugin, and every
test runs twice: over plain HTTP and over HTTPS (``tls``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from kubernetes_asyncio import client

from listwatch.testing import FakeApiServer
from tests.fake_server.helpers import client_ssl


@pytest.fixture(params=[pytest.param(False, id="http"), pytest.param(True, id="https")])
def tls(request: pytest.FixtureRequest) -> bool:
    """Every test of this suite runs over plain HTTP and over HTTPS."""
    return bool(request.param)


@pytest.fixture
def _transport_marker(request: pytest.FixtureRequest, tls: bool) -> None:
    request.node.add_marker(pytest.mark.fake_apiserver(tls=tls))


@pytest.fixture
def fake_apiserver(_transport_marker: None, fake_apiserver: FakeApiServer) -> FakeApiServer:
    """The plugin's fixture, over the transport of this parametrization."""
    return fake_apiserver


@pytest.fixture
def server(fake_apiserver: FakeApiServer) -> FakeApiServer:
    return fake_apiserver


@pytest.fixture
async def api(server: FakeApiServer) -> AsyncIterator[client.ApiClient]:
    api_client = server.api_client()
    try:
        yield api_client
    finally:
        await api_client.close()


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
async def http(server: FakeApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    """A raw aiohttp session that authenticates to the server."""
    async with aiohttp.ClientSession(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.token}"},
        read_bufsize=2**16,
        connector=aiohttp.TCPConnector(ssl=client_ssl(server)),
    ) as session:
        yield session
