"""The contracts between listwatch's parts, and the one vocabulary for the downstream.

- A **receiver** is whatever takes a Syncer's output: an async ``on_list(snapshot)`` and an
  async ``on_batch(batch)`` (``Receiver``). Any object or pair of functions will do.
- A **sink** is a ready-made receiver that writes somewhere: ``SQLiteSink``,
  ``PostgresSink``, ``HttpSink`` (``listwatch.sinks``).
- A **store** hands out one sink per resource and cluster (``Store``): the HTTP sync server
  and the CLI write several resources, of one cluster or a fleet, through one.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from listwatch._models import Batch, Event, Page, Snapshot

OnList = Callable[[Snapshot], Awaitable[None]]
"""Takes a whole snapshot: replace everything of the resource with what the stream holds."""

OnBatch = Callable[[Batch], Awaitable[None]]
"""Takes the merged changes since the last batch: upsert or delete each key."""


class Receiver(Protocol):
    """What a Syncer writes to: whole snapshots, then merged batches."""

    async def on_list(self, snapshot: Snapshot) -> None: ...

    async def on_batch(self, batch: Batch) -> None: ...


class Store(Protocol):
    """A sink per resource of each cluster (opened on first use), and ``close`` for them
    all. A store may hold a fleet: ``cluster`` scopes everything a sink writes (its rows,
    its sync state, its epoch fence); a single cluster's mirror leaves it "default"."""

    async def sink(self, resource: str, *, cluster: str = "default") -> Receiver: ...

    async def close(self) -> None: ...


# The source side: what a ``ListWatch`` asks of whoever serves the objects.
@dataclass(frozen=True, slots=True)
class ListOptions:
    """One LIST request. ``resource_version=""`` asks for a consistent (most recent) read."""

    resource_version: str = ""
    limit: int | None = None
    continue_token: str | None = None


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """One WATCH request: events after ``resource_version``.

    ``send_initial_events`` makes it a streaming list (WatchList, KEP-3157): the request
    carries ``sendInitialEvents=true&resourceVersionMatch=NotOlderThan`` and the stream
    opens with an ADDED event per object, then a bookmark annotated
    ``k8s.io/initial-events-end``, then the changes after it.
    """

    resource_version: str
    timeout_seconds: int | None = None
    allow_bookmarks: bool = True
    send_initial_events: bool = False


ListFunc = Callable[[ListOptions], Awaitable[Page]]
"""Lists one page; raises ``listwatch.errors`` exceptions on failure."""

WatchFunc = Callable[[WatchOptions], AsyncGenerator[Event, None]]
"""Opens a watch: an async generator that ends on a clean close and raises on errors. The
caller closes it (``aclose``), which must release the connection."""
