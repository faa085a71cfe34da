"""HttpSink over several receivers of one store: it fails over on no connection, no answer
and 5xx, never on a 4xx; a batch is sent again at once to the next receiver and applied
once; a snapshot's failure ends its generation and the next snapshot goes to the next one.

Each receiver is a ``SyncServer`` with a ``SQLiteStore`` of its own over one file, as
several ``listwatch receiver --sqlite`` processes over one file are."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from listwatch import Batch, Event, EventType, GroupVersionResource, Page, Snapshot
from listwatch._models import PageStream
from listwatch.errors import HttpSyncError, StaleWrite
from listwatch.httpsync import HttpSink, ReceiverUrls, SyncServer
from listwatch.sinks.sqlite import SQLiteStore, read_mirror
from tests.receiver.test_protocol import PODS, TOKEN, Served, batch, modified, pod, snapshot
from tests.serving import serving

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


class Receiver(Served):
    """One receiver of the shared file, and the requests it answered, by kind and code."""

    def __init__(self, url: str, db: Path, receiver: SyncServer, log: list[str]) -> None:
        super().__init__(url, db, receiver)
        self.log = log


@contextlib.asynccontextmanager
async def receiver(db: Path, middleware: Middleware | None = None) -> AsyncIterator[Receiver]:
    store = SQLiteStore(db)
    server = SyncServer(store, token=TOKEN)
    log: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await (middleware(request, handler) if middleware else handler(request))
        log.append(f"{request.path.rsplit('/', 1)[-1]} {response.status}")
        return response

    app = server.app()
    app.middlewares.insert(0, record)
    try:
        async with serving(app, shutdown_timeout=1.0) as url:
            yield Receiver(url, db, server, log)
    finally:
        await store.close()


def nothing_listening() -> str:
    """A URL on which nothing listens (connection refused): a receiver that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def answering(status: int, reason: str) -> Middleware:
    """A receiver that answers every sync request ``status`` with a Status, as
    ``listwatch receiver`` does for a store that failed (503) or a fence's refusal (409)."""

    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        await request.read()
        body = {"kind": "Status", "code": status, "reason": reason, "message": f"{reason}!"}
        if status == 409:
            body["details"] = {"causes": [{"reason": "StaleWrite"}]}
        return web.json_response(body, status=status)

    return middleware


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The sender's failover warnings."""
    return [r.getMessage() for r in caplog.records if "failing over" in r.getMessage()]


@pytest.fixture(autouse=True)
def _warnings_captured(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="listwatch")


async def test_a_snapshot_to_a_dead_receiver_fails_and_the_next_goes_to_the_next_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = nothing_listening()
    async with receiver(tmp_path / "r.db") as good:
        async with HttpSink([dead, good.url], token=TOKEN) as sink:
            with pytest.raises(HttpSyncError, match="cannot connect"):
                await sink.on_list(snapshot(pod("a", 1), rv="1", generation=1))
            assert warnings(caplog) == [
                f"POST {dead}/sync/pods/snapshot: cannot connect (ConnectionRefusedError); "
                f"failing over from {dead} to {good.url}"
            ]
            await sink.on_list(snapshot(pod("a", 1), rv="1", generation=2))
        assert good.log == ["snapshot 200"]
        assert good.state() == {"default/a": "1"}


async def test_a_batch_is_sent_again_at_once_to_the_next_receiver(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The receiver in use stops between two batches: the batch lands on the next one in
    the same call, so the generation goes on without a fresh snapshot."""
    db = tmp_path / "r.db"
    async with receiver(db) as second:
        async with receiver(db) as first:
            sink = HttpSink([first.url, second.url], token=TOKEN)
            await sink.open()
            await sink.on_list(snapshot(pod("a", 1), pod("b", 2), rv="2"))
        # ``first`` is down now (its port refuses connections).
        try:
            await sink.on_batch(batch(modified(pod("a", 3, v="2")), rv="3", sequence=1))
            await sink.on_batch(batch(modified(pod("b", 4, v="2")), rv="4", sequence=2))
        finally:
            await sink.close()
        assert first.log == ["snapshot 200"]
        assert second.log == ["batch 200", "batch 200"]
        assert second.state() == {"default/a": "3", "default/b": "4"}
        assert len(warnings(caplog)) == 1


async def test_a_batch_applied_by_a_receiver_that_died_before_answering_is_a_duplicate(
    tmp_path: Path,
) -> None:
    """The first receiver commits the batch and its answer is lost (the connection drops):
    the next receiver is sent the same batch, its fence takes it for the duplicate it is
    (200), and the generation goes on with the next batch."""

    async def answer_lost(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path.endswith("/batch") and request.transport is not None:
            request.transport.close()  # committed, and the connection drops before the answer
        return response

    db = tmp_path / "r.db"
    async with receiver(db, answer_lost) as first, receiver(db) as second:
        async with HttpSink([first.url, second.url], token=TOKEN) as sink:
            await sink.on_list(snapshot(pod("a", 1), rv="1"))
            await sink.on_batch(batch(modified(pod("a", 2, v="2")), rv="2", sequence=1))
            await sink.on_batch(batch(modified(pod("a", 3, v="3")), rv="3", sequence=2))
        assert first.log == ["snapshot 200", "batch 200"]
        assert second.log == ["batch 200", "batch 200"]
        assert second.state() == {"default/a": "3"}
        mirror = read_mirror(db, resource="pods")
        assert mirror.state is not None
        assert (mirror.state.generation, mirror.state.sequence) == (1, 2)


async def test_a_503_is_failed_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A receiver whose store failed answers 503: a snapshot fails and the next one goes
    to the next receiver; a batch goes to the next receiver at once."""
    db = tmp_path / "r.db"
    failing = answering(503, "ServiceUnavailable")
    async with receiver(db, failing) as first, receiver(db) as second:
        async with HttpSink([first.url, second.url], token=TOKEN) as sink:
            with pytest.raises(HttpSyncError, match="HTTP 503"):
                await sink.on_list(snapshot(pod("a", 1), rv="1", generation=1))
            await sink.on_list(snapshot(pod("a", 1), rv="1", generation=2))
        urls = ReceiverUrls([second.url, first.url])
        async with HttpSink(urls, token=TOKEN) as sink:
            await sink.on_list(snapshot(pod("a", 1), rv="1", session="t"))
            urls.failed(second.url, HttpSyncError("(the test moves the sender to first)"))
            await sink.on_batch(
                batch(modified(pod("a", 2, v="2")), rv="2", sequence=1, session="t")
            )
        assert first.log == ["snapshot 503", "batch 503"]
        assert second.log == ["snapshot 200", "snapshot 200", "batch 200"]
        assert second.state() == {"default/a": "2"}
    assert warnings(caplog) == [
        f"POST {first.url}/sync/pods/snapshot: HTTP 503 ServiceUnavailable: "
        f"ServiceUnavailable!; failing over from {first.url} to {second.url}",
        f"(the test moves the sender to first); failing over from {second.url} to {first.url}",
        f"POST {first.url}/sync/pods/batch: HTTP 503 ServiceUnavailable: "
        f"ServiceUnavailable!; failing over from {first.url} to {second.url}",
    ]


async def test_a_409_is_not_failed_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "r.db"
    async with receiver(db, answering(409, "Conflict")) as first, receiver(db) as second:
        async with HttpSink([first.url, second.url], token=TOKEN) as sink:
            with pytest.raises(StaleWrite):
                await sink.on_list(snapshot(pod("a", 1), rv="1"))
            with pytest.raises(StaleWrite):
                await sink.on_batch(batch(modified(pod("a", 2)), rv="2", sequence=1))
        assert first.log == ["snapshot 409", "batch 409"]
        assert second.log == []
    assert warnings(caplog) == []


async def test_sinks_sharing_receivers_move_together_and_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two resources' batches fail on one receiver that stopped, at the same time: the
    sender moves once, to the next receiver, and not past it to the one after."""
    db = tmp_path / "r.db"
    nodes_gvr = GroupVersionResource("", "v1", "nodes")
    node = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n", "resourceVersion": "1"}}
    async with (
        receiver(db) as first,
        receiver(db) as third,
        contextlib.AsyncExitStack() as second_running,
    ):
        second = await second_running.enter_async_context(receiver(db))
        urls = ReceiverUrls([first.url, second.url, third.url])
        async with (
            HttpSink(urls, token=TOKEN) as pods,
            HttpSink(urls, token=TOKEN) as nodes,
        ):
            urls.failed(first.url, HttpSyncError("(the test moves the sender to second)"))
            await asyncio.gather(
                pods.on_list(snapshot(pod("a", 1), rv="1")),
                nodes.on_list(Snapshot.of([node], "1", epoch=1, resource=nodes_gvr, session="n")),
            )
            await second_running.aclose()  # second stops: both next batches fail on it
            node_changed = Event.from_object(EventType.MODIFIED, node)
            await asyncio.gather(
                pods.on_batch(batch(modified(pod("a", 2)), rv="2")),
                nodes.on_batch(Batch({"n": node_changed}, "2", 0, 1, 1, nodes_gvr, "n", 1)),
            )
        assert first.log == []
        assert sorted(second.log) == ["snapshot 200", "snapshot 200"]
        assert sorted(third.log) == ["batch 200", "batch 200"]
    assert [message.rsplit(";", 1)[1] for message in warnings(caplog)] == [
        f" failing over from {first.url} to {second.url}",
        f" failing over from {second.url} to {third.url}",
    ]


async def test_a_listing_that_fails_mid_snapshot_is_not_the_receivers_fault(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class ListFailed(Exception):
        pass

    async def pages() -> PageStream:
        async for page in snapshot(pod("a", 1), rv="1").pages():
            yield Page(page, "1")
        raise ListFailed("the API server cut the list")

    db = tmp_path / "r.db"
    async with receiver(db) as first, receiver(db) as second:
        urls = ReceiverUrls([first.url, second.url])
        async with HttpSink(urls, token=TOKEN) as sink:
            cut = Snapshot(pages(), resource_version="1", generation=1, resource=PODS, session="s")
            with pytest.raises((ListFailed, HttpSyncError)):
                await sink.on_list(cut)
        assert urls.current == first.url
        assert second.log == []
    assert warnings(caplog) == []
