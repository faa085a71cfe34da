"""Fixtures for the FakeApiServer tests: the server, typed and raw clients for it.

The server under test comes from the plugin's ``fake_apiserver`` fixture (configured with
``@pytest.mark.fake_apiserver(...)``), so every test also exercises the plugin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from kubernetes_asyncio import client

from listwatch.testing import FakeApiServer


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
    ) as session:
        yield session
