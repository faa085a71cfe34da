"""A fleet in one database, for every backend: rows, sync state and the fence are scoped by
cluster; each resource's counts (objects, bytes of JSON) follow every write; a sink given
a cluster's caps refuses a write that would take the cluster past one, in its transaction;
and a database written before clusters is migrated with its rows kept, as the cluster the
opener names."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from listwatch import EventType, StaleEpoch
from listwatch.errors import LimitExceeded
from listwatch.sinks import _postgres_schema
from listwatch.sinks._base import Limits, Sink, Usage
from listwatch.sinks.postgres import PostgresSink, PostgresStore
from listwatch.sinks.sqlite import SQLiteSink, SQLiteStore, read_mirror

from .helpers import SinkFactory, batch, by_key, configmap, event, pg_state, snapshot

ADDED, MODIFIED, DELETED = EventType.ADDED, EventType.MODIFIED, EventType.DELETED


def size(*objects: dict[str, Any]) -> int:
    """The bytes of the objects' JSON, as a sink is handed them (``Item.of`` serialises the
    same way)."""
    return sum(len(orjson.dumps(obj)) for obj in objects)


async def test_two_clusters_keep_their_own_rows_of_the_same_keys(
    sink_factory: SinkFactory,
) -> None:
    eu_a, us_a = configmap("a", 1, where="eu"), configmap("a", 7, where="us")
    async with sink_factory.sink(cluster="eu") as eu, sink_factory.sink(cluster="us") as us:
        await eu.on_list(snapshot(eu_a, configmap("b", 2), rv="10"))
        await us.on_list(snapshot(us_a, rv="700"))
        await us.on_batch(batch(event(MODIFIED, configmap("a", 8, where="us2")), rv="800"))

        assert await eu.objects() == by_key(eu_a, configmap("b", 2))
        assert await us.get("default/a") == configmap("a", 8, where="us2")
        eu_state, us_state = await eu.sync_state(), await us.sync_state()
    assert eu_state is not None
    assert us_state is not None
    assert (eu_state.cluster, eu_state.resource_version) == ("eu", "10")
    assert (us_state.cluster, us_state.resource_version) == ("us", "800")
    assert await sink_factory.read("configmaps", "eu") == (
        by_key(eu_a, configmap("b", 2)),
        eu_state,
    )
    assert (await sink_factory.read("configmaps"))[0] == {}  # "default" holds nothing


async def test_an_empty_snapshot_deletes_only_its_clusters_rows(sink_factory: SinkFactory) -> None:
    async with sink_factory.sink(cluster="eu") as eu, sink_factory.sink(cluster="us") as us:
        await eu.on_list(snapshot(configmap("a"), configmap("b"), rv="10"))
        await us.on_list(snapshot(configmap("a"), configmap("c"), rv="10"))
        await eu.on_list(snapshot(rv="11", generation=2))
        assert await eu.objects() == {}
        assert set(await us.objects()) == {"default/a", "default/c"}
    assert set((await sink_factory.read("configmaps", "us"))[0]) == {"default/a", "default/c"}


async def test_epochs_are_compared_only_within_a_cluster(sink_factory: SinkFactory) -> None:
    """Each cluster's epochs are its own etcd's revisions: a cluster whose etcd is younger
    (lower epochs) writes beside one whose etcd is older, and is fenced against itself."""
    async with (
        sink_factory.sink(cluster="old-etcd") as old,
        sink_factory.sink("pods", cluster="young-etcd") as young,
        sink_factory.sink("configmaps", cluster="young-etcd") as young_configmaps,
    ):
        await old.on_list(snapshot(configmap("a"), rv="90000", epoch=88000))
        await young.on_list(snapshot(configmap("p"), rv="120", epoch=100))
        await young_configmaps.on_list(snapshot(configmap("c"), rv="130", epoch=101))
        with pytest.raises(StaleEpoch, match="epoch 100: the receiver has recorded epoch 101"):
            await young.on_batch(batch(event(ADDED, configmap("q")), rv="131", epoch=100))
        assert set(await young.objects()) == {"default/p"}
        await old.on_batch(batch(event(ADDED, configmap("b")), rv="90001", epoch=88000))
        assert set(await old.objects()) == {"default/a", "default/b"}


async def test_each_resource_counts_its_objects_and_their_bytes(sink_factory: SinkFactory) -> None:
    a, b, c = configmap("a", 1), configmap("b", 2), configmap("c", 3, big="x" * 5000)
    async with sink_factory.sink(cluster="eu") as sink:
        await sink.on_list(snapshot(a, b, rv="10"))
        state = await sink.sync_state()
        assert state is not None
        assert (state.object_count, state.object_bytes) == (2, size(a, b))

        a2 = configmap("a", 11, more="y" * 300)
        await sink.on_batch(batch(event(MODIFIED, a2), event(ADDED, c), event(DELETED, b), rv="12"))
        await sink.on_batch(batch(event(DELETED, configmap("never-held")), rv="13"))
        state = await sink.sync_state()
        assert state is not None
        assert (state.object_count, state.object_bytes) == (2, size(a2, c))
        assert await sink.cluster_usage() == {"configmaps": Usage(2, size(a2, c))}
    assert await sink_factory.sizes() == {("eu", "configmaps"): (2, size(a2, c))}


async def test_a_cap_on_objects_refuses_a_snapshot_that_would_pass_it(
    sink_factory: SinkFactory,
) -> None:
    async with (
        sink_factory.sink("pods", cluster="eu") as pods,
        sink_factory.sink(cluster="eu") as configmaps,
        sink_factory.sink(cluster="us") as other,
    ):
        await pods.on_list(snapshot(configmap("p1"), configmap("p2"), rv="5"))
        configmaps.limits = Limits(max_objects=4)
        await configmaps.on_list(snapshot(configmap("a"), configmap("b"), rv="10"))
        with pytest.raises(LimitExceeded) as refused:
            await configmaps.on_list(snapshot(*(configmap(n) for n in "abc"), rv="11"))
        assert (refused.value.cluster, refused.value.limit) == ("eu", "max_objects")
        assert (refused.value.maximum, refused.value.would) == (4, 5)
        assert "over its max_objects of 4" in str(refused.value)
        assert set(await configmaps.objects()) == {"default/a", "default/b"}
        # Another cluster has caps of its own (none here).
        await other.on_list(snapshot(*(configmap(n) for n in "abcdefg"), rv="3"))
        assert await other.count() == 7


async def test_a_cap_refuses_a_batch_that_grows_the_cluster_past_it_and_not_one_that_shrinks(
    sink_factory: SinkFactory,
) -> None:
    a, b = configmap("a"), configmap("b")
    async with sink_factory.sink(cluster="eu") as sink:
        await sink.on_list(snapshot(a, b, rv="10"))
        sink.limits = Limits(max_bytes=size(a, b) + 10)
        with pytest.raises(LimitExceeded, match="max_bytes"):
            await sink.on_batch(batch(event(MODIFIED, configmap("a", 2, pad="z" * 50)), rv="11"))
        assert await sink.get("default/a") == a
        state = await sink.sync_state()
        assert state is not None
        assert state.resource_version == "10"

        # The cap lowered below what the cluster holds: a write that shrinks it applies.
        sink.limits = Limits(max_objects=1)
        await sink.on_batch(batch(event(MODIFIED, configmap("a", 3)), rv="12"))
        with pytest.raises(LimitExceeded, match="max_objects"):
            await sink.on_batch(batch(event(ADDED, configmap("c")), rv="13"))
        await sink.on_batch(batch(event(DELETED, b), rv="14"))
        assert set(await sink.objects()) == {"default/a"}


# -- databases written before clusters ---------------------------------------------------


async def test_a_postgres_schema_of_version_4_becomes_the_named_cluster(
    postgres_dsn: str,
) -> None:
    a, b = configmap("a", 5), configmap("b", 6)
    async with PostgresSink(postgres_dsn, resource="configmaps") as sink:
        await sink.on_list(snapshot(a, b, rv="10", epoch=4200))
    connection = await asyncpg.connect(postgres_dsn)
    try:  # back to version 4, as the listwatch before clusters left it
        await connection.execute("DROP SCHEMA listwatch CASCADE")
        assert (
            await _postgres_schema.ensure_schema(
                connection, "listwatch", _postgres_schema.MIGRATIONS[:4]
            )
            == 0
        )
        await connection.execute(
            "INSERT INTO listwatch.objects (resource, key, resource_version, object, "
            "object_sha256, updated_at) SELECT 'configmaps', k, '5', o::jsonb, '\\x00', now() "
            "FROM unnest($1::text[], $2::text[]) AS u(k, o)",
            ["default/a", "default/b"],
            [orjson.dumps(a).decode(), orjson.dumps(b).decode()],
        )
        await connection.execute(
            "INSERT INTO listwatch.sync_state (resource, resource_version, generation, epoch, "
            "synced_at, listed_at, session, sequence) "
            "VALUES ('configmaps', '10', 1, 4200, now(), now(), 's', 0)"
        )
        await connection.execute("UPDATE listwatch.fence SET epoch = 4200")
    finally:
        await connection.close()

    store = await PostgresStore.connect(postgres_dsn, legacy_cluster="prod-eu")
    async with store:
        legacy = await store.sink("configmaps", cluster="prod-eu")
        assert await legacy.objects() == by_key(a, b)
        state = await legacy.sync_state()
        assert state is not None
        assert (state.cluster, state.resource_version, state.epoch) == ("prod-eu", "10", 4200)
        assert state.object_count == 2
        assert state.object_bytes > 0
        with pytest.raises(StaleEpoch):  # its fence came along
            await legacy.on_batch(batch(event(ADDED, configmap("c")), rv="11", epoch=4199))
        newcomer = await store.sink("configmaps", cluster="dev")
        await newcomer.on_list(snapshot(configmap("x"), rv="3", epoch=1))
        assert set(await newcomer.objects()) == {"default/x"}
    assert (await pg_state(postgres_dsn, "configmaps")) is None  # nothing became "default"


_SQLITE_VERSION_2 = (
    """
    CREATE TABLE objects (resource TEXT NOT NULL, key TEXT NOT NULL,
        resource_version TEXT NOT NULL, object TEXT NOT NULL, updated_at REAL NOT NULL,
        PRIMARY KEY (resource, key))
    """,
    """
    CREATE TABLE sync_state (resource TEXT PRIMARY KEY, resource_version TEXT NOT NULL,
        generation INTEGER NOT NULL, synced_at REAL NOT NULL, listed_at REAL,
        epoch INTEGER NOT NULL DEFAULT 0, session TEXT NOT NULL DEFAULT '',
        sequence INTEGER NOT NULL DEFAULT 0)
    """,
    "PRAGMA user_version=2",
)


def sqlite_version_2(path: Path, *objects: dict[str, Any], epoch: int) -> None:
    """A file as listwatch wrote it before clusters (schema version 2)."""
    connection = sqlite3.connect(path)
    try:
        for statement in _SQLITE_VERSION_2:
            connection.execute(statement)
        connection.executemany(
            "INSERT INTO objects VALUES ('configmaps', ?, '5', ?, 0)",
            [(f"default/{o['metadata']['name']}", orjson.dumps(o).decode()) for o in objects],
        )
        connection.execute(
            "INSERT INTO sync_state VALUES ('configmaps', '10', 1, 0, 0, ?, 's', 0)", (epoch,)
        )
        connection.commit()
    finally:
        connection.close()


async def test_an_sqlite_file_of_version_2_becomes_the_named_cluster(tmp_path: Path) -> None:
    path, a, b = tmp_path / "mirror.db", configmap("a", 5), configmap("b", 6, x="yz")
    sqlite_version_2(path, a, b, epoch=4200)

    async with SQLiteStore(path, legacy_cluster="prod-eu") as store:
        legacy = await store.sink("configmaps", cluster="prod-eu")
        assert await legacy.objects() == by_key(a, b)
        state = await legacy.sync_state()
        assert state is not None
        assert (state.cluster, state.epoch, state.object_count) == ("prod-eu", 4200, 2)
        assert state.object_bytes == size(a, b)
        with pytest.raises(StaleEpoch):
            await legacy.on_batch(batch(event(ADDED, configmap("c")), rv="11", epoch=4199))
        newcomer = await store.sink("configmaps", cluster="dev")
        await newcomer.on_list(snapshot(configmap("x"), rv="3", epoch=1))
    assert read_mirror(path, resource="configmaps", cluster="prod-eu").objects == by_key(a, b)
    assert read_mirror(path, resource="configmaps").state is None


async def test_a_lone_sink_migrates_an_older_file_into_its_own_cluster(tmp_path: Path) -> None:
    path, a = tmp_path / "mirror.db", configmap("a", 5)
    sqlite_version_2(path, a, epoch=0)
    async with SQLiteSink(path, resource="configmaps") as sink:
        assert await sink.objects() == by_key(a)
    assert read_mirror(path, resource="configmaps").objects == by_key(a)


@pytest.mark.parametrize("name", ["", "-eu", "eu-", "a b", "x" * 64, "eu/1", "é"])
def test_a_cluster_name_must_be_one_an_operator_types(sink_factory: SinkFactory, name: str) -> None:
    with pytest.raises(ValueError, match="cluster must be 1 to 63"):
        sink_factory.sink(cluster=name)


def test_sinks_refuse_a_negative_cap() -> None:
    with pytest.raises(ValueError, match="max_objects must be zero or a positive"):
        Limits(max_objects=-1)


async def test_a_store_opens_one_sink_per_cluster_and_resource(
    sink_factory: SinkFactory,
) -> None:
    async with await sink_factory.store() as store:
        eu, us = await store.sink("pods", cluster="eu"), await store.sink("pods", cluster="us")
        default = await store.sink("pods")
        assert len({id(eu), id(us), id(default)}) == 3
        assert await store.sink("pods", cluster="eu") is eu
        sinks: list[Sink[Any]] = [eu, us, default]
        assert [sink.cluster for sink in sinks] == ["eu", "us", "default"]
