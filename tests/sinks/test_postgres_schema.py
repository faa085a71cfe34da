"""The PostgreSQL sink's schema: created on first use, versioned, migrated in one
transaction, and a newer version refused before anything changes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import orjson
import pytest

from listwatch import Item, Snapshot, StaleEpoch
from listwatch._shard import Shard, fnv1a64
from listwatch.errors import SchemaError
from listwatch.sinks._postgres_schema import (
    _FNV_FUNCTION,
    MIGRATIONS,
    SCHEMA_VERSION,
    SchemaTarget,
    ensure_schema,
)
from listwatch.sinks.postgres import PostgresSink

from .helpers import by_key, configmap, in_shard, raw_item, snapshot


def _version_6_function(schema: str) -> list[str]:
    """The statement that creates migration 6's hash function, in ``schema``."""
    return [_FNV_FUNCTION.format(s=schema)]


async def version_row(dsn: str, schema: str = "listwatch") -> asyncpg.Record | None:
    connection = await asyncpg.connect(dsn)
    try:
        if (
            await connection.fetchval("SELECT to_regclass($1)", f'"{schema}".schema_version')
            is None
        ):
            return None
        return await connection.fetchrow(
            f'SELECT version, migrated_at FROM "{schema}".schema_version'
        )
    finally:
        await connection.close()


async def test_a_new_database_gets_the_current_version(postgres_dsn: str) -> None:
    connection = await asyncpg.connect(postgres_dsn)
    try:
        assert await ensure_schema(connection, "listwatch") == 0  # it was new
        assert await ensure_schema(connection, "listwatch") == SCHEMA_VERSION  # now current
    finally:
        await connection.close()
    row = await version_row(postgres_dsn)
    assert row is not None
    assert row["version"] == SCHEMA_VERSION == len(MIGRATIONS)


async def test_reopening_a_current_database_changes_nothing(postgres_dsn: str) -> None:
    async with PostgresSink(postgres_dsn, resource="configmaps") as sink:
        await sink.on_list(snapshot(configmap("a")))
    before = await version_row(postgres_dsn)
    async with PostgresSink(postgres_dsn, resource="configmaps") as sink:
        assert await sink.objects() == by_key(configmap("a"))
    assert await version_row(postgres_dsn) == before


async def test_a_newer_schema_version_is_refused(postgres_dsn: str) -> None:
    async with PostgresSink(postgres_dsn, resource="configmaps") as sink:
        await sink.on_list(snapshot(configmap("a")))
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute("UPDATE listwatch.schema_version SET version = 99")
    finally:
        await connection.close()
    sink = PostgresSink(postgres_dsn, resource="configmaps")
    newer = rf"version 99, newer than this listwatch knows \({SCHEMA_VERSION}\)"
    with pytest.raises(SchemaError, match=newer):
        await sink.open()
    with pytest.raises(RuntimeError, match="not open"):
        await sink.count()
    row = await version_row(postgres_dsn)
    assert row is not None
    assert row["version"] == 99


def _version_next(target: SchemaTarget) -> Sequence[str]:
    s = target.schema
    return (
        f"ALTER TABLE {s}.objects ADD COLUMN namespace text "
        "GENERATED ALWAYS AS (object -> 'metadata' ->> 'namespace') STORED",
        f"CREATE INDEX objects_namespace ON {s}.objects (namespace)",
    )


async def test_an_older_schema_is_migrated(postgres_dsn: str) -> None:
    """A database of this version meets code that knows one more."""
    async with PostgresSink(postgres_dsn, resource="configmaps") as sink:
        await sink.on_list(snapshot(configmap("a", namespace="prod")))
    connection = await asyncpg.connect(postgres_dsn)
    try:
        older = len(MIGRATIONS)
        assert await ensure_schema(connection, "listwatch", (*MIGRATIONS, _version_next)) == older
        namespace = await connection.fetchval("SELECT namespace FROM listwatch.objects")
        version = await connection.fetchval("SELECT version FROM listwatch.schema_version")
    finally:
        await connection.close()
    assert (namespace, version) == ("prod", len(MIGRATIONS) + 1)


async def test_a_database_of_version_2_gains_the_staging_tables_and_keeps_its_rows(
    postgres_dsn: str,
) -> None:
    connection = await asyncpg.connect(postgres_dsn)
    try:
        assert await ensure_schema(connection, "listwatch", MIGRATIONS[:2]) == 0
        await connection.execute(
            "INSERT INTO listwatch.objects (resource, key, resource_version, object, "
            "object_sha256, updated_at) VALUES ('configmaps', 'default/old', '1', "
            '\'{"metadata": {"name": "old"}}\', \'\\x00\', now())'
        )
    finally:
        await connection.close()
    async with PostgresSink(postgres_dsn, resource="configmaps") as sink:
        assert set(await sink.objects()) == {"default/old"}
        await sink.on_list(snapshot(configmap("a"), rv="2"))
        assert await sink.objects() == by_key(configmap("a"))
    row = await version_row(postgres_dsn)
    assert row is not None
    assert row["version"] == SCHEMA_VERSION


async def test_a_database_of_version_3_gains_the_quarantine_columns_and_keeps_its_rows(
    postgres_dsn: str,
) -> None:
    connection = await asyncpg.connect(postgres_dsn)
    try:
        assert await ensure_schema(connection, "listwatch", MIGRATIONS[:3]) == 0
        await connection.execute(
            "INSERT INTO listwatch.objects (resource, key, resource_version, object, "
            "object_sha256, updated_at) VALUES ('configmaps', 'default/old', '1', "
            '\'{"metadata": {"name": "old"}}\', \'\\x00\', now())'
        )
    finally:
        await connection.close()
    nul = raw_item("default/nul", "3", b'{"metadata":{"name":"nul"},"data":{"v":"\\u0000"}}')
    async with PostgresSink(postgres_dsn, resource="configmaps") as sink:
        assert set(await sink.objects()) == {"default/old"}
        assert await sink.quarantined() == {}
        await sink.on_list(Snapshot.of([Item.of(configmap("a")), nul], "3"))
        assert await sink.objects() == by_key(configmap("a"))
        assert set(await sink.quarantined()) == {"default/nul"}
    row = await version_row(postgres_dsn)
    assert row is not None
    assert row["version"] == SCHEMA_VERSION


async def test_a_failing_migration_is_rolled_back_whole(postgres_dsn: str) -> None:
    def broken(target: SchemaTarget) -> Sequence[str]:
        s = target.schema
        return (
            f"CREATE TABLE {s}.half_done (x int)",
            f"ALTER TABLE {s}.objects ADD COLUMN broken int GENERATED ALWAYS AS (nonsense) STORED",
        )

    async with PostgresSink(postgres_dsn, resource="configmaps") as sink:
        await sink.on_list(snapshot(configmap("a")))
    before = await version_row(postgres_dsn)
    connection = await asyncpg.connect(postgres_dsn)
    try:
        with pytest.raises(asyncpg.PostgresError):
            await ensure_schema(connection, "listwatch", (*MIGRATIONS, broken))
        assert await connection.fetchval("SELECT to_regclass('listwatch.half_done')") is None
    finally:
        await connection.close()
    assert await version_row(postgres_dsn) == before
    async with PostgresSink(postgres_dsn, resource="configmaps") as sink:
        assert await sink.objects() == by_key(configmap("a"))


async def test_a_schema_holding_foreign_tables_is_refused(postgres_dsn: str) -> None:
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute("CREATE SCHEMA app; CREATE TABLE app.objects (id int)")
    finally:
        await connection.close()
    with pytest.raises(SchemaError, match="did not create"):
        await PostgresSink(postgres_dsn, resource="pods", schema="app").open()
    assert await version_row(postgres_dsn, "app") is None  # nothing of it stayed


async def test_an_emptied_version_table_is_refused(postgres_dsn: str) -> None:
    async with PostgresSink(postgres_dsn, resource="pods"):
        pass
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute("DELETE FROM listwatch.schema_version")
    finally:
        await connection.close()
    with pytest.raises(SchemaError, match="empty"):
        await PostgresSink(postgres_dsn, resource="pods").open()


async def test_sinks_opening_a_new_database_at_once_create_it_once(postgres_dsn: str) -> None:
    sinks = [PostgresSink(postgres_dsn, resource=f"r{i}") for i in range(6)]
    try:
        await asyncio.gather(*(sink.open() for sink in sinks))
        for sink in sinks:
            await sink.on_list(snapshot(configmap(sink.resource)))
    finally:
        await asyncio.gather(*(sink.close() for sink in sinks))
    connection = await asyncpg.connect(postgres_dsn)
    try:
        assert await connection.fetchval("SELECT count(*) FROM listwatch.fence") == 1
        assert await connection.fetchval("SELECT count(*) FROM listwatch.objects") == 6
    finally:
        await connection.close()


async def test_a_database_of_version_5_gains_each_objects_uid_hash_and_the_shard_scope(
    postgres_dsn: str,
) -> None:
    first, second = Shard.of(0, 2), Shard.of(1, 2)
    a, b = in_shard(first, "a", 1), in_shard(second, "b", 2)
    kept = in_shard(first, "kept", 3)
    quarantined = orjson.dumps(in_shard(second, "q", 4)) + b"\xff"  # its uid only in raw
    connection = await asyncpg.connect(postgres_dsn)
    try:
        assert await ensure_schema(connection, "listwatch", MIGRATIONS[:5]) == 0
        await connection.execute(
            "INSERT INTO listwatch.objects (cluster, resource, key, resource_version, object, "
            "object_sha256, updated_at, size) SELECT 'default', 'configmaps', k, '1', "
            "o::jsonb, '\\x00', now(), 1 FROM unnest($1::text[], $2::text[]) AS u(k, o)",
            ["default/a", "default/b", "default/kept"],
            [orjson.dumps(obj).decode() for obj in (a, b, kept)],
        )
        await connection.execute(
            "INSERT INTO listwatch.objects (cluster, resource, key, resource_version, object, "
            "object_sha256, updated_at, size, raw, quarantined) VALUES ('default', "
            "'configmaps', 'default/q', '4', 'null', '\\x00', now(), 1, $1, 'not UTF-8')",
            quarantined,
        )
        await connection.execute(
            "INSERT INTO listwatch.sync_state (cluster, resource, resource_version, generation, "
            "epoch, synced_at, listed_at, session, sequence, object_count, object_bytes) "
            "VALUES ('default', 'configmaps', '4', 2, 700, now(), now(), 's', 0, 4, 4)"
        )
        await connection.execute("UPDATE listwatch.fence SET epoch = 700")
    finally:
        await connection.close()

    async with PostgresSink(postgres_dsn, resource="configmaps") as sink:
        state = await sink.sync_state()
        assert state is not None
        assert (state.epoch, state.shard, state.object_count) == (700, "", 4)
        with pytest.raises(StaleEpoch):  # the old fence is the whole resource's, over all
            await sink.on_list(Snapshot.of([], "5", epoch=699, shard=second))
        # The rows of version 5 have their hashes: shard 1's snapshot replaces a alone,
        # shard 2's the JSON row b and the quarantined q.
        await sink.on_list(Snapshot.of([kept], "5", epoch=700, session="t", shard=first))
        assert set(await sink.objects()) == {"default/b", "default/kept"}
        assert set(await sink.quarantined()) == {"default/q"}
        await sink.on_list(Snapshot.of([], "6", epoch=700, session="t", shard=second))
        assert await sink.objects() == by_key(kept)
        assert await sink.quarantined() == {}
    row = await version_row(postgres_dsn)
    assert row is not None
    assert row["version"] == SCHEMA_VERSION


async def test_the_migrations_hash_is_the_sinks(postgres_dsn: str) -> None:
    """Version 6 computes each stored row's hash in SQL once: the same FNV-1a as Python's,
    for ASCII and multi-byte uids and the empty one."""
    uids = ["", "a", "0f8c4a1e-3b57-4c5e-9e0a-2d1f6b7c8d9e", "ünï-çødé", "x" * 100]
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute("CREATE SCHEMA hashing")
        for statement in _version_6_function("hashing"):
            await connection.execute(statement)
        hashed = [await connection.fetchval("SELECT hashing.lw_uid_hash($1)", u) for u in uids]
    finally:
        await connection.close()
    assert hashed == [fnv1a64(uid) - 2**63 for uid in uids]
