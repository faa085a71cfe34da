"""The merge rules (property-tested on MergeBuffer) and the async EventMerger driver."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from listwatch._merger import Batching, EventMerger, MergeBuffer
from listwatch._models import Batch, Event, EventType, JsonObject

WAIT = 5.0
"""Upper bound for awaiting a condition that should hold almost at once (never asserted on)."""

HOUR = 3600.0
"""A merge interval long enough that only max_batch can explain a flush."""


def obj(name: str, rv: int | str, **metadata: Any) -> JsonObject:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv), **metadata}}


def event(type: EventType | str, name: str, rv: int | str) -> Event:
    return Event.from_object(EventType(type), obj(name, rv))


def bookmark(rv: int | str) -> Event:
    return Event.from_object(EventType.BOOKMARK, {"metadata": {"resourceVersion": str(rv)}})


# --- MergeBuffer: unit tests -------------------------------------------------------------------


def test_last_event_wins_and_key_moves_to_end() -> None:
    buffer = MergeBuffer()
    for e in [event("ADDED", "a", 1), event("ADDED", "b", 2), event("MODIFIED", "a", 3)]:
        buffer.add(e)
    assert len(buffer) == 2
    assert buffer.received == 3
    batch = buffer.take(generation=7)
    assert batch is not None
    assert list(batch.events) == ["ns/b", "ns/a"]
    assert batch.events["ns/a"].resource_version == "3"
    assert (batch.resource_version, batch.generation, batch.received) == ("3", 7, 3)
    assert len(buffer) == 0
    assert buffer.received == 0


def test_delete_then_add_keeps_the_add() -> None:
    buffer = MergeBuffer()
    buffer.add(event("DELETED", "a", 1))
    buffer.add(event("ADDED", "a", 2))
    batch = buffer.take()
    assert batch is not None
    assert batch.events["ns/a"].type is EventType.ADDED


def test_take_returns_none_when_nothing_is_new() -> None:
    buffer = MergeBuffer()
    assert buffer.take() is None
    buffer.add(event("ADDED", "a", 1))
    assert buffer.take() is not None
    assert buffer.take() is None


def test_bookmark_only_interval_gives_an_empty_batch_with_the_newer_rv() -> None:
    buffer = MergeBuffer()
    buffer.add(event("ADDED", "a", 1))
    buffer.take()
    buffer.add(bookmark(5))
    assert len(buffer) == 0
    batch = buffer.take()
    assert batch is not None
    assert dict(batch.events) == {}
    assert (batch.resource_version, batch.received) == ("5", 1)


def test_repeated_bookmark_at_the_taken_rv_is_nothing_new() -> None:
    buffer = MergeBuffer()
    buffer.add(bookmark(5))
    assert buffer.take() is not None
    buffer.add(bookmark(5))
    assert buffer.take() is None
    assert buffer.received == 1  # a take that returns None changes nothing


def test_rvs_are_opaque_stream_order_wins() -> None:
    buffer = MergeBuffer()
    buffer.add(event("ADDED", "a", "900"))
    buffer.add(event("MODIFIED", "a", "1000"))  # "1000" < "900" as strings
    buffer.add(bookmark("x-opaque"))
    assert buffer.resource_version == "x-opaque"


def test_event_without_rv_does_not_reset_the_resume_point() -> None:
    buffer = MergeBuffer()
    buffer.add(event("ADDED", "a", 4))
    buffer.add(Event(EventType.MODIFIED, {"metadata": {"name": "a"}}, "ns/a", ""))
    assert buffer.resource_version == "4"


def test_error_event_is_rejected_without_changing_state() -> None:
    buffer = MergeBuffer()
    error = Event(EventType.ERROR, {"kind": "Status", "code": 410}, "", "")
    with pytest.raises(ValueError, match="ERROR"):
        buffer.add(error)
    assert (len(buffer), buffer.received, buffer.take()) == (0, 0, None)


def test_event_without_key_is_rejected() -> None:
    with pytest.raises(ValueError, match="no key"):
        MergeBuffer().add(Event(EventType.ADDED, {}, "", "1"))


def test_custom_key_func_coalesces_on_it() -> None:
    buffer = MergeBuffer(key=lambda o: o["metadata"]["uid"])
    buffer.add(Event.from_object(EventType.ADDED, obj("a", 1, uid="u1")))
    buffer.add(Event.from_object(EventType.MODIFIED, obj("renamed", 2, uid="u1")))
    buffer.add(Event.from_object(EventType.ADDED, obj("a", 3, uid="u2")))
    batch = buffer.take()
    assert batch is not None
    assert list(batch.events) == ["u1", "u2"]
    assert batch.events["u1"].object["metadata"]["name"] == "renamed"


# --- MergeBuffer: properties -------------------------------------------------------------------

Step = tuple[str, EventType] | None
TAKE = None
KEYS = "abcde"
TYPES = [EventType.ADDED, EventType.MODIFIED, EventType.DELETED, EventType.BOOKMARK]

steps = st.lists(
    st.one_of(st.none(), st.tuples(st.sampled_from(KEYS), st.sampled_from(TYPES))),
    max_size=80,
)
"""A run: ``None`` is a take(), ``(name, type)`` adds an event (RVs are assigned 1, 2, ...)."""


def build(step: tuple[str, EventType], rv: int) -> Event:
    name, type = step
    return bookmark(rv) if type is EventType.BOOKMARK else event(type, name, rv)


def expected_batch(since_take: list[Event]) -> list[tuple[str, Event]]:
    """Each key's last event since the previous take, ordered by that last event's position."""
    last: dict[str, tuple[int, Event]] = {}
    for position, e in enumerate(since_take):
        if e.type is not EventType.BOOKMARK:
            last[e.key] = (position, e)
    return [(key, e) for key, (_, e) in sorted(last.items(), key=lambda kv: kv[1][0])]


@given(steps)
def test_batches_hold_each_keys_last_event_in_order(run: list[Step]) -> None:
    buffer = MergeBuffer()
    since_take: list[Event] = []
    last_rv = ""
    taken_rv = ""
    for rv, step in enumerate(run, start=1):
        if step is TAKE:
            batch = buffer.take(generation=3)
            if not since_take:  # RVs strictly increase, so "nothing added" is "nothing new"
                assert batch is None
                continue
            assert batch is not None
            assert list(batch.events.items()) == expected_batch(since_take)
            assert batch.resource_version == last_rv
            assert batch.received == len(since_take)
            assert batch.generation == 3
            assert batch.resource_version != taken_rv
            since_take, taken_rv = [], last_rv
        else:
            e = build(step, rv)
            buffer.add(e)
            since_take.append(e)
            last_rv = e.resource_version
        distinct = {e.key for e in since_take if e.type is not EventType.BOOKMARK}
        assert len(buffer) == len(distinct) <= len(KEYS)
        assert buffer.received == len(since_take)
        assert buffer.resource_version == last_rv


def apply(state: dict[str, int], e: Event) -> None:
    """A mirroring receiver: keep each live object's RV."""
    if e.type is EventType.DELETED:
        state.pop(e.key, None)
    elif e.type is not EventType.BOOKMARK:
        state[e.key] = int(e.resource_version)


@given(steps)
def test_applying_batches_converges_to_applying_every_event(run: list[Step]) -> None:
    buffer = MergeBuffer()
    every_event: dict[str, int] = {}
    batched: dict[str, int] = {}
    delivered_rvs: list[int] = []
    for rv, step in enumerate([*run, TAKE], start=1):
        if step is not TAKE:
            e = build(step, rv)
            buffer.add(e)
            apply(every_event, e)
        elif (batch := buffer.take()) is not None:
            for e in batch.events.values():
                apply(batched, e)
            delivered_rvs.append(int(batch.resource_version))
    assert batched == every_event
    assert delivered_rvs == sorted(set(delivered_rvs))  # the resume point never goes back


# --- EventMerger -------------------------------------------------------------------------------


class Recorder:
    """An ``on_batch`` that records batches; optionally blocks each call until released."""

    def __init__(self, *, blocked: bool = False) -> None:
        self.batches: list[Batch] = []
        self.active = 0
        self.max_active = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        if not blocked:
            self.release.set()
        self._changed = asyncio.Condition()

    async def __call__(self, batch: Batch) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.entered.set()
        try:
            await self.release.wait()
            self.batches.append(batch)
        finally:
            self.active -= 1
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Any) -> None:
        async def until() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))

        await asyncio.wait_for(until(), WAIT)

    @property
    def received(self) -> int:
        return sum(b.received for b in self.batches)


@contextlib.asynccontextmanager
async def running(merger: EventMerger) -> AsyncIterator[asyncio.Task[None]]:
    """Run the merger in a task; cancel it on exit and check it ended by that cancellation."""
    task = asyncio.create_task(merger.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"merge_interval": 0}, "merge_interval"),
        ({"merge_interval": -1.0}, "merge_interval"),
        ({"merge_interval": float("nan")}, "merge_interval"),
        ({"max_batch": 0}, "max_batch"),
        ({"queue_size": 0}, "queue_size"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Batching(**kwargs)


def test_introspection_reports_the_configuration() -> None:
    merger = EventMerger(
        Recorder(), Batching(merge_interval=2.0, max_batch=5, queue_size=7), generation=4
    )
    assert (merger.merge_interval, merger.max_batch, merger.queue_size) == (2.0, 5, 7)
    assert (merger.generation, merger.pending, merger.queued, merger.batches_delivered) == (
        4,
        0,
        0,
        0,
    )


async def test_put_rejects_error_events() -> None:
    merger = EventMerger(Recorder())
    with pytest.raises(ValueError, match="ERROR"):
        await merger.put(Event(EventType.ERROR, {"kind": "Status"}, "", ""))
    assert merger.queued == 0


async def test_max_batch_flushes_early() -> None:
    recorder = Recorder()
    merger = EventMerger(recorder, Batching(merge_interval=HOUR, max_batch=3))
    async with running(merger):
        for i, name in enumerate(["a", "b", "a", "c", "d"], start=1):
            await merger.put(event("ADDED", name, i))
        await recorder.wait_for(lambda r: len(r.batches) == 1)
        assert list(recorder.batches[0].events) == ["ns/b", "ns/a", "ns/c"]
        assert recorder.batches[0].received == 4
        assert merger.pending == 1  # "d" waits for the next interval or max_batch
        assert merger.batches_delivered == 1


async def test_interval_flush_delivers_merged_events_with_generation() -> None:
    recorder = Recorder()
    merger = EventMerger(recorder, Batching(merge_interval=0.01), generation=2)
    for i, name in enumerate(["a", "b", "a"], start=1):
        await merger.put(event("MODIFIED", name, i))
    async with running(merger):
        await recorder.wait_for(lambda r: len(r.batches) == 1)
    (batch,) = recorder.batches
    assert list(batch.events) == ["ns/b", "ns/a"]
    assert (batch.resource_version, batch.generation, batch.received) == ("3", 2, 3)


async def test_bookmark_only_interval_delivers_an_empty_batch() -> None:
    recorder = Recorder()
    merger = EventMerger(recorder, Batching(merge_interval=0.01))
    async with running(merger):
        await merger.put(bookmark(42))
        await recorder.wait_for(lambda r: len(r.batches) == 1)
    assert dict(recorder.batches[0].events) == {}
    assert recorder.batches[0].resource_version == "42"


async def test_batches_never_overlap_and_nothing_is_read_meanwhile() -> None:
    recorder = Recorder(blocked=True)
    merger = EventMerger(recorder, Batching(merge_interval=HOUR, max_batch=1))
    async with running(merger):
        await merger.put(event("ADDED", "a", 1))
        await asyncio.wait_for(recorder.entered.wait(), WAIT)
        for i, name in enumerate(["b", "c", "d"], start=2):
            await merger.put(event("ADDED", name, i))
        for _ in range(10):  # yield to the merger: it must not read while on_batch runs
            await asyncio.sleep(0)
        assert (merger.queued, merger.pending, recorder.active) == (3, 0, 1)
        recorder.release.set()
        await recorder.wait_for(lambda r: len(r.batches) == 4)
    assert recorder.max_active == 1
    assert [list(b.events) for b in recorder.batches] == [["ns/a"], ["ns/b"], ["ns/c"], ["ns/d"]]
    assert merger.batches_delivered == 4


async def test_full_queue_blocks_put_until_the_merger_reads_again() -> None:
    recorder = Recorder(blocked=True)
    merger = EventMerger(recorder, Batching(merge_interval=HOUR, max_batch=1, queue_size=2))
    async with running(merger):
        await merger.put(event("ADDED", "a", 1))
        await asyncio.wait_for(recorder.entered.wait(), WAIT)
        await merger.put(event("ADDED", "b", 2))
        await merger.put(event("ADDED", "c", 3))
        blocked_put = asyncio.create_task(merger.put(event("ADDED", "d", 4)))
        done, _ = await asyncio.wait({blocked_put}, timeout=0.05)
        assert not done, "put() returned while the queue was full and on_batch was blocked"
        assert merger.queued == 2
        recorder.release.set()
        await asyncio.wait_for(blocked_put, WAIT)
        await recorder.wait_for(lambda r: r.received == 4)
    delivered = [key for b in recorder.batches for key in b.events]
    assert delivered == ["ns/a", "ns/b", "ns/c", "ns/d"]  # nothing dropped


async def test_on_batch_exception_propagates_unchanged() -> None:
    boom = RuntimeError("receiver is down")

    async def failing(batch: Batch) -> None:
        raise boom

    merger = EventMerger(failing, Batching(merge_interval=HOUR, max_batch=1))
    await merger.put(event("ADDED", "a", 1))
    with pytest.raises(RuntimeError) as excinfo:
        await asyncio.wait_for(merger.run(), WAIT)
    assert excinfo.value is boom
    assert (merger.batches_delivered, merger.pending) == (0, 0)


async def test_cancel_during_on_batch_ends_cleanly() -> None:
    recorder = Recorder(blocked=True)  # never released
    merger = EventMerger(recorder, Batching(merge_interval=HOUR, max_batch=1))
    task = asyncio.create_task(merger.run())
    await merger.put(event("ADDED", "a", 1))
    await asyncio.wait_for(recorder.entered.wait(), WAIT)
    await merger.put(event("ADDED", "b", 2))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert (recorder.active, recorder.batches, merger.batches_delivered) == (0, [], 0)
    assert merger.pending == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_cancel_while_waiting_drops_pending() -> None:
    recorder = Recorder()
    merged = asyncio.Event()

    def key(o: JsonObject) -> str:
        merged.set()
        return str(o["metadata"]["name"])

    merger = EventMerger(recorder, Batching(merge_interval=HOUR), key=key)
    async with running(merger) as task:
        await merger.put(event("ADDED", "a", 1))
        await asyncio.wait_for(merged.wait(), WAIT)
        assert (merger.queued, merger.pending) == (0, 1)
    assert task.cancelled()
    assert (merger.pending, recorder.batches) == (0, [])


async def test_run_twice_at_once_is_refused() -> None:
    recorder = Recorder(blocked=True)
    merger = EventMerger(recorder, Batching(merge_interval=HOUR, max_batch=1))
    async with running(merger):
        await merger.put(event("ADDED", "a", 1))
        await asyncio.wait_for(recorder.entered.wait(), WAIT)
        with pytest.raises(RuntimeError, match="already running"):
            await merger.run()


async def test_custom_key_func() -> None:
    recorder = Recorder()
    merger = EventMerger(
        recorder, Batching(merge_interval=0.01), key=lambda o: o["metadata"]["uid"]
    )
    await merger.put(Event.from_object(EventType.ADDED, obj("a", 1, uid="u1")))
    await merger.put(Event.from_object(EventType.MODIFIED, obj("b", 2, uid="u1")))
    async with running(merger):
        await recorder.wait_for(lambda r: len(r.batches) == 1)
    assert list(recorder.batches[0].events) == ["u1"]
    assert recorder.batches[0].events["u1"].object["metadata"]["name"] == "b"


async def test_pending_never_exceeds_max_batch() -> None:
    max_batch = 5
    seen_pending: list[int] = []
    recorder = Recorder()
    merger: EventMerger

    def key(o: JsonObject) -> str:
        seen_pending.append(merger.pending)  # sampled before every merge
        return str(o["metadata"]["name"])

    merger = EventMerger(recorder, Batching(merge_interval=0.01, max_batch=max_batch), key=key)
    names = [f"k{i % 23}" for i in range(200)]
    async with running(merger):
        for rv, name in enumerate(names, start=1):
            await merger.put(event("MODIFIED", name, rv))
        await recorder.wait_for(lambda r: r.received == len(names))
    assert len(seen_pending) == len(names)
    assert max(seen_pending) < max_batch
    assert all(len(b) <= max_batch for b in recorder.batches)
    assert merger.pending <= max_batch
    assert recorder.batches[-1].resource_version == str(len(names))


async def test_offer_queues_without_waiting_until_the_queue_is_full() -> None:
    async def on_batch(batch: Batch) -> None:
        pass

    merger = EventMerger(on_batch, Batching(queue_size=2))
    first, second, third = (
        Event(EventType.ADDED, {"metadata": {"name": n}}, n, str(i))
        for i, n in enumerate("abc", start=1)
    )
    assert merger.offer(first)
    assert merger.offer(second)
    assert not merger.offer(third)
    assert merger.queued == 2
    with pytest.raises(ValueError, match="ERROR"):
        merger.offer(Event(EventType.ERROR, {}, "", "9"))


# --- lists of events (one per network chunk) ---------------------------------------------------


def batches_of(events: list[Event], max_keys: int, drain: Any) -> list[tuple[Any, ...]]:
    """Drain a queue of ``events`` as the merger does, taking a batch at ``max_keys`` keys."""
    buffer = MergeBuffer()
    queue = deque(events)
    taken: list[tuple[Any, ...]] = []
    while True:
        drain(buffer, queue, max_keys)
        assert len(buffer) <= max_keys
        batch = buffer.take()
        if batch is None:
            assert not queue
            return taken
        taken.append((list(batch.events.items()), batch.resource_version, batch.received))


def one_by_one(buffer: MergeBuffer, queue: deque[Event], max_keys: int) -> None:
    while queue and len(buffer) < max_keys:
        buffer.add(queue.popleft())


@given(steps, st.integers(min_value=1, max_value=6))
def test_add_from_merges_as_add_does(run: list[Step], max_keys: int) -> None:
    events = [build(step, rv) for rv, step in enumerate(run, start=1) if step is not TAKE]
    expected = batches_of(events, max_keys, one_by_one)
    assert batches_of(events, max_keys, MergeBuffer.add_from) == expected
    assert sum(received for _, _, received in expected) == len(events)


def test_add_from_stops_at_a_bad_event_and_leaves_the_rest_queued() -> None:
    buffer = MergeBuffer()
    queue = deque([event("ADDED", "a", 1), Event(EventType.ERROR, {}, "", "2"), bookmark(3)])
    with pytest.raises(ValueError, match="ERROR"):
        buffer.add_from(queue, 10)
    assert (len(buffer), buffer.resource_version, buffer.received) == (1, "1", 1)
    assert [e.resource_version for e in queue] == ["3"]


@given(
    run=steps,
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=20),
    queue_size=st.integers(min_value=1, max_value=7),
    max_batch=st.integers(min_value=1, max_value=6),
)
def test_lists_of_any_size_are_merged_within_the_bounds(
    run: list[Step], cuts: list[int], queue_size: int, max_batch: int
) -> None:
    """Whatever the lists the watch hands over, every event is merged in order (the batches
    converge to applying every event), the queue never holds more than ``queue_size``
    events and no batch more than ``max_batch`` keys."""
    events = [build(step, rv) for rv, step in enumerate(run, start=1) if step is not TAKE]
    points = sorted({0, len(events), *(c % (len(events) + 1) for c in cuts)})
    lists = [events[a:b] for a, b in itertools.pairwise(points)]

    async def scenario() -> tuple[list[Batch], int]:
        recorder = Recorder()
        merger = EventMerger(recorder, Batching(0.001, max_batch, queue_size))
        most_queued = 0

        async def watch() -> None:
            nonlocal most_queued
            for chunk in lists:
                queued = merger.offer_many(chunk)
                most_queued = max(most_queued, merger.queued)
                if queued < len(chunk):
                    await merger.put_many(chunk, queued)
                most_queued = max(most_queued, merger.queued)

        async with running(merger):
            await asyncio.wait_for(watch(), WAIT)
            await recorder.wait_for(lambda r: r.received == len(events))
        return recorder.batches, most_queued

    batches, most_queued = asyncio.run(scenario())
    every_event: dict[str, int] = {}
    for e in events:
        apply(every_event, e)
    batched: dict[str, int] = {}
    for batch in batches:
        assert len(batch) <= max_batch
        for e in batch.events.values():
            apply(batched, e)
    assert batched == every_event
    assert most_queued <= queue_size
    if events:
        assert batches[-1].resource_version == events[-1].resource_version


async def test_a_list_that_does_not_fit_waits_for_room_for_the_rest() -> None:
    recorder = Recorder(blocked=True)
    merger = EventMerger(recorder, Batching(merge_interval=HOUR, max_batch=1, queue_size=3))
    events = [event("ADDED", name, i) for i, name in enumerate("abcdef", start=1)]
    async with running(merger):
        await merger.put(events[0])
        await asyncio.wait_for(recorder.entered.wait(), WAIT)
        assert merger.offer_many(events, 1) == 4  # room for three
        assert merger.queued == 3
        rest = asyncio.create_task(merger.put_many(events, 4))
        done, _ = await asyncio.wait({rest}, timeout=0.05)
        assert not done, "put_many() returned while the queue was full"
        assert merger.queued == 3
        recorder.release.set()
        await asyncio.wait_for(rest, WAIT)
        await recorder.wait_for(lambda r: r.received == 6)
    assert [key for b in recorder.batches for key in b.events] == [f"ns/{n}" for n in "abcdef"]


async def test_an_error_event_in_a_list_is_refused_after_the_events_before_it() -> None:
    merger = EventMerger(Recorder(), Batching(queue_size=10))
    events = [event("ADDED", "a", 1), Event(EventType.ERROR, {}, "", "2"), event("ADDED", "b", 3)]
    with pytest.raises(ValueError, match="ERROR"):
        merger.offer_many(events)
    assert merger.queued == 1
    with pytest.raises(ValueError, match="ERROR"):
        await merger.put_many(events, 1)
    assert merger.queued == 1


async def test_a_cancelled_put_many_leaves_no_waiter_behind() -> None:
    recorder = Recorder(blocked=True)
    merger = EventMerger(recorder, Batching(merge_interval=HOUR, max_batch=1, queue_size=1))
    async with running(merger):
        await merger.put(event("ADDED", "a", 1))
        await asyncio.wait_for(recorder.entered.wait(), WAIT)
        await merger.put(event("ADDED", "b", 2))
        waiting = asyncio.create_task(merger.put_many([event("ADDED", "c", 3)]))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not merger._putters
        recorder.release.set()
        await recorder.wait_for(lambda r: r.received == 2)
    assert [key for b in recorder.batches for key in b.events] == ["ns/a", "ns/b"]
