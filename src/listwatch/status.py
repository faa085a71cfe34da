"""What a running ``Syncer`` is doing, for health checks, dashboards and tests."""

from __future__ import annotations

import enum
from dataclasses import dataclass


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
