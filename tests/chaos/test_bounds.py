"""Monitor 4 under a stalled receiver: memory stays flat, bounded by the queue and the keys.

The receiver blocks inside ``on_batch`` while the server writes tens of MiB of updates to
20 hot keys. The Syncer must stop reading (the queue is full, the watch stream is left
unread: backpressure), so neither the queue nor the pending map nor any hidden buffer grows
with the number of events: ``queued_events`` stays at most ``queue_size``, ``pending_keys``
at most ``min(max_batch, distinct keys)``, and the process's traced memory grows by far
less than what was written. The server keeps a bounded history window, so its own memory is
flat too (its watcher falls behind and is closed; the Syncer relists once released).
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from listwatch import Batch, ListWatch, Snapshot, Syncer, SyncerStatus
from listwatch.testing import FakeApiServer
from listwatch.testing.scenario import configmap

from .monitors import check_bounds

KEYS = 20
QUEUE_SIZE = 64
MiB = 1024 * 1024
PAYLOAD = "p" * 2048


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


class StallingReceiver:
    def __init__(self) -> None:
        self.state: dict[str, str] = {}
        self.stall = False
        self.stalled = asyncio.Event()
        self.release = asyncio.Event()
        self.changed = asyncio.Event()
        self.largest_batch = 0

    async def on_list(self, snapshot: Snapshot) -> None:
        self.state = {item.key: item.resource_version async for item in snapshot}
        self._notify()

    async def on_batch(self, batch: Batch) -> None:
        if self.stall:
            self.stall = False
            self.stalled.set()
            await self.release.wait()
        self.largest_batch = max(self.largest_batch, len(batch))
        for key, event in batch.events.items():
            if event.type == "DELETED":
                self.state.pop(key, None)
            else:
                self.state[key] = event.resource_version
        self._notify()

    def _notify(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


def _key(obj: dict[str, Any]) -> str:
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"


async def update_many(server: FakeApiServer, count: int, check: Any) -> int:
    """``count`` updates round-robin over the hot keys; returns the bytes written."""
    written = 0
    for i in range(count):
        name = f"hot-{i % KEYS}"
        current = server.get("v1", "ConfigMap", name, "default")
        assert current is not None
        current["data"] = {"step": str(i), "payload": PAYLOAD}
        await server.replace(current)
        written += len(PAYLOAD)
        if i % 50 == 0:
            check()
            await asyncio.sleep(0)  # let the server's watcher and the Syncer run
    return written


async def until(predicate: Any, limit: float = 20.0) -> None:
    """Poll a condition that no event announces (the queue filling up)."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - nothing to await: Syncer status is polled
            await asyncio.sleep(0.005)


@pytest.mark.parametrize("max_batch", [10_000, 8])
@pytest.mark.usefixtures("traced")
async def test_a_stalled_receiver_keeps_memory_flat(max_batch: int) -> None:
    async with FakeApiServer(history_limit=300, bookmark_interval=0.1) as server:
        for i in range(KEYS):
            await server.create(configmap(f"hot-{i}", "default", i))
        receiver = StallingReceiver()
        api: Any = server.api_client()
        syncer = Syncer(
            ListWatch.from_client(api, "configmaps"),
            on_list=receiver.on_list,
            on_batch=receiver.on_batch,
            merge_interval=0.02,
            max_batch=max_batch,
            queue_size=QUEUE_SIZE,
        )
        problems: list[str] = []
        peaks = {"queued": 0, "pending": 0}

        def check(status: SyncerStatus | None = None) -> None:
            status = status or syncer.status
            peaks["queued"] = max(peaks["queued"], status.queued_events)
            peaks["pending"] = max(peaks["pending"], status.pending_keys)
            problems.extend(
                check_bounds(status, queue_size=QUEUE_SIZE, max_batch=max_batch, distinct_keys=KEYS)
            )

        try:
            async with syncer:
                await syncer.wait_synced()
                await server.wait_for_watchers(1)
                receiver.stall = True
                await update_many(server, 1, check)
                await receiver.stalled.wait()

                # Fill the queue, then measure while ten times as much is written.
                await update_many(server, 2_000, check)
                await until(lambda: syncer.status.queued_events >= QUEUE_SIZE)
                gc.collect()
                before, _ = tracemalloc.get_traced_memory()
                written = await update_many(server, 20_000, check)
                gc.collect()
                after, _ = tracemalloc.get_traced_memory()
                check()
                stalled_status = syncer.status

                receiver.release.set()
                expected = {
                    _key(o): o["metadata"]["resourceVersion"]
                    for o in server.objects("v1", "ConfigMap")
                }
                async with asyncio.timeout(30):
                    while receiver.state != expected:
                        check()
                        await receiver.changed.wait()
        finally:
            await api.close()

    assert problems == []
    assert stalled_status.queued_events == QUEUE_SIZE  # backpressure held the rest back
    assert peaks["pending"] <= min(max_batch, KEYS)
    assert receiver.largest_batch <= min(max_batch, KEYS)
    growth = after - before
    assert written >= 10 * 4 * MiB * 0.95  # the bound is far below what a buffer would hold
    print(f"traced memory grew by {growth / MiB:.2f} MiB; {written / MiB:.0f} MiB written")
    assert growth < 4 * MiB, (
        f"memory grew by {growth / MiB:.1f} MiB while {written / MiB:.0f} MiB were written"
    )
