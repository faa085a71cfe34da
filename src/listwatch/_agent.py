"""``Agent``: the cluster agent. Several resources under one Supervisor, with health.

``Agent`` builds the Syncers of a *term* from a factory, runs them under a ``Supervisor``,
feeds their events to ``SyncMetrics``, and answers the liveness and readiness probes. With
leader election (see ``listwatch.leaderelection`` and ``Agent.run``'s docs) a term is one
leader's tenure and the Syncers run only while it lasts; without, there is one term of
epoch 0 for the life of the process.

The factory gets the term's epoch (stamped on every snapshot and batch, checked by the
receivers' fence) and a *write gate*: a function that raises ``NotLeading`` once the term
is over by the local clock. Wrap every receiver call with ``gated`` so that no write
leaves the process after the term ended, even before the Syncers are cancelled (a leader
that was paused and resumes checks the gate before its renew loop even runs).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import NoReturn, TypeVar

from listwatch._aio import Signal, short
from listwatch._supervisor import Supervisor
from listwatch._syncer import Syncer
from listwatch.errors import NotLeading
from listwatch.leaderelection import LeaderElector, Term
from listwatch.observe._status import Phase
from listwatch.observe.health import HealthReport
from listwatch.observe.metrics import SyncMetrics

__all__ = ["Agent", "NotLeading", "WriteGate", "gated", "resource_entries", "term_gate"]

logger = logging.getLogger("listwatch")

T = TypeVar("T")

WriteGate = Callable[[], None]
"""Raises ``NotLeading`` when this replica may no longer write."""

SyncerFactory = Callable[[int, WriteGate], Sequence[Syncer]]
"""Builds a term's Syncers from its epoch and write gate."""


def _open_gate() -> None:
    """The gate without leader election: always open."""


def term_gate(term: Term) -> WriteGate:
    """The write gate of ``term``: refuses once the term is over by the local clock."""

    def gate() -> None:
        if not term.valid():
            raise NotLeading(
                f"the term of epoch {term.epoch} is over (not renewed within the renew "
                "deadline): no write may leave this replica"
            )

    return gate


def gated(call: Callable[[T], Awaitable[None]], gate: WriteGate) -> Callable[[T], Awaitable[None]]:
    """``call`` (an ``on_list`` or ``on_batch``), refused once ``gate`` says the term is over."""

    async def guarded(value: T) -> None:
        gate()
        await call(value)

    return guarded


class Agent:
    """Run a term's Syncers under a Supervisor; report metrics and health.

    ``await agent.run()`` runs until cancelled, or raises the first ``FatalError`` of any
    resource (the Supervisor's rule). ``stale_after`` (seconds): a resource whose receiver
    has gone that long without a sync (``SyncerStatus.unsynced_for``: failing, or not yet
    synced since the start) makes the replica not ready, even if it synced once; ``None``
    (the default) asks only that every resource synced once.
    """

    def __init__(
        self,
        build: SyncerFactory,
        *,
        metrics: SyncMetrics | None = None,
        elector: LeaderElector | None = None,
        stale_after: float | None = None,
    ) -> None:
        if stale_after is not None and not stale_after > 0:
            raise ValueError("stale_after must be positive seconds (or None)")
        self._build = build
        self.stale_after = stale_after
        self.metrics = metrics if metrics is not None else SyncMetrics()
        self._elector = elector
        if elector is not None:
            name = elector.lease.rsplit("/", 1)[-1]
            self.metrics.track_leader(name, lambda: elector.status.leading)
        self._supervisor: Supervisor | None = None
        self._running = False
        self._failure: BaseException | None = None
        self._changed = Signal()

    @property
    def supervisor(self) -> Supervisor | None:
        """The current term's Supervisor (None between terms)."""
        return self._supervisor

    @property
    def elector(self) -> LeaderElector | None:
        return self._elector

    async def run(self) -> NoReturn:
        """Without an elector: one term of epoch 0 for as long as the process runs. With
        one: campaign, and run a term's Syncers only while this replica leads. A term ends
        when it cannot renew before the renew deadline: its Syncers are cancelled (every
        receiver call with them) before the elector reports the loss, and the write gate
        has refused writes since the deadline passed by the local clock."""
        self._running = True
        try:
            if self._elector is None:
                await self.run_term(0, _open_gate)
            await self._elector.run(self._lead)
            raise AssertionError("a term ended without an error")  # pragma: no cover
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self._failure = exc
            raise
        finally:
            self._running = False
            self._changed.notify()

    async def _lead(self, term: Term) -> NoReturn:
        await self.run_term(term.epoch, term_gate(term))

    async def run_term(self, epoch: int, gate: WriteGate) -> NoReturn:
        """Build the term's Syncers, run them until cancelled (or a fatal error)."""
        syncers = self._build(epoch, gate)
        supervisor = Supervisor(syncers)
        for syncer in syncers:
            self.metrics.track(syncer)
        self._supervisor = supervisor
        self._changed.notify()
        logger.info("term of epoch %d: mirroring %s", epoch, ", ".join(supervisor.syncers))
        try:
            await supervisor.run()
        finally:
            self._supervisor = None
            for syncer in syncers:
                self.metrics.forget(syncer)
            self._changed.notify()

    async def wait_for_supervisor(self) -> Supervisor:
        """Until a term runs (at once without leader election)."""
        while self._supervisor is None:
            if self._failure is not None:
                raise self._failure
            await self._changed.wait()
        return self._supervisor

    # -- probes ----------------------------------------------------------------------------

    def liveness(self) -> HealthReport:
        """Alive while ``run`` runs and no resource failed fatally."""
        supervisor = self._supervisor
        failed = {}
        if supervisor is not None:
            failed = {
                name: status.last_error
                for name, status in supervisor.statuses().items()
                if status.phase is Phase.FAILED
            }
        ok = self._running and not failed and self._failure is None
        details: dict[str, object] = {"running": self._running}
        if self._elector is not None:
            election = self._elector.status
            ok = ok and election.running
            details["leading"] = election.leading
        if failed:
            details["failed"] = failed
        if self._failure is not None:
            details["error"] = short(self._failure)
        return HealthReport(ok, details)

    def readiness(self) -> HealthReport:
        """Ready when every resource's receiver holds a complete snapshot, and none has gone
        longer than ``stale_after`` without a sync: a receiver that keeps its last state
        while every attempt fails is serving an ever older copy. A resource the server
        stopped serving (``SyncerStatus.served``) is not ready at once: there is nothing to
        be current with. Each entry also says how its snapshots are listed, and why paged,
        and for a sharded source its shard and who filters it (the server or listwatch).

        Quarantined objects (kept by the receiver as bytes, not as JSON) are shown, counted
        and named, but do not make a resource unready: the mirror holds them and is current,
        and an object anyone who may create one can write must not take every replica out
        of service (docs/architecture.md#quarantined-objects)."""
        supervisor = self._supervisor
        if self._elector is not None and supervisor is None:
            election = self._elector.status
            standby = election.running and not election.leading and election.holder is not None
            details: dict[str, object] = {
                "role": "standby",
                "leader": election.holder or None,
                "identity": election.identity,
            }
            if election.last_error:
                details["last_error"] = election.last_error
            return HealthReport(standby, details)
        if supervisor is None:
            return HealthReport(False, {"reason": "not running"})
        resources = resource_entries(supervisor, self.stale_after)
        not_ready = sorted(name for name, entry in resources.items() if not entry["ready"])
        details = {"resources": resources}
        if self._elector is not None:
            details["role"] = "leader"
        if not_ready:
            details["not_ready"] = not_ready
        quarantined = sorted(name for name, entry in resources.items() if "quarantined" in entry)
        if quarantined:
            details["quarantined"] = quarantined
        return HealthReport(not not_ready, details)


def resource_entries(
    supervisor: Supervisor, stale_after: float | None
) -> dict[str, dict[str, object]]:
    """``/readyz``'s entry for each resource of ``supervisor`` (``Agent.readiness`` says what
    makes one ready); the sharded agent reports each shard's resources the same way."""
    resources: dict[str, dict[str, object]] = {}
    for name, status in supervisor.statuses().items():
        stale = stale_after is not None and status.unsynced_for > stale_after
        entry: dict[str, object] = {
            "ready": status.has_synced and status.served and not stale,
            "phase": status.phase.value,
            "synced": status.synced,
            "staleness_seconds": round(status.staleness, 3),
        }
        if not status.served:
            entry["served"] = False
        if status.streamed is not None:
            entry["snapshots"] = "streamed" if status.streamed else "paged"
        if status.paged_because:
            entry["paged_because"] = status.paged_because
        if status.shard is not None:  # and who filters it: docs/architecture.md
            entry["shard"] = status.shard.name
            entry["sharding"] = status.sharding
        if status.unsynced_for:
            entry["unsynced_seconds"] = round(status.unsynced_for, 3)
        if stale:
            entry["stale"] = True
        if status.failures:
            entry["failures"] = status.failures
        if status.last_error:
            entry["last_error"] = status.last_error
        if status.quarantined:
            entry["quarantined"] = len(status.quarantined)
            entry["quarantined_objects"] = _named(status.quarantined)
        resources[name] = entry
    return resources


READY_QUARANTINED_NAMED = 20
"""How many quarantined objects of a resource ``/readyz`` names (all are counted)."""


def _named(quarantined: Mapping[str, str]) -> dict[str, str]:
    """The first quarantined objects by key, each with why it is kept as bytes."""
    return {key: quarantined[key] for key in sorted(quarantined)[:READY_QUARANTINED_NAMED]}
