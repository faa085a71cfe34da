"""Observability: what a Syncer reports as it runs, and what is built on those reports.

A Syncer emits one event per step of its loop (``GenerationStarted``, ``BatchDelivered``,
``Failed``, ...); observers fold them. ``SyncerStatus`` is the fold every Syncer keeps for
itself; ``listwatch.observe.metrics`` folds them into Prometheus series and
``listwatch.observe.health`` serves ``/metrics``, ``/healthz`` and ``/readyz``. Those two
import prometheus-client and aiohttp's server and are imported on their own.
"""

from __future__ import annotations

from listwatch.observe._events import (
    BackingOff,
    BatchDelivered,
    Failed,
    GenerationEnded,
    GenerationStarted,
    Observer,
    Observers,
    QueueFull,
    ReceiverCall,
    ReceiverFailed,
    ReceiverStarted,
    RequestDone,
    SnapshotDelivered,
    SnapshotOpened,
    Stopped,
    SyncEvent,
    Verb,
)
from listwatch.observe._status import Phase, Restart, StatusTracker, SyncerStatus

__all__ = [
    "BackingOff",
    "BatchDelivered",
    "Failed",
    "GenerationEnded",
    "GenerationStarted",
    "Observer",
    "Observers",
    "Phase",
    "QueueFull",
    "ReceiverCall",
    "ReceiverFailed",
    "ReceiverStarted",
    "RequestDone",
    "Restart",
    "SnapshotDelivered",
    "SnapshotOpened",
    "StatusTracker",
    "Stopped",
    "SyncEvent",
    "SyncerStatus",
    "Verb",
]
