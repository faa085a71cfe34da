"""The snapshot stream over HTTP, in both list strategies: paged LISTs and streaming lists.

The boundary holds (the receiver's replace deletes what vanished), a list that fails while
the receiver writes leaves its previous state intact and converges after the relist, a
streaming list cut before its initial-events-end bookmark is a failed list, "auto" falls
back to paging when the server cannot stream, and the bytes a receiver gets are the bytes
the server sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import orjson
import pytest

from listwatch import (
    Backoff,
    Batch,
    ConnectionLost,
    Event,
    EventType,
    InvalidRequest,
    ListWatch,
    Phase,
    ServerError,
    Snapshot,
    Syncer,
    WatchListRefused,
    WatchOptions,
    observe,
)
from listwatch import _reflector as loop_module
from listwatch.sinks.sqlite import SQLiteSink, read_mirror
from listwatch.testing import FakeApiServer, Fault
from tests.core.helpers import FAST_BACKOFF, Mirror, make_syncer, server_state
from tests.objects import key_of, pod

STRATEGIES = ["paged", "stream"]
PODS = "/api/v1/pods"


class GatedBackoff(Backoff):
    """A backoff that waits for the test instead of the clock: while a generation that
    failed is "backing off", the test can look at the receiver's state undisturbed.
    Backoff number n ends when the test has called ``release()`` n times."""

    def __init__(self) -> None:
        super().__init__(initial=0.0, cap=0.0)
        self.waits = 0
        self._released = 0
        self._changed = asyncio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def sleep(self, delay: float) -> None:
        self.waits += 1
        number = self.waits
        self._notify()
        while self._released < number:
            await self._changed.wait()

    async def backing_off(self, number: int) -> None:
        """Until backoff number ``number`` has begun."""
        while self.waits < number:
            await self._changed.wait()

    def release(self) -> None:
        self._released += 1
        self._notify()


def listings(server: FakeApiServer) -> list[Any]:
    """The requests that listed a snapshot: LISTs and streaming lists."""
    return [
        r
        for r in server.requests
        if r.path == PODS and (not r.watch or r.query.get("sendInitialEvents") == "true")
    ]


def sink_state(db: Path) -> dict[str, str]:
    mirror = read_mirror(db, resource="pods")
    return {key: obj["metadata"]["resourceVersion"] for key, obj in mirror.objects.items()}


def syncer_into(sink: SQLiteSink, source: ListWatch, strategy: str, **kwargs: Any) -> Syncer:
    kwargs.setdefault("backoff", Backoff(**FAST_BACKOFF))
    return Syncer(
        source,
        on_list=sink.on_list,
        on_batch=sink.on_batch,
        merge_interval=0.02,
        list_strategy=strategy,
        **kwargs,
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_the_snapshot_replaces_what_vanished(
    server: FakeApiServer, api_client: Any, tmp_path: Path, strategy: str
) -> None:
    """The receiver holds objects from before (a previous run): the first snapshot's replace
    deletes those the cluster no longer has, with no DELETED event ever sent for them."""
    db = tmp_path / "mirror.db"
    for name in ("keep", "new"):
        await server.create(pod(name))
    async with SQLiteSink(db, resource="pods") as sink:
        stale = [pod("gone-a"), pod("gone-b"), pod("keep")]
        for obj in stale:
            obj["metadata"]["resourceVersion"] = "1"
        await sink.on_list(Snapshot.of(stale, "1"))
        source = ListWatch.from_client(api_client, "pods")
        async with syncer_into(sink, source, strategy, page_size=1) as syncer:
            status = await syncer.wait_synced()
    assert sink_state(db) == server_state(server, "v1", "Pod")
    assert status.snapshot_size == 2
    assert status.snapshot_resource_version == str(server.resource_version)
    listing, *more = listings(server)
    if strategy == "stream":
        assert more == []
        assert listing.query["resourceVersionMatch"] == "NotOlderThan"
        assert listing.query["allowWatchBookmarks"] == "true"
        assert "resourceVersion" not in listing.query  # "": a consistent snapshot, not "0"
    else:
        assert [r.query["limit"] for r in (listing, *more)] == ["1", "1"]


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_an_empty_snapshot_empties_the_receiver(
    server: FakeApiServer, api_client: Any, tmp_path: Path, strategy: str
) -> None:
    db = tmp_path / "mirror.db"
    old = pod("old")
    old["metadata"]["resourceVersion"] = "1"
    async with SQLiteSink(db, resource="pods") as sink:
        await sink.on_list(Snapshot.of([old], "1"))
        async with syncer_into(sink, ListWatch.from_client(api_client, "pods"), strategy) as s:
            status = await s.wait_synced()
    assert sink_state(db) == {}
    assert status.snapshot_size == 0


async def test_a_continue_token_that_expires_while_the_receiver_writes(
    server: FakeApiServer, api_client: Any, tmp_path: Path
) -> None:
    """Paged: etcd compacts while the sink writes page 1; page 2's token is expired (410).
    The error comes out of the sink's iteration, its transaction rolls back (the previous
    snapshot is intact while the Syncer backs off), and the relist converges."""
    db = tmp_path / "mirror.db"
    for i in range(6):
        await server.create(pod(f"p{i}"))
    backoff = GatedBackoff()
    async with SQLiteSink(db, resource="pods") as sink:
        compacted = False

        async def on_list(snapshot: Snapshot) -> None:
            async def compacting() -> AsyncGenerator[Any, None]:
                nonlocal compacted
                async for page in snapshot.pages():
                    yield page
                    if not compacted and snapshot.generation == 2:
                        compacted = True
                        await server.create(pod("late"))
                        server.compact()

            await sink.on_list(_replay(snapshot, compacting()))

        source = ListWatch.from_client(api_client, "pods")
        syncer = Syncer(
            source,
            on_list=on_list,
            on_batch=sink.on_batch,
            merge_interval=0.02,
            page_size=2,
            list_strategy="paged",
            backoff=backoff,
            resync_period=None,
        )
        async with syncer:
            await syncer.wait_synced()
            first = sink_state(db)
            server.inject(Fault.error_event(0, 410), path=PODS, watch=True)  # forces a relist
            await backoff.backing_off(1)  # generation 1 ended: the 410 on its watch
            backoff.release()
            await backoff.backing_off(2)  # generation 2 ended: its continue token expired
            assert compacted, syncer.status
            assert sink_state(db) == first  # the half-written snapshot was rolled back
            status = syncer.status
            assert status.recent_restarts[-1].reason.startswith("ResourceExpired")
            assert "continue" in status.recent_restarts[-1].reason
            backoff.release()
            await syncer.wait_until(lambda s: s.generation == 3 and s.synced)
    assert sink_state(db) == server_state(server, "v1", "Pod")
    assert "default/late" in sink_state(db)


def _replay(snapshot: Snapshot, pages: AsyncGenerator[Any, None]) -> Snapshot:
    """The same snapshot, its pages passed through ``pages`` (the test's hook)."""
    from listwatch import Page  # noqa: PLC0415

    async def as_pages() -> AsyncGenerator[Page, None]:
        async for items in pages:
            yield Page(items, snapshot.resource_version)

    return Snapshot(
        as_pages(),
        resource_version=snapshot.resource_version,
        generation=snapshot.generation,
        epoch=snapshot.epoch,
    )


@pytest.mark.parametrize("mid_line", [False, True])
async def test_a_streaming_list_cut_before_its_end_bookmark_is_a_failed_list(
    server: FakeApiServer, api_client: Any, tmp_path: Path, mid_line: bool
) -> None:
    db = tmp_path / "mirror.db"
    for i in range(5):
        await server.create(pod(f"p{i}"))
    backoff = GatedBackoff()
    async with SQLiteSink(db, resource="pods") as sink:
        previous = [pod("before")]
        previous[0]["metadata"]["resourceVersion"] = "1"
        await sink.on_list(Snapshot.of(previous, "1"))
        server.inject(Fault.cut_stream(after_events=3, mid_line=mid_line), path=PODS, watch=True)
        source = ListWatch.from_client(api_client, "pods")
        async with syncer_into(sink, source, "stream", page_size=2, backoff=backoff) as syncer:
            await backoff.backing_off(1)
            # Two pages (4 objects would need the 4th event): at most 2 rows were written,
            # and none of them committed.
            assert sink_state(db) == {"default/before": "1"}
            assert syncer.status.recent_restarts[-1].reason.startswith("ConnectionLost")
            assert not syncer.status.has_synced
            backoff.release()
            await syncer.wait_synced()
    assert sink_state(db) == server_state(server, "v1", "Pod")


async def test_a_streaming_list_that_ends_cleanly_before_its_bookmark_is_incomplete(
    server: FakeApiServer, api_client: Any
) -> None:
    """A server that closes the stream in the middle of the initial events, without an
    error: what was streamed is not a snapshot. No fallback (client-go retries watchList)."""
    for i in range(4):
        await server.create(pod(f"p{i}"))
    real = ListWatch.from_client(api_client, "pods")
    closed_early = 0

    async def watch(options: WatchOptions) -> AsyncGenerator[Event, None]:
        nonlocal closed_early
        async with asyncio.timeout(10):
            stream = real.watch(options)
            try:
                sent = 0
                async for event in stream:
                    if options.send_initial_events and closed_early == 0 and sent == 2:
                        closed_early += 1
                        return  # a clean end of the body, two objects in
                    sent += 1
                    yield event
            finally:
                await stream.aclose()

    source = ListWatch(list_func=real.list, watch_func=watch, watch_list=True)
    received: list[int] = []

    async def on_list(snapshot: Snapshot) -> None:
        received.append(len(await snapshot.collect()))

    async def on_batch(batch: Batch) -> None:
        pass

    syncer = Syncer(source, on_list=on_list, on_batch=on_batch, backoff=Backoff(**FAST_BACKOFF))
    async with syncer:
        status = await syncer.wait_synced()
    assert status.recent_restarts[0].reason.startswith("IncompleteList")
    assert "before the initial-events-end bookmark" in status.recent_restarts[0].reason
    assert received == [4]  # the cut one never completed; the retry streamed again
    assert all("sendInitialEvents" in r.query for r in server.requests if r.watch)


async def test_auto_pages_when_the_server_has_no_watch_list() -> None:
    """422 from a server without the WatchList feature: this listing pages at once, and
    the next relist tries streaming again (client-go's "Falling back to regular list")."""
    async with FakeApiServer(watch_list=False, bookmark_interval=0.05) as server:
        await server.create(pod("a"))
        async with server.api_client() as api:
            seen: list[Snapshot] = []

            async def on_list(snapshot: Snapshot) -> None:
                await snapshot.collect()
                seen.append(snapshot)

            async def on_batch(batch: Batch) -> None:
                pass

            syncer = Syncer(
                ListWatch.from_client(api, "pods"),
                on_list=on_list,
                on_batch=on_batch,
                backoff=Backoff(**FAST_BACKOFF),
            )
            async with syncer:
                await syncer.wait_synced()
                server.inject(Fault.error_event(0, 410), path=PODS, watch=True)
                status = await syncer.wait_until(lambda s: s.generation == 2 and s.synced)
        refused = [r for r in server.requests if r.query.get("sendInitialEvents") == "true"]
        pages = [r for r in server.requests if r.path == PODS and not r.watch]
    assert status.restarts == 1  # the 410; the refusals cost no generation
    assert len(refused) == 2  # tried again at the relist
    assert len(pages) == 2
    assert [s.resource_version != "" for s in seen] == [True, True]


async def test_auto_pages_when_the_stream_fails_with_an_error_event(
    server: FakeApiServer, api_client: Any
) -> None:
    """200 and an ERROR 500, as kube-apiserver answers when etcd lacks RequestWatchProgress."""
    await server.create(pod("a"))
    server.inject(Fault.error_event(0, 500), path=PODS, watch=True)
    mirror: dict[str, Any] = {}

    async def on_list(snapshot: Snapshot) -> None:
        mirror.update({item.key: item.object async for item in snapshot})

    async def on_batch(batch: Batch) -> None:
        pass

    syncer = Syncer(
        ListWatch.from_client(api_client, "pods"),
        on_list=on_list,
        on_batch=on_batch,
        backoff=Backoff(**FAST_BACKOFF),
    )
    async with syncer:
        status = await syncer.wait_synced()
    assert status.restarts == 0
    assert set(mirror) == {"default/a"}
    assert [r.watch for r in server.requests if r.path == PODS][:2] == [True, False]


async def test_stream_without_watch_list_fails_with_the_servers_422_and_what_to_change() -> None:
    """The server's own code and words (not a made-up 400), and what would work instead."""
    async with FakeApiServer(watch_list=False) as server, server.api_client() as api:

        async def on_list(snapshot: Snapshot) -> None:
            await snapshot.collect()

        async def on_batch(batch: Batch) -> None:
            pass

        syncer = Syncer(
            ListWatch.from_client(api, "pods"),
            on_list=on_list,
            on_batch=on_batch,
            list_strategy="stream",
        )
        with pytest.raises(WatchListRefused) as raised:
            await syncer.run()
    refused = raised.value
    assert isinstance(refused, InvalidRequest)  # a FatalError, as every 422
    assert (refused.status, refused.reason, refused.request) == (422, "Invalid", f"watch {PODS}")
    assert refused.message.endswith(
        "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"
    )
    assert str(refused).endswith(
        "this server does not serve streaming lists; use list_strategy='auto' or 'paged'"
    )
    assert syncer.status.phase is Phase.FAILED


def paging_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (record.levelno, record.getMessage())
        for record in caplog.records
        if record.name == "listwatch" and "snapshots are" in record.getMessage()
    ]


async def test_auto_says_once_why_snapshots_are_paged_when_etcd_cannot_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """etcd 3.5.1 (before 3.5.13) refuses every streaming list with an ERROR event: every relist
    tries again and pages, the status says why, and the warning is written once."""
    caplog.set_level(logging.INFO, logger="listwatch")
    async with (
        FakeApiServer(request_watch_progress=False, tls=False) as server,
        server.api_client() as api,
    ):
        await server.create(pod("a"))
        syncer = make_syncer(
            ListWatch.from_client(api, "pods"), Mirror(), list_strategy="auto", resync_period=0.05
        )
        async with syncer:
            status = await syncer.wait_until(lambda s: s.generation >= 3 and s.synced)
        attempts = [r for r in server.requests if r.query.get("sendInitialEvents") == "true"]
    assert len(attempts) >= 3  # tried again at every relist
    assert status.streamed is False
    reason = (
        "a streaming list failed (HTTP 500 InternalError: a watch stream was requested by the "
        "client but the required storage feature RequestWatchProgress is disabled)"
    )
    assert status.paged_because == reason
    assert paging_lines(caplog) == [
        (
            logging.WARNING,
            f"snapshots are paged LISTs, not streaming lists: {reason}; a streaming list is "
            "tried again at every relist",
        )
    ]


async def test_the_paging_line_comes_again_only_when_its_reason_changes_or_streams_work(
    server: FakeApiServer, api_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Streaming lists answered, relist after relist: ERROR 500, ERROR 500, 422, a stream, a
    stream, ERROR 500, a stream. One warning, a second for the 422, an info line when
    streams work, a warning again when they stop, and an info line again."""
    caplog.set_level(logging.INFO, logger="listwatch")
    await server.create(pod("a"))
    real = ListWatch.from_client(api_client, "pods")
    etcd = ServerError(500, "InternalError", "RequestWatchProgress is disabled")
    gate = InvalidRequest(422, "Invalid", "sendInitialEvents is forbidden for watch")
    answers: list[Exception | None] = [etcd, etcd, gate, None, None, etcd]

    async def watch(options: WatchOptions) -> AsyncGenerator[Event, None]:
        if options.send_initial_events and answers:
            answer = answers.pop(0)
            if answer is not None:
                raise answer
        stream = real.watch(options)
        try:
            async for event in stream:
                yield event
        finally:
            await stream.aclose()

    source = ListWatch(list_func=real.list, watch_func=watch, watch_list=True)
    opened: list[observe.SnapshotOpened] = []

    def observer(event: observe.SyncEvent) -> None:
        if isinstance(event, observe.SnapshotOpened):
            opened.append(event)

    syncer = make_syncer(
        source, Mirror(), list_strategy="auto", resync_period=0.05, observers=[observer]
    )
    async with syncer:
        await syncer.wait_until(lambda s: s.generation >= 7 and s.synced)
    assert [event.streamed for event in opened[:7]] == [False] * 3 + [True] * 2 + [False, True]
    assert opened[2].paged_because == (
        "the server refused a streaming list (HTTP 422 Invalid: sendInitialEvents is forbidden "
        "for watch)"
    )
    assert opened[3].paged_because is None
    lines = paging_lines(caplog)
    warning, info = logging.WARNING, logging.INFO
    assert [level for level, _ in lines] == [warning, warning, info, warning, info]
    assert "HTTP 500 InternalError" in lines[0][1]
    assert "HTTP 422 Invalid" in lines[1][1]
    assert lines[2][1] == lines[4][1] == "snapshots are streaming lists again"
    assert "HTTP 500 InternalError" in lines[3][1]


async def test_a_server_that_never_ends_its_initial_events_is_not_waited_for(
    server: FakeApiServer, api_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server (a mock, an aggregated API) that ignores sendInitialEvents streams the
    objects and never the end bookmark: without a limit, the receiver would wait for ever
    (kubernetes/kubernetes#135895). "auto" fails that generation and pages the next list."""
    monkeypatch.setattr(loop_module, "INITIAL_EVENTS_QUIET_SECONDS", 0.3)
    await server.create(pod("a"))
    real = ListWatch.from_client(api_client, "pods")

    async def watch(options: WatchOptions) -> AsyncGenerator[Event, None]:
        async with asyncio.timeout(10):
            stream = real.watch(options)
            try:
                async for event in stream:
                    if not event.initial_events_end:
                        yield event
            finally:
                await stream.aclose()

    source = ListWatch(list_func=real.list, watch_func=watch, watch_list=True)

    async def on_list(snapshot: Snapshot) -> None:
        await snapshot.collect()

    async def on_batch(batch: Batch) -> None:
        pass

    syncer = Syncer(source, on_list=on_list, on_batch=on_batch, backoff=Backoff(**FAST_BACKOFF))
    async with syncer:
        status = await syncer.wait_synced()
    assert status.generation == 2
    assert status.recent_restarts[0].reason.startswith("WatchListUnsupported")
    assert "no initial-events-end bookmark" in status.recent_restarts[0].reason
    assert [r.watch for r in server.requests if r.path == PODS][:2] == [True, False]


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_raw_bytes_are_what_the_server_sent(
    server: FakeApiServer, api_client: Any, strategy: str
) -> None:
    await server.create(pod("a", app="web"))
    await server.create(pod("b"))
    # What the server sends for a list, fetched raw: built-in list items carry no kind or
    # apiVersion (kubernetes/kubernetes#3030).
    response = await api_client.call_api(
        PODS, "GET", auth_settings=["BearerToken"], _preload_content=False
    )
    wire = orjson.loads(await response.read())
    assert all("kind" not in item for item in wire["items"])
    sent = {key_of(item): orjson.dumps(item) for item in wire["items"]}
    listed: dict[str, bytes] = {}
    watched: dict[str, bytes] = {}
    c_arrived = asyncio.Event()

    async def on_list(snapshot: Snapshot) -> None:
        async for item in snapshot:
            assert not item.decoded
            listed[item.key] = item.json

    async def on_batch(batch: Batch) -> None:
        for key, event in batch.events.items():
            assert not event.decoded
            watched[key] = event.json
        if "default/c" in watched:
            c_arrived.set()

    syncer = Syncer(
        ListWatch.from_client(api_client, "pods"),
        on_list=on_list,
        on_batch=on_batch,
        merge_interval=0.02,
        list_strategy=strategy,
    )
    async with syncer:
        await syncer.wait_synced()
        await server.wait_for_watchers(1)
        created = await server.create(pod("c"))
        await c_arrived.wait()
    if strategy == "paged":
        prefix = b'{"kind":"Pod","apiVersion":"v1",'
        assert listed == {key: prefix + data[1:] for key, data in sent.items()}
    else:  # watch objects carry their kind and apiVersion
        assert {k: orjson.loads(v) for k, v in listed.items()} == {
            key_of(o): o for o in server.objects("v1", "Pod") if key_of(o) != "default/c"
        }
    assert watched["default/c"] == orjson.dumps(created)


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_on_list_must_read_the_whole_snapshot(
    server: FakeApiServer, api_client: Any, strategy: str
) -> None:
    """Returning early would take part of the cluster for all of it: a ReceiverError."""
    for i in range(4):
        await server.create(pod(f"p{i}"))
    calls = 0

    async def on_list(snapshot: Snapshot) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            async for _ in snapshot:
                return  # one item read, then gone
        await snapshot.collect()

    async def on_batch(batch: Batch) -> None:
        pass

    syncer = Syncer(
        ListWatch.from_client(api_client, "pods"),
        on_list=on_list,
        on_batch=on_batch,
        list_strategy=strategy,
        page_size=2,
        backoff=Backoff(**FAST_BACKOFF),
    )
    async with syncer:
        status = await syncer.wait_synced()
    (restart,) = status.recent_restarts
    assert restart.reason.startswith("ReceiverError")
    assert "before the end of the snapshot" in restart.reason
    assert status.generation == 2


async def test_on_list_must_not_return_while_another_task_reads_the_snapshot(
    server: FakeApiServer, api_client: Any
) -> None:
    """A receiver that hands the snapshot to a task of its own and returns while that task
    waits for the next page: the Syncer cannot close a stream another task is reading, so
    the generation fails as a ReceiverError (and lists again), never as a crash."""
    for i in range(4):
        await server.create(pod(f"p{i}"))
    readers: list[asyncio.Task[None]] = []

    async def read(snapshot: Snapshot) -> None:
        async for _ in snapshot:
            pass

    async def on_list(snapshot: Snapshot) -> None:
        if readers:
            await snapshot.collect()
            return
        # Page 1 is in hand; the request for page 2 hangs until the test ends.
        start = server.request_count
        server.inject(Fault.slow(60), path="/api/v1/pods", watch=False)
        readers.append(asyncio.create_task(read(snapshot)))
        await server.wait_for_request(lambda r: "continue" in r.query, start=start)

    async def on_batch(batch: Batch) -> None:
        pass

    syncer = Syncer(
        ListWatch.from_client(api_client, "pods"),
        on_list=on_list,
        on_batch=on_batch,
        list_strategy="paged",
        page_size=2,
        backoff=Backoff(**FAST_BACKOFF),
    )
    try:
        async with syncer:
            status = await syncer.wait_synced()
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    (restart,) = status.recent_restarts
    assert restart.reason.startswith("ReceiverError")
    assert "before the end of the snapshot" in restart.reason
    assert status.generation == 2


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_a_list_error_the_receiver_swallows_still_fails_the_generation(
    server: FakeApiServer, api_client: Any, strategy: str
) -> None:
    for i in range(4):
        await server.create(pod(f"p{i}"))
    real = ListWatch.from_client(api_client, "pods")
    pages = 0

    async def list_page(options: Any) -> Any:
        nonlocal pages
        pages += 1
        if pages == 2:  # the first list's second page: the connection drops
            raise ConnectionLost("list /api/v1/pods: ClientPayloadError")
        return await real.list(options)

    source = ListWatch(list_func=list_page, watch_func=real.watch, watch_list=True)
    if strategy == "stream":  # the streaming list dies after 2 objects
        server.inject(Fault.cut_stream(after_events=2), path=PODS, watch=True)
    attempts = 0

    async def on_list(snapshot: Snapshot) -> None:
        nonlocal attempts
        attempts += 1
        try:
            await snapshot.collect()
        except Exception:  # a careless receiver: the Syncer must not believe it
            return

    async def on_batch(batch: Batch) -> None:
        pass

    syncer = Syncer(
        source,
        on_list=on_list,
        on_batch=on_batch,
        list_strategy=strategy,
        page_size=2,
        backoff=Backoff(**FAST_BACKOFF),
    )
    async with syncer:
        status = await syncer.wait_synced()
    assert attempts == 2
    (restart,) = status.recent_restarts
    assert restart.reason.startswith("ConnectionLost"), restart.reason


async def test_the_streaming_list_goes_on_as_the_watch(
    server: FakeApiServer, api_client: Any
) -> None:
    await server.create(pod("a"))
    seen: dict[str, str] = {}

    async def on_list(snapshot: Snapshot) -> None:
        seen.update({item.key: item.resource_version async for item in snapshot})

    async def on_batch(batch: Batch) -> None:
        for key, event in batch.events.items():
            if event.type is EventType.DELETED:
                seen.pop(key, None)
            else:
                seen[key] = event.resource_version

    syncer = Syncer(
        ListWatch.from_client(api_client, "pods"),
        on_list=on_list,
        on_batch=on_batch,
        merge_interval=0.02,
        list_strategy="stream",
    )
    async with syncer:
        await syncer.wait_synced()
        await server.create(pod("b"))
        await server.delete(pod("a"))
        expected = server_state(server, "v1", "Pod")
        await syncer.wait_until(lambda s: s.resource_version == str(server.resource_version))
    assert seen == expected
    watches = [r for r in server.requests if r.path == PODS]
    assert len(watches) == 1  # one request: the snapshot, then the watch on the same stream
    assert watches[0].watch
    assert watches[0].query["sendInitialEvents"] == "true"


async def test_a_transform_applies_to_streamed_items_and_their_json(
    server: FakeApiServer, api_client: Any, tmp_path: Path
) -> None:
    await server.create(pod("a", app="web"))

    def strip_spec(obj: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in obj.items() if key != "spec"}

    db = tmp_path / "mirror.db"
    for strategy in STRATEGIES:
        async with SQLiteSink(db, resource="pods") as sink:
            syncer = syncer_into(
                sink, ListWatch.from_client(api_client, "pods"), strategy, transform=strip_spec
            )
            async with syncer:
                await syncer.wait_synced()
        (stored,) = read_mirror(db, resource="pods").objects.values()
        assert "spec" not in stored
        assert stored["metadata"]["labels"] == {"app": "web"}


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_metadata_only_lists_and_watches(
    server: FakeApiServer, api_client: Any, strategy: str
) -> None:
    """PartialObjectMetadata, as client-go's metadata informers ask for it: no spec, no
    status, and every object's kind says so; the snapshot and batches say what they are."""
    await server.create(pod("a", app="web"))
    listed: list[dict[str, Any]] = []
    watched: dict[str, dict[str, Any]] = {}
    resources: list[Any] = []
    arrived = asyncio.Event()

    async def on_list(snapshot: Snapshot) -> None:
        resources.append(snapshot.resource)
        listed.extend(await snapshot.collect())

    async def on_batch(batch: Batch) -> None:
        resources.append(batch.resource)
        watched.update({key: event.object for key, event in batch.events.items()})
        if "default/b" in watched:
            arrived.set()

    source = ListWatch.from_client(api_client, "pods", metadata_only=True)
    syncer = Syncer(
        source, on_list=on_list, on_batch=on_batch, merge_interval=0.02, list_strategy=strategy
    )
    async with syncer:
        await syncer.wait_synced()
        await server.create(pod("b"))
        await arrived.wait()
    assert source.description == "/api/v1/pods (metadata only)"  # resolved by the Syncer
    (item,) = listed
    for obj in (item, watched["default/b"]):
        assert obj["kind"] == "PartialObjectMetadata"
        assert obj["apiVersion"] == "meta.k8s.io/v1"
        assert "spec" not in obj
    assert item["metadata"]["labels"] == {"app": "web"}
    assert {str(r) for r in resources} == {"pods.v1"}
    # The fake negotiates strictly, as kube-apiserver does: the singular form on a LIST is
    # 406, the List form on a watch ends the stream at its first event. Getting here means
    # each request asked in its own form.
    assert syncer.status.restarts == 0
