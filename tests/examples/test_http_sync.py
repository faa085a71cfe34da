"""examples/http_sync.py: the service's mirror (listwatch's receiver mounted in its own app)
equals the cluster after churn, after a batch the service refused (a new generation and a
fresh snapshot repair it), and its own routes read it; without the token nothing is written."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import listwatch
from listwatch.httpsync._client import HttpSink
from listwatch.testing import FakeApiServer
from tests.examples.helpers import (
    app_pod,
    caught_up,
    churn,
    fast_backoff,
    load_example,
    pods_on_server,
    within,
)

http_sync = load_example("http_sync")
TOKEN = "example-token"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FailNextBatch:
    """A middleware: answers the next batch request with a 503, once armed."""

    def __init__(self) -> None:
        self.armed = False
        self.failed = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.armed and request.path.endswith("/batch"):
            self.armed = False
            self.failed += 1
            await request.read()
            return web.json_response({"message": "injected"}, status=503)
        return await handler(request)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], FailNextBatch]]:
    failure = FailNextBatch()
    app = http_sync.create_app(tmp_path / "mirror.db", TOKEN)
    app.middlewares.append(failure.middleware)
    async with TestClient(TestServer(app)) as client:  # real HTTP on 127.0.0.1
        yield client, failure


async def state_of(client: TestClient[Any, Any]) -> dict[str, str]:
    sink = await client.app[http_sync.STORE].sink("pods")
    return {key: obj["metadata"]["resourceVersion"] for key, obj in (await sink.objects()).items()}


async def test_the_service_follows_the_cluster_and_recovers_from_a_refused_batch(
    server: FakeApiServer,
    kubeconfig: Path,
    service: tuple[TestClient[Any, Any], FailNextBatch],
) -> None:
    client, failure = service
    await server.create(app_pod("a"))
    await server.create(app_pod("b"))
    url = str(client.make_url(http_sync.RECEIVER_PREFIX))
    async with (
        await listwatch.connect(kubeconfig) as api,
        HttpSink(url, token=TOKEN) as sink,
    ):
        syncer = http_sync.create_syncer(api, sink, merge_interval=0.02, backoff=fast_backoff())
        async with syncer:
            await within(syncer.wait_synced())
            assert await state_of(client) == pods_on_server(server)

            await server.wait_for_watchers(1)
            await churn(server)
            await within(syncer.wait_until(caught_up(server)))
            assert await state_of(client) == pods_on_server(server)

            # The service refuses the next batch: the Syncer raises, starts generation 2, and
            # its snapshot repairs what the lost batch carried.
            failure.armed = True
            await server.create(app_pod("d"))
            await server.delete(app_pod("a"))
            converged = caught_up(server)
            status = await within(syncer.wait_until(lambda s: s.generation >= 2 and converged(s)))
            assert failure.failed == 1
            assert "HTTP 503" in status.recent_restarts[0].reason
            assert await state_of(client) == pods_on_server(server)

    state = await (await client.get("/state")).json()
    assert state["objects"] == 3
    assert state["resourceVersion"] == str(server.resource_version)
    got = await client.get("/pods/default/d")
    assert got.status == 200
    assert (await got.json())["metadata"]["name"] == "d"
    assert (await client.get("/pods/default/a")).status == 404


async def test_without_the_token_nothing_is_written(
    server: FakeApiServer, kubeconfig: Path, service: tuple[TestClient[Any, Any], FailNextBatch]
) -> None:
    client, _ = service
    await server.create(app_pod("a"))
    url = str(client.make_url(http_sync.RECEIVER_PREFIX))
    async with (
        await listwatch.connect(kubeconfig) as api,
        HttpSink(url, token="wrong") as sink,
    ):
        syncer = http_sync.create_syncer(api, sink, backoff=fast_backoff())
        async with syncer:
            status = await within(syncer.wait_until(lambda s: s.restarts >= 1))
    assert "401" in (status.last_error or "")
    assert "wrong" not in (status.last_error or "")
    assert (await (await client.get("/state")).json())["objects"] == 0
