"""Memory bounded by bytes, not counts, over real HTTP against the fake API server: LIST
pages shrink when objects are big (the request log shows each ``limit``), a streaming
list's pages and the merger's batches stay within their byte budgets, and a body that
inflates (or claims) far more than a page may hold is refused at the cap. A Retry-After of
days waits a minute, said at WARNING before the wait."""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from listwatch import Backoff, ListWatch, Syncer
from listwatch._kube.resource import MAX_LIST_BYTES
from listwatch._merger import MAX_BATCH_BYTES
from listwatch._models import PAGE_BYTES, Batch, Snapshot
from listwatch._reflector import MAX_RETRY_AFTER_SECONDS
from listwatch._types import ListOptions
from listwatch.errors import ResponseTooLarge
from listwatch.testing import FakeApiServer, Fault
from tests.objects import configmap, pod

MIB = 1024 * 1024
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
FAST = {"initial": 0.01, "cap": 0.05}


def big(name: str, size: int) -> dict[str, Any]:
    return configmap(name, blob="x" * size)


def lists(server: FakeApiServer, path: str) -> list[Any]:
    return [r for r in server.requests if r.path == path and not r.watch]


@dataclass
class Sizes:
    """A receiver that records the bytes of every page and batch it is handed."""

    pages: list[tuple[int, int]] = field(default_factory=list)
    """(objects, bytes) of each snapshot page."""
    batches: list[tuple[int, int]] = field(default_factory=list)
    """(events, bytes) of each batch."""
    keys: dict[str, str] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_list(self, snapshot: Snapshot) -> None:
        keys = {}
        async for page in snapshot.pages():
            self.pages.append((len(page), sum(item.nbytes for item in page)))
            keys.update({item.key: item.resource_version for item in page})
        self.keys = keys
        self._notify()

    async def on_batch(self, batch: Batch) -> None:
        events = batch.events.values()
        self.batches.append((len(batch), sum(event.nbytes for event in events)))
        self.keys.update({key: event.resource_version for key, event in batch.events.items()})
        self._notify()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def wait_for(self, keys: dict[str, str]) -> None:
        async with asyncio.timeout(60):
            while self.keys != keys:
                await self.changed.wait()


def server_keys(server: FakeApiServer) -> dict[str, str]:
    return {
        f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
        for o in server.objects("v1", "ConfigMap")
    }


def source(api_client: Any) -> ListWatch:
    return ListWatch.from_client(api_client, "configmaps", version="v1", namespace="default")


async def test_list_pages_shrink_for_big_objects_and_grow_back_for_small_ones(
    server: FakeApiServer, api_client: Any
) -> None:
    """40 ConfigMaps of 1 MiB, then 600 small ones. The first page (limit 500) passes the
    hard cap and is asked for again one object at a time; the limit then grows at most
    twice per page to the eight that fit the page budget, and back to 500 for the small
    ones. No page the receiver is handed is larger than the budget."""
    for i in range(40):
        await server.create(big(f"a-{i:02d}", MIB))
    for i in range(600):
        await server.create(configmap(f"b-{i:03d}", k="v"))
    sizes = Sizes()
    syncer = Syncer(
        source(api_client),
        on_list=sizes.on_list,
        on_batch=sizes.on_batch,
        list_strategy="paged",
        backoff=Backoff(**FAST),
    )
    async with syncer:
        await sizes.wait_for(server_keys(server))
    requests = lists(server, CONFIGMAPS)
    limits = [int(r.query["limit"]) for r in requests]
    assert limits[:2] == [500, 1]  # too large: the same first page again, one object
    assert "continue" not in requests[0].query
    assert "continue" not in requests[1].query
    growth = itertools.pairwise(limits[1:])
    assert all(b <= 2 * a + 1 for a, b in growth), str(limits)  # the estimate at most halves
    fit = PAGE_BYTES // (MIB + 1)  # 7 objects of just over 1 MiB fit the budget
    assert limits.count(fit) >= 4, limits
    assert max(limits[1 : limits.index(fit) + 4]) == fit, limits
    assert limits[-1] == 500, limits
    assert sum(count for count, _ in sizes.pages) == 640
    assert max(nbytes for _, nbytes in sizes.pages) <= PAGE_BYTES
    assert syncer.status.restarts == 0


async def test_a_streaming_list_pages_its_initial_events_by_bytes(
    server: FakeApiServer, api_client: Any
) -> None:
    for i in range(10):
        await server.create(big(f"cm-{i}", 3 * MIB))
    await server.create(big("huge", 10 * MIB))  # larger than the budget: a page of its own
    sizes = Sizes()
    syncer = Syncer(
        source(api_client),
        on_list=sizes.on_list,
        on_batch=sizes.on_batch,
        list_strategy="stream",
        backoff=Backoff(**FAST),
    )
    async with syncer:
        await sizes.wait_for(server_keys(server))
    assert sum(count for count, _ in sizes.pages) == 11
    for count, nbytes in sizes.pages:
        assert nbytes <= PAGE_BYTES or count == 1, sizes.pages
    assert (1, max(nbytes for _, nbytes in sizes.pages)) in sizes.pages


async def test_a_burst_of_big_changes_is_delivered_in_batches_within_the_byte_bound(
    server: FakeApiServer, api_client: Any
) -> None:
    sizes = Sizes()
    syncer = Syncer(
        source(api_client),
        on_list=sizes.on_list,
        on_batch=sizes.on_batch,
        merge_interval=1.0,
        backoff=Backoff(**FAST),
    )
    async with syncer:
        await syncer.wait_synced()
        for i in range(10):
            await server.create(big(f"cm-{i}", 3 * MIB))
        await sizes.wait_for(server_keys(server))
    assert sum(count for count, _ in sizes.batches) == 10
    for count, nbytes in sizes.batches:
        assert nbytes <= MAX_BATCH_BYTES or count == 1, sizes.batches


async def test_a_gzip_list_that_inflates_past_the_cap_fails_at_the_cap(
    server: FakeApiServer, api_client: Any
) -> None:
    """2 GiB of blanks in 2 MB of gzip: read up to ``max_list_bytes`` as inflated, no
    further, for the page and for its retry one object at a time."""
    server.inject(Fault.gzip_bomb(2 * 1024**3), path="/api/v1/pods", watch=False, times=2)
    pods = ListWatch.from_client(api_client, "pods", version="v1")
    with pytest.raises(ResponseTooLarge) as caught:
        await pods.list(ListOptions(limit=500))
    error = caught.value
    assert error.read == MAX_LIST_BYTES + 1
    assert str(error).startswith(
        f"list /api/v1/pods: response larger than max_list_bytes={MAX_LIST_BYTES} "
        f"(read {MAX_LIST_BYTES + 1} bytes, inflated from "
    )
    wire = int(str(error).rsplit("inflated from ", 1)[1].split()[0])
    assert wire < MAX_LIST_BYTES // 100  # a bomb: what came over the wire was tiny
    assert [int(r.query["limit"]) for r in lists(server, "/api/v1/pods")] == [500, 1]


async def test_a_list_claiming_two_gib_is_refused_before_it_is_read(
    server: FakeApiServer, api_client: Any
) -> None:
    server.inject(Fault.huge_content_length(2 * 1024**3), path="/api/v1/pods", watch=False, times=2)
    pods = ListWatch.from_client(api_client, "pods", version="v1")
    with pytest.raises(ResponseTooLarge) as caught:
        await pods.list(ListOptions(limit=500))
    assert caught.value.read == 0
    assert str(caught.value) == (
        "list /api/v1/pods: response of 2147483648 bytes (its Content-Length) is larger than "
        f"max_list_bytes={MAX_LIST_BYTES}; not read"
    )


class LoggedBeforeWaiting(Backoff):
    """Records each wait and the WARNING lines logged before it; waits only a token time."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        super().__init__(**FAST)
        self.waits: list[tuple[float, list[str]]] = []
        self._caplog = caplog

    async def sleep(self, delay: float) -> None:
        warned = [r.getMessage() for r in self._caplog.records if r.levelno == logging.WARNING]
        self.waits.append((delay, warned))
        await asyncio.sleep(0)


async def test_a_retry_after_of_days_on_page_two_waits_a_minute_said_before_the_wait(
    server: FakeApiServer, api_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    await server.create(pod("a"))
    await server.create(pod("b"))
    server.inject(
        Fault.too_many_requests(retry_after=999999),
        path="/api/v1/pods",
        watch=False,
        continued=True,
    )
    caplog.set_level(logging.INFO, logger="listwatch")
    backoff = LoggedBeforeWaiting(caplog)
    sizes = Sizes()
    syncer = Syncer(
        ListWatch.from_client(api_client, "pods", version="v1"),
        on_list=sizes.on_list,
        on_batch=sizes.on_batch,
        list_strategy="paged",
        page_size=1,
        backoff=backoff,
    )
    async with syncer:
        await syncer.wait_synced()
    (delay, warned), *_ = backoff.waits
    assert delay == MAX_RETRY_AFTER_SECONDS == 60.0
    assert len(warned) == 1, warned
    assert warned[0].startswith("list /api/v1/pods: HTTP 429 TooManyRequests: ")
    assert warned[0].endswith(
        "; retrying the same request in 60.0 s (the server asked for 999999 s; at most 60 s "
        "is honoured), attempt 1 of 10"
    )
    page_two = [r for r in lists(server, "/api/v1/pods") if "continue" in r.query]
    assert len(page_two) == 2
    assert page_two[0].query == page_two[1].query  # the same request, again
    assert syncer.status.restarts == 0
