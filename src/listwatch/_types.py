"""The contracts between listwatch's parts, and the one vocabulary for the downstream.

- A **receiver** is whatever takes a Syncer's output: an async ``on_list(snapshot)`` and an
  async ``on_batch(batch)`` (``Receiver``). Any object or pair of functions will do.
- A **sink** is a ready-made receiver that writes somewhere: ``SQLiteSink``,
  ``PostgresSink``, ``HttpSink`` (``listwatch.sinks``).
- A **store** hands out one sink per resource (``Store``): the HTTP sync server and the CLI
  write several resources through one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from listwatch._models import Batch, Snapshot

OnList = Callable[[Snapshot], Awaitable[None]]
"""Takes a whole snapshot: replace everything of the resource with what the stream holds."""

OnBatch = Callable[[Batch], Awaitable[None]]
"""Takes the merged changes since the last batch: upsert or delete each key."""


class Receiver(Protocol):
    """What a Syncer writes to: whole snapshots, then merged batches."""

    async def on_list(self, snapshot: Snapshot) -> None: ...

    async def on_batch(self, batch: Batch) -> None: ...


class Store(Protocol):
    """A sink per resource (opened on first use), and ``close`` for them all."""

    async def sink(self, resource: str) -> Receiver: ...

    async def close(self) -> None: ...
