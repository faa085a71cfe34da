"""Helpers for the sink tests: objects and writes, what the databases hold as another process
reads them, snapshots that pause half way, and ``SinkFactory``, one backend as the contract
tests (test_contract.py) see it. Real SQLite files and a real PostgreSQL server, no mocks."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sqlite3
import subprocess
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol, overload

import asyncpg
import orjson
import pytest

import listwatch
from listwatch import Batch, Event, EventType, Item, Page, Snapshot, object_key
from listwatch._models import KeyFunc
from listwatch._shard import Shard
from listwatch.sinks._base import Sink, SinkStore, SyncState
from listwatch.sinks.postgres import PostgresSink, PostgresStore
from listwatch.sinks.sqlite import SQLiteSink, SQLiteStore, read_mirror

GATE_TIMEOUT = 30.0
"""How long a gated write waits for the test to release it before giving up (a safety net
against hanging the worker thread when a test fails, never a synchronisation)."""
LOCK_WAIT = 30.0
"""How long a test waits for a lock or a condition before it fails (a safety net, never a
synchronisation)."""
POLL = 0.01
"""How often ``wait_until_blocked`` looks at the server's lock table: PostgreSQL has no event
for "a session started waiting", so that one condition is polled (bounded by LOCK_WAIT)."""
SCHEMA = "listwatch"
SRC = Path(listwatch.__file__).resolve().parents[1]


# -- objects and writes ----------------------------------------------------------------------


def configmap(
    name: str, rv: int | str = 1, namespace: str = "default", **data: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": str(rv)},
        "data": data,
    }


def in_shard(shard: Shard, name: str, rv: int = 1, **data: str) -> dict[str, Any]:
    """A ConfigMap named ``name`` whose uid hashes into ``shard``."""
    for attempt in itertools.count():
        uid = f"{name}-uid-{attempt}"
        if shard.holds_uid(uid):
            obj = configmap(name, rv, **data)
            obj["metadata"]["uid"] = uid
            return obj
    raise AssertionError("unreachable")


def snapshot(
    *items: dict[str, Any], rv: str = "100", generation: int = 1, epoch: int = 0
) -> Snapshot:
    return Snapshot.of(items, rv, generation=generation, epoch=epoch)


def raw_item(key: str, rv: str, data: bytes) -> Item:
    """An item of the given bytes, as the API server (or a sender) gave them."""
    return Item(key, rv, raw=data)


def raw_event(type: EventType, key: str, rv: str, data: bytes) -> Event:
    return Event(type, key=key, resource_version=rv, raw=data)


def nested(depth: int, name: str = "deep", rv: str = "1") -> bytes:
    """A ConfigMap-like object whose ``data`` nests ``depth`` - 1 levels below it: the
    object is ``depth`` levels deep."""
    head = b'{"metadata":{"name":"' + name.encode() + b'","namespace":"default",'
    head += b'"resourceVersion":"' + rv.encode() + b'"},"data":'
    return head + b'{"a":' * (depth - 2) + b"1" + b"}" * (depth - 2) + b"}"


def one_page(page: Sequence[Item], rv: str, generation: int = 1, *, epoch: int = 0) -> Snapshot:
    """A snapshot whose single page is ``page`` itself (not a copy), so that a page that
    gates its own iteration (``GatedItems``) gates the sink's write."""

    async def pages() -> AsyncGenerator[Page, None]:
        yield Page(page, rv)

    return Snapshot(pages(), resource_version=rv, generation=generation, epoch=epoch)


def by_key(*items: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {object_key(item): item for item in items}


def event(type: EventType, obj: dict[str, Any]) -> Event:
    return Event.from_object(type, obj)


def batch(*events: Event, rv: str, generation: int = 1, epoch: int = 0) -> Batch:
    return Batch({e.key: e for e in events}, rv, generation, received=len(events), epoch=epoch)


def child_env() -> dict[str, str]:
    """The environment of a child Python process that imports this listwatch."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }


async def run_script(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a Python script to its end (in a thread: the event loop runs on meanwhile)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )


PREVIOUS = [configmap("a", 1, v="a"), configmap("b", 2, v="b"), configmap("c", 3, v="c")]
"""What a write that fails must leave behind (``write_previous``)."""
NEXT = [configmap(f"n{i}", 100 + i, v=str(i)) for i in range(10)] + [configmap("b", 50, v="b2")]
"""A snapshot that would delete a and c and rewrite b."""


async def write_previous(sink: Sink[Any]) -> SyncState:
    """Write ``PREVIOUS`` (RV "10", generation 1); the sync state it leaves."""
    await sink.on_list(snapshot(*PREVIOUS, rv="10", generation=1))
    state = await sink.sync_state()
    assert state is not None
    return state


# -- writes that pause half way, their transaction open --------------------------------------


class Gate(Protocol):
    """A snapshot whose write pauses half way until the test sets ``release``."""

    @property
    def snapshot(self) -> Snapshot: ...

    @property
    def release(self) -> threading.Event | asyncio.Event: ...

    async def wait_reached(self) -> None: ...


class GatedItems(Sequence[Item]):
    """A snapshot page whose iteration stops before item ``at`` until the test releases it.

    SQLiteSink consumes a page on its connection's thread while its transaction is open, so
    the pause holds the write half done, inside a statement: rows before ``at`` are written
    but not committed. ``reached`` and ``release`` are threading events because the
    iteration runs on that thread. ``snapshot`` is the one-page snapshot to write.
    """

    def __init__(
        self,
        items: Sequence[dict[str, Any]],
        at: int,
        *,
        resource_version: str = "20",
        generation: int = 2,
        epoch: int = 0,
    ) -> None:
        self._items = [Item.of(item) for item in items]
        self._at = at
        self.reached = threading.Event()
        self.release = threading.Event()
        self.snapshot = one_page(self, resource_version, generation, epoch=epoch)

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Item: ...
    @overload
    def __getitem__(self, index: slice) -> list[Item]: ...
    def __getitem__(self, index: int | slice) -> Item | list[Item]:
        return self._items[index]

    def __iter__(self) -> Iterator[Item]:
        for index, item in enumerate(self._items):
            if index == self._at:
                self.reached.set()
                if not self.release.wait(GATE_TIMEOUT):
                    raise TimeoutError("the test never released the gated snapshot")
            yield item

    async def wait_reached(self) -> None:
        assert await asyncio.to_thread(self.reached.wait, GATE_TIMEOUT), "the write never began"


class GatedSnapshot:
    """A snapshot that stops after ``pause_after`` pages until the test releases it.

    The sink writes each page before it asks for the next, so while it waits here its
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


# -- SQLite files, as another process reads them ---------------------------------------------


def sqlite_connect(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection, as another process or tool would open the file."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=0)
    connection.row_factory = sqlite3.Row
    return connection


def sqlite_rows(path: Path, resource: str) -> dict[str, sqlite3.Row]:
    with sqlite_connect(path) as connection:
        result = connection.execute(
            "SELECT * FROM objects WHERE resource = ? ORDER BY key", (resource,)
        ).fetchall()
    connection.close()
    return {row["key"]: row for row in result}


def sqlite_state_row(path: Path, resource: str) -> sqlite3.Row | None:
    connection = sqlite_connect(path)
    try:
        row: sqlite3.Row | None = connection.execute(
            "SELECT * FROM sync_state WHERE resource = ?", (resource,)
        ).fetchone()
        return row
    finally:
        connection.close()


def sqlite_write_locked(path: Path) -> bool:
    """Whether a write transaction holds the file now (asked without waiting: timeout 0)."""
    other = sqlite_connect(path)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        return True
    finally:
        other.close()
    return False


# -- PostgreSQL databases, as another session reads them -------------------------------------


@dataclass(frozen=True)
class PgRow:
    key: str
    resource_version: str
    object: dict[str, Any]
    uid: str | None
    updated_at: datetime
    xmin: str
    """The transaction that wrote this row version: unchanged while the row is not rewritten."""


async def pg_rows(
    dsn: str, resource: str, schema: str = SCHEMA, cluster: str = "default"
) -> dict[str, PgRow]:
    """Every stored row of ``resource`` of ``cluster``, read on a connection of its own."""
    connection = await asyncpg.connect(dsn)
    try:
        records = await connection.fetch(
            f"SELECT key, resource_version, object::text AS object, uid, updated_at, "
            f"xmin::text AS xmin FROM {schema}.objects WHERE cluster = $2 AND resource = $1 "
            "ORDER BY key",
            resource,
            cluster,
        )
    finally:
        await connection.close()
    return {
        r["key"]: PgRow(
            r["key"],
            r["resource_version"],
            orjson.loads(r["object"]),
            r["uid"],
            r["updated_at"],
            r["xmin"],
        )
        for r in records
    }


async def pg_objects(
    dsn: str, resource: str, schema: str = SCHEMA, cluster: str = "default"
) -> dict[str, dict[str, Any]]:
    """The objects held as JSON (a quarantined one's ``object`` is the JSON null)."""
    rows = await pg_rows(dsn, resource, schema, cluster)
    return {key: row.object for key, row in rows.items() if row.object is not None}


async def pg_state(
    dsn: str, resource: str, schema: str = SCHEMA, cluster: str = "default"
) -> SyncState | None:
    """The resource's sync-state row, read on a connection of its own."""
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            "SELECT resource, resource_version, generation, extract(epoch FROM synced_at)::float8,"
            " extract(epoch FROM listed_at)::float8, epoch, session, sequence, object_count,"
            f" object_bytes, cluster FROM {schema}.sync_state WHERE cluster = $2 AND resource = $1",
            resource,
            cluster,
        )
    finally:
        await connection.close()
    return SyncState.from_row(row)


async def fence_epoch(dsn: str, schema: str = SCHEMA, cluster: str = "default") -> int:
    connection = await asyncpg.connect(dsn)
    try:
        sql = f"SELECT epoch FROM {schema}.fence WHERE cluster = $1"
        return int(await connection.fetchval(sql, cluster))
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


async def stagings(dsn: str, schema: str = SCHEMA) -> dict[str, int]:
    """The stagings in the database: the objects staged, by resource."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            f"SELECT s.resource, count(p.key) AS n FROM {schema}.stagings s "
            f"LEFT JOIN {schema}.staged p ON p.staging = s.staging GROUP BY s.resource"
        )
    finally:
        await connection.close()
    return {row["resource"]: row["n"] for row in rows}


async def age_stagings(dsn: str, seconds: float, schema: str = SCHEMA) -> None:
    """Make every staging look untouched for ``seconds`` (as if its writer had died then)."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            f"UPDATE {schema}.stagings SET touched_at = now() - $1::float8 * interval '1 second'",
            seconds,
        )
    finally:
        await connection.close()


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


# -- one backend, as the contract tests see it -----------------------------------------------


@dataclass(frozen=True)
class Stored:
    """A stored object row, as another process reads it."""

    resource_version: str
    object: dict[str, Any]
    updated_at: float
    """When the row was last written (seconds since the epoch)."""


class SinkFactory(ABC):
    """One sink backend for the contract tests: its sinks and store over a database of the
    test's own, and what another process reads from that database.

    A new backend is one more subclass, and one more param of the ``sink_factory`` fixture.
    """

    clock_slack: ClassVar[float]
    """How far a write's ``synced_at`` may be from this process's clock around the write."""

    @classmethod
    @abstractmethod
    def for_test(cls, request: pytest.FixtureRequest) -> SinkFactory:
        """A factory over an empty database that only this test uses."""

    @abstractmethod
    def isolated(self, name: str) -> SinkFactory:
        """Another mirror, sharing nothing with this one (an example of a property test)."""

    @abstractmethod
    def sink(
        self, resource: str = "configmaps", *, key: KeyFunc = object_key, cluster: str = "default"
    ) -> Sink[Any]:
        """A sink of ``resource`` of ``cluster``, not yet open."""

    @abstractmethod
    async def store(self) -> SinkStore[Any]:
        """A store over the database (``listwatch.Store``)."""

    @abstractmethod
    def gate(self, objects: Sequence[dict[str, Any]], *, epoch: int = 0) -> Gate:
        """A snapshot of ``objects`` (RV "20", generation 2) whose write pauses half way,
        where this backend's write can be caught with its transaction open."""

    @abstractmethod
    async def read(
        self, resource: str, cluster: str = "default"
    ) -> tuple[dict[str, Any], SyncState | None]:
        """The resource's objects and sync state, as another process reads them."""

    @abstractmethod
    async def sizes(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Each (cluster, resource)'s objects and the bytes of their JSON, counted from the
        rows themselves (as another process reads them)."""

    @abstractmethod
    async def stored(self, resource: str) -> dict[str, Stored]:
        """The resource's object rows, as another process reads them."""

    @abstractmethod
    async def highest_epoch(self) -> int:
        """The highest epoch the database has recorded (what the fence refuses below)."""

    @abstractmethod
    async def writing(self) -> bool:
        """Whether a write transaction is open now (asked without waiting)."""

    @abstractmethod
    def held(self) -> AbstractAsyncContextManager[None]:
        """Another session holds the lock every write needs until the block ends."""

    @abstractmethod
    async def settled(self) -> None:
        """Wait until no write transaction is open (a rollback may still be on its way)."""


class SQLiteFactory(SinkFactory):
    clock_slack = 0.0  # the sink stamps writes with this process's time.time()

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_test(cls, request: pytest.FixtureRequest) -> SQLiteFactory:
        return cls(request.getfixturevalue("tmp_path") / "mirror.db")

    def isolated(self, name: str) -> SQLiteFactory:
        return SQLiteFactory(self.path.with_name(f"{name}.db"))

    def sink(
        self, resource: str = "configmaps", *, key: KeyFunc = object_key, cluster: str = "default"
    ) -> SQLiteSink:
        return SQLiteSink(self.path, resource=resource, key=key, cluster=cluster)

    async def store(self) -> SQLiteStore:
        return SQLiteStore(self.path)

    def gate(self, objects: Sequence[dict[str, Any]], *, epoch: int = 0) -> GatedItems:
        return GatedItems(objects, at=len(objects) // 2, epoch=epoch)

    async def read(
        self, resource: str, cluster: str = "default"
    ) -> tuple[dict[str, Any], SyncState | None]:
        mirror = read_mirror(self.path, resource=resource, cluster=cluster)
        return mirror.objects, mirror.state

    async def sizes(self) -> dict[tuple[str, str], tuple[int, int]]:
        connection = sqlite_connect(self.path)
        try:
            rows = connection.execute(
                "SELECT cluster, resource, count(*), sum(length(CAST(object AS BLOB))) "
                "FROM objects GROUP BY cluster, resource"
            ).fetchall()
        finally:
            connection.close()
        return {(row[0], row[1]): (row[2], row[3]) for row in rows}

    async def stored(self, resource: str) -> dict[str, Stored]:
        return {
            key: Stored(row["resource_version"], orjson.loads(row["object"]), row["updated_at"])
            for key, row in sqlite_rows(self.path, resource).items()
        }

    async def highest_epoch(self) -> int:
        connection = sqlite_connect(self.path)
        try:
            return int(connection.execute("SELECT max(epoch) FROM sync_state").fetchone()[0] or 0)
        finally:
            connection.close()

    async def writing(self) -> bool:
        # In a thread, so that the event loop runs on meanwhile (a close() queueing, say).
        return await asyncio.to_thread(sqlite_write_locked, self.path)

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        other = sqlite_connect(self.path)
        try:
            other.execute("BEGIN IMMEDIATE")
            yield
            other.execute("ROLLBACK")
        finally:
            other.close()

    async def settled(self) -> None:
        def wait() -> None:
            connection = sqlite3.connect(self.path, isolation_level=None, timeout=LOCK_WAIT)
            try:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("ROLLBACK")
            finally:
                connection.close()

        await asyncio.to_thread(wait)


class PostgresFactory(SinkFactory):
    clock_slack = 1.0  # the server's clock (this machine's), rounded to microseconds

    def __init__(self, dsn: str, schema: str = SCHEMA) -> None:
        self.dsn = dsn
        self.schema = schema

    @classmethod
    def for_test(cls, request: pytest.FixtureRequest) -> PostgresFactory:
        return cls(request.getfixturevalue("postgres_dsn"))

    def isolated(self, name: str) -> PostgresFactory:
        return PostgresFactory(self.dsn, schema=name)  # a schema is a mirror

    def sink(
        self, resource: str = "configmaps", *, key: KeyFunc = object_key, cluster: str = "default"
    ) -> PostgresSink:
        return PostgresSink(
            self.dsn, resource=resource, key=key, schema=self.schema, cluster=cluster
        )

    async def store(self) -> PostgresStore:
        return await PostgresStore.connect(self.dsn, schema=self.schema)

    def gate(self, objects: Sequence[dict[str, Any]], *, epoch: int = 0) -> GatedSnapshot:
        # PostgresSink builds a page's rows in the event loop and COPYs them in one go: its
        # write pauses between pages.
        items = [Item.of(obj) for obj in objects]
        half = len(items) // 2
        return GatedSnapshot([items[:half], items[half:]], pause_after=1, epoch=epoch)

    async def read(
        self, resource: str, cluster: str = "default"
    ) -> tuple[dict[str, Any], SyncState | None]:
        objects = await pg_objects(self.dsn, resource, self.schema, cluster)
        return objects, await pg_state(self.dsn, resource, self.schema, cluster)

    async def sizes(self) -> dict[tuple[str, str], tuple[int, int]]:
        # The bytes written are gone once parsed into jsonb: what the sink received is what
        # the test wrote, so the test compares its own JSON's sizes with the counts.
        connection = await asyncpg.connect(self.dsn)
        try:
            rows = await connection.fetch(
                f"SELECT cluster, resource, count(*), sum(size) FROM {self.schema}.objects "
                "GROUP BY cluster, resource"
            )
        finally:
            await connection.close()
        return {(row[0], row[1]): (row[2], row[3]) for row in rows}

    async def stored(self, resource: str) -> dict[str, Stored]:
        return {
            key: Stored(row.resource_version, row.object, row.updated_at.timestamp())
            for key, row in (await pg_rows(self.dsn, resource, self.schema)).items()
        }

    async def highest_epoch(self) -> int:
        return await fence_epoch(self.dsn, self.schema)

    async def writing(self) -> bool:
        return not await fence_is_free(self.dsn, self.schema)

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        other = await asyncpg.connect(self.dsn)
        try:
            async with other.transaction():  # as a new leader recording its epoch does
                await other.execute(f"SELECT epoch FROM {self.schema}.fence FOR UPDATE")
                yield
        finally:
            await other.close()

    async def settled(self) -> None:
        await wait_for_fence(self.dsn, self.schema)
