"""Senders that open a snapshot and go silent hold up nobody: a ``listwatch receiver``
process, over SQLite and over PostgreSQL.

Twelve raw clients with the valid token each send a snapshot request's headers and part of
its body (the header record and a few objects), then stop, the connection left open: more
silent snapshots than the receiver's PostgreSQL pool has connections (10), of the resource
the next sender writes and of another; and a silent batch of each resource. While all twelve
are open at the receiver, a sender of a newer epoch sends a snapshot and a batch of each
resource: every request completes, none is refused with "database is locked", and the
database holds what it sent. The silent snapshots, staged and never committed, change
nothing.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from listwatch import Batch, Event, EventType, GroupVersionResource, Item, Snapshot
from listwatch.httpsync import HttpSink
from listwatch.httpsync import _wire as protocol
from listwatch.sinks.sqlite import read_mirror
from tests.cli.helpers import eventually
from tests.objects import configmap, pod
from tests.processes import ListwatchProcess

TOKEN = "silent-senders-token"
SILENT = {"pods": 8, "configmaps": 4}
"""Silent snapshots by resource: twelve, more than the PostgreSQL pool's ten connections."""
WRITE_WITHIN = 20.0
"""Bound on the new sender's four requests, below the receiver's SQLite busy timeout (30 s):
a write that waited for a silent snapshot's lock would not make it."""


def make(resource: str, name: str, rv: int) -> dict[str, Any]:
    """A pod or a config map named ``name`` at resourceVersion ``rv``."""
    obj = pod(name) if resource == "pods" else configmap(name, v=name)
    obj["metadata"]["resourceVersion"] = str(rv)
    return obj


def gvr(resource: str) -> GroupVersionResource:
    return GroupVersionResource("", "v1", resource)


async def silent_request(
    url: str, resource: str, number: int, kind: protocol.Kind = "snapshot"
) -> asyncio.StreamWriter:
    """A snapshot (or batch) request that sends its headers, the header record and three
    records (one HTTP chunk), then nothing more; the caller closes the connection."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    sequence = 0 if kind == "snapshot" else 1
    header = protocol.Header(kind, gvr(resource), 1, f"silent-{number}", 1, sequence, "5")
    objects = [make(resource, f"silent-{number}-{i}", 5) for i in range(3)]
    if kind == "snapshot":
        records = [protocol.encode_object(Item.of(obj)) for obj in objects]
    else:
        events = [Event.from_object(EventType.ADDED, obj) for obj in objects]
        records = [protocol.encode_event(event.key, event) for event in events]
    body = protocol.encode_header(header) + b"".join(records)
    writer.write(
        (
            f"POST /sync/{resource}/{kind} HTTP/1.1\r\n"
            f"Host: {parts.hostname}:{parts.port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\n"
            f"Content-Type: {protocol.CONTENT_TYPE}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n"
    )
    await writer.drain()
    return writer


async def in_progress(http: aiohttp.ClientSession, url: str) -> float:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with http.get(f"{url}/metrics", headers=headers) as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith('listwatch_receiver_syncs_in_progress{kind="snapshot"}'):
            return float(line.rpartition(" ")[2])
    return 0.0


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    if request.param == "sqlite":
        return ["--sqlite", str(tmp_path / "received.db")]
    return ["--postgres", request.getfixturevalue("postgres_dsn")]


@pytest.fixture
async def receiver(store: list[str], tmp_path: Path) -> AsyncIterator[tuple[ListwatchProcess, str]]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    process = await ListwatchProcess.start(
        "receiver", "receiver", "--listen", "127.0.0.1:0", *store, "--token-file", str(token_file)
    )
    try:
        found = await process.wait_for_line(r"serving (http://127\.0\.0\.1:\d+)")
        yield process, found.group(1)
    finally:
        await process.stop(signal.SIGKILL)


async def stored(store: list[str], resource: str) -> dict[str, str]:
    """The resource's rows (key: RV) as the database holds them."""
    if store[0] == "--sqlite":
        try:
            objects = read_mirror(store[1], resource=resource).objects
        except (FileNotFoundError, ValueError, sqlite3.OperationalError):
            return {}
        return {key: obj["metadata"]["resourceVersion"] for key, obj in objects.items()}
    connection = await asyncpg.connect(store[1])
    try:
        rows = await connection.fetch(
            "SELECT key, resource_version FROM listwatch.objects WHERE resource = $1", resource
        )
    finally:
        await connection.close()
    return {row["key"]: row["resource_version"] for row in rows}


@pytest.mark.timeout(120)
async def test_silent_snapshots_hold_up_no_other_sender(
    store: list[str], receiver: tuple[ListwatchProcess, str]
) -> None:
    process, url = receiver
    silent: list[asyncio.StreamWriter] = []
    try:
        for resource, count in SILENT.items():
            silent += [await silent_request(url, resource, i) for i in range(count)]
            silent.append(await silent_request(url, resource, count, "batch"))
        async with aiohttp.ClientSession() as http:

            async def all_open() -> bool:
                return await in_progress(http, url) == sum(SILENT.values())

            await eventually(all_open, what="every silent snapshot is open at the receiver")

        want: dict[str, dict[str, str]] = {}
        async with HttpSink(url, token=TOKEN) as sender, asyncio.timeout(WRITE_WITHIN):
            for resource in SILENT:
                objects = [make(resource, f"new-{i}", 20 + i) for i in range(5)]
                await sender.on_list(
                    Snapshot.of(
                        objects, "30", generation=1, epoch=2, session="new", resource=gvr(resource)
                    )
                )
                added = Event.from_object(EventType.ADDED, make(resource, "after", 31))
                await sender.on_batch(
                    Batch(
                        {added.key: added},
                        "31",
                        1,
                        epoch=2,
                        session="new",
                        sequence=1,
                        resource=gvr(resource),
                    )
                )
                want[resource] = {f"default/new-{i}": str(20 + i) for i in range(5)}
                want[resource]["default/after"] = "31"
        for resource, rows in want.items():
            assert await stored(store, resource) == rows
    finally:
        for writer in silent:
            writer.close()
    assert "database is locked" not in process.text()
