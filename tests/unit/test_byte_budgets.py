"""The byte accounting of the budgets that keep an agent's memory bounded by bytes, not
counts: a LIST page's limit (``PageLimit``), the merger's queue and pending map, and the
HTTP sender's body in flight. What they count is ``Item.nbytes``: the JSON the server sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import zlib
from collections import deque
from collections.abc import AsyncIterator

import orjson
import pytest

from listwatch._kube.resource import PageLimit
from listwatch._merger import Batching, EventMerger, MergeBuffer
from listwatch._models import Batch, Event, EventType, Item, Snapshot
from listwatch.httpsync import _client
from listwatch.httpsync._client import SEND_CHUNK_BYTES, HttpSink
from listwatch.httpsync._wire import Header

MIB = 1024 * 1024
WAIT = 5.0
"""Upper bound for awaiting a condition that should hold almost at once (never asserted on)."""
HOUR = 3600.0


def raw_event(name: str, rv: int, size: int, type: EventType = EventType.MODIFIED) -> Event:
    """An event as the watch builds it: the object's JSON bytes, ``size`` of them."""
    head = orjson.dumps({"metadata": {"name": name, "resourceVersion": str(rv)}, "data": ""})
    body = head[:-3] + b'"' + b"x" * max(0, size - len(head)) + b'"}'
    assert len(body) == max(size, len(head))
    return Event(type, None, name, str(rv), raw=memoryview(body))


# --- Item.nbytes -------------------------------------------------------------------------


def test_an_item_counts_the_json_the_server_sent_including_the_spliced_type() -> None:
    item = Item("a", "1", raw=memoryview(b'{"metadata":{"name":"a"}}'), prefix=b'{"kind":"Pod",')
    assert item.nbytes == len(item.json) == 38
    assert Item.of({"metadata": {"name": "a"}}).nbytes == 0  # a parsed dict: not known
    _ = item.object
    assert item.nbytes == 38  # what it came as, once parsed too: the merger's count holds


# --- PageLimit -------------------------------------------------------------------------------


def test_the_first_page_asks_for_what_the_caller_asked() -> None:
    assert PageLimit(8 * MIB).limit(500) == 500
    assert PageLimit(8 * MIB).limit(None) == 0
    assert PageLimit(8 * MIB).limit(0) == 0


def test_big_objects_shrink_the_limit_at_once_and_never_below_one() -> None:
    limit = PageLimit(8 * MIB)
    limit.observed(500 * 7_000, 500)  # pods: 500 fit
    assert limit.limit(500) == 500
    limit.observed(5 * 1_400_000, 5)  # ConfigMaps of 1.4 MB: five fit
    assert limit.limit(500) == 5
    limit.observed(20 * MIB, 1)  # one object over the budget: one at a time
    assert limit.limit(500) == 1
    assert limit.limit(None) == 0  # no limit asked: none imposed (the hard cap alone)


def test_small_objects_grow_the_limit_back_at_most_twice_per_page() -> None:
    limit = PageLimit(8 * MIB)
    limit.observed(4 * 2 * MIB, 4)
    sent = [limit.limit(500)]
    for _ in range(12):
        limit.observed(sent[-1] * 1_000, sent[-1])  # small objects from now on
        sent.append(limit.limit(500))
    assert sent[0] == 4
    assert all(b <= 2 * a for a, b in itertools.pairwise(sent))
    assert sent[-1] == 500  # and it does come back to the caller's limit


def test_an_empty_page_says_nothing_of_sizes() -> None:
    limit = PageLimit(8 * MIB)
    limit.observed(3 * MIB, 1)
    limit.observed(100, 0)
    assert limit.limit(500) == 2


def test_a_page_past_the_hard_cap_asks_for_one_object_next() -> None:
    limit = PageLimit(8 * MIB)
    limit.observed(500 * 7_000, 500)
    limit.too_large(32 * MIB)
    assert limit.limit(500) == 1


# --- the merger: MergeBuffer ------------------------------------------------------------------


def test_add_from_stops_before_the_event_that_would_pass_the_byte_bound() -> None:
    buffer = MergeBuffer()
    queue = deque(raw_event(name, i, MIB) for i, name in enumerate("abcde", start=1))
    taken = buffer.add_from(queue, max_keys=1000, max_bytes=3 * MIB)
    assert (len(buffer), buffer.nbytes, taken) == (3, 3 * MIB, 3 * MIB)
    assert [e.key for e in queue] == ["d", "e"]  # still queued, not lost
    batch = buffer.take()
    assert batch is not None
    assert list(batch.events) == ["a", "b", "c"]
    assert buffer.nbytes == 0
    assert buffer.add_from(queue, max_keys=1000, max_bytes=3 * MIB) == 2 * MIB
    assert not queue


def test_one_event_larger_than_the_bound_is_merged_alone() -> None:
    buffer = MergeBuffer()
    queue = deque([raw_event("big", 1, 5 * MIB), raw_event("small", 2, 100)])
    assert buffer.add_from(queue, max_keys=1000, max_bytes=MIB) == 5 * MIB
    assert list(buffer.take().events) == ["big"]  # type: ignore[union-attr]
    buffer.add_from(queue, max_keys=1000, max_bytes=MIB)
    assert list(buffer.take().events) == ["small"]  # type: ignore[union-attr]


def test_a_replaced_key_gives_its_bytes_back() -> None:
    buffer = MergeBuffer()
    buffer.add(raw_event("a", 1, 3 * MIB))
    buffer.add(raw_event("a", 2, MIB))
    buffer.add(raw_event("b", 3, MIB))
    assert buffer.nbytes == 2 * MIB
    buffer.add_from(deque([raw_event("b", 4, 100)]), max_keys=1000, max_bytes=8 * MIB)
    assert buffer.nbytes == MIB + 100


# --- the merger: EventMerger ------------------------------------------------------------------


class Recorder:
    def __init__(self, release: asyncio.Event | None = None) -> None:
        self.batches: list[Batch] = []
        self.release = release
        self.changed = asyncio.Event()
        self.entered = asyncio.Event()

    async def __call__(self, batch: Batch) -> None:
        self.entered.set()
        if self.release is not None:
            await self.release.wait()
        self.batches.append(batch)
        self.changed.set()

    async def wait_for(self, keys: int) -> None:
        async def until() -> None:
            while sum(len(b) for b in self.batches) < keys:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), WAIT)


@contextlib.asynccontextmanager
async def running(merger: EventMerger) -> AsyncIterator[None]:
    task = asyncio.create_task(merger.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_batches_flush_early_at_the_byte_bound() -> None:
    recorder = Recorder()
    merger = EventMerger(recorder, Batching(merge_interval=HOUR, max_batch_bytes=4 * MIB))
    events = [raw_event(f"cm-{i}", i, MIB) for i in range(10)]
    async with running(merger):
        # The last one does not fit beside the two before it: they go, it waits (an hour).
        await merger.put_many([*events, raw_event("last", 11, 4 * MIB)])
        await recorder.wait_for(10)
    assert [len(b) for b in recorder.batches] == [4, 4, 2]
    assert all(sum(e.nbytes for e in b.events.values()) <= 4 * MIB for b in recorder.batches)


async def test_a_full_queue_in_bytes_holds_the_producer_back_and_loses_nothing() -> None:
    release = asyncio.Event()
    recorder = Recorder(release)
    batching = Batching(merge_interval=HOUR, max_batch=1, queue_bytes=3 * MIB)
    merger = EventMerger(recorder, batching)
    events = [raw_event(f"cm-{i}", i, MIB) for i in range(8)]
    async with running(merger):
        producer = asyncio.create_task(merger.put_many(events))
        # The merger takes one event into a batch and waits in on_batch; three queue.
        await asyncio.wait_for(recorder.entered.wait(), WAIT)
        for _ in range(10):  # yield to the producer: it must not get past the bound
            await asyncio.sleep(0)
        assert not producer.done()
        assert (merger.queued, merger.queued_bytes) == (3, 3 * MIB)
        release.set()
        await asyncio.wait_for(producer, WAIT)
        await recorder.wait_for(8)
    assert [key for b in recorder.batches for key in b.events] == [e.key for e in events]
    assert merger.queued_bytes == 0


async def test_an_event_larger_than_the_queue_waits_for_an_empty_queue_then_goes_alone() -> None:
    release = asyncio.Event()
    recorder = Recorder(release)
    batching = Batching(merge_interval=HOUR, max_batch=1, queue_bytes=MIB)
    merger = EventMerger(recorder, batching)
    assert merger.offer_many([raw_event("small", 1, 100), raw_event("big", 2, 4 * MIB)]) == 1
    async with running(merger):
        await merger.put_many([raw_event("big", 2, 4 * MIB)])  # fits once "small" is taken
        assert merger.queued_bytes == 4 * MIB
        release.set()
        await recorder.wait_for(2)
    assert [list(b.events) for b in recorder.batches] == [["small"], ["big"]]


def test_byte_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch_bytes"):
        Batching(max_batch_bytes=0)
    with pytest.raises(ValueError, match="queue_bytes"):
        Batching(queue_bytes=0)


# --- the HTTP sender's body in flight -------------------------------------------------------


@pytest.mark.parametrize("level", [0, 1])
async def test_a_snapshot_body_goes_out_in_chunks_of_a_few_records_never_a_page(
    level: int,
) -> None:
    """A page of twenty 1.4 MiB objects is not encoded whole: each chunk handed to aiohttp
    holds about ``SEND_CHUNK_BYTES`` of records (at least one), and the chunks together are
    the request the receiver reads."""
    size = 1_400_000
    items = [
        Item(f"default/cm-{i}", str(i), raw=memoryview(b'{"data":"' + b"y" * size + b'"}'))
        for i in range(20)
    ]
    snapshot = Snapshot.of(items, "21", page_size=500)  # one page of 28 MB
    sink = HttpSink("http://127.0.0.1:1", compress_level=level)
    header = Header("snapshot", sink._gvr(None, "configmaps"), 0, "", 1, 0, "21")
    chunks = [chunk async for chunk in sink._snapshot_body(header, snapshot)]
    inflated = [zlib.decompress(c, wbits=31) for c in [b"".join(chunks)]] if level else chunks
    body = b"".join(inflated)
    records = body.splitlines()
    assert len(records) == 1 + 20 + 1  # header, one per object, commit
    record = len(records[1]) + 1
    if not level:  # compressed, the same records make smaller chunks
        assert max(len(c) for c in chunks) <= SEND_CHUNK_BYTES + record
        assert len(chunks) >= 20 * record // (SEND_CHUNK_BYTES + record)
    assert _client._QUEUED_CHUNKS == 2  # what waits for the writer: two such chunks
    # The header goes alone and first, readable at once: the receiver judges the fence
    # before any object arrives.
    first = zlib.decompressobj(wbits=31).decompress(chunks[0]) if level else chunks[0]
    assert first == records[0] + b"\n"
