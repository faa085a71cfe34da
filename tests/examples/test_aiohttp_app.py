"""examples/aiohttp_app.py: a cleanup_ctx syncs pods into SQLite; /healthz and /objects serve it.

The app runs on a real aiohttp test server and is queried over HTTP; its Syncer talks to the
fake API server over HTTP too, configured by a kubeconfig file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from listwatch import Phase, Syncer
from listwatch.sinks.sqlite import read_mirror
from listwatch.testing import FakeApiServer, Fault
from tests.examples.helpers import (
    app_pod,
    caught_up,
    churn,
    fast_backoff,
    load_example,
    pods_on_server,
    within,
)

aiohttp_app = load_example("aiohttp_app")


@asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[tuple[TestClient[Any, Any], Syncer]]:
    async with TestClient(TestServer(app)) as http:  # starts the app: runs its cleanup_ctx
        yield http, app[aiohttp_app.SYNCER]


def mirrored(body: dict[str, Any]) -> dict[str, str]:
    return {
        f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
        for o in body["items"]
    }


async def test_objects_follow_the_cluster(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    await server.create(app_pod("a"))
    await server.create(app_pod("b"))
    database = tmp_path / "mirror.db"
    app = aiohttp_app.create_app(database, kubeconfig, merge_interval=0.02, backoff=fast_backoff())
    async with running(app) as (http, syncer):
        await within(syncer.wait_synced())
        response = await http.get("/objects")
        assert response.status == 200
        assert mirrored(await response.json()) == pods_on_server(server)

        await server.wait_for_watchers(1)
        await churn(server)
        await within(syncer.wait_until(caught_up(server)))

        body = await (await http.get("/objects")).json()
        assert mirrored(body) == pods_on_server(server)
        assert body["resourceVersion"] == str(server.resource_version)
        only_system = await (await http.get("/objects", params={"namespace": "kube-system"})).json()
        assert set(mirrored(only_system)) == {"kube-system/c2"}

        one = await http.get("/objects/default/a")
        assert one.status == 200
        assert (await one.json())["status"] == {"phase": "Running"}
        assert (await http.get("/objects/default/b")).status == 404  # deleted

    # The file outlives the app: another process could read it now.
    stored = read_mirror(database, resource="pods")
    assert {k: o["metadata"]["resourceVersion"] for k, o in stored.objects.items()} == (
        pods_on_server(server)
    )


async def test_healthz_is_503_until_synced(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    server.inject(
        Fault.status(503), path="/api/v1/pods", times=None
    )  # the streaming list, and the LIST
    first_list = server.request_count
    app = aiohttp_app.create_app(
        tmp_path / "mirror.db", kubeconfig, merge_interval=0.02, backoff=fast_backoff()
    )
    async with running(app) as (http, syncer):
        await server.wait_for_request(lambda r: r.path == "/api/v1/pods", start=first_list)
        response = await http.get("/healthz")
        assert response.status == 503
        assert (await response.json())["synced"] is False
        await within(syncer.wait_until(lambda s: s.restarts >= 1))

        server.clear_faults()
        await within(syncer.wait_synced())
        response = await http.get("/healthz")
        assert response.status == 200
        status = await response.json()
        assert status["phase"] == "watching"
        assert status["generation"] >= 2


async def test_healthz_is_503_after_a_fatal_failure(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.inject(Fault.status(404), path="/api/v1/pods")  # the first request: a streaming list
    app = aiohttp_app.create_app(tmp_path / "mirror.db", kubeconfig)
    async with running(app) as (http, syncer):
        await within(syncer.wait_until(lambda s: s.phase is Phase.FAILED))
        response = await http.get("/healthz")
        assert response.status == 503
        assert "ResourceNotFound" in (await response.json())["last_error"]
    assert any("the mirror had stopped" in r.getMessage() for r in caplog.records)
