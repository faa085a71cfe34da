"""``SQLiteSink``: a receiver that mirrors one resource into an SQLite file.

The sink keeps one row per object and one sync-state row per resource::

    objects(resource, key, resource_version, object, updated_at)   PRIMARY KEY (resource, key)
    sync_state(resource, resource_version, generation, synced_at, listed_at,
               epoch, session, sequence)

``object`` is the object's JSON as TEXT, so readers can use ``json_extract(object, '$.…')``;
without a transform it is the JSON the API server sent, stored without being parsed.
Several sinks (one per resource) may share one file.

Why the two callbacks write differently: a watch only reports what changed, so the only moment
the sink learns that an object is *gone* without a DELETED event (it was deleted while no watch
was running, or during a 410 gap) is the snapshot boundary. ``on_list`` therefore replaces the
resource's rows: every listed object is upserted and every row the snapshot does not contain is
deleted. ``on_batch`` applies each key's last event: upserts for ADDED and MODIFIED, deletes for
DELETED (deleting a key the mirror does not hold is fine, the event may repeat one from before a
relist).

Each call is one ``BEGIN IMMEDIATE`` … ``COMMIT`` transaction, rolled back on any error or
cancellation, so a failure or a crash mid-write leaves the previous state intact, and the
database runs in WAL mode, so readers (other processes, or this sink's own readers, which use a
second connection) see the last committed state while a write is in progress. A snapshot is
written page by page as it is listed: the keys it held are collected in a temporary table,
not in Python, so the sink's memory does not grow with the cluster either.

Fencing: every write carries its sender's stamp (the leader's *epoch*, the Syncer's
session, the generation and the batch's sequence). In the same transaction as the write,
the sink reads what it recorded and applies ``listwatch.fencing.decide``: a write of an
epoch lower than the highest the file holds (over all its resources: one agent's resources
share one leader) is refused with ``StaleEpoch``, so a leader that was paused and wakes up
after another replica took over cannot overwrite anything; an older generation of the same
sender is refused, and a replayed batch changes nothing.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

import orjson

from listwatch import fencing
from listwatch._models import (
    Batch,
    EventType,
    Item,
    JsonObject,
    KeyFunc,
    Snapshot,
    object_key,
)

try:
    import aiosqlite
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "listwatch.sinks.sqlite needs aiosqlite: pip install 'listwatch[sqlite]'"
    ) from exc

__all__ = ["Mirror", "SQLiteSink", "SQLiteStore", "SyncState", "read_mirror"]

Verdict = fencing.Verdict

_Write = Callable[[aiosqlite.Connection, float], Awaitable[None]]

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS objects (
        resource         TEXT NOT NULL,
        key              TEXT NOT NULL,
        resource_version TEXT NOT NULL,
        object           TEXT NOT NULL,
        updated_at       REAL NOT NULL,
        PRIMARY KEY (resource, key)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS sync_state (
        resource         TEXT PRIMARY KEY,
        resource_version TEXT NOT NULL,
        generation       INTEGER NOT NULL,
        synced_at        REAL NOT NULL,
        listed_at        REAL,
        epoch            INTEGER NOT NULL DEFAULT 0,
        session          TEXT NOT NULL DEFAULT '',
        sequence         INTEGER NOT NULL DEFAULT 0
    )
    """,
)
_COLUMNS = {
    "objects": {"resource", "key", "resource_version", "object", "updated_at"},
    "sync_state": {
        "resource",
        "resource_version",
        "generation",
        "synced_at",
        "listed_at",
        "epoch",
        "session",
        "sequence",
    },
}
SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of the file. 1 (or 0: a file of listwatch 0.1) lacks the stamp
columns of ``sync_state``, which are added on open; the fence then starts at epoch 0."""
_MIGRATIONS = {
    1: (
        ("epoch", "ALTER TABLE sync_state ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0"),
        ("session", "ALTER TABLE sync_state ADD COLUMN session TEXT NOT NULL DEFAULT ''"),
        ("sequence", "ALTER TABLE sync_state ADD COLUMN sequence INTEGER NOT NULL DEFAULT 0"),
    )
}

# An unchanged object (same JSON, same RV) is not rewritten: a relist of a quiet cluster then
# costs reads, not a rewrite of every page, and ``updated_at`` says when the row last changed.
_UPSERT = """
    INSERT INTO objects (resource, key, resource_version, object, updated_at)
    VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (resource, key) DO UPDATE SET
        resource_version = excluded.resource_version,
        object = excluded.object,
        updated_at = excluded.updated_at
    WHERE objects.object IS NOT excluded.object
       OR objects.resource_version IS NOT excluded.resource_version
"""
_DELETE = "DELETE FROM objects WHERE resource = ? AND key = ?"
# The keys a snapshot listed, kept by SQLite (in its temporary database) instead of Python.
_LISTED_TABLE = "CREATE TEMP TABLE IF NOT EXISTS listed (key TEXT PRIMARY KEY) WITHOUT ROWID"
_LISTED_CLEAR = "DELETE FROM temp.listed"
_LISTED_ADD = "INSERT OR IGNORE INTO temp.listed (key) VALUES (?)"
_DELETE_UNLISTED = """
    DELETE FROM objects
    WHERE resource = ? AND key NOT IN (SELECT key FROM temp.listed)
"""
_HIGHEST_EPOCH = "SELECT max(epoch) FROM sync_state"
_RECORDED_STAMP = "SELECT epoch, session, generation, sequence FROM sync_state WHERE resource = ?"
_STATE_AFTER_LIST = """
    INSERT INTO sync_state
        (resource, resource_version, generation, synced_at, listed_at, epoch, session, sequence)
    VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, 0)
    ON CONFLICT (resource) DO UPDATE SET
        resource_version = excluded.resource_version,
        generation = excluded.generation,
        synced_at = excluded.synced_at,
        listed_at = excluded.listed_at,
        epoch = excluded.epoch,
        session = excluded.session,
        sequence = 0
"""
# A batch without an RV (there should be none) must not move the resume point back to "".
_STATE_AFTER_BATCH = """
    INSERT INTO sync_state
        (resource, resource_version, generation, synced_at, listed_at, epoch, session, sequence)
    VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, ?7)
    ON CONFLICT (resource) DO UPDATE SET
        resource_version = COALESCE(NULLIF(excluded.resource_version, ''), resource_version),
        generation = excluded.generation,
        synced_at = excluded.synced_at,
        epoch = excluded.epoch,
        session = excluded.session,
        sequence = excluded.sequence
"""
_SELECT_STATE = """
    SELECT resource, resource_version, generation, synced_at, listed_at, epoch, session, sequence
    FROM sync_state WHERE resource = ?
"""
_SELECT_OBJECTS = "SELECT key, object FROM objects WHERE resource = ? ORDER BY key"
_SELECT_OBJECT = "SELECT key, object FROM objects WHERE resource = ? AND key = ?"
_COUNT = "SELECT count(*) FROM objects WHERE resource = ?"

_PAGE_SIZE = 8192
_UPSERT_TYPES = frozenset({EventType.ADDED, EventType.MODIFIED})


@dataclass(frozen=True, slots=True)
class SyncState:
    """The sync-state row of one resource: how current its mirror is.

    ``resource_version`` is the point the mirror is current at (the snapshot's, then each
    batch's, bookmarks included); ``generation`` the Syncer generation that wrote last;
    ``synced_at`` the time (``time.time()``) of the last write of any kind and ``listed_at``
    that of the last full snapshot (``None`` if only batches were ever written); ``epoch``
    the fencing token of the leader that wrote last (0 without leader election), and
    ``session``/``sequence`` the writing Syncer and its last batch (``listwatch.fencing``).
    """

    resource: str
    resource_version: str
    generation: int
    synced_at: float
    listed_at: float | None
    epoch: int = 0
    session: str = ""
    sequence: int = 0


@dataclass(frozen=True, slots=True)
class Mirror:
    """One resource's objects and sync state, read in one transaction (so they agree)."""

    objects: dict[str, JsonObject]
    state: SyncState | None


def _state_from_row(row: Sequence[Any] | None) -> SyncState | None:
    if row is None:
        return None
    return SyncState(*row)


def _json_text(resource: str, item: Item) -> str:
    """The object's JSON as SQLite TEXT (the server's bytes, unless a transform ran)."""
    try:
        return item.json.decode()
    except (TypeError, orjson.JSONEncodeError) as exc:  # a transform made it unserialisable
        raise TypeError(
            f"cannot store {resource} {item.key!r}: not serialisable as JSON: {exc}"
        ) from exc


def _key_and_object(cursor: sqlite3.Cursor, row: tuple[str, str]) -> tuple[str, JsonObject]:
    return row[0], orjson.loads(row[1])


def _decode_on_fetch(cursor: aiosqlite.Cursor) -> None:
    """Decode ``(key, object)`` rows as they are fetched: on the connection's thread, so that
    decoding tens of megabytes of JSON does not stall the event loop."""
    # aiosqlite annotates row_factory as a type; sqlite3 takes any callable.
    cursor.row_factory = _key_and_object  # type: ignore[assignment]


def _check_resource(resource: str) -> str:
    if not isinstance(resource, str) or not resource:
        raise ValueError("resource must be a non-empty string, such as 'pods'")
    return resource


class _Rows:
    """The upsert rows of a page or batch, built as ``executemany`` iterates them.

    Iterated on the connection's thread, inside the transaction: turning objects into text
    does not block the event loop, and an object that cannot be stored fails the
    transaction (which rolls back) rather than half of it. ``keys`` records what was written.
    """

    def __init__(
        self, resource: str, items: Iterable[Item], key: KeyFunc | None, now: float
    ) -> None:
        self._resource = resource
        self._items = items
        self._key = key
        self._now = now
        self.keys: list[tuple[str]] = []

    def __iter__(self) -> Iterator[tuple[str, str, str, str, float]]:
        resource, key, now, keys = self._resource, self._key, self._now, self.keys
        for item in self._items:
            item_key = item.key if key is None else key(item.object)
            keys.append((item_key,))
            yield (resource, item_key, item.resource_version, _json_text(resource, item), now)


class SQLiteSink:
    """Mirror one resource into an SQLite file; pass ``on_list`` and ``on_batch`` to a Syncer.

    ::

        async with SQLiteSink("mirror.db", resource="pods") as sink:
            syncer = Syncer(source, on_list=sink.on_list, on_batch=sink.on_batch)
            ...
            pod = await sink.get("default/web-0")

    ``key`` must be the key function the Syncer uses (its ``key`` argument): snapshot items are
    keyed with it, batch events arrive keyed. ``busy_timeout`` (seconds) is how long a write
    waits for another writer of the same file (another sink) before it fails.

    The sink holds two connections: a writer, and a reader for :meth:`objects`, :meth:`get`,
    :meth:`count` and :meth:`sync_state`, so those answer with the last committed state while a
    write is in progress instead of queueing behind it (or seeing it half done).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        resource: str,
        key: KeyFunc = object_key,
        busy_timeout: float = 10.0,
    ) -> None:
        path_str = os.fspath(path)
        if path_str in ("", ":memory:") or path_str.startswith("file:"):
            raise ValueError(
                "SQLiteSink needs a database file path: its readers use a second connection, "
                "which an in-memory database would not share"
            )
        if busy_timeout < 0:
            raise ValueError("busy_timeout must be >= 0")
        self._path = Path(path_str)
        self._resource = _check_resource(resource)
        self._key = key
        self._busy_timeout = busy_timeout
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        state = "open" if self._writer is not None else "closed"
        return f"SQLiteSink({str(self._path)!r}, resource={self._resource!r}, {state})"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def resource(self) -> str:
        return self._resource

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, switch the file to WAL mode and create the schema if it is missing."""
        if self._writer is not None:
            raise RuntimeError(f"{self!r} is already open")
        writer = await self._connect()
        try:
            # Only takes effect on a new file. Objects are kilobytes of JSON: with 4 KiB pages
            # a 2.5 KB pod fills a page alone, 8 KiB pages hold three (half the file size, and
            # a 50k-pod snapshot writes twice as fast).
            await writer.execute(f"PRAGMA page_size={_PAGE_SIZE}")
            mode = await self._fetchone(writer, "PRAGMA journal_mode=WAL")
            if mode is None or str(mode[0]).lower() != "wal":
                raise RuntimeError(
                    f"{self._path}: cannot switch to WAL mode (journal_mode is "
                    f"{mode[0] if mode else None!r}); readers could not query while the sink "
                    "writes"
                )
            await writer.execute("BEGIN IMMEDIATE")
            try:
                await self._create_or_migrate(writer)
                await writer.execute("COMMIT")
            except BaseException:
                await writer.rollback()
                raise
            await self._check_schema(writer)
            reader = await self._connect(query_only=True)
        except BaseException:
            await writer.close()
            raise
        self._writer, self._reader = writer, reader

    async def close(self) -> None:
        """Close both connections, after a write in progress finishes. Closing twice is fine."""
        async with self._lock:
            writer, reader = self._writer, self._reader
            self._writer = self._reader = None
            if writer is None:
                return
            try:
                await writer.close()
            finally:
                if reader is not None:
                    await reader.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _connect(self, *, query_only: bool = False) -> aiosqlite.Connection:
        # isolation_level=None: no implicit transactions; every write says BEGIN/COMMIT itself.
        connection = await aiosqlite.connect(
            self._path, isolation_level=None, timeout=self._busy_timeout
        )
        try:
            # NORMAL is durable against process crashes in WAL mode (a power loss may lose the
            # last commits, never corrupt the file), and the lost writes come back on relist.
            await connection.execute("PRAGMA synchronous=NORMAL")
            if query_only:
                await connection.execute("PRAGMA query_only=ON")
        except BaseException:
            await connection.close()
            raise
        return connection

    async def _create_or_migrate(self, connection: aiosqlite.Connection) -> None:
        """Create the tables, or bring a file of an older listwatch up to this schema."""
        version = int((await self._fetchone(connection, "PRAGMA user_version"))[0])
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self._path}: schema version {version} is newer than this listwatch's "
                f"({SCHEMA_VERSION}); upgrade listwatch"
            )
        held = await connection.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'sync_state'"
        )
        if held and version < SCHEMA_VERSION:
            for step in range(max(version, 1), SCHEMA_VERSION):
                rows = await connection.execute_fetchall("PRAGMA table_info(sync_state)")
                columns = {row[1] for row in rows}
                for column, statement in _MIGRATIONS[step]:
                    if column not in columns:
                        await connection.execute(statement)
        for statement in _SCHEMA:
            await connection.execute(statement)
        await connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    async def _check_schema(self, connection: aiosqlite.Connection) -> None:
        for table, required in _COLUMNS.items():
            rows = await connection.execute_fetchall(f"PRAGMA table_info({table})")
            missing = required - {row[1] for row in rows}
            if missing:
                raise RuntimeError(
                    f"{self._path}: table {table!r} lacks columns {sorted(missing)}; "
                    "the file holds a table of that name that listwatch did not create"
                )

    @staticmethod
    async def _fetchone(
        connection: aiosqlite.Connection, sql: str, parameters: Sequence[Any] = ()
    ) -> Any:
        async with connection.execute(sql, parameters) as cursor:
            return await cursor.fetchone()

    def _connections(self) -> tuple[aiosqlite.Connection, aiosqlite.Connection]:
        if self._writer is None or self._reader is None:
            raise RuntimeError(
                f"{self!r} is not open: use 'async with SQLiteSink(...)' or 'await sink.open()'"
            )
        return self._writer, self._reader

    # -- receiver callbacks ----------------------------------------------------------------

    async def on_list(self, snapshot: Snapshot) -> None:
        """Replace the resource's rows with ``snapshot``, in one transaction.

        This is the snapshot boundary: every item is upserted page by page as the snapshot is
        listed, every row the snapshot does not contain is deleted (its object vanished, maybe
        while no watch was running to report it), and the sync state moves to the
        snapshot's RV and stamp. A list error raised out of the iteration rolls the whole
        transaction back: the previous state stays as it was. A snapshot the fence refuses
        raises before anything is written; one it has already applied is read and dropped.
        """
        resource, key = self._resource, self._custom_key

        async def write(connection: aiosqlite.Connection, now: float) -> None:
            if await self._fence(connection, fencing.stamp_of(snapshot)) is Verdict.DUPLICATE:
                async for _ in snapshot.pages():
                    pass
                return
            await connection.execute(_LISTED_TABLE)
            await connection.execute(_LISTED_CLEAR)
            async for page in snapshot.pages():
                rows = _Rows(resource, page, key, now)
                await connection.executemany(_UPSERT, rows)
                await connection.executemany(_LISTED_ADD, rows.keys)
            await connection.execute(_DELETE_UNLISTED, (resource,))
            await connection.execute(_LISTED_CLEAR)
            await connection.execute(
                _STATE_AFTER_LIST,
                (
                    resource,
                    snapshot.resource_version,
                    snapshot.generation,
                    now,
                    snapshot.epoch,
                    snapshot.session,
                ),
            )

        await self._transaction(write)

    async def on_batch(self, batch: Batch) -> None:
        """Apply a batch of merged changes in one transaction, and advance the sync state.

        A batch holds each key's last event, so every key appears once and the order between
        keys does not matter: ADDED and MODIFIED become upserts, DELETED a delete (of a key the
        mirror may not hold). A batch without events (bookmarks only) just advances the RV.
        """
        resource, key = self._resource, self._custom_key
        upserts: list[Item] = []
        deletes: list[tuple[str, str]] = []
        for event_key, event in batch.events.items():
            if event.type in _UPSERT_TYPES:
                upserts.append(event)
            elif event.type is EventType.DELETED:
                deletes.append((resource, event_key))
            else:
                raise ValueError(f"a batch cannot hold a {event.type} event (key {event_key!r})")
        stamp = fencing.stamp_of(batch)

        async def write(connection: aiosqlite.Connection, now: float) -> None:
            if await self._fence(connection, stamp) is Verdict.DUPLICATE:
                return
            if upserts:
                await connection.executemany(_UPSERT, _Rows(resource, upserts, key, now))
            if deletes:
                await connection.executemany(_DELETE, deletes)
            await connection.execute(
                _STATE_AFTER_BATCH,
                (
                    resource,
                    batch.resource_version,
                    batch.generation,
                    now,
                    batch.epoch,
                    batch.session,
                    stamp.sequence if batch.session else 0,
                ),
            )

        await self._transaction(write)

    @property
    def _custom_key(self) -> KeyFunc | None:
        """The key function to run on parsed objects, or None for the items' own keys."""
        return None if self._key is object_key else self._key

    async def _fence(self, connection: aiosqlite.Connection, stamp: fencing.Stamp) -> Verdict:
        """``fencing.decide`` on what the file recorded, inside the write's transaction."""
        highest = (await self._fetchone(connection, _HIGHEST_EPOCH))[0]
        row = await self._fetchone(connection, _RECORDED_STAMP, (self._resource,))
        recorded = fencing.Stamp(*row) if row is not None else None
        return fencing.decide(self._resource, stamp, recorded, highest)

    async def _transaction(self, write: _Write) -> None:
        """Run ``write`` between BEGIN IMMEDIATE and COMMIT; roll back on any error.

        ``BEGIN IMMEDIATE`` takes the write lock at once (waiting up to ``busy_timeout`` for
        another writer) instead of failing on the first write. A cancellation (the Syncer's
        ``sync_timeout``, or its generation ending) rolls back too: the statement in flight
        finishes on the connection's thread, and the rollback is queued behind it the moment
        ``rollback()`` is called, so it runs even when the task is cancelled again while
        awaiting it (as an anyio cancel scope does); the next write is queued behind it.
        """
        async with self._lock:
            writer, _ = self._connections()
            try:
                await writer.execute("BEGIN IMMEDIATE")
                await write(writer, time.time())
                await writer.execute("COMMIT")
            except BaseException:
                # sqlite3's rollback() is a no-op when no transaction is open (BEGIN failed).
                await writer.rollback()
                raise

    # -- readers ---------------------------------------------------------------------------

    async def objects(self) -> dict[str, JsonObject]:
        """Every object of the resource, by key (the last committed state)."""
        _, reader = self._connections()
        async with reader.execute(_SELECT_OBJECTS, (self._resource,)) as cursor:
            _decode_on_fetch(cursor)
            rows = cast("list[tuple[str, JsonObject]]", await cursor.fetchall())
        return dict(rows)

    async def get(self, key: str) -> JsonObject | None:
        """The object stored under ``key``, or ``None``."""
        _, reader = self._connections()
        async with reader.execute(_SELECT_OBJECT, (self._resource, key)) as cursor:
            _decode_on_fetch(cursor)
            row = cast("tuple[str, JsonObject] | None", await cursor.fetchone())
        return None if row is None else row[1]

    async def count(self) -> int:
        """How many objects of the resource the mirror holds."""
        _, reader = self._connections()
        row = await self._fetchone(reader, _COUNT, (self._resource,))
        return int(row[0])

    async def sync_state(self) -> SyncState | None:
        """The resource's sync state, or ``None`` before its first write."""
        _, reader = self._connections()
        return _state_from_row(await self._fetchone(reader, _SELECT_STATE, (self._resource,)))


def read_mirror(path: str | os.PathLike[str], *, resource: str) -> Mirror:
    """Read one resource's mirror from a database file, synchronously (for tools and tests).

    Opens the file read-only and reads the objects and the sync state in one transaction, so
    they agree even while a sink is writing. Raises ``FileNotFoundError`` if there is no file.
    """
    _check_resource(resource)
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no SQLite database at {file}")
    connection = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
    try:
        connection.isolation_level = None
        connection.execute("BEGIN")
        try:
            rows = connection.execute(_SELECT_OBJECTS, (resource,)).fetchall()
            state = connection.execute(_SELECT_STATE, (resource,)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            raise ValueError(f"{file} is not a listwatch SQLite mirror: {exc}") from exc
        finally:
            connection.execute("COMMIT")
    finally:
        connection.close()
    return Mirror({key: orjson.loads(text) for key, text in rows}, _state_from_row(state))


class SQLiteStore:
    """One SQLite file holding several resources: a ``SQLiteSink`` per resource, opened on
    first use (the HTTP receiver's store for ``--sqlite``). Sinks share the file, and
    SQLite serialises their writes (``busy_timeout``)."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        self._path = Path(path)
        self._busy_timeout = busy_timeout
        self._sinks: dict[str, SQLiteSink] = {}
        self._lock = asyncio.Lock()

    @property
    def path(self) -> Path:
        return self._path

    async def sink(self, resource: str) -> SQLiteSink:
        async with self._lock:
            sink = self._sinks.get(resource)
            if sink is None:
                sink = SQLiteSink(self._path, resource=resource, busy_timeout=self._busy_timeout)
                await sink.open()
                self._sinks[resource] = sink
            return sink

    async def close(self) -> None:
        async with self._lock:
            sinks, self._sinks = self._sinks, {}
        for sink in sinks.values():
            await sink.close()
