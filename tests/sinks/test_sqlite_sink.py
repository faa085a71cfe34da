"""What only SQLiteSink does (the sink contract itself is test_contract.py): the file and its
WAL mode, schema versions, what it refuses to open, other tools reading the JSON, and
``read_mirror``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from listwatch import Item, Snapshot, object_key
from listwatch._shard import Shard, fnv1a64
from listwatch.sinks.sqlite import SCHEMA_VERSION, Mirror, SQLiteSink, read_mirror

from .helpers import by_key, configmap, in_shard, nested, raw_item, snapshot, sqlite_connect

# -- lifecycle and schema --------------------------------------------------------------------


async def test_open_creates_the_schema_in_wal_mode(db: Path) -> None:
    async with SQLiteSink(db, resource="pods") as sink:
        assert await sink.count() == 0
        assert await sink.objects() == {}
        assert await sink.sync_state() is None
        connection = sqlite_connect(db)
        try:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            columns = {
                table: {row["name"] for row in connection.execute(f"PRAGMA table_info({table})")}
                for table in ("objects", "sync_state")
            }
        finally:
            connection.close()
    assert columns["objects"] >= {"resource", "key", "resource_version", "object"}
    assert columns["sync_state"] >= {"resource", "resource_version", "generation", "synced_at"}


@pytest.mark.parametrize("path", ["", ":memory:", "file::memory:?cache=shared"])
def test_in_memory_databases_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="file path"):
        SQLiteSink(path, resource="pods")


async def test_a_foreign_objects_table_is_refused(db: Path) -> None:
    connection = sqlite3.connect(db)
    connection.execute("CREATE TABLE objects (id INTEGER PRIMARY KEY, name TEXT)")
    connection.commit()
    connection.close()
    sink = SQLiteSink(db, resource="pods")
    with pytest.raises(RuntimeError, match="did not create"):
        await sink.open()
    with pytest.raises(RuntimeError, match="not open"):
        await sink.count()


async def test_a_file_of_the_previous_schema_gains_the_stamp_columns(db: Path) -> None:
    connection = sqlite3.connect(db)
    connection.executescript(
        """
        CREATE TABLE objects (resource TEXT NOT NULL, key TEXT NOT NULL,
            resource_version TEXT NOT NULL, object TEXT NOT NULL, updated_at REAL NOT NULL,
            PRIMARY KEY (resource, key));
        CREATE TABLE sync_state (resource TEXT PRIMARY KEY, resource_version TEXT NOT NULL,
            generation INTEGER NOT NULL, synced_at REAL NOT NULL, listed_at REAL);
        INSERT INTO objects VALUES ('configmaps', 'default/a', '1', '{"metadata":{}}', 0);
        INSERT INTO sync_state VALUES ('configmaps', '1', 4, 0, 0);
        """
    )
    connection.close()
    async with SQLiteSink(db, resource="configmaps") as sink:
        state = await sink.sync_state()
        assert state is not None
        assert (state.generation, state.epoch, state.session, state.sequence) == (4, 0, "", 0)
        await sink.on_list(
            Snapshot.of([configmap("b", 2)], "2", generation=1, epoch=1, session="s")
        )
    connection = sqlite3.connect(db)
    try:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        connection.close()


async def test_a_file_of_version_2_is_read_and_gains_the_quarantine_columns(db: Path) -> None:
    connection = sqlite3.connect(db)
    connection.executescript(
        """
        CREATE TABLE objects (resource TEXT NOT NULL, key TEXT NOT NULL,
            resource_version TEXT NOT NULL, object TEXT NOT NULL, updated_at REAL NOT NULL,
            PRIMARY KEY (resource, key));
        CREATE TABLE sync_state (resource TEXT PRIMARY KEY, resource_version TEXT NOT NULL,
            generation INTEGER NOT NULL, synced_at REAL NOT NULL, listed_at REAL,
            epoch INTEGER NOT NULL DEFAULT 0, session TEXT NOT NULL DEFAULT '',
            sequence INTEGER NOT NULL DEFAULT 0);
        INSERT INTO objects VALUES ('configmaps', 'default/a', '1', '{"metadata":{}}', 0);
        PRAGMA user_version=2;
        """
    )
    connection.close()
    assert read_mirror(db, resource="configmaps").objects == {"default/a": {"metadata": {}}}
    deep = raw_item("default/deep", "2", nested(600))
    async with SQLiteSink(db, resource="configmaps") as sink:
        assert await sink.objects() == {"default/a": {"metadata": {}}}
        await sink.on_list(Snapshot.of([Item.of(configmap("b", 2)), deep], "2"))
    mirror = read_mirror(db, resource="configmaps")
    assert mirror.objects == by_key(configmap("b", 2))
    assert mirror.quarantined["default/deep"].raw == nested(600)
    connection = sqlite3.connect(db)
    try:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        connection.close()


async def test_a_file_of_a_newer_schema_is_refused(db: Path) -> None:
    connection = sqlite3.connect(db)
    connection.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(RuntimeError, match="newer than this listwatch"):
        async with SQLiteSink(db, resource="configmaps"):
            pass


# -- other readers ---------------------------------------------------------------------------


async def test_other_tools_can_query_the_json(sqlite_sink: SQLiteSink, db: Path) -> None:
    await sqlite_sink.on_list(
        snapshot(configmap("a", tier="web"), configmap("b", tier="db"), configmap("c", tier="web"))
    )
    connection = sqlite_connect(db)
    try:
        names = connection.execute(
            "SELECT json_extract(object, '$.metadata.name') FROM objects "
            "WHERE resource = 'configmaps' AND json_extract(object, '$.data.tier') = 'web' "
            "ORDER BY key"
        ).fetchall()
    finally:
        connection.close()
    assert [row[0] for row in names] == ["a", "c"]


async def test_a_nul_character_is_stored(sqlite_sink: SQLiteSink, db: Path) -> None:
    """Unlike PostgreSQL's jsonb (test_postgres_sink.py), SQLite's TEXT holds JSON's \\u0000
    (the contract's property test leaves U+0000 out, for that reason)."""
    obj = configmap("a", 1, v="x\x00y")
    await sqlite_sink.on_list(snapshot(obj))
    assert await sqlite_sink.get("default/a") == obj
    assert read_mirror(db, resource="configmaps").objects == by_key(obj)


async def test_read_mirror_reads_objects_and_state_synchronously(
    sqlite_sink: SQLiteSink, db: Path
) -> None:
    a = configmap("a", 1)
    await sqlite_sink.on_list(snapshot(a, rv="10", generation=4))
    mirror = read_mirror(db, resource="configmaps")
    assert isinstance(mirror, Mirror)
    assert mirror.objects == by_key(a)
    assert mirror.state == await sqlite_sink.sync_state()
    assert read_mirror(db, resource="pods") == Mirror({}, None)


def test_read_mirror_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_mirror(tmp_path / "missing.db", resource="pods")
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    with pytest.raises(ValueError, match="not a listwatch"):
        read_mirror(other, resource="pods")


SCHEMA_4 = """
    CREATE TABLE objects (cluster TEXT NOT NULL, resource TEXT NOT NULL, key TEXT NOT NULL,
        resource_version TEXT NOT NULL, object TEXT NOT NULL, raw BLOB, quarantined TEXT,
        size INTEGER NOT NULL, updated_at REAL NOT NULL, PRIMARY KEY (cluster, resource, key));
    CREATE TABLE sync_state (cluster TEXT NOT NULL, resource TEXT NOT NULL,
        resource_version TEXT NOT NULL, generation INTEGER NOT NULL, synced_at REAL NOT NULL,
        listed_at REAL, epoch INTEGER NOT NULL DEFAULT 0, session TEXT NOT NULL DEFAULT '',
        sequence INTEGER NOT NULL DEFAULT 0, object_count INTEGER NOT NULL DEFAULT 0,
        object_bytes INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (cluster, resource));
    PRAGMA user_version=4;
"""


async def test_a_file_of_version_4_gains_each_objects_uid_hash_and_the_shard_scope(
    db: Path,
) -> None:
    first, second = Shard.of(0, 2), Shard.of(1, 2)
    a, b = in_shard(first, "a", 1), in_shard(second, "b", 2)
    connection = sqlite3.connect(db)
    connection.executescript(SCHEMA_4)
    for obj in (a, b):
        text = orjson.dumps(obj).decode()
        connection.execute(
            "INSERT INTO objects VALUES ('default', 'configmaps', ?, ?, ?, NULL, NULL, ?, 0)",
            (object_key(obj), obj["metadata"]["resourceVersion"], text, len(text)),
        )
    connection.execute(
        "INSERT INTO sync_state VALUES ('default', 'configmaps', '2', 3, 0, 0, 7, 's', 1, 2, 9)"
    )
    connection.commit()
    connection.close()
    assert read_mirror(db, resource="configmaps").state is not None  # read as it is

    async with SQLiteSink(db, resource="configmaps") as sink:
        state = await sink.sync_state()
        assert state is not None
        assert (state.epoch, state.generation, state.shard, state.object_count) == (7, 3, "", 2)
        # The old rows have their hashes: shard 1's empty snapshot deletes a only.
        await sink.on_list(Snapshot.of([], "5", epoch=7, session="t", shard=first))
        assert await sink.objects() == by_key(b)
    connection = sqlite3.connect(db)
    try:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        hashes = connection.execute("SELECT uid_hash FROM objects").fetchall()
        assert hashes == [(fnv1a64(b["metadata"]["uid"]) - 2**63,)]
    finally:
        connection.close()
