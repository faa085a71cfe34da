"""The Syncer over real HTTP: snapshots equal the server, deltas follow, shutdown is clean."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from listwatch import DiscoveryError, ListWatch, Phase, Syncer
from listwatch.testing import FakeApiServer
from tests.core.helpers import Mirror, make_syncer, server_state
from tests.objects import configmap, pod


async def test_snapshot_equals_the_server_across_pages(
    server: FakeApiServer, api_client: Any
) -> None:
    await server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}})
    for i in range(7):
        await server.create(pod(f"p{i}", "default" if i % 2 else "prod"))
    mirror = Mirror()
    syncer = make_syncer(ListWatch.from_client(api_client, "pods"), mirror, page_size=3)
    async with syncer:
        await syncer.wait_synced()
        snapshot = mirror.snapshots[0]
        assert mirror.state() == server_state(server, "v1", "Pod")
        assert len(snapshot.items) == 7
        assert snapshot.resource_version == str(server.resource_version)
        assert all(item["kind"] == "Pod" and item["apiVersion"] == "v1" for item in snapshot.items)
    lists = [r for r in server.requests if r.path == "/api/v1/pods" and not r.watch]
    assert [r.query.get("limit") for r in lists] == ["3", "3", "3"]
    assert "continue" not in lists[0].query
    assert all("continue" in r.query for r in lists[1:])
    assert all(r.query.get("resourceVersion", "") == "" for r in lists)
    assert mirror.violations == []


async def test_deltas_follow_the_snapshot(server: FakeApiServer, api_client: Any) -> None:
    await server.create(pod("keep"))
    await server.create(pod("gone"))
    mirror = Mirror()
    syncer = make_syncer(ListWatch.from_client(api_client, "pods", namespace="default"), mirror)
    async with syncer:
        await syncer.wait_synced()
        await server.wait_for_watchers(1)
        await server.create(pod("new"))
        changed = pod("keep")
        changed["metadata"]["labels"] = {"v": "2"}
        await server.replace(changed)
        await server.delete(pod("gone"))
        expected = server_state(server, "v1", "Pod")
        await mirror.wait_for(lambda m: m.state() == expected)
    assert set(mirror.objects) == {"default/keep", "default/new"}
    assert mirror.objects["default/keep"]["metadata"]["labels"] == {"v": "2"}
    watch = next(r for r in server.requests if r.watch)
    assert watch.query["resourceVersion"] == mirror.snapshots[0].resource_version
    assert watch.query["allowWatchBookmarks"] == "true"
    assert 300 <= int(watch.query["timeoutSeconds"]) <= 600
    assert mirror.violations == []


async def test_grouped_and_custom_resources(server: FakeApiServer, api_client: Any) -> None:
    server.register_resource("example.com", "v1", "widgets", "Widget")
    await server.create(
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default"},
        }
    )
    await server.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {}},
        }
    )
    widgets, deployments = Mirror(), Mirror()
    syncers = [
        make_syncer(ListWatch.from_client(api_client, "widgets", group="example.com"), widgets),
        make_syncer(
            ListWatch.from_client(api_client, "deployments", group="apps", namespace="default"),
            deployments,
        ),
    ]
    async with syncers[0], syncers[1]:
        await syncers[0].wait_synced()
        await syncers[1].wait_synced()
    assert widgets.snapshots[0].items[0]["kind"] == "Widget"
    assert deployments.snapshots[0].items[0]["apiVersion"] == "apps/v1"
    assert set(deployments.objects) == {"default/d"}


async def test_selectors_are_sent_and_honoured(server: FakeApiServer, api_client: Any) -> None:
    await server.create(pod("a", app="web"))
    await server.create(pod("b", app="db"))
    mirror = Mirror()
    source = ListWatch.from_client(
        api_client, "pods", label_selector="app=web", field_selector="metadata.namespace=default"
    )
    async with make_syncer(source, mirror) as syncer:
        await syncer.wait_synced()
        await server.wait_for_watchers(1)
        await server.create(pod("c", app="web"))
        await mirror.wait_for(lambda m: "default/c" in m.objects)
    assert set(mirror.objects) == {"default/a", "default/c"}
    pods = [r for r in server.requests if r.path == "/api/v1/pods"]
    assert pods
    assert all(r.query.get("labelSelector") == "app=web" for r in pods)


async def test_transform_applies_to_snapshot_items_and_events(
    server: FakeApiServer, api_client: Any
) -> None:
    await server.create(pod("a"))

    def strip(obj: dict[str, Any]) -> dict[str, Any]:
        obj.pop("spec", None)
        return obj

    mirror = Mirror()
    async with make_syncer(ListWatch.from_client(api_client, "pods"), mirror, transform=strip) as s:
        await s.wait_synced()
        await server.wait_for_watchers(1)
        await server.create(pod("b"))
        await mirror.wait_for(lambda m: "default/b" in m.objects)
    assert all("spec" not in obj for obj in mirror.objects.values())


async def test_custom_key_merges_on_it(server: FakeApiServer, api_client: Any) -> None:
    mirror = Mirror()
    seen: list[list[str]] = []

    async def on_batch(batch: Any) -> None:
        seen.append(list(batch.events))
        await mirror.on_batch(batch)

    syncer = Syncer(
        ListWatch.from_client(api_client, "pods"),
        on_list=mirror.on_list,
        on_batch=on_batch,
        merge_interval=0.02,
        key=lambda obj: obj["metadata"]["name"].upper(),
    )
    async with syncer:
        await syncer.wait_synced()
        await server.wait_for_watchers(1)
        await server.create(pod("x"))
        await mirror.wait_for(lambda m: bool(m.batches))
    assert seen[0] == ["X"]


async def test_status_reports_the_generation(server: FakeApiServer, api_client: Any) -> None:
    await server.create(pod("a"))
    mirror = Mirror()
    syncer = make_syncer(ListWatch.from_client(api_client, "pods"), mirror)
    assert syncer.status.phase is Phase.STARTING
    assert not syncer.status.has_synced
    async with syncer:
        status = await syncer.wait_until(lambda s: s.phase is Phase.WATCHING)
        assert status.generation == 1
        assert status.synced
        assert status.snapshot_size == 1
        assert status.snapshot_resource_version == mirror.snapshots[0].resource_version
        assert status.restarts == 0
        await server.wait_for_watchers(1)
        await server.create(pod("b"))
        status = await syncer.wait_until(lambda s: s.batches >= 1)
        assert status.last_batch_at is not None
        assert status.events >= 1
    assert syncer.status.phase is Phase.STOPPED


async def test_resync_period_starts_new_generations(server: FakeApiServer, api_client: Any) -> None:
    await server.create(pod("a"))
    mirror = Mirror()
    syncer = make_syncer(ListWatch.from_client(api_client, "pods"), mirror, resync_period=0.05)
    async with syncer:
        status = await syncer.wait_until(lambda s: s.generation >= 3 and s.synced)
    assert all("resync" in r.reason for r in status.recent_restarts)
    assert status.has_synced
    assert len(mirror.snapshots) >= 3
    assert mirror.violations == []


def client_side(tasks: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    """Tasks that are not the fake server's own request handlers (same event loop)."""
    return {t for t in tasks if "aiohttp/web_protocol" not in repr(t)}


async def test_cancellation_closes_every_task_and_connection(server: FakeApiServer) -> None:
    await server.create(pod("a"))
    mirror = Mirror()
    before = asyncio.all_tasks()
    async with server.api_client() as client:
        syncer = make_syncer(ListWatch.from_client(client, "pods"), mirror)
        task = asyncio.create_task(syncer.run())
        await mirror.wait_for(lambda m: bool(m.snapshots))
        await server.wait_for_watchers(1)
        task.cancel()
        async with asyncio.timeout(1.0):
            with pytest.raises(asyncio.CancelledError):
                await task
        assert client_side(asyncio.all_tasks() - before) == set()
        # The watch connection is closed by listwatch, not left to the pool.
        await server.wait_until(lambda s: s.active_watches == 0)
    await server.wait_until(lambda s: s.open_connections == 0)
    assert syncer.status.phase is Phase.STOPPED


async def test_context_manager_reraises_a_fatal_error(api_client: Any) -> None:
    syncer = make_syncer(ListWatch.from_client(api_client, "nosuchthings"), Mirror())
    with pytest.raises(DiscoveryError, match="nosuchthings"):
        async with syncer:
            await syncer.wait_synced()


async def test_logs_never_carry_the_token_or_objects(
    server: FakeApiServer, api_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-value-in-an-object"
    await server.create(configmap("c", secret=secret))
    mirror = Mirror()
    caplog.set_level(logging.INFO, logger="listwatch")
    async with make_syncer(ListWatch.from_client(api_client, "configmaps"), mirror) as syncer:
        await syncer.wait_synced()
    text = caplog.text
    assert "snapshot of 1 objects" in text
    assert server.token not in text
    assert secret not in text


async def test_a_busy_pipeline_stops_at_once(server: FakeApiServer, api_client: Any) -> None:
    """Cancelled while the watch keeps the queue full and batches keep coming, the Syncer
    stops within a second (the benchmark's stalled-receiver run once took 17 s)."""
    for i in range(300):
        await server.create(pod(f"p{i}"))
    delivered: list[int] = []
    busy = asyncio.Event()

    async def on_list(snapshot: Any) -> None:
        async for _ in snapshot:
            pass

    async def on_batch(batch: Any) -> None:
        for event in batch.events.values():
            event.object["metadata"]["name"]
            await asyncio.sleep(0)
        delivered.append(len(batch))
        if sum(delivered) >= 300:
            busy.set()

    syncer = Syncer(
        ListWatch.from_client(api_client, "pods"),
        on_list=on_list,
        on_batch=on_batch,
        merge_interval=0.001,
        max_batch=20,
        queue_size=20,
    )

    async def churn() -> None:
        round_ = 0
        while True:
            for i in range(300):
                changed = pod(f"p{i}", round=str(round_))
                changed["metadata"]["resourceVersion"] = server.get("v1", "Pod", f"p{i}")[
                    "metadata"
                ]["resourceVersion"]
                await server.replace(changed)
            round_ += 1
            await asyncio.sleep(0)

    async with asyncio.TaskGroup() as group:
        churner = group.create_task(churn())
        await syncer.__aenter__()
        await busy.wait()
        async with asyncio.timeout(1.0):
            await syncer.__aexit__(None, None, None)
        churner.cancel()
    assert syncer.status.phase is Phase.STOPPED


async def test_a_cancel_that_meets_a_failing_batch_still_stops_the_syncer(
    server: FakeApiServer, api_client: Any
) -> None:
    """The Syncer's task is cancelled in the same moment its on_batch fails (a leader's term
    ending while its receiver refuses writes): on CPython < 3.12.4 the generation's
    TaskGroup can swallow the outside cancellation (gh-116720); the Syncer must stop, not
    start another generation."""
    await server.create(pod("a"))
    generations: list[int] = []

    async def on_list(snapshot: Any) -> None:
        generations.append(snapshot.generation)
        await snapshot.collect()

    async def on_batch(batch: Any) -> None:
        running.cancel()  # from outside the generation's group: the supervisor, say
        raise RuntimeError("the receiver refuses this write")

    syncer = Syncer(
        ListWatch.from_client(api_client, "pods"),
        on_list=on_list,
        on_batch=on_batch,
        merge_interval=0.01,
    )
    running = asyncio.create_task(syncer.run())
    await server.wait_for_watchers(1)
    await server.create(pod("b"))
    with pytest.raises(asyncio.CancelledError):
        await running
    assert generations == [1]
    assert syncer.status.phase is Phase.STOPPED
