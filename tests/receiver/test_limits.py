"""What one sender can make the reference receiver hold or wait for, each bounded, over real
HTTP: the fence is met before a body is read; a batch, a snapshot page and blank lines are
bounded in bytes after inflating; inflating goes a piece at a time, with other tasks running
in between; a body that stalls gets 408, a header that does not come closes the connection;
and a header aiohttp cannot parse is refused without being quoted back or logged."""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from listwatch import Batch, GroupVersionResource, Receiver, Snapshot
from listwatch.httpsync import SyncServer
from listwatch.httpsync import _server as server_module
from listwatch.httpsync import _wire as protocol
from listwatch.sinks.sqlite import SQLiteStore
from tests.receiver.helpers import TOKEN, Connection, chunk, post, request_head
from tests.serving import serving

PODS = GroupVersionResource("", "v1", "pods")
MiB = 1024 * 1024


def header(kind: protocol.Kind = "snapshot", *, epoch: int = 1, session: str = "s") -> bytes:
    sequence = 0 if kind == "snapshot" else 1
    return protocol.encode_header(protocol.Header(kind, PODS, epoch, session, 1, sequence, "5"))


def record(key: str, size: int = 100) -> bytes:
    obj = orjson.dumps({"kind": "Pod", "metadata": {"name": key}, "data": "x" * size})
    return b'{"key":' + orjson.dumps(key) + b',"resourceVersion":"1","object":' + obj + b"}\n"


def event(key: str, size: int = 100) -> bytes:
    return b'{"type":"ADDED",' + record(key, size)[1:]


class Served:
    def __init__(self, url: str, store: SQLiteStore) -> None:
        self.url = url
        self.store = store

    async def post(self, path: str, body: bytes, *, gzip: bool = False) -> tuple[int, Any]:
        return await post(self.url, path, body, gzip=gzip)

    async def pods(self) -> set[str]:
        sink = await self.store.sink("pods")
        return set(await sink.objects())


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    store = SQLiteStore(tmp_path / "received.db")
    receiver = SyncServer(store, token=TOKEN, header_timeout=0.5, idle_timeout=0.5)
    try:
        async with serving(receiver.runner(), shutdown_timeout=1.0) as url:
            yield Served(url, store)
    finally:
        await store.close()


def snapshot_of(*records: bytes, head: bytes | None = None, rv: str = "5") -> bytes:
    return (head or header()) + b"".join(records) + protocol.encode_commit(len(records), rv)


# -- the fence before the body ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "epoch", "session", "cause"),
    [
        ("batch", 4, "old-leader", "StaleEpoch"),  # a paused leader's batch
        ("snapshot", 4, "old-leader", "StaleEpoch"),
        ("snapshot", 5, "earlier", "StaleWrite"),  # an older snapshot (RV 5 < 301), replayed
    ],
)
async def test_a_refused_write_is_answered_before_its_body_is_read(
    served: Served, kind: protocol.Kind, epoch: int, session: str, cause: str
) -> None:
    """The new leader (epoch 5) holds pods at RV 301. A write the fence refuses is
    answered 409 while its body is still open: nothing of it is buffered first (a batch of
    400 x 1 MiB records was held whole before the fence refused it)."""
    head = protocol.encode_header(protocol.Header("snapshot", PODS, 5, "leader", 1, 0, "301"))
    leader = snapshot_of(record("a"), head=head, rv="301")
    assert (await served.post("/sync/pods/snapshot", leader))[0] == 200
    connection = await Connection.to(served.url)
    try:
        await connection.send(
            request_head(f"/sync/pods/{kind}")
            + chunk(header(kind, epoch=epoch, session=session))
            + chunk((event if kind == "batch" else record)("big", MiB))
        )  # ... and more would follow: the request stays open
        status, answer = await connection.answer()
    finally:
        connection.close()
    assert (status, answer["details"]["causes"]) == (409, [{"reason": cause}])
    assert await served.pods() == {"a"}


# -- bytes -----------------------------------------------------------------------------------


async def test_a_batch_is_bounded_in_bytes_after_inflating(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "MAX_BATCH_BYTES", 256 * 1024)
    assert (await served.post("/sync/pods/snapshot", snapshot_of()))[0] == 200
    events = [event(f"e{i}", 10_000) for i in range(40)]  # 400 KB that gzip makes 3 KB
    body = header("batch") + b"".join(events) + protocol.encode_commit(40, "6")
    for gzipped in (False, True):
        sent = gzip.compress(body) if gzipped else body
        status, answer = await served.post("/sync/pods/batch", sent, gzip=gzipped)
        assert (status, answer["reason"]) == (413, "RequestEntityTooLarge")
        assert f"a batch holds at most {256 * 1024} bytes (after gzip)" in answer["message"]
    assert await served.pods() == set()


class PageSizes:
    """A store whose sink records the bytes of each snapshot page it is handed."""

    def __init__(self) -> None:
        self.pages: list[int] = []

    async def sink(self, resource: str) -> Receiver:
        return self

    async def on_list(self, snapshot: Snapshot) -> None:
        async for page in snapshot.pages():
            self.pages.append(sum(len(item.json) for item in page))

    async def on_batch(self, batch: Batch) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass


async def test_snapshot_pages_are_bounded_in_bytes() -> None:
    """40 objects of 1 MiB reach the sink in pages of at most 8 MiB (and one object), not
    in one page of 40 MiB: what the receiver stages is bounded by bytes."""
    store = PageSizes()
    async with serving(SyncServer(store, token=TOKEN).runner()) as url:
        body = snapshot_of(*(record(f"big-{i}", MiB) for i in range(40)))
        status, _ = await post(url, "/sync/pods/snapshot", body)
    assert status == 200
    assert sum(store.pages) > 40 * MiB
    assert max(store.pages) <= server_module.PAGE_BYTES + MiB + 1000


async def test_a_gzip_bomb_of_blank_lines_is_refused(served: Served) -> None:
    """65 KB that inflate to 64 MiB of blank lines: blank lines (a sender's heartbeat) are
    bounded, and the bomb is refused after the first MiB."""
    bomb = gzip.compress(header() + b"\n" * (64 * MiB) + protocol.encode_commit(0, "5"), 9)
    assert len(bomb) < 100_000
    status, answer = await served.post("/sync/pods/snapshot", bomb, gzip=True)
    assert (status, answer["reason"]) == (400, "BadRequest")
    assert f"more than {MiB} bytes of blank lines" in answer["message"]
    heartbeats = (
        header() + b"\n" * 1000 + record("a") + b" \n" * 1000 + protocol.encode_commit(1, "5")
    )
    assert (await served.post("/sync/pods/snapshot", heartbeats))[0] == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (gzip.compress(snapshot_of(record("a")))[:-20], "ended inside its gzip stream"),
        (b"\x1f\x8b" + b"not gzip at all", "the body is not valid gzip"),
    ],
)
async def test_a_broken_gzip_body_is_refused(served: Served, body: bytes, message: str) -> None:
    status, answer = await served.post("/sync/pods/snapshot", body, gzip=True)
    assert (status, answer["reason"]) == (400, "BadRequest")
    assert message in answer["message"]
    assert await served.pods() == set()


async def test_gzip_members_may_follow_one_another(served: Served) -> None:
    body = snapshot_of(record("a"), record("b"))
    middle = body.index(b'{"key":"b"')
    members = gzip.compress(body[:middle]) + gzip.compress(body[middle:])
    assert (await served.post("/sync/pods/snapshot", members, gzip=True))[0] == 200
    assert await served.pods() == {"a", "b"}


class Ticks:
    """A store whose sink notes, at each page, how often a busy task has run so far."""

    def __init__(self) -> None:
        self.count = 0
        self.at_pages: list[int] = []

    async def run(self) -> None:
        while True:
            self.count += 1
            await asyncio.sleep(0)

    async def sink(self, resource: str) -> Receiver:
        return self

    async def on_list(self, snapshot: Snapshot) -> None:
        async for page in snapshot.pages():
            if page:
                self.at_pages.append(self.count)

    async def on_batch(self, batch: Batch) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass


async def test_inflating_lets_other_tasks_run_between_pieces() -> None:
    """A gzip body that arrives at once and inflates to 8 MiB: the receiver inflates and
    reads it a piece at a time, and the event loop runs other tasks between pieces (a 64
    MiB bomb held /healthz for 10 s), many times for each page of 500 records."""
    ticks = Ticks()
    body = gzip.compress(snapshot_of(*(record(f"p{i}", 2000) for i in range(4000))))
    async with serving(SyncServer(ticks, token=TOKEN).runner()) as url:
        busy = asyncio.create_task(ticks.run())
        try:
            status, _ = await post(url, "/sync/pods/snapshot", body, gzip=True)
        finally:
            busy.cancel()
    assert status == 200
    pieces_per_page = 500 * 2000 // server_module._CHUNK  # about 15
    steps = [b - a for a, b in zip(ticks.at_pages, ticks.at_pages[1:], strict=False)]
    assert len(steps) == 7  # 4,000 records: 8 pages of 500
    assert min(steps) >= pieces_per_page // 2, steps


# -- time ------------------------------------------------------------------------------------


async def test_a_body_that_stops_coming_gets_408_and_applies_nothing(served: Served) -> None:
    """A sender that opens a snapshot and goes silent (stopped, or cut off without a FIN)
    is answered after ``idle_timeout`` with no byte, instead of being waited for."""
    connection = await Connection.to(served.url)
    try:
        await connection.send(request_head("/sync/pods/snapshot") + chunk(header() + record("a")))
        status, answer = await connection.answer()
    finally:
        connection.close()
    assert (status, answer["reason"]) == (408, "RequestTimeout")
    assert "no byte of the body came for 0.5 s: nothing was applied" in answer["message"]
    assert await served.pods() == set()


async def test_connections_that_send_no_whole_header_are_closed(served: Served) -> None:
    """Slow connections (nothing at all, or half a header) are closed after
    ``header_timeout`` rather than held open for ever; the receiver still serves."""
    silent = [await Connection.to(served.url) for _ in range(20)]
    slow = [await Connection.to(served.url) for _ in range(20)]
    for connection in slow:
        await connection.send(b"POST /sync/pods/snapshot HTTP/1.1\r\nHost: receiver\r\nAuthor")
    try:
        for connection in silent + slow:
            assert await connection.closed_by_server()
    finally:
        for connection in silent + slow:
            connection.close()
    assert (await served.post("/sync/pods/snapshot", snapshot_of(record("a"))))[0] == 200


async def test_an_oversized_header_is_refused_without_being_quoted(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp answers a header over 8190 bytes with 400 quoting its first 100 bytes, and
    logs them: a bearer token. The receiver answers with a Status of the code alone."""
    caplog.set_level(logging.DEBUG)
    secret = "LongSecret" * 1000
    connection = await Connection.to(served.url)
    try:
        await connection.send(request_head("/sync/pods/snapshot", token=secret))
        status, answer = await connection.answer()
    finally:
        connection.close()
    assert (status, answer["kind"], answer["reason"]) == (400, "Status", "BadRequest")
    assert answer["message"] == "the request could not be read (LineTooLong)"
    assert "LongSecr" not in orjson.dumps(answer).decode() + caplog.text
    assert "could not be read as HTTP: 400 (LineTooLong)" in caplog.text
