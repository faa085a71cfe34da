"""``Syncer``: the loop that keeps a receiver equal to the cluster, generation by generation.

A *generation* is one LIST plus the watch that follows it. The snapshot goes to ``on_list``
as a stream that is listed while the receiver reads it (paged, or as a streaming list whose
watch then goes on); then a watcher task feeds events into an ``EventMerger`` whose batches
go to ``on_batch``, both in one task group. Whatever goes wrong (a 410, a dropped stream the
loop cannot resume, a receiver that raises or hangs) ends the group: everything queued or
pending is dropped with it, and the next generation starts from a fresh LIST after a
backoff. Because ``on_list`` of generation N+1 runs only after generation N's task group has
exited, nothing from an old generation can reach the receiver after the new snapshot; and
because the new watch starts at the new snapshot's resourceVersion, every event delivered
after it is newer than it. That is the whole correctness argument; see docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from contextlib import aclosing
from typing import Any, NoReturn

from listwatch._aio import RunsInBackground, first_error, short
from listwatch._backoff import Backoff
from listwatch._merger import Batching, EventMerger
from listwatch._models import (
    Batch,
    Event,
    EventType,
    KeyFunc,
    Page,
    PageStream,
    Snapshot,
    Transform,
)
from listwatch._reflector import (
    EventStream,
    ListingPolicy,
    ListStrategy,
    Waits,
    fatal_error,
    watch_from,
    watch_timeout_seconds,
)
from listwatch._source import ListWatch
from listwatch._types import OnBatch, OnList
from listwatch.errors import (
    FatalError,
    ListWatchError,
    ReceiverError,
    ReceiverTimeout,
    ResourceNotFound,
    Unauthorized,
)
from listwatch.observe import _events as observe
from listwatch.observe._status import Phase, StatusTracker, SyncerStatus

logger = logging.getLogger("listwatch")

current_resource: contextvars.ContextVar[Callable[[], str] | None] = contextvars.ContextVar(
    "listwatch_resource", default=None
)
"""Names the resource whose Syncer the current task works for (``pods``, ``deployments.apps``).

Set for the whole of ``Syncer.run``, so every task of a generation inherits it: a log handler
can name the resource on every record the loop, the rules and the merger write, without
each call site passing it (``listwatch mirror`` does, in text and JSON). A function, not the
name: a source resolves its name when the Syncer first runs, and records name it after."""


_RESYNC_JITTER = 0.1

QUARANTINE_WARNINGS = 20
"""Quarantined objects named one WARNING each per delivery; the rest are counted in one."""


class ResyncDue(Exception):
    """``resync_period`` elapsed: time for the anti-entropy relist. Not a failure."""


def aclosing_optional(stream: EventStream | None) -> contextlib.AbstractAsyncContextManager[object]:
    """``aclosing(stream)``, or nothing to close."""
    return contextlib.nullcontext() if stream is None else aclosing(stream)


def _raise_if_cancelling() -> None:
    """Honour a cancellation that a generation swallowed.

    When a child of a generation's TaskGroup fails at the moment the Syncer's task is
    cancelled from outside (a leader's term ending while its receiver refuses writes), the
    generation can end with the child's error instead of the cancellation (gh-116720), and
    the Syncer would go on to the next generation. The request is still counted by the
    Syncer's own task (see ``Syncer._in_own_task``): act on it.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Syncer(RunsInBackground):
    """Mirror ``source`` into a receiver: ``on_list`` with whole snapshots, ``on_batch`` with
    merged changes, a new generation on any error.

    ``await syncer.run()`` runs until cancelled (it raises only a ``FatalError``, such as an
    unknown resource); ``async with syncer:`` runs it in the background for an app's lifespan.
    ``epoch`` is the fencing token stamped on every snapshot and batch (a leader's term;
    see ``listwatch.leaderelection``). ``observers`` receive every step of the loop
    (``listwatch.observe._events``): status, metrics and health are built on them.
    """

    def __init__(
        self,
        source: ListWatch,
        *,
        on_list: OnList,
        on_batch: OnBatch,
        merge_interval: float = 3.0,
        max_batch: int = 1000,
        queue_size: int = 1000,
        resync_period: float | None = None,
        transform: Transform | None = None,
        key: KeyFunc | None = None,
        sync_timeout: float | None = None,
        backoff: Backoff | None = None,
        page_size: int = 500,
        list_strategy: ListStrategy | str = ListStrategy.AUTO,
        watch_timeout: float | None = None,
        epoch: int = 0,
        observers: Iterable[observe.Observer] = (),
        rng: random.Random | None = None,
    ) -> None:
        if resync_period is not None and not resync_period > 0:
            raise ValueError("resync_period must be positive (or None)")
        if sync_timeout is not None and not sync_timeout > 0:
            raise ValueError("sync_timeout must be positive (or None)")
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        if watch_timeout is not None and not watch_timeout > 0:
            raise ValueError("watch_timeout must be positive seconds (or None)")
        if epoch < 0:
            raise ValueError("epoch must be >= 0")
        self._batching = Batching(merge_interval, max_batch, queue_size)
        self._source = source
        self._on_list = on_list
        self._on_batch = on_batch
        self._resync_period = resync_period
        self._transform = transform
        self._key = key
        self._sync_timeout = sync_timeout
        self._backoff = backoff or Backoff()
        self._waits = Waits(self._backoff)
        self._page_size = page_size
        self._listing = ListingPolicy(list_strategy, source)
        self._watch_timeout = watch_timeout
        self._epoch = epoch
        self._rng = rng or random.Random()
        self._failure: BaseException | None = None
        self._generation = 0
        self._has_synced = False
        self._merger: EventMerger | None = None
        self._tracker = StatusTracker(source.resource)
        self._tracker.shard = source.shard
        self._emit = observe.Observers([self._tracker, *observers])
        # Receivers order this Syncer's generations, and the batches within each, by it.
        self._session = secrets.token_hex(8)
        self._sequence = 0

    @property
    def source(self) -> ListWatch:
        return self._source

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def name(self) -> str:
        """The resource as kubectl writes it (``deployments.apps``); for a source that has
        not resolved its name yet, its description: what the Supervisor, statuses and log
        records call this Syncer."""
        resource = self._source.resource
        return resource.qualified if resource is not None else self._source.description

    @property
    def session(self) -> str:
        """This Syncer's random id, stamped on its snapshots and batches."""
        return self._session

    def add_observer(self, observer: observe.Observer) -> None:
        """Receive every event of the loop from now on (before ``run``, to miss none)."""
        self._emit.add(observer)

    # -- observing -------------------------------------------------------------------------

    @property
    def status(self) -> SyncerStatus:
        merger = self._merger
        if merger is None:
            return self._tracker.status(sharding=self._source.sharding)
        return self._tracker.status(
            queued=merger.queued, pending=merger.pending, sharding=self._source.sharding
        )

    async def wait_until(self, predicate: Callable[[SyncerStatus], bool]) -> SyncerStatus:
        """Wait for a status that satisfies ``predicate``.

        Raises the error that stopped ``run`` if it failed, and ``RuntimeError`` if it stopped
        (was cancelled) before the predicate held.
        """
        while True:
            status = self.status
            if predicate(status):
                return status
            if self._failure is not None:
                raise self._failure
            if status.phase is Phase.STOPPED:
                raise RuntimeError("the Syncer stopped before the awaited status was reached")
            await self._tracker.changed()

    async def wait_synced(self) -> SyncerStatus:
        """Until the receiver holds a complete snapshot."""
        return await self.wait_until(lambda status: status.synced)

    async def changed(self) -> None:
        """Until the status next changes (a step of the loop)."""
        await self._tracker.changed()

    def next_change(self) -> asyncio.Event:
        """The event the status's next change sets. Take it *before* reading ``status`` to
        wait for a condition from another task: a change between the read and the wait is
        then not missed (``Supervisor.wait_until`` waits on several Syncers this way)."""
        return self._tracker.next_change()

    @property
    def failure(self) -> BaseException | None:
        """The fatal error that stopped ``run``, if one did."""
        return self._failure

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> NoReturn:
        """Generations, one after another, until cancelled or a ``FatalError``."""
        emit = self._emit
        naming = current_resource.set(lambda: self.name)
        try:
            while True:
                self._generation += 1
                try:
                    await self._in_own_task(self._run_generation(self._generation))
                except ResyncDue:
                    emit(observe.GenerationEnded(self._generation, "resync", "", resync=True))
                    continue
                except Exception as exc:  # a new generation, unless the rules say stop
                    fatal = fatal_error(exc, has_synced=self._has_synced)
                    if fatal is None:
                        delay = self._waits.after(exc)
                        self._end_generation(exc, delay)
                    else:
                        self._fail(fatal)
                        if fatal is exc:
                            raise
                        raise fatal from None
                _raise_if_cancelling()
                emit(observe.BackingOff(delay))
                await self._waits.sleep(delay)
        finally:
            emit(observe.Stopped())
            current_resource.reset(naming)

    async def _in_own_task(self, generation: Coroutine[Any, Any, None]) -> None:
        """Run a generation in a task of its own, awaited here.

        On CPython before 3.13 (gh-116720) a TaskGroup whose child fails can lose a
        cancellation of the task it runs in, and leaves that task's ``cancelling()`` count
        raised even without one. The generation's task groups therefore run in this inner
        task; the Syncer's own task holds no task group, so its count is exact, and
        ``_raise_if_cancelling`` can trust it.
        """
        task = asyncio.create_task(generation, name=f"generation of {self._source.description}")
        await task  # a cancellation of ours cancels it, and we resume once it has finished

    def _fail(self, exc: FatalError) -> None:
        self._failure = exc
        self._emit(observe.Failed(type(exc).__name__, short(exc)))
        logger.error("generation %d: %s; giving up", self._generation, exc)

    def _end_generation(self, exc: Exception, delay: float) -> None:
        """Report the end; logged before the wait of ``delay`` s (that wait is why)."""
        self._listing.failed(exc)
        reason = short(exc)
        was_served = self._tracker.served
        self._emit(observe.GenerationEnded(self._generation, type(exc).__name__, reason))
        generation = self._generation
        if isinstance(exc, ResourceNotFound) and was_served:  # retried: fatal_error's rule
            logger.warning(
                "no longer served by the API server (%s): retried with backoff until it is "
                "served again; relisting in %.1f s",
                reason,
                delay,
            )
        elif isinstance(exc, Unauthorized):
            logger.error("generation %d: %s; relisting in %.1f s", generation, reason, delay)
        elif isinstance(exc, ListWatchError):
            logger.info("generation %d ended: %s; relisting in %.1f s", generation, reason, delay)
        else:
            logger.error(
                "generation %d ended by an unexpected error; relisting in %.1f s",
                generation,
                delay,
                exc_info=exc,
            )

    async def _run_generation(self, generation: int) -> None:
        # A resource named as kubectl names it is resolved through discovery before the
        # first request; a name that does not resolve is a DiscoveryError, fatal
        # (listwatch._source). Once resolved, this returns at once.
        await self._source.resolve()
        self._tracker.resource = self._source.resource
        logger.info("generation %d: listing %s", generation, self._source.description)
        self._emit(observe.GenerationStarted(generation))
        listing = await self._listing.open(
            page_size=self._page_size,
            backoff=self._backoff,
            watch_timeout=self._next_watch_timeout(),
            notify=self._emit,
        )
        async with listing:
            self._emit(observe.SnapshotOpened(generation, listing.streamed, listing.paged_because))
            snapshot = Snapshot(
                self._transformed(listing.pages),
                resource_version=listing.resource_version,
                generation=generation,
                epoch=self._epoch,
                resource=self._source.resource,
                session=self._session,
                shard=self._source.shard,
            )
            self._sequence = 0
            await self._deliver_snapshot(snapshot)
            first_stream = listing.take_watch()
        self._listing.delivered(streamed=first_stream is not None)
        logger.info(
            "generation %d: %s snapshot of %d objects at resourceVersion %s",
            generation,
            "streamed" if first_stream is not None else "paged",
            snapshot.count,
            snapshot.resource_version,
        )
        resource_version = snapshot.resource_version
        self._has_synced = True
        del snapshot

        merger = EventMerger(
            self._deliver_batch,
            self._batching,
            key=self._key,
            generation=generation,
            epoch=self._epoch,
            resource=self._source.resource,
        )
        self._merger = merger
        try:
            # The streaming list's watch is closed here too, should the group end before
            # the watch task has taken it (closing it twice is harmless). asyncio's TaskGroup,
            # not anyio's: with anyio 4.16 a cancelled Syncer whose pipeline was busy kept
            # delivering batches for seconds (its children were not cancelled); the stdlib
            # group stops them at once (benchmarks: `--only stall`).
            async with aclosing_optional(first_stream), asyncio.TaskGroup() as group:
                group.create_task(merger.run())
                group.create_task(self._watch(resource_version, merger, first_stream))
                if self._resync_period is not None:
                    group.create_task(self._resync_after(self._resync_period))
        except BaseExceptionGroup as group_error:
            raise first_error(group_error, prefer=FatalError) from None
        finally:
            self._merger = None  # its queue and pending keys are dropped with it

    def _transformed(self, pages: PageStream) -> PageStream:
        transform = self._transform
        if transform is None:
            return pages

        async def transformed() -> PageStream:
            async with aclosing(pages):
                async for page in pages:
                    items = [item.with_transform(transform) for item in page.items]
                    yield Page(items, page.resource_version, page.continue_token)

        return transformed()

    async def _deliver_snapshot(self, snapshot: Snapshot) -> None:
        """``on_list``, and the rules of the stream around it (see ``Snapshot``).

        A list error raised out of the receiver's iteration is the *source's* failure, not
        the receiver's, whatever the receiver turned it into (or if it swallowed it): the
        generation ends with the list error itself, and the loop's rules decide what next.
        """
        started = time.monotonic()
        try:
            await self._deliver("on_list", snapshot.generation, self._on_list(snapshot))
            snapshot.ensure_read()
        except ReceiverError:
            self._emit(
                observe.ReceiverFailed("on_list", snapshot.generation, time.monotonic() - started)
            )
            if snapshot.failure is not None:
                raise snapshot.failure from None
            raise
        self._warn_quarantined(snapshot.quarantined)
        self._emit(
            observe.SnapshotDelivered(
                snapshot.generation,
                snapshot.count,
                snapshot.resource_version,
                time.monotonic() - started,
                snapshot.quarantined,
            )
        )

    def _next_watch_timeout(self) -> int:
        return watch_timeout_seconds(self._watch_timeout, self._rng)

    async def _watch(
        self, resource_version: str, merger: EventMerger, first_stream: EventStream | None
    ) -> NoReturn:
        transform = self._transform
        debug = logger.isEnabledFor(logging.DEBUG)

        async def emit(events: list[Event]) -> None:
            if transform is not None:
                # Applied when the object is parsed: events a newer one replaces in the
                # merger are neither parsed nor transformed.
                events = [
                    event if event.type is EventType.BOOKMARK else event.transformed(transform)
                    for event in events
                ]
            if debug:  # each record is named by this Syncer's resource (current_resource)
                for event in events:
                    if event.type is EventType.BOOKMARK:
                        logger.debug("BOOKMARK at %s", event.resource_version)
                    else:
                        logger.debug("%s %s at %s", event.type, event.key, event.resource_version)
            queued = merger.offer_many(events)
            if queued < len(events):
                # A full queue: wait (backpressure, never loss).
                self._emit(observe.QueueFull(merger.generation))
                await merger.put_many(events, queued)

        try:
            await watch_from(
                self._source,
                resource_version,
                emit,
                waits=self._waits,
                timeout_seconds=self._next_watch_timeout,
                first_stream=first_stream,
                notify=self._emit,
            )
        except ResourceNotFound:
            # No longer served (``fatal_error``): no snapshot follows to bring the receiver
            # up to date, and what the watch received (a deleted CRD's DELETED events) is
            # the last word on the resource. Delivered before the generation ends.
            await self.wait_until(lambda status: status.staleness == 0)
            raise

    async def _resync_after(self, period: float) -> NoReturn:
        await asyncio.sleep(period * (1.0 + self._rng.random() * _RESYNC_JITTER))
        raise ResyncDue

    async def _deliver_batch(self, batch: Batch) -> None:
        self._sequence += 1
        batch = dataclasses.replace(
            batch, session=self._session, sequence=self._sequence, shard=self._source.shard
        )
        started = time.monotonic()
        try:
            await self._deliver("on_batch", batch.generation, self._on_batch(batch))
        except ReceiverError:
            self._emit(
                observe.ReceiverFailed("on_batch", batch.generation, time.monotonic() - started)
            )
            raise
        self._warn_quarantined(batch.quarantined)
        self._emit(
            observe.BatchDelivered(
                batch.generation,
                len(batch),
                batch.received,
                batch.resource_version,
                time.monotonic() - started,
                batch.quarantined,
                batch.events.keys(),
            )
        )

    def _warn_quarantined(self, kept: Mapping[str, str]) -> None:
        """A WARNING for each object the receiver now keeps as bytes that it did not before
        (or for another reason): once, not at every relist. Named, never quoted."""
        held = self._tracker.quarantined
        news = [(key, why) for key, why in kept.items() if held.get(key) != why]
        for key, why in news[:QUARANTINE_WARNINGS]:
            logger.warning(
                "%s %s is quarantined: %s; the receiver keeps its bytes, not its JSON",
                self.name,
                key,
                why,
                extra={"key": key, "reason": why},
            )
        if len(news) > QUARANTINE_WARNINGS:
            logger.warning(
                "%s: %d more objects are quarantined (the receiver keeps their bytes, not "
                "their JSON); /readyz and the listwatch_quarantined_objects gauge count them",
                self.name,
                len(news) - QUARANTINE_WARNINGS,
            )

    async def _deliver(
        self, what: observe.ReceiverCall, generation: int, call: Awaitable[None]
    ) -> None:
        """Run a receiver call under ``sync_timeout``; its failure becomes a ``ReceiverError``."""
        self._emit(observe.ReceiverStarted(what, generation))
        limit = asyncio.timeout(self._sync_timeout)
        try:
            async with limit:
                await call
        except TimeoutError as exc:
            if limit.expired():
                message = f"{what} took longer than sync_timeout={self._sync_timeout} s"
                raise ReceiverTimeout(message) from None
            raise ReceiverError(f"{what} failed: {short(exc)}") from exc
        except Exception as exc:
            raise ReceiverError(f"{what} failed: {short(exc)}") from exc

    # -- background use --------------------------------------------------------------------

    def _task_name(self) -> str:
        return f"listwatch {self._source.description}"
