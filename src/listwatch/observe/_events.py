"""What a Syncer reports as it runs: one event per step of its loop, for observers.

The Syncer's job is the loop. Everything that watches it (its own ``status``, Prometheus
metrics, health checks, a dashboard, a test) is an *observer* of these events, so none of
them adds a counter to the loop, and each lives in its own module: ``status.py`` folds the
events into a ``SyncerStatus``, ``metrics.py`` into Prometheus series. The shape follows
kube-rs's watcher, whose stream of events is what observability hangs off.

An observer is a plain function called inline, in order, as the step happens; it must be
quick and must not block (no I/O). One that raises is logged and does not disturb syncing.
Events carry monotonic durations; wall-clock time is the observer's business.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

logger = logging.getLogger("listwatch")

ReceiverCall = Literal["on_list", "on_batch"]
Verb = Literal["list", "watch"]


@dataclass(frozen=True, slots=True)
class GenerationStarted:
    """A generation begins: its snapshot is being listed."""

    generation: int


@dataclass(frozen=True, slots=True)
class SnapshotOpened:
    """The listing request was answered; ``on_list`` is called next."""

    generation: int
    streamed: bool
    """A streaming list (WatchList) rather than paged LISTs."""
    paged_because: str | None = None
    """Why the snapshot is paged (None when streamed): the server's refusal of a streaming
    list, or ``list_strategy`` (``listwatch._reflector.ListingPolicy``)."""


@dataclass(frozen=True, slots=True)
class ReceiverStarted:
    """``on_list`` or ``on_batch`` was called."""

    call: ReceiverCall
    generation: int


@dataclass(frozen=True, slots=True)
class SnapshotDelivered:
    """``on_list`` returned, having read the whole snapshot: the receiver holds it."""

    generation: int
    objects: int
    resource_version: str
    seconds: float
    quarantined: Mapping[str, str] = field(default_factory=dict)
    """The objects the receiver keeps as bytes, not as JSON, by key: why
    (``Snapshot.quarantine``). A snapshot says it for the whole resource."""


@dataclass(frozen=True, slots=True)
class BatchDelivered:
    """``on_batch`` returned: the receiver holds every event up to ``resource_version``."""

    generation: int
    keys: int
    received: int
    """The watch events the batch stands for, before merging."""
    resource_version: str
    seconds: float
    quarantined: Mapping[str, str] = field(default_factory=dict)
    """Those of its objects that the receiver keeps as bytes, not as JSON (``Batch.quarantine``)."""
    written: Collection[str] = ()
    """Every key the batch wrote (its objects that are not in ``quarantined`` are JSON now,
    or deleted)."""


@dataclass(frozen=True, slots=True)
class QueueFull:
    """The watch reader found the queue full and waits for room (backpressure): the
    receiver is slower than the watch. Reported once per wait, not per event."""

    generation: int


@dataclass(frozen=True, slots=True)
class ReceiverFailed:
    """``on_list`` or ``on_batch`` raised, hung past ``sync_timeout``, or left early."""

    call: ReceiverCall
    generation: int
    seconds: float


@dataclass(frozen=True, slots=True)
class GenerationEnded:
    """A generation ended and a new one follows (after a backoff, unless ``resync``).

    ``reason`` is the error's class name (``ResourceExpired``, ``ReceiverError``, ...) or
    ``"resync"``; ``message`` is one line, capped, without tokens or object bodies.
    """

    generation: int
    reason: str
    message: str
    resync: bool = False


@dataclass(frozen=True, slots=True)
class BackingOff:
    """Waiting before the next generation."""

    seconds: float


@dataclass(frozen=True, slots=True)
class RequestDone:
    """One LIST page or WATCH request finished: ``ok`` (a page, a watch that ended
    cleanly), or the class name of the error it ended with."""

    verb: Verb
    outcome: str


@dataclass(frozen=True, slots=True)
class Failed:
    """A fatal error: ``run()`` raises it, no generation follows."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Stopped:
    """``run()`` returned (cancelled)."""


SyncEvent = (
    GenerationStarted
    | SnapshotOpened
    | ReceiverStarted
    | SnapshotDelivered
    | BatchDelivered
    | QueueFull
    | ReceiverFailed
    | GenerationEnded
    | BackingOff
    | RequestDone
    | Failed
    | Stopped
)

Observer = Callable[[SyncEvent], None]
"""Receives every event of one Syncer, inline and in order."""


class Observers:
    """The observers of one Syncer: each event goes to all of them, each failure is logged."""

    def __init__(self, observers: Iterable[Observer] = ()) -> None:
        self._observers = list(observers)

    def add(self, observer: Observer) -> None:
        self._observers.append(observer)

    def __call__(self, event: SyncEvent) -> None:
        for observer in self._observers:
            try:
                observer(event)
            except Exception:
                logger.exception("observer %r failed on %s", observer, type(event).__name__)
