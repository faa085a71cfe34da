"""Cancelling a Syncer at any point leaves nothing behind: no task, no connection, no watch.

The Syncer is stopped (``async with`` exits, which cancels its task) at a chosen point —
during a LIST, between LIST pages (or runs of a streaming list's initial events), inside
``on_list`` with the snapshot stream open, in the middle of a batch, while
watching, while a large event streams, during a backoff or a Retry-After wait, or at a
random moment of a faulty run — plus a seeded random delay after reaching it. Then asyncio's
task list (less the fake server's connection handlers) must be what it was before, and once
the ApiClient is closed (its pool owns idle keep-alive connections) the server must see no
open connection and no active watch.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from listwatch import Backoff, Batch, ListWatch, Phase, Snapshot, Syncer
from listwatch.testing import FakeApiServer, Fault
from listwatch.testing.scenario import ConfigMapWorkload, configmap

from .runner import other_tasks

PATH = ConfigMapWorkload.PATH
MiB = 1024 * 1024


class BlockingReceiver:
    """Blocks in ``on_list`` or ``on_batch`` when told to, and notes the cancellation."""

    def __init__(self, block: str | None) -> None:
        self.block = block
        self.entered = asyncio.Event()
        self.page_read = asyncio.Event()
        self.cancelled = False
        self.running = 0
        self.lists = 0
        self.batches = 0
        self.batch_seen = asyncio.Event()

    async def _maybe_block(self, what: str) -> None:
        if self.block == what:
            self.entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise

    async def on_list(self, snapshot: Snapshot) -> None:
        self.running += 1
        try:
            self.lists += 1
            async for _ in snapshot.pages():
                self.page_read.set()
                await self._maybe_block("on_list")  # with the stream open, mid-snapshot
        finally:
            self.running -= 1

    async def on_batch(self, batch: Batch) -> None:
        self.running += 1
        try:
            self.batches += 1
            self.batch_seen.set()
            await self._maybe_block("on_batch")
        finally:
            self.running -= 1


Point = Callable[[FakeApiServer, Syncer, BlockingReceiver], Awaitable[None]]


async def during_list(server: FakeApiServer, syncer: Syncer, receiver: BlockingReceiver) -> None:
    await server.wait_for_request(lambda r: not r.watch or "sendInitialEvents" in r.query)


async def between_pages(server: FakeApiServer, syncer: Syncer, receiver: BlockingReceiver) -> None:
    await receiver.page_read.wait()


async def in_on_list(server: FakeApiServer, syncer: Syncer, receiver: BlockingReceiver) -> None:
    await receiver.entered.wait()


async def mid_batch(server: FakeApiServer, syncer: Syncer, receiver: BlockingReceiver) -> None:
    await syncer.wait_synced()
    await server.create(configmap("new", "default", 1))
    await receiver.entered.wait()


async def watching(server: FakeApiServer, syncer: Syncer, receiver: BlockingReceiver) -> None:
    await server.wait_for_watchers(1)


async def large_event(server: FakeApiServer, syncer: Syncer, receiver: BlockingReceiver) -> None:
    await server.wait_for_watchers(1)
    current = server.get("v1", "ConfigMap", "cm-0", "default")
    assert current is not None
    current["data"] = {"blob": "b" * (4 * MiB)}
    await server.replace(current)


async def backing_off(server: FakeApiServer, syncer: Syncer, receiver: BlockingReceiver) -> None:
    server.inject(Fault.status(500), path=PATH, times=None)
    await syncer.wait_until(lambda s: s.phase is Phase.BACKING_OFF)


async def retry_after(server: FakeApiServer, syncer: Syncer, receiver: BlockingReceiver) -> None:
    await server.wait_for_request(lambda r: r.fault is not None)


async def faulty_run(server: FakeApiServer, syncer: Syncer, receiver: BlockingReceiver) -> None:
    rng = random.Random(server.request_count)
    for fault in (
        Fault.cut_stream(2, mid_line=True),
        Fault.error_event(3, 410),
        Fault.too_many_requests(0),
        Fault.slow(0.01),
    ):
        server.inject(fault, path=PATH, probability=0.5, times=None)
    for step in range(rng.randint(5, 60)):
        await server.create(configmap(f"churn-{step}", "default", step))
        await asyncio.sleep(0.005)  # pacing the churn


POINTS: dict[str, tuple[Point, str | None]] = {
    "during-list": (during_list, None),
    "between-list-pages": (between_pages, None),
    "in-on_list": (in_on_list, "on_list"),
    "mid-batch": (mid_batch, "on_batch"),
    "while-watching": (watching, None),
    "while-a-large-event-streams": (large_event, None),
    "during-backoff": (backing_off, None),
    "during-retry-after-wait": (retry_after, None),
    "random-moment-of-a-faulty-run": (faulty_run, None),
}


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("point", list(POINTS))
@pytest.mark.parametrize("strategy", ["paged", "stream"])
async def test_cancellation_leaks_nothing(point: str, seed: int, strategy: str) -> None:
    rng = random.Random(f"{point}:{seed}:{strategy}")
    reach, block = POINTS[point]
    listing_is_a_watch = strategy == "stream"
    async with FakeApiServer(bookmark_interval=0.05) as server:
        for i in range(9):
            await server.create(configmap(f"cm-{i}", "default", i))
        # The listing request is a LIST, or the streaming list's watch (the first one).
        if point == "during-list":
            server.inject(Fault.slow(5.0), path=PATH, watch=listing_is_a_watch)
        if point == "between-list-pages":
            server.inject(Fault.slow(0.05), path=PATH, watch=listing_is_a_watch, times=None)
        if point == "during-retry-after-wait":
            server.inject(
                Fault.too_many_requests(retry_after=5), path=PATH, watch=listing_is_a_watch
            )
        receiver = BlockingReceiver(block)
        baseline = other_tasks()
        api: Any = server.api_client()
        try:
            syncer = Syncer(
                ListWatch.from_client(api, "configmaps"),
                on_list=receiver.on_list,
                on_batch=receiver.on_batch,
                merge_interval=0.01,
                page_size=2,
                list_strategy=strategy,
                backoff=Backoff(initial=2.0, cap=4.0) if point == "during-backoff" else None,
            )
            async with syncer:
                async with asyncio.timeout(15):
                    await reach(server, syncer, receiver)
                await asyncio.sleep(rng.uniform(0, 0.03))  # a random moment after the point
            assert syncer.status.phase is Phase.STOPPED
            assert receiver.running == 0
            if block is not None:
                assert receiver.cancelled  # the blocked call was cancelled, not abandoned
            leaked = other_tasks() - baseline
            assert not leaked, leaked
        finally:
            await api.close()
        await server.wait_until(
            lambda s: s.open_connections == 0 and s.active_watches == 0, timeout=5
        )
        assert other_tasks() - baseline == set()
