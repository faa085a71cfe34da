"""Coalesce watch events by key and hand them to the receiver in periodic batches.

A watch can report many changes to the same object within seconds (a rollout touches a pod's
status again and again). A receiver that mirrors state needs only each object's *latest* state,
so the merger keeps ``{key: last event}`` and delivers that map every ``merge_interval``:

* memory is bounded by the number of distinct keys, not by the event rate: a hot object costs
  one slot however often it changes, and ``max_batch`` caps the slots (an early flush) while the
  bounded queue in front caps what waits to be merged (a full queue slows the watch reader).
  Both are bounded in bytes too (``max_batch_bytes``, ``queue_bytes``): a thousand objects
  are 7 MB of pods or 1.4 GB of the largest ConfigMaps;
* the receiver skips intermediate states and does one write per object per batch.

:class:`MergeBuffer` holds the merge rules and is synchronous, so they can be property-tested;
:class:`EventMerger` drives it from a bounded queue and calls ``on_batch``. The watch hands the
queue one list of events per network chunk (``put_many``), and the merger moves them into the
buffer in one loop: per event, a watch costs a few dictionary operations, not a queue
operation, an ``await`` and a task switch. :class:`Batching` is the three numbers that bound
it, validated once where they are given (``Syncer(merge_interval=...)``).

Bytes are the JSON bytes the server sent (``Item.nbytes``; a key function that parses the
object does not change them); an event a custom source built from a parsed dict counts 0
and is bounded by the counts alone. A byte bound holds at most
its budget, or a single event larger than that: one object always gets through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from listwatch._models import Batch, Event, EventType, GroupVersionResource, KeyFunc
from listwatch._types import OnBatch

__all__ = ["Batching", "EventMerger", "MergeBuffer"]

logger = logging.getLogger("listwatch")

"""The receiver's coroutine for merged deltas."""


_BOOKMARK = EventType.BOOKMARK
_ERROR = EventType.ERROR
_NBYTES = operator.attrgetter("nbytes")


def _check_event(event: Event) -> None:
    """Reject ERROR events: the watch loop must turn them into errors, never merge them."""
    if event.type is EventType.ERROR:
        raise ValueError(
            "ERROR watch events cannot be merged; the watch loop must handle them "
            f"(resource_version={event.resource_version!r})"
        )


class MergeBuffer:
    """The merge rules, without I/O: ``{key: last event}`` plus the newest resource version.

    * ADDED, MODIFIED and DELETED events replace the key's previous event, and the key moves to
      the end, so a batch is ordered by each key's *last* event.
    * BOOKMARK events only advance :attr:`resource_version`.
    * Every event's RV becomes :attr:`resource_version`: stream order is the only order (RVs are
      opaque strings, never compared). An event without an RV leaves it unchanged, so a
      malformed event cannot move the resume point back to "".
    """

    def __init__(self, *, key: KeyFunc | None = None) -> None:
        self._key = key
        self._pending: dict[str, Event] = {}
        self._pending_bytes = 0
        self._resource_version = ""
        self._taken_resource_version = ""
        self._received = 0

    def __len__(self) -> int:
        """The number of distinct keys pending."""
        return len(self._pending)

    @property
    def nbytes(self) -> int:
        """The bytes of the events pending (``Item.nbytes``), one per key."""
        return self._pending_bytes

    @property
    def resource_version(self) -> str:
        """The RV of the newest event added (bookmarks included); "" before any."""
        return self._resource_version

    @property
    def received(self) -> int:
        """How many events were added since the last batch was taken."""
        return self._received

    def add(self, event: Event) -> None:
        """Merge one event. Raises ``ValueError`` for ERROR events or an event without a key.

        On the hot path (once per watch event): kept to a few dictionary operations.
        """
        if event.type is not EventType.BOOKMARK:
            _check_event(event)
            size = event.nbytes
            key = self._key(event.object) if self._key is not None else event.key
            if not key:
                raise ValueError(f"{event.type} event has no key; cannot merge it")
            pending = self._pending
            replaced = pending.pop(key, None)  # re-insert: the key moves to the end
            pending[key] = event
            self._pending_bytes += size - (replaced.nbytes if replaced is not None else 0)
        if event.resource_version:
            self._resource_version = event.resource_version
        self._received += 1

    def add_from(self, queue: deque[Event], max_keys: int, max_bytes: int | None = None) -> int:
        """Merge events from the front of ``queue`` until it is empty, ``max_keys`` keys are
        pending, or the next event would take the pending bytes past ``max_bytes`` (unless
        nothing is pending: one event always fits; a key it replaces is not credited, so
        the check errs towards an early flush): the rules of :meth:`add`, in one loop (the
        merger's hot path). Returns the bytes of the events it took from the queue.

        On a bad event (ERROR, no key) it raises ``ValueError``: that event has been taken
        from the queue, the ones before it are merged, the ones after it stay queued.
        """
        pending = self._pending
        key_func = self._key
        resource_version = self._resource_version
        pending_bytes = self._pending_bytes
        room = max_bytes if max_bytes is not None else sys.maxsize
        received = 0
        taken = 0
        try:
            while queue and len(pending) < max_keys:
                event = queue.popleft()
                size = event.nbytes
                if pending_bytes + size > room and pending:
                    queue.appendleft(event)
                    break  # full: what is pending is delivered first, then this one
                taken += size
                event_type = event.type
                if event_type is not _BOOKMARK:
                    if event_type is _ERROR:
                        _check_event(event)
                    key = key_func(event.object) if key_func is not None else event.key
                    if not key:
                        raise ValueError(f"{event_type} event has no key; cannot merge it")
                    replaced = pending.pop(key, None)  # re-insert: the key moves to the end
                    pending[key] = event
                    pending_bytes += size - (replaced.nbytes if replaced is not None else 0)
                if event.resource_version:
                    resource_version = event.resource_version
                received += 1
        finally:
            self._resource_version = resource_version
            self._pending_bytes = pending_bytes
            self._received += received
        return taken

    def take(
        self, generation: int = 0, *, epoch: int = 0, resource: GroupVersionResource | None = None
    ) -> Batch | None:
        """Return the pending changes as a :class:`Batch` and start over.

        ``None`` when there is nothing new: no pending key and the RV did not move since the last
        batch (the buffer is left as it was). A bookmark-only interval gives a batch with no
        events and the newer RV, so the receiver can persist its progress.
        """
        if not self._pending and self._resource_version == self._taken_resource_version:
            return None
        batch = Batch(
            self._pending, self._resource_version, generation, self._received, epoch, resource
        )
        self._pending = {}
        self._pending_bytes = 0
        self._taken_resource_version = self._resource_version
        self._received = 0
        return batch


MAX_BATCH_BYTES = 8 * 1024 * 1024
"""The default byte bound of a batch. A receiver holds a batch while it writes it, often
twice over (its rows or its request body), and the agent runs in 256 MiB; 8 MiB is a
thousand pods of up to 8 KB (``max_batch`` decides for ordinary objects) and five of the
largest objects etcd stores (~1.5 MiB: docs/kubernetes-semantics.md#size-limits)."""

QUEUE_BYTES = 8 * 1024 * 1024
"""The default byte bound of the queue in front of the merge: what the watch reader may
run ahead of the merge, like ``MAX_BATCH_BYTES`` a thousand ordinary events or a few of
the largest."""


@dataclass(frozen=True, slots=True)
class Batching:
    """How watch events become batches; a bad value is refused here, when it is given.

    Together they bound a generation's memory: ``queue_size`` queued events within
    ``queue_bytes`` plus ``max_batch`` merged keys within ``max_batch_bytes``, whatever the
    event rate and the objects' sizes (a single larger event still passes, alone).
    """

    merge_interval: float = 3.0
    """Seconds between the end of one ``on_batch`` call and the next flush."""
    max_batch: int = 1000
    """The most distinct keys pending before an early flush."""
    queue_size: int = 1000
    """The queue's bound in events: a producer waits while this many are queued."""
    max_batch_bytes: int = MAX_BATCH_BYTES
    """The most bytes pending before an early flush."""
    queue_bytes: int = QUEUE_BYTES
    """The queue's bound in bytes: a producer waits while the next event does not fit."""

    def __post_init__(self) -> None:
        if not self.merge_interval > 0:  # also rejects NaN
            raise ValueError(f"merge_interval must be > 0 seconds, got {self.merge_interval!r}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch!r}")
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {self.queue_size!r}")
        if self.max_batch_bytes < 1:
            raise ValueError(f"max_batch_bytes must be >= 1, got {self.max_batch_bytes!r}")
        if self.queue_bytes < 1:
            raise ValueError(f"queue_bytes must be >= 1, got {self.queue_bytes!r}")


class EventMerger:
    """Queue -> :class:`MergeBuffer` -> ``await on_batch(batch)`` every ``merge_interval``.

    Producers call :meth:`put_many` (or :meth:`put`); one task runs :meth:`run` until
    cancelled. ``on_batch`` is called every ``merge_interval`` seconds (measured from the end
    of the previous call), or at once when ``max_batch`` distinct keys are pending (the
    numbers are ``batching``'s), or when the next event would take the pending bytes past
    ``max_batch_bytes``. Calls never overlap, and nothing is read from the queue while one
    runs, so memory stays within the queue's bounds plus the batch's. An exception from
    ``on_batch`` ends :meth:`run` unchanged: there is no retry here, the supervisor starts
    a new generation with a new merger.

    The queue is counted in events and in bytes, whatever the lists they come in: a
    producer whose list does not fit queues what does and waits for room for the rest
    (backpressure, never loss). An event larger than ``queue_bytes`` waits for an empty
    queue and then goes in alone.
    """

    def __init__(
        self,
        on_batch: OnBatch,
        batching: Batching = Batching(),
        *,
        key: KeyFunc | None = None,
        generation: int = 0,
        epoch: int = 0,
        resource: GroupVersionResource | None = None,
    ) -> None:
        self._on_batch = on_batch
        self._merge_interval = batching.merge_interval
        self._max_batch = batching.max_batch
        self._key = key
        self._generation = generation
        self._epoch = epoch
        self._resource = resource
        self._queue: deque[Event] = deque()
        self._queue_size = batching.queue_size
        self._queue_bytes = batching.queue_bytes
        self._queued_bytes = 0
        self._max_batch_bytes = batching.max_batch_bytes
        self._getter: asyncio.Future[None] | None = None
        """The merger's wait for events (there is one reader: ``run``)."""
        self._putters: deque[asyncio.Future[None]] = deque()
        """Producers waiting for room, one future each (a cancelled one affects no other)."""
        self._buffer = MergeBuffer(key=key)
        self._batches_delivered = 0
        self._running = False

    @property
    def merge_interval(self) -> float:
        """Seconds between the end of one ``on_batch`` call and the next flush."""
        return self._merge_interval

    @property
    def max_batch(self) -> int:
        """The most distinct keys pending before an early flush."""
        return self._max_batch

    @property
    def queue_size(self) -> int:
        """The queue's bound in events: :meth:`put` waits while this many are queued."""
        return self._queue_size

    @property
    def generation(self) -> int:
        """The generation stamped on every batch."""
        return self._generation

    @property
    def pending(self) -> int:
        """Distinct keys merged and not yet delivered."""
        return len(self._buffer)

    @property
    def queued(self) -> int:
        """Events waiting in the queue, not yet merged."""
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """The bytes of the events waiting in the queue (``Item.nbytes``)."""
        return self._queued_bytes

    @property
    def pending_bytes(self) -> int:
        """The bytes of the events merged and not yet delivered."""
        return self._buffer.nbytes

    @property
    def batches_delivered(self) -> int:
        """How many ``on_batch`` calls have returned."""
        return self._batches_delivered

    async def put(self, event: Event) -> None:
        """Queue an event; waits while the queue is full (backpressure, never loss).

        Raises ``ValueError`` at once for an ERROR event, which must never be merged.
        """
        await self.put_many((event,))

    def offer(self, event: Event) -> bool:
        """Queue an event if there is room, without waiting; False when the queue is full."""
        return self.offer_many((event,)) == 1

    async def put_many(self, events: Sequence[Event], start: int = 0) -> None:
        """Queue ``events[start:]`` in order, waiting for room as often as needed.

        Raises ``ValueError`` for an ERROR event, after queueing the events before it.
        """
        start = self.offer_many(events, start)
        if start == len(events):
            return
        loop = asyncio.get_running_loop()
        while start < len(events):
            putter = loop.create_future()
            self._putters.append(putter)
            try:
                await putter
            except BaseException:
                putter.cancel()
                with contextlib.suppress(ValueError):
                    self._putters.remove(putter)
                raise
            start = self.offer_many(events, start)

    def offer_many(self, events: Sequence[Event], start: int = 0) -> int:
        """Queue as many of ``events[start:]`` as there is room for, without waiting.

        Returns the index of the first event not queued (``len(events)`` when all were):
        the watch reader calls this first and awaits :meth:`put_many` with the rest only on
        a full queue. An ERROR event raises ``ValueError`` as soon as the events before it
        are queued, at once when it comes first, full queue or not.
        """
        stop = len(events)
        for index in range(start, stop):
            if events[index].type is _ERROR:
                stop = index
                break
        queue = self._queue
        end = min(stop, start + self._queue_size - len(queue))
        room = self._queue_bytes - self._queued_bytes
        added = sum(map(_NBYTES, events[start:end] if start or end < len(events) else events))
        if added > room:  # not all of it: as many as fit (an event alone always does)
            added = 0
            for index in range(start, end):
                size = events[index].nbytes
                if added + size > room and (queue or index > start):
                    end = index
                    break
                added += size
        if end > start:
            queue.extend(events[start:end] if start or end < len(events) else events)
            self._queued_bytes += added
            self._wake_getter()
        if end == stop < len(events):
            _check_event(events[stop])
        return end

    def _wake_getter(self) -> None:
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)

    def _wake_putters(self) -> None:
        putters = self._putters
        while putters:
            putter = putters.popleft()
            if not putter.done():
                putter.set_result(None)

    async def run(self) -> None:
        """Merge and deliver until cancelled (or until ``on_batch`` raises).

        On exit, whatever was pending is dropped; queued events stay in the queue.
        """
        if self._running:
            raise RuntimeError("EventMerger.run() is already running")
        self._running = True
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._collect(loop, loop.time() + self._merge_interval)
                await self._flush()
        finally:
            self._running = False
            self._buffer = MergeBuffer(key=self._key)

    async def _collect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """Move queued events into the buffer until ``deadline``, ``max_batch`` keys, or
        the next event does not fit ``max_batch_bytes``."""
        queue, buffer, max_batch = self._queue, self._buffer, self._max_batch
        while len(buffer) < max_batch:
            if queue:
                try:
                    self._queued_bytes -= buffer.add_from(queue, max_batch, self._max_batch_bytes)
                except BaseException:
                    self._queued_bytes = sum(event.nbytes for event in queue)
                    raise
                finally:
                    self._wake_putters()
                if queue:
                    return  # full (keys or bytes): deliver, then go on
                continue
            getter = self._getter = loop.create_future()
            try:
                async with asyncio.timeout_at(deadline):
                    await getter
            except TimeoutError:
                return
            finally:
                self._getter = None

    async def _flush(self) -> None:
        """Deliver the buffer's batch, if there is anything new."""
        batch = self._buffer.take(self._generation, epoch=self._epoch, resource=self._resource)
        if batch is None:
            return
        logger.debug(
            "merged batch: %d keys from %d events, resource_version=%s, generation=%d",
            len(batch),
            batch.received,
            batch.resource_version,
            batch.generation,
        )
        await self._on_batch(batch)
        self._batches_delivered += 1
