"""Helpers for the PostgreSQL sink tests: plain connections (as another process would have
them), what the tables hold, the fence's lock, and snapshots that pause half way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from listwatch import Item, Page, Snapshot

SCHEMA = "listwatch"
LOCK_WAIT = 30.0
"""How long a test waits for a lock or a condition before it fails (a safety net, never a
synchronisation)."""
POLL = 0.01
"""How often ``wait_until_blocked`` looks at the server's lock table: PostgreSQL has no event
for "a session started waiting", so that one condition is polled (bounded by LOCK_WAIT)."""


@dataclass(frozen=True)
class Row:
    key: str
    resource_version: str
    object: dict[str, Any]
    uid: str | None
    updated_at: datetime
    xmin: str
    """The transaction that wrote this row version: unchanged while the row is not rewritten."""


async def rows(dsn: str, resource: str, schema: str = SCHEMA) -> dict[str, Row]:
    """Every stored row of ``resource``, read on a connection of its own."""
    connection = await asyncpg.connect(dsn)
    try:
        records = await connection.fetch(
            f"SELECT key, resource_version, object::text AS object, uid, updated_at, "
            f"xmin::text AS xmin FROM {schema}.objects WHERE resource = $1 ORDER BY key",
            resource,
        )
    finally:
        await connection.close()
    return {
        r["key"]: Row(
            r["key"],
            r["resource_version"],
            orjson.loads(r["object"]),
            r["uid"],
            r["updated_at"],
            r["xmin"],
        )
        for r in records
    }


async def objects(dsn: str, resource: str, schema: str = SCHEMA) -> dict[str, dict[str, Any]]:
    return {key: row.object for key, row in (await rows(dsn, resource, schema)).items()}


async def fence_epoch(dsn: str, schema: str = SCHEMA) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(f"SELECT epoch FROM {schema}.fence"))
    finally:
        await connection.close()


async def fence_is_free(dsn: str, schema: str = SCHEMA) -> bool:
    """Whether no write transaction holds the fence now (asked without waiting)."""
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.execute(f"SELECT epoch FROM {schema}.fence FOR UPDATE NOWAIT")
    except asyncpg.LockNotAvailableError:
        return False
    finally:
        await connection.close()
    return True


async def wait_for_fence(dsn: str, schema: str = SCHEMA) -> None:
    """Wait until every write transaction holding the fence has ended (PostgreSQL wakes the
    waiter the moment the holder commits, rolls back, or its session dies)."""
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.execute(f"SET LOCAL lock_timeout = '{int(LOCK_WAIT * 1000)}ms'")
            await connection.execute(f"SELECT epoch FROM {schema}.fence FOR UPDATE")
    finally:
        await connection.close()


async def wait_until_blocked(dsn: str, *, count: int = 1) -> list[int]:
    """Wait until ``count`` sessions of this database wait for a lock; their PIDs."""
    connection = await asyncpg.connect(dsn)
    try:
        async with asyncio.timeout(LOCK_WAIT):
            while True:
                pids = await connection.fetch(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if len(pids) >= count:
                    return [record["pid"] for record in pids]
                await asyncio.sleep(POLL)
    finally:
        await connection.close()


class GatedSnapshot:
    """A snapshot that stops after ``pause_after`` pages until the test releases it.

    The sink merges each page before it asks for the next, so while it waits here its
    transaction is open with those pages written but not committed. ``reached`` is set when
    the pause begins. ``fail`` makes the pause end in that error instead (a list error).
    """

    def __init__(
        self,
        pages: Sequence[Sequence[Item]],
        *,
        pause_after: int,
        resource_version: str = "20",
        generation: int = 2,
        epoch: int = 0,
    ) -> None:
        self._pages = pages
        self._pause_after = pause_after
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.fail: BaseException | None = None
        self.snapshot = Snapshot(
            self._stream(resource_version),
            resource_version=resource_version,
            generation=generation,
            epoch=epoch,
        )

    async def _stream(self, resource_version: str) -> AsyncGenerator[Page, None]:
        for index, page in enumerate(self._pages):
            if index == self._pause_after:
                self.reached.set()
                async with asyncio.timeout(LOCK_WAIT):
                    await self.release.wait()
                if self.fail is not None:
                    raise self.fail
            yield Page(page, resource_version)

    async def wait_reached(self) -> None:
        async with asyncio.timeout(LOCK_WAIT):
            await self.reached.wait()
