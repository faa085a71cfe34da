"""The generation rule: a failing or hanging receiver leads to a fresh snapshot, and nothing
older than that snapshot reaches the receiver after it."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from listwatch import Backoff, Batch, ListWatch, ReceiverTimeout, Syncer
from listwatch.testing import FakeApiServer
from tests.core.helpers import FAST_BACKOFF, Mirror, make_syncer, server_state
from tests.objects import pod


async def churn(server: FakeApiServer, rounds: int, seed: int) -> None:
    """Creates, updates, deletes and delete-recreates pods under a few names."""
    rng = random.Random(seed)
    names = [f"p{i}" for i in range(8)]
    for step in range(rounds):
        name = rng.choice(names)
        current = server.get("v1", "Pod", name, "default")
        if current is None:
            await server.create(pod(name, step=str(step)))
        elif rng.random() < 0.3:
            await server.delete(current)
        else:
            current["metadata"]["labels"] = {"step": str(step)}
            await server.replace(current)
        await asyncio.sleep(0)


async def churn_until(server: FakeApiServer, done: asyncio.Event, seed: int) -> None:
    round_ = 0
    while not done.is_set():
        await churn(server, 10, seed=seed + round_)
        round_ += 1
        await asyncio.sleep(0.001)  # pacing the churn, not synchronisation


async def test_failing_on_batch_starts_a_generation_with_only_newer_events(
    server: FakeApiServer, api_client: Any
) -> None:
    await churn(server, 20, seed=1)
    mirror = Mirror(fail_batches=3)
    syncer = make_syncer(ListWatch.from_client(api_client, "pods"), mirror, merge_interval=0.005)
    async with syncer:
        await syncer.wait_synced()
        await server.wait_for_watchers(1)
        done = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            group.create_task(churn_until(server, done, seed=2))
            status = await syncer.wait_until(lambda s: s.restarts >= 3 and s.synced)
            done.set()
        expected = server_state(server, "v1", "Pod")
        await mirror.wait_for(lambda m: m.state() == expected)
    assert all("ReceiverError" in r.reason for r in status.recent_restarts)
    assert len(mirror.snapshots) >= 4
    assert [s.generation for s in mirror.snapshots] == sorted(
        s.generation for s in mirror.snapshots
    )
    assert mirror.violations == []


async def test_failing_on_list_retries_with_a_new_snapshot(
    server: FakeApiServer, api_client: Any
) -> None:
    await churn(server, 10, seed=4)
    mirror = Mirror(fail_lists=2)
    async with make_syncer(ListWatch.from_client(api_client, "pods"), mirror) as syncer:
        failed = await syncer.wait_until(lambda s: s.restarts >= 1)
        assert not failed.has_synced
        status = await syncer.wait_synced()
    assert status.generation == 3
    assert status.restarts == 2
    assert mirror.state() == server_state(server, "v1", "Pod")


async def test_a_hanging_on_batch_is_cut_by_sync_timeout(
    server: FakeApiServer, api_client: Any
) -> None:
    mirror = Mirror()
    hung = asyncio.Event()
    cancelled = asyncio.Event()

    async def on_batch(batch: Batch) -> None:
        if batch.generation == 1:
            hung.set()
            try:
                await asyncio.Event().wait()
            finally:
                cancelled.set()
        await mirror.on_batch(batch)

    syncer = Syncer(
        ListWatch.from_client(api_client, "pods"),
        on_list=mirror.on_list,
        on_batch=on_batch,
        merge_interval=0.02,
        sync_timeout=0.2,
        backoff=Backoff(**FAST_BACKOFF),
    )
    async with syncer:
        await syncer.wait_synced()
        await server.wait_for_watchers(1)
        await server.create(pod("a"))
        await hung.wait()
        status = await syncer.wait_until(lambda s: s.generation >= 2 and s.synced)
        await cancelled.wait()
    assert ReceiverTimeout.__name__ in status.recent_restarts[0].reason
    assert "sync_timeout=0.2" in status.recent_restarts[0].reason
    assert "default/a" in mirror.objects
