"""A receiver that reads every object of a batch through a real Syncer keeps only the one it
reads now (``Event``, docs/architecture.md#the-watch-hot-path), and what it keeps itself."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from listwatch import Batch, ListWatch, Snapshot, Syncer
from listwatch.testing import FakeApiServer
from tests.objects import pod


class Tracked(dict[str, Any]):
    """A dict a weak reference can point at (a plain dict cannot): what the transform gives."""


async def test_a_receiver_reading_a_whole_batch_keeps_only_the_current_object(
    server: FakeApiServer, api_client: Any
) -> None:
    kept: dict[str, dict[str, Any]] = {}
    alive_after_next: list[str] = []
    checked_batches: list[int] = []
    mirrored = asyncio.Event()
    wanted: set[str] = set()

    async def on_list(snapshot: Snapshot) -> None:
        async for _ in snapshot:
            pass

    async def on_batch(batch: Batch) -> None:
        refs: list[tuple[str, weakref.ref[dict[str, Any]]]] = []
        for key, event in batch.events.items():
            obj = event.object
            assert event.object is obj
            for earlier, ref in refs:
                if ref() is not None:
                    alive_after_next.append(earlier)
            refs.append((key, weakref.ref(obj)))
            kept[key] = dict(obj)  # the receiver's own copy, as a mirror would keep it
            del obj
        checked_batches.append(len(refs))
        if wanted <= kept.keys():
            mirrored.set()

    syncer = Syncer(
        ListWatch.from_client(api_client, "pods", namespace="default"),
        on_list=on_list,
        on_batch=on_batch,
        merge_interval=0.2,
        transform=Tracked,
    )
    async with syncer:
        await syncer.wait_synced()
        await server.wait_for_watchers(1)
        # Back-to-back creations land in one batch almost always; a round that happened to
        # be split is tried again, so that some batch of several events is checked.
        for round_no in range(20):
            mirrored.clear()
            names = [f"p{round_no}-{i}" for i in range(4)]
            wanted.update(f"default/{name}" for name in names)
            for name in names:
                await server.create(pod(name))
            await mirrored.wait()
            if max(checked_batches) > 1:
                break
    assert max(checked_batches) > 1
    assert alive_after_next == []
    assert kept.keys() == wanted
    assert all(obj["metadata"]["namespace"] == "default" for obj in kept.values())


async def test_a_receiver_reading_a_whole_snapshot_keeps_only_the_current_object(
    server: FakeApiServer, api_client: Any
) -> None:
    for i in range(5):
        await server.create(pod(f"p{i}"))
    alive_after_next: list[str] = []
    listed: dict[str, dict[str, Any]] = {}

    async def on_list(snapshot: Snapshot) -> None:
        refs: list[tuple[str, weakref.ref[dict[str, Any]]]] = []
        async for item in snapshot:
            obj = item.object
            assert item.object is obj
            alive_after_next.extend(key for key, ref in refs if ref() is not None)
            refs.append((item.key, weakref.ref(obj)))
            listed[item.key] = dict(obj)
            del obj

    async def on_batch(batch: Batch) -> None:
        pass

    syncer = Syncer(
        ListWatch.from_client(api_client, "pods", namespace="default"),
        on_list=on_list,
        on_batch=on_batch,
        page_size=2,
        list_strategy="paged",
        transform=Tracked,
    )
    async with syncer:
        await syncer.wait_synced()
    assert sorted(listed) == [f"default/p{i}" for i in range(5)]
    assert alive_after_next == []
