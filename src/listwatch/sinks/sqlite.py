"""``SQLiteSink``: a receiver that mirrors one resource into an SQLite file.

The sink keeps one row per object and one sync-state row per (cluster, resource)::

    objects(cluster, resource, key, resource_version, object, raw, quarantined, size,
            updated_at)                     PRIMARY KEY (cluster, resource, key)
    sync_state(cluster, resource, resource_version, generation, synced_at, listed_at,
               epoch, session, sequence, object_count, object_bytes, shard)
                                            PRIMARY KEY (cluster, resource, shard)

``object`` is the object's JSON as TEXT, so readers can use ``json_extract(object, '$.…')``;
without a transform it is the JSON the API server sent, stored without being parsed.
``size`` is the bytes of that JSON; ``uid_hash`` the object's uid hash, indexed with the
cluster and resource, which a shard's writes keep to (``listwatch.sinks._base``). Several
sinks (one per resource, and per cluster) may
share one file. What every sink does (the snapshot boundary, batches, transactions, the
fence, the clusters) is ``listwatch.sinks._base``'s; here is how SQLite does it.

A *quarantined* object (``listwatch.sinks._base``: JSON that is not UTF-8, or nests deeper
than ``_jsonparse.MAX_DEPTH``, which SQLite's JSON functions and every JSON reader of the
mirror could not read) is kept all the same: ``object`` is the text ``null``, ``raw`` the
object's bytes as a BLOB, byte for byte, and ``quarantined`` says why. Other rows have both
NULL. SQLite's TEXT holds U+0000, so a NUL is no reason here. Find them with
``SELECT key, quarantined FROM objects WHERE quarantined IS NOT NULL``.

Each write commits in one ``BEGIN IMMEDIATE`` … ``COMMIT`` transaction, and the database runs
in WAL mode, so readers (other processes, or this sink's own readers, which use a second
connection) see the last committed state while a write is in progress. The fence reads the
highest epoch of each scope over every resource of the sink's cluster in the file, and
``fencing.highest_epoch`` keeps those of the scopes overlapping the write's (one agent's
resources share one leader per shard; another cluster's epochs are another etcd's
revisions).

A file of schema version 3 or older (before clusters) is migrated on open, in one
transaction: its tables are rebuilt with the cluster leading each primary key, every row
given the cluster of the sink (or ``SQLiteStore``) that opens it, and each object's size
and each resource's counts computed once.

A snapshot is *staged* first (the contract's rule: no lock across a network wait). Each
snapshot opens a connection of its own and writes its pages, as they are listed, into a
``TEMP`` table of that connection: SQLite keeps it in the connection's separate temporary
database (a file in ``$SQLITE_TMPDIR``, else ``$TMPDIR``, ``/var/tmp`` or ``/tmp``, unlinked
as soon as it is opened), so staging takes no lock on the mirror's file (each row is one
statement outside any transaction: it writes the temporary database only, and its read of
the file, to compare with the stored row, ends with it), and memory stays at two pages and
SQLite's cache (``temp_store=FILE``). Only then ``BEGIN IMMEDIATE`` takes the write lock,
for the swap: the fence, one ``INSERT … SELECT`` of the staged rows that changed, one
``DELETE`` of the rows the snapshot lacks, the sync state, ``COMMIT``. Its length is the
local disk's, never the network's. A writer that dies while staging leaves nothing: the
temporary file goes with its process. So one resource's slow LIST, or a snapshot a sender
stopped sending, holds up no other writer of the file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, cast

import orjson

from listwatch import fencing
from listwatch._models import Batch, Item, JsonObject, KeyFunc, Snapshot, object_key
from listwatch._shard import Shard
from listwatch.errors import StaleWrite
from listwatch.sinks import _base
from listwatch.sinks._base import (
    DEFAULT_CLUSTER,
    QuarantinedObject,
    Sink,
    SinkStore,
    SyncState,
    Usage,
    Verdict,
)

try:
    import aiosqlite
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise _base.missing_extra(__name__, "aiosqlite", "sqlite") from exc

__all__ = [
    "Mirror",
    "QuarantinedObject",
    "SQLiteSink",
    "SQLiteStore",
    "SyncState",
    "read_mirror",
]

_Write = Callable[[aiosqlite.Connection, float], Awaitable[None]]
_Row = tuple[str, str, str, bytes | None, str | None, int]
"""key, resourceVersion, JSON text (``null`` when quarantined), raw bytes, why quarantined,
the bytes' length."""

_OBJECTS_TABLE = """
    CREATE TABLE IF NOT EXISTS {name} (
        cluster          TEXT NOT NULL,
        resource         TEXT NOT NULL,
        key              TEXT NOT NULL,
        resource_version TEXT NOT NULL,
        object           TEXT NOT NULL,
        raw              BLOB,
        quarantined      TEXT,
        size             INTEGER NOT NULL,
        updated_at       REAL NOT NULL,
        uid_hash         INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (cluster, resource, key)
    )
"""
_SYNC_STATE_TABLE = """
    CREATE TABLE IF NOT EXISTS {name} (
        cluster          TEXT NOT NULL,
        resource         TEXT NOT NULL,
        resource_version TEXT NOT NULL,
        generation       INTEGER NOT NULL,
        synced_at        REAL NOT NULL,
        listed_at        REAL,
        epoch            INTEGER NOT NULL DEFAULT 0,
        session          TEXT NOT NULL DEFAULT '',
        sequence         INTEGER NOT NULL DEFAULT 0,
        object_count     INTEGER NOT NULL DEFAULT 0,
        object_bytes     INTEGER NOT NULL DEFAULT 0,
        shard            TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (cluster, resource, shard)
    )
"""
# A shard's snapshot deletes the rows of its range it lacks: one range of this index.
_HASH_INDEX = (
    "CREATE INDEX IF NOT EXISTS objects_by_uid_hash ON objects (cluster, resource, uid_hash)"
)
_SCHEMA = (_OBJECTS_TABLE.format(name="objects"), _SYNC_STATE_TABLE.format(name="sync_state"))
_COLUMNS = {
    "objects": {
        "cluster",
        "resource",
        "key",
        "resource_version",
        "object",
        "raw",
        "quarantined",
        "size",
        "updated_at",
        "uid_hash",
    },
    "sync_state": {
        "cluster",
        "resource",
        "resource_version",
        "generation",
        "synced_at",
        "listed_at",
        "epoch",
        "session",
        "sequence",
        "object_count",
        "object_bytes",
        "shard",
    },
}
SCHEMA_VERSION = 5
"""``PRAGMA user_version`` of the file. 1 (or 0: a file of listwatch 0.1) lacks the stamp
columns of ``sync_state``, 2 the quarantine columns of ``objects``; they are added on open
(the fence then starts at epoch 0, and no row is quarantined). 3 lacks the cluster, which
leads every primary key from 4 on (``_TO_CLUSTERS``). 4 lacks the shard scope: each
object's ``uid_hash`` (computed on open from its JSON: ``lw_uid_hash``) and the ``shard`` of
``sync_state``'s primary key (``_TO_SHARDS``; the rows recorded become the whole resource's,
"")."""
_MIGRATIONS: dict[int, tuple[tuple[str, str, str], ...]] = {
    1: (
        ("sync_state", "epoch", "ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0"),
        ("sync_state", "session", "ADD COLUMN session TEXT NOT NULL DEFAULT ''"),
        ("sync_state", "sequence", "ADD COLUMN sequence INTEGER NOT NULL DEFAULT 0"),
    ),
    2: (
        ("objects", "raw", "ADD COLUMN raw BLOB"),
        ("objects", "quarantined", "ADD COLUMN quarantined TEXT"),
    ),
}
# Version 3 -> 4: SQLite cannot change a primary key, so each table is built again beside
# the old one, filled from it (the cluster given, each object's size and each resource's
# counts computed once), and takes its name. ?1 is the cluster the rows become.
_TO_CLUSTERS = (
    _OBJECTS_TABLE.format(name="lw_objects_4"),
    "INSERT INTO lw_objects_4 (cluster, resource, key, resource_version, object, raw, "
    "quarantined, size, updated_at, uid_hash) SELECT ?1, resource, key, resource_version, "
    "object, raw, quarantined, length(coalesce(raw, CAST(object AS BLOB))), updated_at, "
    "lw_uid_hash(coalesce(raw, object)) FROM objects",
    _SYNC_STATE_TABLE.format(name="lw_sync_state_4"),
    "INSERT INTO lw_sync_state_4 (cluster, resource, resource_version, generation, synced_at, "
    "listed_at, epoch, session, sequence, object_count, object_bytes) "
    "SELECT ?1, s.resource, s.resource_version, s.generation, s.synced_at, s.listed_at, "
    "s.epoch, s.session, s.sequence, "
    "(SELECT count(*) FROM lw_objects_4 o WHERE o.resource = s.resource), "
    "(SELECT coalesce(sum(o.size), 0) FROM lw_objects_4 o WHERE o.resource = s.resource) "
    "FROM sync_state s",
    "DROP TABLE objects",
    "DROP TABLE sync_state",
    "ALTER TABLE lw_objects_4 RENAME TO objects",
    "ALTER TABLE lw_sync_state_4 RENAME TO sync_state",
)
# Version 4 -> 5: each object's uid hash, computed once from its JSON; and sync_state built
# again with the shard in its primary key (its rows the whole resource's, "").
_TO_HASHES = (
    "ALTER TABLE objects ADD COLUMN uid_hash INTEGER NOT NULL DEFAULT 0",
    "UPDATE objects SET uid_hash = lw_uid_hash(coalesce(raw, object))",
)
_TO_SHARDS = (
    _SYNC_STATE_TABLE.format(name="lw_sync_state_5"),
    "INSERT INTO lw_sync_state_5 (cluster, resource, resource_version, generation, synced_at, "
    "listed_at, epoch, session, sequence, object_count, object_bytes) "
    "SELECT cluster, resource, resource_version, generation, synced_at, listed_at, epoch, "
    "session, sequence, object_count, object_bytes FROM sync_state",
    "DROP TABLE sync_state",
    "ALTER TABLE lw_sync_state_5 RENAME TO sync_state",
)

_COMPARABLE = "({rv} GLOB '[1-9]*' AND {rv} NOT GLOB '*[^0-9]*')"
_NEWER = (
    "(NOT ("
    + _COMPARABLE.format(rv="excluded.resource_version")
    + " AND "
    + _COMPARABLE.format(rv="objects.resource_version")
    + ") "
    "OR length(excluded.resource_version) > length(objects.resource_version) "
    "OR (length(excluded.resource_version) = length(objects.resource_version) "
    "AND excluded.resource_version > objects.resource_version))"
)


def _on_conflict(low: str, high: str) -> str:
    """The upsert's conflict clause; ``low`` and ``high`` the parameters of the write's
    ``_base.scope_bounds``. An unchanged object (same JSON, same RV) is not rewritten: a
    relist of a quiet cluster then costs reads, not a rewrite of every page, and
    ``updated_at`` says when the row last changed. Another shard's row under the key is
    overwritten only by a newer RV (``_base.NEWER_ACROSS_SHARDS`` says why)."""
    return f"""
    ON CONFLICT (cluster, resource, key) DO UPDATE SET
        resource_version = excluded.resource_version,
        object = excluded.object,
        raw = excluded.raw,
        quarantined = excluded.quarantined,
        size = excluded.size,
        updated_at = excluded.updated_at,
        uid_hash = excluded.uid_hash
    WHERE (objects.object IS NOT excluded.object
           OR objects.raw IS NOT excluded.raw
           OR objects.resource_version IS NOT excluded.resource_version)
      AND (objects.uid_hash BETWEEN {low} AND {high} OR {_NEWER})
"""


# ?11, ?12: the write's scope_bounds.
_UPSERT = (
    "INSERT INTO main.objects (cluster, resource, key, resource_version, object, raw, "
    "quarantined, size, updated_at, uid_hash) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)" + _on_conflict("?11", "?12")
)
_DELETE = "DELETE FROM main.objects WHERE cluster = ? AND resource = ? AND key = ?"
# A shard's batch deletes a key only if the row is its shard's: the name may have been
# taken since by an object (a new uid) of another shard, which that shard wrote.
_DELETE_IN_SHARD = _DELETE + " AND uid_hash BETWEEN ? AND ?"
# What the keys of a batch hold (?3: a JSON array of keys), before and after the batch: its
# change to the resource's counts, in one index probe per key.
_KEYS_USAGE = (
    "SELECT count(*), coalesce(sum(size), 0) FROM main.objects "
    "WHERE cluster = ?1 AND resource = ?2 AND key IN (SELECT value FROM json_each(?3))"
)
# A snapshot's rows, staged on its own connection (in SQLite's temporary database, which
# locks nothing of the main file). The key is unique: a key listed twice keeps the last. An
# object whose RV and JSON the file holds already is staged without its JSON (NULL): the
# comparison, which reads the stored JSON, is made here, outside the swap, and a relist of
# a quiet cluster copies next to nothing.
_STAGING_TABLE = """
    CREATE TEMP TABLE lw_staged (
        key              TEXT PRIMARY KEY,
        resource_version TEXT NOT NULL,
        object           TEXT,
        raw              BLOB,
        quarantined      TEXT,
        size             INTEGER NOT NULL,
        uid_hash         INTEGER
    )
"""
# ?1 key, ?2 RV, ?3 JSON text, ?4 raw, ?5 why quarantined, ?6 size, ?7 resource, ?8 cluster.
# The uid hash is computed (``lw_uid_hash``, ``_base.uid_hash``) only for a row the file does
# not hold as it is, the only kind the swap writes: a relist of a quiet cluster hashes
# nothing.
_STAGE = """
    INSERT INTO temp.lw_staged (key, resource_version, object, raw, quarantined, size, uid_hash)
    SELECT ?1, ?2, CASE WHEN held THEN NULL ELSE ?3 END, CASE WHEN held THEN NULL ELSE ?4 END,
           ?5, ?6, CASE WHEN held THEN NULL ELSE lw_uid_hash(coalesce(?4, ?3)) END
    FROM (SELECT EXISTS (
        SELECT 1 FROM main.objects
        WHERE cluster = ?8 AND resource = ?7 AND key = ?1 AND resource_version = ?2
          AND object = ?3 AND raw IS ?4
    ) AS held)
    WHERE true
    ON CONFLICT (key) DO UPDATE SET
        resource_version = excluded.resource_version, object = excluded.object,
        raw = excluded.raw, quarantined = excluded.quarantined, size = excluded.size,
        uid_hash = excluded.uid_hash
"""
_STAGED_USAGE = "SELECT count(*), coalesce(sum(size), 0) FROM temp.lw_staged"
# The swap: every staged row the file does not hold as it is. A row staged without its
# JSON is still held if its RV is (an object's RV names its content); if another write
# changed it since it was staged, its NULL meets objects.object's NOT NULL, and the swap is
# refused rather than keep a comparison that went stale.
_SWAP_INSERT = (
    "INSERT INTO main.objects (cluster, resource, key, resource_version, object, raw, "
    "quarantined, size, updated_at, uid_hash) "
    "SELECT ?3, ?1, s.key, s.resource_version, s.object, s.raw, s.quarantined, s.size, ?2, "
    "s.uid_hash "
    "FROM temp.lw_staged s"
)
# Into a resource that holds no row (a first sync), every staged row is new: the plain
# INSERT, without a comparison or a conflict clause per row, takes half the time of the
# upsert (50,000 pods: 1.6 s against 2.9 s). Asked in the swap's transaction, so no write
# can add a row in between; a row staged without its JSON still meets the NOT NULL.
_RESOURCE_EMPTY = (
    "SELECT NOT EXISTS (SELECT 1 FROM main.objects WHERE cluster = ? AND resource = ?)"
)
_SWAP_UPSERT = (
    _SWAP_INSERT + " WHERE NOT EXISTS (SELECT 1 FROM main.objects o "
    "WHERE o.cluster = ?3 AND o.resource = ?1 AND o.key = s.key "
    "AND o.resource_version = s.resource_version "
    "AND (s.object IS NULL OR (o.object = s.object AND o.raw IS s.raw)))" + _on_conflict("?4", "?5")
)
_SWAP_DELETE = """
    DELETE FROM main.objects
    WHERE cluster = ? AND resource = ? AND key NOT IN (SELECT key FROM temp.lw_staged)
"""
# A shard's snapshot replaces its range only: the rows of other shards are not its to delete.
_SWAP_DELETE_IN_SHARD = _SWAP_DELETE + " AND uid_hash BETWEEN ? AND ?"
# Every scope's highest epoch in the cluster (``fencing.highest_epoch`` picks the ones that
# overlap the write's); a few rows: one per shard of the layouts written.
_SCOPE_EPOCHS = "SELECT shard, max(epoch) FROM sync_state WHERE cluster = ? GROUP BY shard"
_RECORDED_STAMP = (
    "SELECT epoch, session, generation, sequence, resource_version, object_count, "
    "object_bytes FROM sync_state WHERE cluster = ? AND resource = ? AND shard = ?"
)
_OTHERS_USAGE = (
    "SELECT coalesce(sum(object_count), 0), coalesce(sum(object_bytes), 0) FROM sync_state "
    "WHERE cluster = ? AND NOT (resource = ? AND shard = ?)"
)
_OTHER_SCOPES = "SELECT shard FROM sync_state WHERE cluster = ? AND resource = ? AND shard <> ?"
_SUPERSEDED = (
    "UPDATE sync_state SET object_count = 0, object_bytes = 0 "
    "WHERE cluster = ? AND resource = ? AND shard = ?"
)
_CLUSTER_USAGE = (
    "SELECT resource, sum(object_count), sum(object_bytes) FROM sync_state WHERE cluster = ? "
    "GROUP BY resource"
)
# SyncState's fields in order; ?1 resource, ?8 cluster, ?10 shard.
_STATE_AFTER_LIST = _base.record_state_sql(
    "sync_state",
    ("?1", "?2", "?3", "?4", "?4", "?5", "?6", "0", "?7", "?9", "?8", "?10"),
    snapshot=True,
)
_STATE_AFTER_BATCH = _base.record_state_sql(
    "sync_state",
    ("?1", "?2", "?3", "?4", "NULL", "?5", "?6", "?7", "?9", "?10", "?8", "?11"),
    snapshot=False,
)
_SELECT_STATE = """
    SELECT resource, resource_version, generation, synced_at, listed_at, epoch, session, sequence,
           object_count, object_bytes, cluster, shard
    FROM sync_state WHERE cluster = ? AND resource = ? AND shard = ?
"""
_SELECT_OBJECTS = (
    "SELECT key, object FROM objects "
    "WHERE cluster = ? AND resource = ? AND quarantined IS NULL ORDER BY key"
)
_SELECT_OBJECT = (
    "SELECT key, object FROM objects "
    "WHERE cluster = ? AND resource = ? AND key = ? AND quarantined IS NULL"
)
_SELECT_QUARANTINED = (
    "SELECT key, resource_version, quarantined, raw FROM objects "
    "WHERE cluster = ? AND resource = ? AND quarantined IS NOT NULL ORDER BY key"
)
_COUNT = "SELECT count(*) FROM objects WHERE cluster = ? AND resource = ?"

_PAGE_SIZE = 8192


@dataclass(frozen=True, slots=True)
class Mirror:
    """One resource's objects and sync state, read in one transaction (so they agree);
    ``quarantined`` are the objects kept as their bytes, not as JSON."""

    objects: dict[str, JsonObject]
    state: SyncState | None
    quarantined: dict[str, QuarantinedObject] = field(default_factory=dict)


def _key_and_object(cursor: sqlite3.Cursor, row: tuple[str, str]) -> tuple[str, JsonObject]:
    return row[0], orjson.loads(row[1])


def _decode_on_fetch(cursor: aiosqlite.Cursor) -> None:
    """Decode ``(key, object)`` rows as they are fetched: on the connection's thread, so that
    decoding tens of megabytes of JSON does not stall the event loop."""
    # aiosqlite annotates row_factory as a type; sqlite3 takes any callable.
    cursor.row_factory = _key_and_object  # type: ignore[assignment]


def _rows(
    resource: str, items: Iterable[Item], key: KeyFunc | None, quarantined: dict[str, str]
) -> Iterator[_Row]:
    """The row of each item, made as ``executemany`` asks; each object quarantined is
    added to ``quarantined`` (key: why).

    Iterated on the connection's thread: turning objects into text does not block the
    event loop, and an object that cannot be stored at all (a transform that fails) fails
    the write there (a batch's transaction rolls back; a snapshot's staging is thrown away).
    """
    for item in items:
        stored_key, resource_version, data, why = _base.stored_json(resource, item, key)
        if why is None:  # SQLite TEXT, for json_extract
            yield stored_key, resource_version, data.decode(), None, None, len(data)
        else:
            quarantined[stored_key] = why
            yield stored_key, resource_version, "null", data, why, len(data)


def _batch_rows(
    cluster: str,
    resource: str,
    items: Iterable[Item],
    key: KeyFunc | None,
    *,
    now: float,
    quarantined: dict[str, str],
) -> Iterator[tuple[str, str, str, str, str, bytes | None, str | None, int, float, int]]:
    rows = _rows(resource, items, key, quarantined)
    for stored_key, resource_version, text, raw, why, size in rows:
        hashed = _base.uid_hash(text if raw is None else raw)
        yield cluster, resource, stored_key, resource_version, text, raw, why, size, now, hashed


async def _fetchone(
    connection: aiosqlite.Connection, sql: str, parameters: Sequence[Any] = ()
) -> Any:
    async with connection.execute(sql, parameters) as cursor:
        return await cursor.fetchone()


async def _prepare_file(connection: aiosqlite.Connection, path: Path, cluster: str) -> None:
    """Create the tables, or bring a file of an older listwatch up to this schema (its rows
    becoming ``cluster``'s), in one transaction; then check that the tables are ours."""
    # A migration computes each object's uid hash from its JSON, in the statement.
    await connection.create_function("lw_uid_hash", 1, _base.uid_hash, deterministic=True)
    await connection.execute("BEGIN IMMEDIATE")
    try:
        await _create_or_migrate(connection, path, cluster)
        await connection.execute("COMMIT")
    except BaseException:
        await connection.rollback()
        raise
    for table, required in _COLUMNS.items():
        rows = await connection.execute_fetchall(f"PRAGMA table_info({table})")
        missing = required - {row[1] for row in rows}
        if missing:
            raise RuntimeError(
                f"{path}: table {table!r} lacks columns {sorted(missing)}; "
                "the file holds a table of that name that listwatch did not create"
            )
    await connection.execute(_HASH_INDEX)  # once the columns are known to be there


async def _create_or_migrate(connection: aiosqlite.Connection, path: Path, cluster: str) -> None:
    version = int((await _fetchone(connection, "PRAGMA user_version"))[0])
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"{path}: schema version {version} is newer than this listwatch's "
            f"({SCHEMA_VERSION}); upgrade listwatch"
        )
    held = await connection.execute_fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'sync_state'"
    )
    if held and version < SCHEMA_VERSION:
        for step in range(max(version, 1), 3):
            for table, column, change in _MIGRATIONS[step]:
                rows = await connection.execute_fetchall(f"PRAGMA table_info({table})")
                if rows and column not in {row[1] for row in rows}:
                    await connection.execute(f"ALTER TABLE {table} {change}")
        rows = await connection.execute_fetchall("PRAGMA table_info(objects)")
        if "cluster" not in {row[1] for row in rows}:
            for statement in _TO_CLUSTERS:
                await connection.execute(statement, (cluster,) if "?1" in statement else ())
        rows = await connection.execute_fetchall("PRAGMA table_info(objects)")
        if "uid_hash" not in {row[1] for row in rows}:
            for statement in _TO_HASHES:
                await connection.execute(statement)
        rows = await connection.execute_fetchall("PRAGMA table_info(sync_state)")
        if "shard" not in {row[1] for row in rows}:
            for statement in _TO_SHARDS:
                await connection.execute(statement)
    for statement in _SCHEMA:
        await connection.execute(statement)
    await connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


class _Connections(NamedTuple):
    writer: aiosqlite.Connection
    reader: aiosqlite.Connection
    """Opened with ``PRAGMA query_only``: answers while the writer's transaction is open."""


class SQLiteSink(Sink[_Connections]):
    """Mirror one resource into an SQLite file; pass ``on_list`` and ``on_batch`` to a Syncer.

    ::

        async with SQLiteSink("mirror.db", resource="pods") as sink:
            syncer = Syncer(source, on_list=sink.on_list, on_batch=sink.on_batch)
            ...
            pod = await sink.get("default/web-0")

    ``cluster`` names the cluster the rows belong to (a file may hold a fleet; a file of an
    older schema, opened first by this sink, becomes this cluster's). ``key`` must be the
    key function the Syncer uses. ``busy_timeout`` (seconds) is how long a write waits for
    another writer of the same file (another sink) before it fails.

    The sink holds two connections: a writer, and a reader for :meth:`objects`, :meth:`get`,
    :meth:`count` and :meth:`sync_state`, so those never queue behind a write; and each
    snapshot in flight has one of its own, where it is staged and swapped (the module's
    docs).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        resource: str,
        cluster: str = DEFAULT_CLUSTER,
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
        super().__init__(resource, key, cluster)
        self._path = Path(path_str)
        self._busy_timeout = busy_timeout

    @property
    def path(self) -> Path:
        return self._path

    def _location(self) -> str:
        return repr(str(self._path))

    # -- lifecycle -------------------------------------------------------------------------

    async def _connect(self) -> _Connections:
        """Open the writer, switch the file to WAL mode, create the schema if it is missing,
        then open the reader."""
        writer = await self._connection()
        try:
            # Only takes effect on a new file. Objects are kilobytes of JSON: with 4 KiB pages
            # a 2.5 KB pod fills a page alone, 8 KiB pages hold three (half the file size, and
            # a 50k-pod snapshot writes twice as fast).
            await writer.execute(f"PRAGMA page_size={_PAGE_SIZE}")
            mode = await _fetchone(writer, "PRAGMA journal_mode=WAL")
            if mode is None or str(mode[0]).lower() != "wal":
                raise RuntimeError(
                    f"{self._path}: cannot switch to WAL mode (journal_mode is "
                    f"{mode[0] if mode else None!r}); readers could not query while the sink "
                    "writes"
                )
            await _prepare_file(writer, self._path, self._cluster)
            reader = await self._connection(query_only=True)
        except BaseException:
            await writer.close()
            raise
        return _Connections(writer, reader)

    async def _disconnect(self, handle: _Connections) -> None:
        try:
            await handle.writer.close()
        finally:
            await handle.reader.close()

    async def _connection(
        self, *, query_only: bool = False, staging: bool = False
    ) -> aiosqlite.Connection:
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
            if staging:  # a snapshot's pages go to a file, never to memory: bounded
                await connection.execute("PRAGMA temp_store=FILE")
                await connection.create_function(
                    "lw_uid_hash", 1, _base.uid_hash, deterministic=True
                )
                # Each staged row is a statement of its own, so a transaction of the
                # temporary database, whose rollback journal was a file written and
                # deleted per row: two thirds of the staging's time. In memory, it holds
                # the pages one row's statement changes, and the staging needs nothing
                # more (it is thrown away with the connection after any failure).
                await connection.execute("PRAGMA temp.journal_mode=MEMORY")
        except BaseException:
            await connection.close()
            raise
        return connection

    # -- receiver callbacks ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _staging(self, stamp: fencing.Stamp) -> AsyncIterator[_SQLiteStaging | None]:
        """A connection of the snapshot's own, its ``TEMP`` table the staging area; closed
        (the table gone with it) when the block ends."""
        self._opened()
        connection = await self._connection(staging=True)
        try:
            # Outside a transaction: each read ends with its statement.
            if (await self._fence(connection, stamp))[0] is Verdict.DUPLICATE:
                yield None
                return
            await connection.execute(_STAGING_TABLE)
            yield _SQLiteStaging(self, connection, stamp.shard)
        finally:
            await connection.close()

    async def on_batch(self, batch: Batch) -> None:
        cluster, resource, key = self._cluster, self._resource, self._custom_key
        upserts, deleted = _base.split_batch(batch)
        quarantined: dict[str, str] = {}
        stamp = fencing.stamp_of(batch)
        delete, in_shard = _DELETE, cast("tuple[int, ...]", ())
        if stamp.shard is not None:
            delete, in_shard = _DELETE_IN_SHARD, _base.hash_bounds(stamp.shard)
        deletes = [(cluster, resource, deleted_key, *in_shard) for deleted_key in deleted]
        touched = orjson.dumps([_base.item_key(item, key) for item in upserts] + deleted).decode()

        async def write(connection: aiosqlite.Connection, now: float) -> None:
            verdict, recorded = await self._fence(connection, stamp)
            if verdict is Verdict.DUPLICATE:
                return
            usage = (cluster, resource, touched)
            before = Usage(*await _fetchone(connection, _KEYS_USAGE, usage))
            if upserts:
                rows = _batch_rows(
                    cluster, resource, upserts, key, now=now, quarantined=quarantined
                )
                bounds = _base.scope_bounds(stamp.shard)
                await connection.executemany(_UPSERT, ((*row, *bounds) for row in rows))
            if deletes:
                await connection.executemany(delete, deletes)
            change = Usage(*await _fetchone(connection, _KEYS_USAGE, usage)) - before
            await self._enforce_limits(connection, stamp, recorded, recorded + change)
            await connection.execute(
                _STATE_AFTER_BATCH,
                (
                    resource,
                    batch.resource_version,
                    batch.generation,
                    now,
                    batch.epoch,
                    batch.session,
                    _base.recorded_sequence(batch),
                    cluster,
                    change.objects,
                    change.bytes,
                    fencing.scope_text(stamp.shard),
                ),
            )

        await self._transaction(write)
        for quarantined_key, why in quarantined.items():
            batch.quarantine(quarantined_key, why)

    async def _fence(
        self, connection: aiosqlite.Connection, stamp: fencing.Stamp
    ) -> tuple[Verdict, Usage]:
        """``fencing.decide`` on what the file recorded for the cluster, inside the write's
        transaction; and what the write's scope of the resource holds."""
        epochs = await connection.execute_fetchall(_SCOPE_EPOCHS, (self._cluster,))
        highest = fencing.highest_epoch(stamp.shard, epochs)  # type: ignore[arg-type]
        scope = (self._cluster, self._resource, fencing.scope_text(stamp.shard))
        row = await _fetchone(connection, _RECORDED_STAMP, scope)
        recorded = fencing.Stamp(*row[:5]) if row is not None else None
        usage = Usage(*row[5:]) if row is not None else Usage()
        return fencing.decide(self._resource, stamp, recorded, highest), usage

    async def _enforce_limits(
        self, connection: aiosqlite.Connection, stamp: fencing.Stamp, before: Usage, after: Usage
    ) -> None:
        """``enforce_limits`` in the write's transaction, against the rest of the cluster."""
        if self.limits is None or not self.limits.any:
            return
        scope = (self._cluster, self._resource, fencing.scope_text(stamp.shard))
        others = Usage(*await _fetchone(connection, _OTHERS_USAGE, scope))
        _base.enforce_limits(
            self.limits, self._cluster, self._resource, others=others, before=before, after=after
        )

    async def _transaction(
        self, write: _Write, connection: aiosqlite.Connection | None = None
    ) -> None:
        """Run ``write`` between BEGIN IMMEDIATE and COMMIT, on the sink's writer (or on a
        snapshot's own ``connection``, for its swap); roll back on any error.

        ``BEGIN IMMEDIATE`` takes the write lock at once (waiting up to ``busy_timeout`` for
        another writer) instead of failing on the first write. A cancellation (the Syncer's
        ``sync_timeout``, or its generation ending) rolls back too: the statement in flight
        finishes on the connection's thread, and the rollback is queued behind it the moment
        ``rollback()`` is called, so it runs even when the task is cancelled again while
        awaiting it (as an anyio cancel scope does); the next write is queued behind it.
        """
        async with self._lock:
            writer = self._opened().writer  # a closed sink takes no write, a swap neither
            if connection is not None:
                writer = connection
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
        reader = self._opened().reader
        async with reader.execute(_SELECT_OBJECTS, (self._cluster, self._resource)) as cursor:
            _decode_on_fetch(cursor)
            rows = cast("list[tuple[str, JsonObject]]", await cursor.fetchall())
        return dict(rows)

    async def get(self, key: str) -> JsonObject | None:
        reader = self._opened().reader
        async with reader.execute(_SELECT_OBJECT, (self._cluster, self._resource, key)) as cursor:
            _decode_on_fetch(cursor)
            row = cast("tuple[str, JsonObject] | None", await cursor.fetchone())
        return None if row is None else row[1]

    async def quarantined(self) -> dict[str, QuarantinedObject]:
        reader = self._opened().reader
        where = (self._cluster, self._resource)
        return _quarantined(await reader.execute_fetchall(_SELECT_QUARANTINED, where))

    async def count(self) -> int:
        reader = self._opened().reader
        row = await _fetchone(reader, _COUNT, (self._cluster, self._resource))
        return int(row[0])

    async def sync_state(self, shard: Shard | None = None) -> SyncState | None:
        reader = self._opened().reader
        scope = (self._cluster, self._resource, fencing.scope_text(shard))
        row = await _fetchone(reader, _SELECT_STATE, scope)
        return SyncState.from_row(row)

    async def cluster_usage(self) -> dict[str, Usage]:
        rows = await self._opened().reader.execute_fetchall(_CLUSTER_USAGE, (self._cluster,))
        return {resource: Usage(count, size) for resource, count, size in rows}


class _SQLiteStaging(_base.Staging):
    """A snapshot's pages in ``temp.lw_staged`` of its own connection; the swap runs on that
    connection too, the only one that sees the table."""

    def __init__(
        self, sink: SQLiteSink, connection: aiosqlite.Connection, shard: Shard | None
    ) -> None:
        self._sink = sink
        self._connection = connection
        self._shard = shard

    async def add(self, page: Sequence[Item]) -> Mapping[str, str]:
        sink = self._sink
        where = (sink.resource, sink.cluster)
        quarantined: dict[str, str] = {}
        rows = _rows(sink.resource, page, sink._custom_key, quarantined)
        # Each row its own statement, outside any transaction: it writes (and locks) the
        # temporary database only, and its read of the file ends with it.
        await self._connection.executemany(_STAGE, ((*row, *where) for row in rows))
        return quarantined

    async def swap(self, snapshot: Snapshot) -> None:
        sink, cluster, resource = self._sink, self._sink.cluster, self._sink.resource
        stamp = fencing.stamp_of(snapshot)

        async def write(connection: aiosqlite.Connection, now: float) -> None:
            verdict, recorded = await sink._fence(connection, stamp)
            if verdict is Verdict.DUPLICATE:
                return
            staged = Usage(*await _fetchone(connection, _STAGED_USAGE))
            await sink._enforce_limits(connection, stamp, recorded, staged)
            empty = (await _fetchone(connection, _RESOURCE_EMPTY, (cluster, resource)))[0]
            try:
                if empty:
                    await connection.execute(_SWAP_INSERT, (resource, now, cluster))
                else:
                    bounds = _base.scope_bounds(stamp.shard)
                    await connection.execute(_SWAP_UPSERT, (resource, now, cluster, *bounds))
            except sqlite3.IntegrityError as exc:
                if "NOT NULL" not in str(exc):
                    raise
                raise StaleWrite(
                    f"{resource}: refused a snapshot: another write changed the rows while it "
                    "was staged"
                ) from None
            scope = fencing.scope_text(stamp.shard)
            if stamp.shard is None:
                await connection.execute(_SWAP_DELETE, (cluster, resource))
            else:
                bounds = _base.hash_bounds(stamp.shard)
                await connection.execute(_SWAP_DELETE_IN_SHARD, (cluster, resource, *bounds))
            await _supersede(connection, cluster, resource, stamp.shard)
            await connection.execute(
                _STATE_AFTER_LIST,
                (
                    resource,
                    snapshot.resource_version,
                    snapshot.generation,
                    now,
                    snapshot.epoch,
                    snapshot.session,
                    staged.objects,
                    cluster,
                    staged.bytes,
                    scope,
                ),
            )

        await sink._transaction(write, self._connection)


async def _supersede(
    connection: aiosqlite.Connection, cluster: str, resource: str, shard: Shard | None
) -> None:
    """Zero the counts of the resource's other scopes that overlap ``shard``, whose rows a
    snapshot of ``shard`` just replaced (docs/architecture.md#shards: a changed layout)."""
    scope = fencing.scope_text(shard)
    for (other,) in await connection.execute_fetchall(_OTHER_SCOPES, (cluster, resource, scope)):
        if fencing.overlap(shard, fencing.scope_shard(other)):
            await connection.execute(_SUPERSEDED, (cluster, resource, other))


def read_mirror(
    path: str | os.PathLike[str],
    *,
    resource: str,
    cluster: str = DEFAULT_CLUSTER,
    shard: Shard | None = None,
) -> Mirror:
    """Read one resource's mirror (of ``cluster``) from a database file, synchronously (for
    tools and tests).

    Opens the file read-only and reads the objects and the sync state in one transaction, so
    they agree even while a sink is writing. Raises ``FileNotFoundError`` if there is no file.
    A file an older listwatch wrote, not opened by a sink since, is read as it is: its rows
    are the "default" cluster's (what a sink that opens it without a cluster makes them).
    ``objects`` are all the resource's; ``state`` is the sync state of the scope ``shard``
    (None: the whole resource's, written by unsharded writers).
    """
    _base.check_resource(resource)
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no SQLite database at {file}")
    connection = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
    try:
        connection.isolation_level = None
        connection.execute("BEGIN")
        try:
            columns = {row[1] for row in connection.execute("PRAGMA table_info(objects)")}
            if "cluster" in columns:
                rows = connection.execute(_SELECT_OBJECTS, (cluster, resource)).fetchall()
                kept = connection.execute(_SELECT_QUARANTINED, (cluster, resource)).fetchall()
                state = _read_state(connection, cluster, resource, fencing.scope_text(shard))
            else:
                rows, kept, state = _read_older(connection, resource, cluster, columns)
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc) and "no such column" not in str(exc):
                raise
            raise ValueError(f"{file} is not a listwatch SQLite mirror: {exc}") from exc
        finally:
            connection.execute("COMMIT")
    finally:
        connection.close()
    return Mirror(_base.decode_objects(rows), SyncState.from_row(state), _quarantined(kept))


def _read_state(connection: sqlite3.Connection, cluster: str, resource: str, scope: str) -> Any:
    columns = {row[1] for row in connection.execute("PRAGMA table_info(sync_state)")}
    if "shard" in columns:
        return connection.execute(_SELECT_STATE, (cluster, resource, scope)).fetchone()
    if scope:  # a file from before shards holds no shard's state
        return None
    sql = _SELECT_STATE.replace(", shard\n", "\n").replace(" AND shard = ?", "")
    return connection.execute(sql, (cluster, resource)).fetchone()


def _read_older(
    connection: sqlite3.Connection, resource: str, cluster: str, columns: set[str]
) -> tuple[list[Any], list[Any], Any]:
    """What ``read_mirror`` reads of a file of an older schema (before clusters)."""
    if cluster != DEFAULT_CLUSTER:
        return [], [], None
    where = "WHERE resource = ?"
    if "quarantined" in columns:
        rows = connection.execute(
            f"SELECT key, object FROM objects {where} AND quarantined IS NULL ORDER BY key",
            (resource,),
        ).fetchall()
        kept = connection.execute(
            "SELECT key, resource_version, quarantined, raw FROM objects "
            f"{where} AND quarantined IS NOT NULL ORDER BY key",
            (resource,),
        ).fetchall()
    else:
        sql = f"SELECT key, object FROM objects {where} ORDER BY key"
        rows, kept = connection.execute(sql, (resource,)).fetchall(), []
    state = connection.execute(
        "SELECT resource, resource_version, generation, synced_at, listed_at, epoch, session, "
        f"sequence FROM sync_state {where}",
        (resource,),
    ).fetchone()
    return rows, kept, state


def _quarantined(rows: Iterable[Any]) -> dict[str, QuarantinedObject]:
    return {key: QuarantinedObject(rv, why, bytes(raw)) for key, rv, why, raw in rows}


class SQLiteStore(SinkStore[SQLiteSink]):
    """One SQLite file holding several resources of one cluster or many: a ``SQLiteSink``
    per (cluster, resource), opened on first use (the HTTP receiver's store for
    ``--sqlite``). Sinks share the file, and SQLite serialises their writes
    (``busy_timeout``). ``legacy_cluster``: the cluster an older file's rows become."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 30.0,
        legacy_cluster: str = DEFAULT_CLUSTER,
    ) -> None:
        super().__init__(legacy_cluster=legacy_cluster)
        self._path = Path(path)
        self._busy_timeout = busy_timeout

    @property
    def path(self) -> Path:
        return self._path

    async def _prepare(self) -> None:
        if str(self._path) in ("", ":memory:"):
            return  # refused by the sink, with its reason
        connection = await aiosqlite.connect(
            self._path, isolation_level=None, timeout=self._busy_timeout
        )
        try:
            await _prepare_file(connection, self._path, self._legacy_cluster)
        finally:
            await connection.close()

    def _new_sink(self, resource: str, cluster: str) -> SQLiteSink:
        return SQLiteSink(
            self._path, resource=resource, cluster=cluster, busy_timeout=self._busy_timeout
        )
