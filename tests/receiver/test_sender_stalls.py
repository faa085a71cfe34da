"""HttpSink against a receiver that stops reading mid-snapshot: the sender fails instead of
stalling forever (aiohttp bounds the wait for an answer, not the writing). A listing that is
slower than the timeout is the API server's pace, not a stall, and does not trip it, nor
the receiver's idle timeout (the sender's heartbeat)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from listwatch import GroupVersionResource, Item, Page, Snapshot
from listwatch._models import PageStream
from listwatch.errors import HttpSyncError
from listwatch.httpsync import SyncServer
from listwatch.httpsync import _client as client_module
from listwatch.httpsync._client import HttpSink
from listwatch.sinks.sqlite import SQLiteStore
from tests.serving import serving

PODS = GroupVersionResource("", "v1", "pods")
BLOB = "x" * 10_000


def items(start: int, count: int) -> list[Item]:
    out = []
    for i in range(start, start + count):
        obj = {"kind": "Pod", "metadata": {"name": f"p{i}", "resourceVersion": "1"}, "b": BLOB}
        out.append(Item(f"default/p{i}", "1", raw=orjson.dumps(obj)))
    return out


def snapshot(pages: PageStream) -> Snapshot:
    return Snapshot(pages, resource_version="1", generation=1, epoch=0, resource=PODS, session="s")


def app_with(handler: web.Handler) -> web.Application:
    app = web.Application()
    app.router.add_post("/sync/pods/snapshot", handler)
    return app


async def test_a_receiver_that_stops_reading_fails_the_snapshot() -> None:
    started = asyncio.Event()
    never = asyncio.Event()

    async def stuck(request: web.Request) -> web.Response:
        await request.content.read(1024)  # the header arrived; then it reads nothing more
        started.set()
        await never.wait()
        return web.Response()

    async def pages() -> PageStream:
        for start in range(0, 4000, 500):  # 40 MB uncompressed: more than socket buffers hold
            yield Page(items(start, 500), "")
        yield Page([], "1")

    async with serving(app_with(stuck), shutdown_timeout=1.0) as url:
        async with HttpSink(url, token="t", timeout=0.3, compress_level=0) as sink:
            with pytest.raises(HttpSyncError, match=r"the receiver took no data for 0\.3 s"):
                await sink.on_list(snapshot(pages()))
        assert started.is_set()
        never.set()  # the receiver's handler may end now, so the server can shut down


async def test_a_slow_listing_is_not_a_stalled_receiver() -> None:
    received: list[int] = []

    async def reads(request: web.Request) -> web.Response:
        body = await request.read()
        received.append(body.count(b"\n"))
        return web.json_response({"kind": "Status", "status": "Success", "code": 200})

    async def pages() -> PageStream:
        yield Page(items(0, 2), "")
        await asyncio.sleep(0.5)  # the API server's next page is slow: longer than the timeout
        yield Page(items(2, 2), "1")

    async with serving(app_with(reads)) as url, HttpSink(url, token="t", timeout=0.2) as sink:
        await sink.on_list(snapshot(pages()))
    assert received == [6]  # header, four objects, commit


@pytest.mark.parametrize("compress_level", [0, 1])
async def test_a_listing_slower_than_the_receivers_idle_timeout_still_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compress_level: int
) -> None:
    """The receiver ends a body that sends no byte for its idle timeout (a sender that is
    gone). A sender whose API server is slow is not gone: it sends a blank line every
    ``HEARTBEAT`` while it waits for the next page, and the snapshot lands."""
    monkeypatch.setattr(client_module, "HEARTBEAT", 0.05)
    store = SQLiteStore(tmp_path / "received.db")
    receiver = SyncServer(store, token="t", idle_timeout=0.3)

    async def pages() -> PageStream:
        yield Page(items(0, 2), "")
        await asyncio.sleep(1.0)  # the API server's next page is slow: past the idle timeout
        yield Page(items(2, 2), "1")

    try:
        async with (
            serving(receiver.runner()) as url,
            HttpSink(url, token="t", compress_level=compress_level) as sink,
        ):
            await sink.on_list(snapshot(pages()))
        assert await (await store.sink("pods")).count() == 4
    finally:
        await store.close()
