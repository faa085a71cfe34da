"""What a running ``Syncer`` is doing, for health checks, dashboards and tests.

``StatusTracker`` is an observer of the Syncer's events (``observe.py``): it folds them into
a ``SyncerStatus``, so the loop itself keeps no counters.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from listwatch._aio import Signal
from listwatch._models import GroupVersionResource
from listwatch._shard import Shard
from listwatch.errors import ResourceNotFound
from listwatch.observe import _events as observe

RECENT_RESTARTS = 20


class Phase(enum.StrEnum):
    STARTING = "starting"
    LISTING = "listing"
    WATCHING = "watching"
    BACKING_OFF = "backing off"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Restart:
    """Why a generation ended. ``at`` is wall-clock time (``time.time()``)."""

    at: float
    generation: int
    reason: str


@dataclass(frozen=True, slots=True)
class SyncerStatus:
    """A consistent copy of the Syncer's state at one moment.

    ``synced`` is true while the receiver holds the current generation's snapshot (``on_list``
    returned and nothing has failed since); it drops during every relist. ``has_synced``
    turns true with the first snapshot and stays true (client-go's ``HasSynced``): the
    signal a readiness probe wants, since a receiver keeps its last complete state while a
    new generation lists.
    """

    phase: Phase
    generation: int
    synced: bool
    has_synced: bool
    snapshot_size: int | None
    snapshot_resource_version: str | None
    resource_version: str | None
    """The newest resourceVersion the receiver has been given (snapshot or batch)."""
    last_batch_at: float | None
    batches: int
    events: int
    restarts: int
    recent_restarts: tuple[Restart, ...]
    last_error: str | None
    queued_events: int = 0
    """Events waiting in the current generation's queue (bounded by ``queue_size``)."""
    pending_keys: int = 0
    """Distinct keys merged and not yet delivered (bounded by ``max_batch``)."""
    staleness: float = 0.0
    """Seconds since the receiver last caught up: 0 while it holds everything the watch
    has received; otherwise how long ago its view was last current (the start of the last
    receiver call that completed; the Syncer's start before any)."""
    resource: GroupVersionResource | None = None
    unsynced_for: float = 0.0
    """Seconds the receiver has gone without a sync: 0 from a snapshot delivered until the
    next failure or resync; otherwise counted from the Syncer's start (before its first
    snapshot), from the failure that ended its last good generation, or from the start of
    a resync's relist (not a failure, but no change reaches the receiver until it is
    delivered: a relist stuck on a long Retry-After must not look in sync). What "not
    synced for longer than a threshold" is measured by."""
    failing_for: float = 0.0
    """Seconds since the first failure of the current streak (generations that ended in an
    error with no snapshot delivered since); 0 when there is none."""
    failures: int = 0
    """Generations that ended in an error since the last snapshot delivered."""
    served: bool = True
    """False from a generation that ended with a 404 after the resource had synced (the
    server stopped serving it: its CRD was deleted; ``_reflector.fatal_error``) until the
    next snapshot is delivered. Such a resource is retried, and not ready meanwhile."""
    streamed: bool | None = None
    """How the current generation's snapshot is listed: a streaming list (True) or paged
    LISTs (False); None before the first listing was answered."""
    paged_because: str | None = None
    """Why that snapshot is paged (None when streamed): the server refused or failed a
    streaming list (its answer), or ``list_strategy`` is ``"paged"``."""
    quarantined: Mapping[str, str] = field(default_factory=dict)
    """The objects the receiver keeps as bytes, not as JSON, by key: why, as the receiver
    last said (``Snapshot.quarantine``). Kept, so not a reason to be unready; shown."""
    shard: Shard | None = None
    """The shard of the collection the source serves (``ListWatch.shard``); None: all."""
    sharding: str | None = None
    """Who filtered the source's last response to the shard: ``"server"`` (the API server
    echoed the shard selector) or ``"client"`` (listwatch did); None unsharded or before
    the first response (``ListWatch.sharding``)."""


class StatusTracker:
    """Folds a Syncer's events into its status; lets callers await a status."""

    def __init__(
        self,
        resource: GroupVersionResource | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.resource = resource  # a source resolves its name when its Syncer first runs
        self.shard: Shard | None = None
        self._clock = clock
        self._wall_clock = wall_clock
        self._changed = Signal()
        self.phase = Phase.STARTING
        self.generation = 0
        self.synced = False
        self.has_synced = False
        self.snapshot_size: int | None = None
        self.snapshot_resource_version: str | None = None
        self.resource_version: str | None = None
        self.last_batch_at: float | None = None
        self.batches = 0
        self.events = 0
        self.restarts = 0
        self.recent_restarts: deque[Restart] = deque(maxlen=RECENT_RESTARTS)
        self.last_error: str | None = None
        self._delivering_since: float | None = None
        self._view_at = clock()  # when the receiver's view was last current
        self._unsynced_since: float | None = self._view_at  # None while in sync
        self._failing_since: float | None = None
        self.failures = 0
        self.served = True
        self.streamed: bool | None = None
        self.paged_because: str | None = None
        self.quarantined: dict[str, str] = {}  # replaced, never changed in place

    # -- the observer ----------------------------------------------------------------------

    def __call__(self, event: observe.SyncEvent) -> None:
        match event:
            case observe.GenerationStarted(generation=generation):
                self.generation = generation
                self.synced = False
                self.phase = Phase.LISTING
            case observe.SnapshotOpened(streamed=streamed, paged_because=paged_because):
                self.streamed, self.paged_because = streamed, paged_because
            case observe.ReceiverStarted():
                self._delivering_since = self._clock()
            case observe.SnapshotDelivered(objects=objects, resource_version=rv):
                self._delivered()
                self.quarantined = dict(event.quarantined)
                self.snapshot_size = objects
                self.snapshot_resource_version = self.resource_version = rv
                self.synced = self.has_synced = self.served = True
                self._unsynced_since = self._failing_since = None
                self.failures = 0
                self.phase = Phase.WATCHING
            case observe.BatchDelivered(received=received, resource_version=rv):
                self._delivered()
                self.batches += 1
                self.events += received
                self.last_batch_at = self._wall_clock()
                self.resource_version = rv
                self._quarantine_after(event)
            case observe.ReceiverFailed():
                self._delivering_since = None
            case observe.QueueFull():
                pass  # nothing to record; waiters re-read the live queue size
            case observe.GenerationEnded(generation=generation, reason=reason, message=text):
                self.restarts += 1
                line = "resync_period elapsed" if reason == "resync" else text
                self.recent_restarts.append(Restart(self._wall_clock(), generation, line))
                if reason != "resync":
                    self.last_error = line
                    self._failed()
                elif self._unsynced_since is None:
                    self._unsynced_since = self._clock()
                if reason == ResourceNotFound.__name__:  # only ever retried once synced
                    self.served = False
                self.synced = False
            case observe.BackingOff():
                self.phase = Phase.BACKING_OFF
            case observe.Failed(message=text):
                self.last_error = text
                self._failed()
                self.synced = False
                self.phase = Phase.FAILED
            case observe.Stopped():
                self.synced = False
                if self.phase is not Phase.FAILED:
                    self.phase = Phase.STOPPED
            case _:
                return  # requests and openings change nothing here
        self._changed.notify()

    def _failed(self) -> None:
        now = self._clock()
        self.failures += 1
        if self._failing_since is None:
            self._failing_since = now
        if self._unsynced_since is None:
            self._unsynced_since = now

    def _quarantine_after(self, batch: observe.BatchDelivered) -> None:
        """A key the batch wrote is quarantined if the receiver said so, else no longer."""
        held, kept, written = self.quarantined, batch.quarantined, batch.written
        if len(held) <= len(written):
            released = [key for key in held if key in written and key not in kept]
        else:
            released = [key for key in written if key in held and key not in kept]
        if released or any(held.get(key) != why for key, why in kept.items()):
            updated = {**held, **kept}
            for key in released:
                del updated[key]
            self.quarantined = updated

    def _delivered(self) -> None:
        assert self._delivering_since is not None
        self._view_at, self._delivering_since = self._delivering_since, None

    # -- reading ---------------------------------------------------------------------------

    def status(
        self, *, queued: int = 0, pending: int = 0, sharding: str | None = None
    ) -> SyncerStatus:
        """The status now; ``queued``/``pending`` are the live merger's sizes, ``sharding``
        the source's word on who filters its shard."""
        caught_up = (
            self.phase is Phase.WATCHING
            and self._delivering_since is None
            and queued == 0
            and pending == 0
        )
        return SyncerStatus(
            phase=self.phase,
            generation=self.generation,
            synced=self.synced,
            has_synced=self.has_synced,
            snapshot_size=self.snapshot_size,
            snapshot_resource_version=self.snapshot_resource_version,
            resource_version=self.resource_version,
            last_batch_at=self.last_batch_at,
            batches=self.batches,
            events=self.events,
            restarts=self.restarts,
            recent_restarts=tuple(self.recent_restarts),
            last_error=self.last_error,
            queued_events=queued,
            pending_keys=pending,
            staleness=0.0 if caught_up else max(0.0, self._clock() - self._view_at),
            resource=self.resource,
            unsynced_for=self._since(self._unsynced_since),
            failing_for=self._since(self._failing_since),
            failures=self.failures,
            served=self.served,
            streamed=self.streamed,
            paged_because=self.paged_because,
            quarantined=dict(self.quarantined) if self.quarantined else {},
            shard=self.shard,
            sharding=sharding,
        )

    def _since(self, moment: float | None) -> float:
        return 0.0 if moment is None else max(0.0, self._clock() - moment)

    async def changed(self) -> None:
        """Until the next event that changes the status."""
        await self._changed.wait()

    def next_change(self) -> asyncio.Event:
        """The event the next change sets: taken before the status is read, no change
        between the read and the wait can be missed."""
        return self._changed.event
