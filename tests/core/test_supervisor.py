"""Several resources under one Supervisor (and Agent): each keeps its own generations, one
failing does not hold the others back, a fatal error stops them all, and /readyz says which
resource is not ready."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from listwatch import Backoff, DiscoveryError, ListWatch, Phase, Syncer, observe
from listwatch._agent import Agent, WriteGate, gated
from listwatch._supervisor import Supervisor
from listwatch.observe.health import make_app, serving
from listwatch.testing import FakeApiServer, Fault
from tests.core.helpers import FAST_BACKOFF, Mirror, server_state
from tests.objects import configmap, pod


def syncer_for(api: Any, resource: str, mirror: Mirror, **kwargs: Any) -> Syncer:
    return Syncer(
        ListWatch.from_client(api, resource),
        on_list=mirror.on_list,
        on_batch=mirror.on_batch,
        merge_interval=0.02,
        backoff=Backoff(**FAST_BACKOFF),
        **kwargs,
    )


async def test_each_resource_keeps_its_own_generations(
    server: FakeApiServer, api_client: Any
) -> None:
    await server.create(pod("a"))
    await server.create(configmap("c"))
    pods, configmaps = Mirror(), Mirror()
    supervisor = Supervisor(
        [
            # A short watch: its re-watch, within a second, meets the injected 410.
            syncer_for(api_client, "pods", pods, watch_timeout=1),
            syncer_for(api_client, "configmaps", configmaps),
        ]
    )
    assert list(supervisor.syncers) == ["pods", "configmaps"]
    async with supervisor:
        await supervisor.wait_synced()
        # The pods watch dies with a 410: pods relist, config maps carry on untouched.
        server.inject(Fault.error_event(0, 410), path="/api/v1/pods", watch=True)
        await server.create(pod("b"))
        statuses = await supervisor.wait_until(
            lambda s: s["pods"].generation >= 2 and s["pods"].synced
        )
        await server.create(configmap("d"))
        await configmaps.wait_for(lambda m: "default/d" in m.objects)
    assert statuses["configmaps"].generation == 1
    assert statuses["configmaps"].restarts == 0
    assert pods.state() == server_state(server, "v1", "Pod")


async def test_a_fatal_error_in_one_resource_stops_them_all(api_client: Any) -> None:
    good, bad = Mirror(), Mirror()
    healthy = syncer_for(api_client, "configmaps", good)
    supervisor = Supervisor([healthy, syncer_for(api_client, "nosuchthings", bad)])
    with pytest.raises(DiscoveryError, match="nosuchthings"):
        await supervisor.run()
    statuses = supervisor.statuses()
    assert statuses["nosuchthings"].phase is Phase.FAILED
    assert "does not serve" in (statuses["nosuchthings"].last_error or "")
    assert statuses["configmaps"].phase is Phase.STOPPED  # cancelled with it


async def test_two_syncers_for_one_resource_are_refused(api_client: Any) -> None:
    with pytest.raises(ValueError, match="same resource 'pods'"):
        Supervisor(
            [syncer_for(api_client, "pods", Mirror()), syncer_for(api_client, "pods", Mirror())]
        )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_one_resource_failing_on_every_request_leaves_the_others_converging(
    server: FakeApiServer, api_client: Any, http: aiohttp.ClientSession
) -> None:
    """Config maps answer 500 to every request for as long as the test runs: pods and
    namespaces converge regardless, and /readyz names config maps as not ready."""
    await server.create(pod("a"))
    server.inject(Fault.status(500), path="/api/v1/configmaps", times=None)
    mirrors = {"pods": Mirror(), "configmaps": Mirror(), "namespaces": Mirror()}

    def build(epoch: int, gate: WriteGate) -> list[Syncer]:
        return [
            Syncer(
                ListWatch.from_client(api_client, name),
                on_list=gated(mirror.on_list, gate),
                on_batch=gated(mirror.on_batch, gate),
                merge_interval=0.02,
                backoff=Backoff(**FAST_BACKOFF),
                epoch=epoch,
            )
            for name, mirror in mirrors.items()
        ]

    agent = Agent(build)
    app = make_app(agent.metrics, liveness=agent.liveness, readiness=agent.readiness)
    async with serving(app, "127.0.0.1", 0) as (host, port), asyncio.TaskGroup() as group:
        running = group.create_task(agent.run())
        supervisor = await agent.wait_for_supervisor()
        await supervisor.wait_until(
            lambda s: s["pods"].synced and s["namespaces"].synced and s["configmaps"].restarts >= 2
        )
        await server.create(pod("b"))
        await mirrors["pods"].wait_for(lambda m: "default/b" in m.objects)
        async with http.get(f"http://{host}:{port}/readyz") as response:
            ready = await response.json()
            ready_status = response.status
        async with http.get(f"http://{host}:{port}/healthz") as response:
            alive_status = response.status
        running.cancel()
    assert ready_status == 503
    assert ready["not_ready"] == ["configmaps"]
    assert ready["resources"]["pods"]["ready"] is True
    assert "ServerError" in ready["resources"]["configmaps"]["last_error"]
    assert alive_status == 200  # failing to sync one resource is not being dead
    assert mirrors["pods"].state() == server_state(server, "v1", "Pod")
    assert mirrors["configmaps"].snapshots == []


async def test_wait_until_sees_a_change_that_comes_before_its_waiters_run(
    api_client: Any,
) -> None:
    """A status change between reading the statuses and the waiters' first step must wake
    ``wait_until``: the change here is scheduled by the predicate itself, so it runs before
    any waiter task starts (a waiter that took its event late would sleep through it)."""
    pods, configmaps = Mirror(), Mirror()
    first = syncer_for(api_client, "pods", pods)
    supervisor = Supervisor([first, syncer_for(api_client, "configmaps", configmaps)])
    emit = first._emit  # the events the Syncer's loop would emit: not running here
    calls = 0

    def predicate(statuses: Any) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            asyncio.get_running_loop().call_soon(emit, observe.GenerationStarted(7))
            return False
        return statuses["pods"].generation == 7

    statuses = await asyncio.wait_for(supervisor.wait_until(predicate), 5)
    assert statuses["pods"].generation == 7
    assert calls == 2


def widget(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": "default"},
    }


async def test_a_resource_no_longer_served_is_reported_and_retried_while_the_others_sync(
    server: FakeApiServer, api_client: Any, http: aiohttp.ClientSession
) -> None:
    """Its CRD is deleted after it synced: its objects' deletions reach the receiver (even
    though they were still being merged when the watch ended), /readyz names it not
    served and /metrics says so, config maps keep syncing, and once the CRD is back its
    new objects arrive. A merge interval longer than the server's teardown: the deletions
    are pending when the re-watch gets its 404."""
    server.register_resource("example.com", "v1", "widgets", "Widget")
    await server.create(widget("a"))
    await server.create(widget("b"))
    await server.create(configmap("c"))
    widgets, configmaps = Mirror(), Mirror()

    def build(epoch: int, gate: WriteGate) -> list[Syncer]:
        return [
            Syncer(
                ListWatch.from_client(api_client, "widgets.example.com"),
                on_list=widgets.on_list,
                on_batch=widgets.on_batch,
                merge_interval=0.5,
                backoff=Backoff(**FAST_BACKOFF),
            ),
            syncer_for(api_client, "configmaps", configmaps),
        ]

    agent = Agent(build)
    app = make_app(agent.metrics, liveness=agent.liveness, readiness=agent.readiness)
    async with serving(app, "127.0.0.1", 0) as (host, port), asyncio.TaskGroup() as group:
        running = group.create_task(agent.run())
        supervisor = await agent.wait_for_supervisor()
        await supervisor.wait_synced()
        await server.wait_for_watchers(2)

        server.unregister_resource("example.com", "v1", "widgets")
        statuses = await supervisor.wait_until(
            lambda s: not s["widgets.example.com"].served and s["widgets.example.com"].failures >= 2
        )
        await widgets.wait_for(lambda m: not m.objects)
        await server.create(configmap("d"))
        await configmaps.wait_for(lambda m: "default/d" in m.objects)
        async with http.get(f"http://{host}:{port}/readyz") as response:
            ready_status, ready = response.status, await response.json()
        async with http.get(f"http://{host}:{port}/metrics") as response:
            metrics = await response.text()
        async with http.get(f"http://{host}:{port}/healthz") as response:
            alive_status = response.status

        server.register_resource("example.com", "v1", "widgets", "Widget")
        await server.create(widget("e"))
        back = await supervisor.wait_until(lambda s: s["widgets.example.com"].served)
        await widgets.wait_for(lambda m: "default/e" in m.objects)
        running.cancel()
    gone = statuses["widgets.example.com"]
    assert gone.has_synced
    assert not gone.synced
    assert "HTTP 404" in (gone.last_error or "")
    assert ready_status == 503
    assert ready["not_ready"] == ["widgets.example.com"]
    assert ready["resources"]["widgets.example.com"]["served"] is False
    assert "HTTP 404" in ready["resources"]["widgets.example.com"]["last_error"]
    assert ready["resources"]["configmaps"]["ready"] is True
    assert 'listwatch_served{group="example.com",resource="widgets",version="v1"} 0.0' in metrics
    assert 'listwatch_served{group="",resource="configmaps",version="v1"} 1.0' in metrics
    assert (
        'listwatch_restarts_total{group="example.com",reason="ResourceNotFound",'
        'resource="widgets",version="v1"}'
    ) in metrics
    assert alive_status == 200  # a resource that is gone is news, not a dead process
    assert back["widgets.example.com"].generation > gone.generation
    assert widgets.violations == configmaps.violations == []
    assert configmaps.state() == server_state(server, "v1", "ConfigMap")
