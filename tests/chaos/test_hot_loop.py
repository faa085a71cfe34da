"""Monitor 5, fault by fault: while the server keeps failing, the request count stays within
what the backoff allows.

Every request (LIST or WATCH) fails the same way for a window; we count the requests that
arrive in it and compare with the most a client that backs off after every failure could
send (``max_requests_under_backoff``, derived from the backoff parameters alone: jitter and
a slow machine only lower the count). A client that retried any of these at once would send
hundreds. Afterwards the faults stop and the Syncer must recover.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from listwatch import Backoff, Batch, ListWatch, Phase, Snapshot, Syncer
from listwatch.testing import FakeApiServer, Fault
from listwatch.testing.scenario import ConfigMapWorkload, configmap

from .monitors import max_requests_under_backoff

PATH = ConfigMapWorkload.PATH

INITIAL, CAP = 0.02, 0.1
WINDOW = 0.4  # seconds of failure (measured; the bound uses the measured length)

LIST_FAULTS: dict[str, Callable[[], Fault]] = {
    "500-json": lambda: Fault.status(500),
    "503-json": lambda: Fault.status(503),
    "429-json": lambda: Fault.too_many_requests(0),
    "429-plain-text": lambda: Fault.too_many_requests(0, plain_text=True),
    "410": Fault.gone,
    "504-too-large": Fault.too_large_resource_version,
    "empty-200": Fault.empty_response,
    "cut-body": Fault.cut_stream,
    "close-connection": Fault.close_connection,
    "401": lambda: Fault.status(401),
}
WATCH_FAULTS: dict[str, Callable[[], Fault]] = {
    "500-json": lambda: Fault.status(500),
    "429-json": lambda: Fault.too_many_requests(0),
    "429-plain-text": lambda: Fault.too_many_requests(0, plain_text=True),
    "410-http": Fault.gone,
    "504-too-large": Fault.too_large_resource_version,
    "error-event-410": lambda: Fault.error_event(0, 410),
    "error-event-500": lambda: Fault.error_event(0, 500),
    "malformed-line": lambda: Fault.malformed_line(0),
    "empty-200": Fault.empty_response,
    "cut-before-any-event": lambda: Fault.cut_stream(0),
}


class Receiver:
    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.changed = asyncio.Event()

    async def on_list(self, snapshot: Snapshot) -> None:
        self.keys = {item.key async for item in snapshot}
        self._notify()

    async def on_batch(self, batch: Batch) -> None:
        for key, event in batch.events.items():
            if event.type == "DELETED":
                self.keys.discard(key)
            else:
                self.keys.add(key)
        self._notify()

    def _notify(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    async def wait_for(self, key: str) -> None:
        async with asyncio.timeout(10):
            while key not in self.keys:
                await self.changed.wait()


@pytest.fixture
async def server() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(bookmark_interval=0.1, too_large_wait=0.05) as fake:
        for i in range(3):
            await fake.create(configmap(f"cm-{i}", "default", i))
        yield fake


async def count_requests_while_failing(
    server: FakeApiServer, fault: Callable[[], Fault], *, watch: bool, strategy: str = "paged"
) -> tuple[int, float, Syncer, Receiver]:
    receiver = Receiver()
    api: Any = server.api_client()
    syncer = Syncer(
        ListWatch.from_client(api, "configmaps"),
        on_list=receiver.on_list,
        on_batch=receiver.on_batch,
        merge_interval=0.01,
        backoff=Backoff(initial=INITIAL, cap=CAP, reset_after=60.0),
        list_strategy=strategy,
    )
    loop = asyncio.get_running_loop()
    server.inject(fault(), path=PATH, watch=watch, times=None)
    try:
        async with syncer:
            # (the source resolves "configmaps" through discovery first: not counted)
            first = await server.wait_for_request(lambda r: r.path == PATH and r.watch == watch)
            start_index = server.request_count - 1
            assert first.fault is not None
            started = loop.time()
            await asyncio.sleep(WINDOW)  # the length of the failure window
            elapsed = loop.time() - started
            requests = server.request_count - start_index
            assert syncer.status.phase is not Phase.FAILED, syncer.status.last_error
            server.clear_faults()
            await server.create(configmap("after", "default", 99))
            await receiver.wait_for("default/after")  # it recovers
    finally:
        await api.close()
    return requests, elapsed, syncer, receiver


@pytest.mark.parametrize("name", list(LIST_FAULTS))
async def test_every_list_failing(server: FakeApiServer, name: str) -> None:
    requests, elapsed, _, _ = await count_requests_while_failing(
        server, LIST_FAULTS[name], watch=False
    )
    print(f"{name}: {requests} requests in {elapsed:.2f} s")
    # aiohttp resends an idempotent request once when the connection closes before a reply.
    per_attempt = 2 if name == "close-connection" else 1
    bound = max_requests_under_backoff(elapsed, initial=INITIAL, cap=CAP, per_attempt=per_attempt)
    assert 2 <= requests <= bound, f"{requests} requests in {elapsed:.2f} s, bound {bound}"


@pytest.mark.parametrize("name", list(WATCH_FAULTS))
async def test_every_watch_failing(server: FakeApiServer, name: str) -> None:
    requests, elapsed, _, _ = await count_requests_while_failing(
        server, WATCH_FAULTS[name], watch=True
    )
    print(f"{name}: {requests} requests in {elapsed:.2f} s")
    # An attempt is one LIST page (3 objects) and one WATCH, or a WATCH alone (429).
    bound = max_requests_under_backoff(elapsed, initial=INITIAL, cap=CAP, per_attempt=2)
    assert 2 <= requests <= bound, f"{requests} requests in {elapsed:.2f} s, bound {bound}"


STREAMING_LIST_FAULTS = {**WATCH_FAULTS, "401": lambda: Fault.status(401)}


@pytest.mark.parametrize("name", list(STREAMING_LIST_FAULTS))
async def test_every_streaming_list_failing(server: FakeApiServer, name: str) -> None:
    """With ``list_strategy="stream"`` the snapshot is a watch: every one of them fails."""
    requests, elapsed, _, _ = await count_requests_while_failing(
        server, STREAMING_LIST_FAULTS[name], watch=True, strategy="stream"
    )
    print(f"{name}: {requests} requests in {elapsed:.2f} s")
    # An attempt is one request: the streaming list (429s are retried as the same request).
    bound = max_requests_under_backoff(elapsed, initial=INITIAL, cap=CAP, per_attempt=1)
    assert 2 <= requests <= bound, f"{requests} requests in {elapsed:.2f} s, bound {bound}"
    assert all("sendInitialEvents" in r.query for r in server.requests if r.watch)
    assert not [r for r in server.requests if not r.watch and r.path == PATH]
