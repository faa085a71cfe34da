"""One bad object never stops a resource: real ``listwatch`` processes, real PostgreSQL and
SQLite, the fake API server.

An object the mirror cannot store as JSON as it is (a ConfigMap holding U+0000, which
PostgreSQL's jsonb refuses; a watch event nested 2,000 deep, or holding bytes that are not
UTF-8, which no JSON reader of the mirror could read) is quarantined: kept byte for byte
beside the JSON rows, named in a WARNING (never quoted), counted by a metric, named in
``/readyz`` (which stays 200), and the rest of the resource, later changes included, keeps
syncing in the same generation: no relist, however many times the object comes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from listwatch.sinks.sqlite import read_mirror
from listwatch.testing import FakeApiServer, Fault, RecordedRequest
from tests.cli.helpers import eventually
from tests.objects import configmap
from tests.processes import ListwatchProcess, running

CONFIGMAPS = "/api/v1/configmaps"
SECRET = "secret-value-never-logged"
"""Part of the bad object's body: no line, metric or probe may show it."""
NUL_REASON = "it holds the character U+0000, which PostgreSQL's jsonb cannot store"
TOKEN = "quarantine-token"
FAST = ("--merge-interval", "0.05", "--metrics-address", "127.0.0.1:0")


def listings(server: FakeApiServer) -> list[RecordedRequest]:
    """The requests that open a generation: a streaming list, or a LIST's first page (the
    preflight's ``limit=1`` LIST is not one)."""
    return [
        r
        for r in server.requests
        if r.path == CONFIGMAPS
        and (
            r.query.get("sendInitialEvents") == "true"
            or (not r.watch and r.query.get("limit") != "1" and "continue" not in r.query)
        )
    ]


async def probes(mirror: ListwatchProcess) -> str:
    return (await mirror.wait_for_line(r"metrics and health on (http://\S+)/metrics")).group(1)


async def readyz(base: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as response:
        return response.status, await response.json()


async def metric(base: str, name: str) -> float | None:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as response:
        text = await response.text()
    found = re.search(
        rf'^{name}{{group="",resource="configmaps",version="v1"}} ([\d.e+]+)$', text, re.M
    )
    return float(found.group(1)) if found else None


async def pg_rows(dsn: str) -> dict[str, asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        if not await connection.fetchval("SELECT to_regclass('listwatch.objects') IS NOT NULL"):
            return {}
        rows = await connection.fetch(
            "SELECT key, resource_version, object::text AS object, raw, quarantined "
            "FROM listwatch.objects WHERE resource = 'configmaps'"
        )
    finally:
        await connection.close()
    return {row["key"]: row for row in rows}


def server_versions(server: FakeApiServer) -> dict[str, str]:
    return {
        f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
        for o in server.objects("v1", "ConfigMap")
    }


async def pg_versions_equal(dsn: str, server: FakeApiServer) -> dict[str, asyncpg.Record] | None:
    rows = await pg_rows(dsn)
    have = {key: row["resource_version"] for key, row in rows.items()}
    return rows if have == server_versions(server) else None


@contextlib.asynccontextmanager
async def receiver_process(dsn: str, tmp_path: Path) -> AsyncIterator[tuple[ListwatchProcess, str]]:
    token = tmp_path / "receiver-token"
    token.write_text(TOKEN)
    args = ("receiver", "--listen", "127.0.0.1:0", "--postgres", dsn, "--token-file", str(token))
    async with running("receiver", *args) as receiver:
        url = (await receiver.wait_for_line(r"serving (http://127\.0\.0\.1:\d+)")).group(1)
        yield receiver, url


@pytest.mark.parametrize("through", ["postgres", "http"])
async def test_a_configmap_holding_nul_is_quarantined_and_the_resource_keeps_syncing(
    server: FakeApiServer,
    kubeconfig: Path,
    tmp_path: Path,
    postgres_dsn: str,
    through: str,
) -> None:
    """``mirror --postgres``, and ``mirror --http`` into ``receiver --postgres``: the
    ConfigMap holding U+0000 is kept as the bytes the API server sent, the others and every
    later change are written in the same generation, the mirror's WARNING names it (and the
    receiver's, over HTTP), ``listwatch_quarantined_objects`` counts it, ``/readyz`` names
    it and stays 200. Once the ConfigMap no longer holds a NUL it is JSON again."""
    await server.create(configmap("a", v="1"))
    await server.create(configmap("nul", v=f"{SECRET}\x00end"))
    await server.create(configmap("b", v="1"))
    async with contextlib.AsyncExitStack() as stack:
        receiver: ListwatchProcess | None = None
        if through == "http":
            started = receiver_process(postgres_dsn, tmp_path)
            receiver, url = await stack.enter_async_context(started)
            token = tmp_path / "token"
            token.write_text(TOKEN)
            target = ["--http", url, "--http-token-file", str(token)]
        else:
            target = ["--postgres", postgres_dsn]
        args = ["mirror", "configmaps", "--kubeconfig", str(kubeconfig), *target, *FAST]
        # Every byte as the server sent it, managedFields included: read back byte for byte.
        mirror = await stack.enter_async_context(
            running("mirror", *args, "--no-strip-managed-fields")
        )
        base = await probes(mirror)
        await mirror.wait_for_line(r"^listwatch mirror: configmaps: synced 3 objects")
        warning = (
            r"WARNING listwatch: configmaps: configmaps default/nul is quarantined: "
            rf"{re.escape(NUL_REASON)}; the receiver keeps its bytes, not its JSON$"
        )
        await mirror.wait_for_line(warning)
        if receiver is not None:
            await receiver.wait_for_line(
                r"WARNING listwatch\.httpsync\._server: configmaps: cluster default: configmaps "
                rf"default/nul is quarantined: {re.escape(NUL_REASON)}; the store keeps its "
                r"bytes, not its JSON$"
            )
        rows = await pg_rows(postgres_dsn)
        sent = server.get("v1", "ConfigMap", "nul")
        assert rows["default/nul"]["raw"] == orjson.dumps(sent)  # byte for byte
        assert orjson.loads(rows["default/nul"]["raw"])["data"]["v"] == f"{SECRET}\x00end"
        assert rows["default/nul"]["object"] == "null"
        assert rows["default/nul"]["quarantined"] == NUL_REASON
        assert orjson.loads(rows["default/a"]["object"]) == server.get("v1", "ConfigMap", "a")
        assert rows["default/a"]["raw"] is None
        assert await metric(base, "listwatch_quarantined_objects") == 1.0
        status, body = await readyz(base)
        assert status == 200, body
        entry = body["resources"]["configmaps"]
        assert (entry["ready"], entry["quarantined"]) == (True, 1)
        assert entry["quarantined_objects"] == {"default/nul": NUL_REASON}
        assert body["quarantined"] == ["configmaps"]

        # Later changes, the bad object's among them, keep syncing: no relist.
        await server.wait_for_watchers(1)
        await server.create(configmap("c", v="1"))
        await server.replace(
            {**server.get("v1", "ConfigMap", "nul"), "data": {"v": f"{SECRET}\x00again"}}
        )
        await server.replace({**server.get("v1", "ConfigMap", "a"), "data": {"v": "2"}})
        rows = await eventually(
            lambda: pg_versions_equal(postgres_dsn, server), what="the mirror equals the cluster"
        )
        assert orjson.loads(rows["default/nul"]["raw"])["data"]["v"] == f"{SECRET}\x00again"
        assert orjson.loads(rows["default/a"]["object"])["data"] == {"v": "2"}
        assert len(listings(server)) == 1
        assert await metric(base, "listwatch_objects_quarantined_total") == 2.0

        # Without the NUL it is an ordinary row again, and /readyz says nothing of it.
        await server.replace({**server.get("v1", "ConfigMap", "nul"), "data": {"v": "plain"}})
        rows = await eventually(
            lambda: pg_versions_equal(postgres_dsn, server), what="the fix reaches the mirror"
        )
        assert rows["default/nul"]["quarantined"] is None
        assert orjson.loads(rows["default/nul"]["object"])["data"] == {"v": "plain"}
        await eventually(
            lambda: metric(base, "listwatch_quarantined_objects"),
            what="the gauge is read",
        )
        assert await metric(base, "listwatch_quarantined_objects") == 0.0
        status, body = await readyz(base)
        assert status == 200, body
        assert "quarantined" not in body["resources"]["configmaps"], body
        assert len(listings(server)) == 1
        assert await mirror.stop() == 0
    for process in (mirror, *([receiver] if receiver else [])):
        assert SECRET not in process.text()
        assert "Traceback" not in process.text()
        assert "unexpected" not in process.text()


def deep_event(name: str, rv: str, depth: int) -> tuple[bytes, bytes]:
    """A watch line whose ConfigMap-like object nests ``depth`` levels, and the object."""
    obj = (
        b'{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"'
        + name.encode()
        + b'","namespace":"default","resourceVersion":"'
        + rv.encode()
        + b'"},"data":'
        + b'{"a":' * (depth - 2)
        + b'"'
        + SECRET.encode()
        + b'"'
        + b"}" * (depth - 2)
        + b"}"
    )
    return b'{"type":"ADDED","object":' + obj + b"}", obj


def bad_utf8_event(name: str, rv: str) -> tuple[bytes, bytes]:
    """A watch line whose object holds bytes that are not UTF-8, in its name too."""
    obj = (
        b'{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"'
        + name.encode()
        + b'\xff","namespace":"default","resourceVersion":"'
        + rv.encode()
        + b'"},"data":{"v":"'
        + SECRET.encode()
        + b'\xc3\x28"}}'
    )
    return b'{"type":"ADDED","object":' + obj + b"}", obj


async def sqlite_quarantined(db: Path) -> dict[str, Any] | None:
    try:
        mirror = await asyncio.to_thread(read_mirror, db, resource="configmaps")
    except (FileNotFoundError, ValueError, sqlite3.OperationalError):
        return None
    return {"objects": mirror.objects, "quarantined": mirror.quarantined}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Where the mirror writes: its name, and the DSN for PostgreSQL."""
    name: str = request.param
    return name, "" if name == "sqlite" else request.getfixturevalue("postgres_dsn")


async def test_watch_events_nested_2000_deep_or_not_utf8_are_quarantined_without_a_relist(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path, store: tuple[str, str]
) -> None:
    """The fake sends, inside the streaming list, an event nested 2,000 deep (msgspec stops
    at about 1,000), and later, on a resumed watch, one that is not UTF-8 (in its name too).
    Each is keyed by a tolerant scan, kept byte for byte, named in a WARNING: no "unexpected"
    error, no relist, and the changes after them keep arriving."""
    await server.create(configmap("a", v="1"))
    await server.create(configmap("b", v="1"))
    deep_line, deep = deep_event("deep", "2", 2000)
    server.inject(Fault.raw_line(deep_line, after_events=1), path=CONFIGMAPS, watch=True)
    if store[0] == "sqlite":
        db = tmp_path / "mirror.db"
        target = ["--sqlite", str(db)]

        async def kept() -> dict[str, tuple[str, bytes]]:
            found = await sqlite_quarantined(db)
            held = found["quarantined"] if found else {}
            return {key: (q.reason, q.raw) for key, q in held.items()}

        async def plain() -> set[str]:
            found = await sqlite_quarantined(db)
            return set(found["objects"]) if found else set()
    else:
        dsn = store[1]
        target = ["--postgres", dsn]

        async def kept() -> dict[str, tuple[str, bytes]]:
            rows = await pg_rows(dsn)
            return {k: (r["quarantined"], r["raw"]) for k, r in rows.items() if r["raw"]}

        async def plain() -> set[str]:
            return {k for k, r in (await pg_rows(dsn)).items() if r["raw"] is None}

    args = ["mirror", "configmaps", "--kubeconfig", str(kubeconfig), *target, *FAST]
    async with running("mirror", *args) as mirror:
        base = await probes(mirror)
        await mirror.wait_for_line(r"^listwatch mirror: configmaps: synced 3 objects")
        await mirror.wait_for_line(
            r"WARNING listwatch: configmaps: configmaps default/deep is quarantined: it nests "
            r"deeper than 512 levels; the receiver keeps its bytes, not its JSON$"
        )
        assert (await kept())["default/deep"] == ("it nests deeper than 512 levels", deep)
        assert await plain() == {"default/a", "default/b"}

        # A resumed watch: the line that is not UTF-8 first, then the cluster's changes.
        bad_line, bad = bad_utf8_event("bad", str(server.resource_version))
        server.inject(Fault.raw_line(bad_line), path=CONFIGMAPS, watch=True)
        await server.wait_for_watchers(1)
        assert server.cut_watches() == 1
        await mirror.wait_for_line(
            r"WARNING listwatch: configmaps: configmaps default/bad\ufffd is quarantined: its "
            r"JSON is not valid UTF-8 \(byte \d+\); the receiver keeps its bytes, not its JSON$"
        )
        await server.create(configmap("c", v="1"))
        await eventually(
            lambda: _contains(plain, "default/c"), what="a change after the bad events arrives"
        )
        held = await kept()
        assert held["default/bad\ufffd"][1] == bad
        assert held["default/deep"][1] == deep
        assert len(listings(server)) == 1  # one generation: nothing relisted
        watches = [r for r in server.requests if r.path == CONFIGMAPS and r.watch]
        assert len(watches) == 2  # the streaming list's, and the one resumed after the cut
        assert await metric(base, "listwatch_quarantined_objects") == 2.0
        status, body = await readyz(base)
        assert status == 200, body
        assert set(body["resources"]["configmaps"]["quarantined_objects"]) == {
            "default/deep",
            "default/bad\ufffd",
        }
        assert await mirror.stop() == 0
    text = mirror.text()
    assert SECRET not in text
    assert "Traceback" not in text
    assert "unexpected" not in text
    assert "RecursionError" not in text
    assert "UnicodeDecodeError" not in text


async def _contains(check: Callable[[], Any], key: str) -> bool:
    return key in await check()
