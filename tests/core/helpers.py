"""Helpers the tests of core/ import (fixtures stay in conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from listwatch import Backoff, Batch, EventType, ListWatch, Snapshot, Syncer
from listwatch.testing import FakeApiServer
from tests.objects import key_of

FAST_BACKOFF = {"initial": 0.01, "cap": 0.05}


@dataclass(frozen=True)
class Listed:
    """What a snapshot held once read: its objects, RV and generation."""

    items: list[dict[str, Any]]
    resource_version: str
    generation: int
    epoch: int = 0


@dataclass
class Mirror:
    """A receiver that keeps ``{key: object}`` and checks listwatch's promises as it goes.

    - ``on_list`` and ``on_batch`` never overlap;
    - after a snapshot at RV S, every delivered event has RV > S;
    - no key's applied resourceVersion ever decreases within a generation's view.
    A violation is recorded (and raised into the Syncer, which would hide it by restarting),
    so tests assert ``mirror.violations == []``.
    """

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: list[Listed] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    fail_batches: int = 0
    fail_lists: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _busy: bool = False

    def _violate(self, text: str) -> None:
        self.violations.append(text)

    def _enter(self) -> None:
        if self._busy:
            self._violate("on_list/on_batch ran concurrently")
        self._busy = True

    async def on_list(self, snapshot: Snapshot) -> None:
        self._enter()
        try:
            await asyncio.sleep(0)
            if self.fail_lists > 0:
                self.fail_lists -= 1
                raise RuntimeError("receiver refused the snapshot")
            items = await snapshot.collect()
            self.objects = {key_of(item): item for item in items}
            self.snapshots.append(
                Listed(items, snapshot.resource_version, snapshot.generation, snapshot.epoch)
            )
        finally:
            self._busy = False
            self._notify()

    async def on_batch(self, batch: Batch) -> None:
        self._enter()
        try:
            await asyncio.sleep(0)
            if self.fail_batches > 0:
                self.fail_batches -= 1
                raise RuntimeError("receiver is down")
            floor = int(self.snapshots[-1].resource_version)
            if batch.generation != self.snapshots[-1].generation:
                self._violate(f"batch of generation {batch.generation} after a newer snapshot")
            for key, event in batch.events.items():
                rv = int(event.resource_version)
                if rv <= floor:
                    self._violate(f"{key}: event RV {rv} not newer than snapshot RV {floor}")
                current = self.objects.get(key)
                if current is not None and rv < int(current["metadata"]["resourceVersion"]):
                    self._violate(
                        f"{key}: RV went back from {current['metadata']['resourceVersion']} to {rv}"
                    )
                if event.type is EventType.DELETED:
                    self.objects.pop(key, None)
                else:
                    self.objects[key] = event.object
            self.batches.append(batch)
        finally:
            self._busy = False
            self._notify()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[Mirror], bool], limit: float = 15.0) -> None:
        """Until ``predicate(self)`` holds after some receiver call (no polling)."""
        async with asyncio.timeout(limit):
            while not predicate(self):
                await self.changed.wait()

    def state(self) -> dict[str, str]:
        return {key: obj["metadata"]["resourceVersion"] for key, obj in self.objects.items()}


def server_state(server: FakeApiServer, api_version: str, kind: str) -> dict[str, str]:
    return {
        key_of(obj): obj["metadata"]["resourceVersion"] for obj in server.objects(api_version, kind)
    }


def make_syncer(
    source: ListWatch, mirror: Mirror, *, merge_interval: float = 0.02, **kwargs: Any
) -> Syncer:
    kwargs.setdefault("backoff", Backoff(**FAST_BACKOFF))
    # The rules of the watch phase are tested after a paged LIST, whose requests the tests
    # assert on; test_snapshot_stream.py runs the snapshot rules in both strategies.
    kwargs.setdefault("list_strategy", "paged")
    return Syncer(
        source,
        on_list=mirror.on_list,
        on_batch=mirror.on_batch,
        merge_interval=merge_interval,
        **kwargs,
    )
