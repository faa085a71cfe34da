"""examples/fastapi_app.py: the lifespan syncs pods into memory; /healthz and /objects serve it.

The app runs in-process (httpx's ASGITransport, the lifespan entered by hand); the Syncer in it
talks to the fake API server over real HTTP, configured by a kubeconfig file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from listwatch import Phase, Syncer
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

fastapi_app = load_example("fastapi_app")


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Syncer]]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http,
    ):
        yield http, app.state.syncer


def mirrored(body: dict[str, Any]) -> dict[str, str]:
    return {
        f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
        for o in body["items"]
    }


async def test_objects_follow_the_cluster(server: FakeApiServer, kubeconfig: Path) -> None:
    await server.create(app_pod("a"))
    await server.create(app_pod("b"))
    app = fastapi_app.create_app(kubeconfig, merge_interval=0.02, backoff=fast_backoff())
    async with running(app) as (http, syncer):
        await within(syncer.wait_synced())
        response = await http.get("/objects")
        assert response.status_code == 200
        assert mirrored(response.json()) == pods_on_server(server)

        await server.wait_for_watchers(1)
        await churn(server)
        await within(syncer.wait_until(caught_up(server)))

        body = (await http.get("/objects")).json()
        assert mirrored(body) == pods_on_server(server)
        assert body["resourceVersion"] == str(server.resource_version)
        only_system = (await http.get("/objects", params={"namespace": "kube-system"})).json()
        assert mirrored(only_system) == {"kube-system/c2": pods_on_server(server)["kube-system/c2"]}

        one = await http.get("/objects/default/a")
        assert one.status_code == 200
        assert one.json()["status"] == {"phase": "Running"}
        assert (await http.get("/objects/default/b")).status_code == 404  # deleted


async def test_healthz_is_503_until_synced(server: FakeApiServer, kubeconfig: Path) -> None:
    # Every listing fails until the fault is cleared: the app cannot be synced before that.
    server.inject(
        Fault.status(503), path="/api/v1/pods", times=None
    )  # the streaming list, and the LIST
    first_list = server.request_count
    app = fastapi_app.create_app(kubeconfig, merge_interval=0.02, backoff=fast_backoff())
    async with running(app) as (http, syncer):
        await server.wait_for_request(lambda r: r.path == "/api/v1/pods", start=first_list)
        response = await http.get("/healthz")
        assert response.status_code == 503
        status = response.json()
        assert status["synced"] is False
        assert status["phase"] in {"starting", "listing", "backing off"}

        await within(syncer.wait_until(lambda s: s.restarts >= 1))
        status = (await http.get("/healthz")).json()
        assert "ServerError" in status["last_error"]
        assert status["recent_restarts"][0]["reason"] == status["last_error"]

        server.clear_faults()
        await within(syncer.wait_synced())
        response = await http.get("/healthz")
        assert response.status_code == 200
        status = response.json()
        assert status["synced"] is True
        assert status["phase"] == "watching"
        assert status["generation"] >= 2
        assert status["snapshot_size"] == 0


async def test_healthz_is_503_after_a_fatal_failure(
    server: FakeApiServer, kubeconfig: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A resource the server does not serve: retrying cannot help, the Syncer gives up.
    app = fastapi_app.create_app(kubeconfig, resource="widgets", group="example.com")
    async with running(app) as (http, syncer):
        await within(syncer.wait_until(lambda s: s.phase is Phase.FAILED))
        response = await http.get("/healthz")
        assert response.status_code == 503
        status = response.json()
        assert status["phase"] == "failed"
        assert "ResourceNotFound" in status["last_error"]
    # The lifespan ended cleanly and said why the mirror had stopped.
    assert any("the mirror had stopped" in r.getMessage() for r in caplog.records)
