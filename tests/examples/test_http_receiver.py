"""examples/http_receiver.py: the sync server's state equals the cluster after churn, after a
failed delta sync (a new generation and a full sync), and stale generations are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import listwatch
from listwatch.testing import FakeApiServer

from .conftest import caught_up, churn, fast_backoff, load_example, pod, pods_on_server, within

http_receiver = load_example("http_receiver")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FailNextDelta:
    """A middleware: answers the next ``POST /sync/delta`` with a 500, once armed."""

    def __init__(self) -> None:
        self.armed = False
        self.failed = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.armed and request.path == "/sync/delta":
            self.armed = False
            self.failed += 1
            await request.read()
            return web.json_response({"error": "injected"}, status=500)
        return await handler(request)


@pytest.fixture
async def sync_client() -> AsyncIterator[tuple[TestClient[Any, Any], FailNextDelta]]:
    failure = FailNextDelta()
    app = http_receiver.create_sync_server()
    app.middlewares.append(failure.middleware)
    async with TestClient(TestServer(app)) as client:
        yield client, failure


def held(client: TestClient[Any, Any]) -> Any:
    return client.app[http_receiver.STATE]


def state_of(mirror: Any) -> dict[str, str]:
    return {key: obj["metadata"]["resourceVersion"] for key, obj in mirror.objects.items()}


async def test_server_converges_through_churn_and_a_failed_delta(
    server: FakeApiServer,
    kubeconfig: Path,
    sync_client: tuple[TestClient[Any, Any], FailNextDelta],
) -> None:
    client, failure = sync_client
    await server.create(pod("a"))
    await server.create(pod("b"))
    url = str(client.make_url("/"))
    async with (
        await listwatch.connect(kubeconfig) as api,
        aiohttp.ClientSession() as http,
    ):
        syncer = http_receiver.create_syncer(
            api, http, url, merge_interval=0.02, backoff=fast_backoff()
        )
        async with syncer:
            await within(syncer.wait_synced())
            mirror = held(client)
            assert state_of(mirror) == pods_on_server(server)
            assert (mirror.generation, mirror.resource_version) == (
                1,
                syncer.status.snapshot_resource_version,
            )

            await server.wait_for_watchers(1)
            await churn(server)
            await within(syncer.wait_until(caught_up(server)))
            assert state_of(mirror) == pods_on_server(server)
            assert "default/b" not in mirror.objects

            # The server answers the next delta with a 500: that delta is lost, the receiver
            # raises, and the Syncer starts generation 2 whose full sync repairs the state.
            failure.armed = True
            await server.create(pod("d"))
            await server.delete(pod("a"))
            converged = caught_up(server)
            status = await within(syncer.wait_until(lambda s: s.generation >= 2 and converged(s)))

            assert failure.failed == 1
            assert status.restarts >= 1
            assert "HTTP 500" in status.recent_restarts[0].reason
            assert state_of(mirror) == pods_on_server(server)
            assert set(mirror.objects) == {"default/c1", "default/d", "kube-system/c2"}
            assert mirror.generation == status.generation
            assert mirror.resource_version == str(server.resource_version)

    state = await (await client.get("/state")).json()
    assert state["objects"] == 3
    assert set(await (await client.get("/objects")).json()) == set(mirror.objects)


async def test_stale_and_out_of_sequence_payloads_are_refused(
    sync_client: tuple[TestClient[Any, Any], FailNextDelta],
) -> None:
    client, _ = sync_client
    obj = pod("a")

    async def post(path: str, **payload: Any) -> int:
        return (await client.post(path, json=payload)).status

    def full(session: str, generation: int, rv: str) -> dict[str, Any]:
        return {
            "session": session,
            "generation": generation,
            "resourceVersion": rv,
            "objects": {"default/a": obj},
        }

    def delta(session: str, generation: int, rv: str, **upserts: Any) -> dict[str, Any]:
        return {
            "session": session,
            "generation": generation,
            "resourceVersion": rv,
            "upserts": upserts,
            "deletes": ["default/a", "default/never-seen"],
        }

    assert await post("/sync/delta", **delta("s1", 1, "5")) == 409  # no full sync yet
    assert await post("/sync/full", **full("s1", 2, "10")) == 200
    assert await post("/sync/full", **full("s1", 1, "8")) == 409  # an older generation
    assert await post("/sync/delta", **delta("s1", 1, "9")) == 409  # of an older generation
    assert await post("/sync/delta", **delta("s0", 2, "11")) == 409  # another session
    assert held(client).resource_version == "10"
    assert set(held(client).objects) == {"default/a"}

    assert await post("/sync/delta", **delta("s1", 2, "12")) == 200  # deletes an unknown key too
    assert held(client).objects == {}
    assert await post("/sync/full", **full("s1", 2, "13")) == 200  # the same generation again
    # A restarted receiver: a new session, counting generations from 1 again.
    assert await post("/sync/full", **full("s2", 1, "14")) == 200
    assert (held(client).session, held(client).generation) == ("s2", 1)

    assert await post("/sync/delta", session="s2", generation=1) == 400
    bad = await client.post("/sync/full", data=b"{not json", headers={"Content-Type": "x"})
    assert bad.status == 400
