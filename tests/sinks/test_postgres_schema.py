"""The PostgreSQL sink's schema: created on first use, versioned, migrated in one
transaction, and a newer version refused before anything changes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import pytest

from listwatch import Item, Snapshot
from listwatch.errors import SchemaError
from listwatch.sinks._postgres_schema import MIGRATIONS, SCHEMA_VERSION, SchemaTarget, ensure_schema
from listwatch.sinks.postgres import PostgresSink

from .helpers import by_key, configmap, raw_item, snapshot


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
