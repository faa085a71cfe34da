"""``ShardedAgent``: active-active replicas, each mirroring the shards whose Leases it holds.

The rules (who is alive, the fair share, when to take and give back a shard) are pure
functions in ``listwatch.leaderelection._shares``, with their reasons; this module runs
them. One replica owns:

* a presence elector on ``<lease-name>-replica-<identity>`` (only this replica campaigns
  for it), so that the others count it even while it holds no shard;
* a planner that lists the lease set's presence Leases every ``retry_period``, counts the
  live replicas, and gives back one shard per round while over the fair share;
* one elector per shard Lease (``<lease-name>-shard-<i>``), all the time: each keeps reading
  its Lease, so that its expiry clock is current when the holder dies, and writes an
  acquisition only when the planner's admission says so (under the share, one at a time).
  While it holds the Lease it runs the shard's Syncers, built with the term's epoch and
  write gate; a lost term cancels exactly that shard's Syncers.

Giving a shard back stops its Syncers first (they are cancelled and awaited), then the
elector releases the Lease (holder ``""``), so that another replica may take it at once;
its first write carries a larger epoch, which fences anything of ours still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from kubernetes_asyncio.client import ApiClient

from listwatch._agent import WriteGate, resource_entries, term_gate
from listwatch._aio import Signal, first_error, short
from listwatch._shard import Shard
from listwatch._supervisor import Supervisor
from listwatch._syncer import Syncer
from listwatch.errors import FatalError, ListWatchError
from listwatch.leaderelection import LeaderElector, LeaseTiming, Term
from listwatch.leaderelection._lease import Lease, delete_lease, list_leases
from listwatch.leaderelection._record import LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD
from listwatch.leaderelection._shares import (
    ROLE_LABEL,
    SET_LABEL,
    Presence,
    fair_share,
    live_replicas,
    may_take,
    presence_lease_name,
    set_label_value,
    shard_lease_name,
    to_forget,
    to_give_back,
)
from listwatch.leaderelection._term import clock
from listwatch.observe.health import HealthReport
from listwatch.observe.metrics import SyncMetrics

__all__ = ["ShardSyncerFactory", "ShardTerms", "ShardedAgent"]

logger = logging.getLogger("listwatch")

ShardSyncerFactory = Callable[[Shard, int, WriteGate], Sequence[Syncer]]
"""Builds a shard's Syncers from the shard, its term's epoch and its write gate."""


@dataclass(slots=True)
class _Held:
    """One shard: its elector, and while this replica leads it, its Syncers."""

    shard: Shard
    elector: LeaderElector
    give_back: asyncio.Event = field(default_factory=asyncio.Event)
    supervisor: Supervisor | None = None
    epoch: int | None = None

    def leading(self) -> bool:
        """From acquisition until the shard's Syncers have been cancelled and awaited."""
        return self.elector.status.leading


class ShardedAgent:
    """Hold a fair share of ``shards`` shard Leases and mirror each shard held.

    ``await agent.run()`` runs until cancelled, or raises the first ``FatalError`` of any
    shard's Syncers. ``identity`` must be unique among the replicas; ``lease_name`` names
    the set (``<lease_name>-shard-<i>``, ``<lease_name>-replica-<identity>``).
    """

    def __init__(
        self,
        build: ShardSyncerFactory,
        api_client: ApiClient,
        *,
        shards: int,
        lease_name: str,
        lease_namespace: str,
        identity: str,
        lease_duration: float = LEASE_DURATION,
        renew_deadline: float = RENEW_DEADLINE,
        retry_period: float = RETRY_PERIOD,
        settle: float | None = None,
        metrics: SyncMetrics | None = None,
        stale_after: float | None = None,
    ) -> None:
        if shards < 1:
            raise ValueError("--shards must be at least 1")
        self._timing = LeaseTiming(lease_duration, renew_deadline, retry_period)
        self._build = build
        self._api = api_client
        self._namespace = lease_namespace
        self.identity = identity
        self.count = shards
        self.stale_after = stale_after
        self._settle = lease_duration if settle is None else settle
        self.metrics = metrics if metrics is not None else SyncMetrics(shard_label=True)
        self.share = shards
        """The fair share: at most this many shards (all of them until others are seen)."""
        self.live: frozenset[str] = frozenset({identity})
        """The replicas alive by their presence Leases, this one included."""
        self._presences: dict[str, tuple[str, Presence]] = {}
        self._seen_others = False
        self._in_flight = False
        self._over_since: float | None = None
        self._running = False
        self._failure: BaseException | None = None
        self._changed = Signal()
        label = set_label_value(lease_name)

        def elector(name: str, role: str) -> LeaderElector:
            return LeaderElector(
                api_client,
                lease_name=name,
                lease_namespace=lease_namespace,
                identity=identity,
                lease_duration=lease_duration,
                renew_deadline=renew_deadline,
                retry_period=retry_period,
                labels={SET_LABEL: label, ROLE_LABEL: role},
                admission=self._admit if role == "shard" else None,
                on_change=lambda _status: self._notify(),
            )

        self.presence = elector(presence_lease_name(lease_name, identity), "replica")
        self._selector = f"{SET_LABEL}={label},{ROLE_LABEL}=replica"
        self.held: list[_Held] = []
        for index in range(shards):
            held = _Held(
                Shard.of(index, shards), elector(shard_lease_name(lease_name, index), "shard")
            )
            self.held.append(held)
            self.metrics.track_leader(held.elector.lease.rsplit("/", 1)[-1], held.leading)
        self.metrics.track_shares(lambda: (len(self.leading()), self.share, len(self.live)))

    # -- state -----------------------------------------------------------------------------

    def leading(self) -> list[Shard]:
        """The shards this replica leads now."""
        return [held.shard for held in self.held if held.leading()]

    def _notify(self) -> None:
        self._changed.notify()

    async def wait_until(self, predicate: Callable[[ShardedAgent], bool]) -> None:
        """Until ``predicate(self)`` holds (checked at every change)."""
        while True:
            changed = self._changed.event
            if predicate(self):
                return
            if self._failure is not None:
                raise self._failure
            await changed.wait()

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> NoReturn:
        self._running = True
        self._notify()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.presence.run(_forever), name="listwatch presence")
                group.create_task(self._plan(), name="listwatch shard planner")
                for held in self.held:
                    group.create_task(self._hold(held), name=f"listwatch shard {held.shard}")
        except BaseExceptionGroup as errors:
            error = first_error(errors, prefer=FatalError)  # a shard's Syncer failed fatally
            self._failure = error
            raise error from None
        finally:
            self._running = False
            self._notify()
        raise AssertionError("the sharded agent's tasks returned")  # pragma: no cover

    @contextlib.contextmanager
    def _admit(self) -> Iterator[bool]:
        """An elector's admission: may it write an acquisition now (``may_take``)? A
        reservation for the one write, not a lock: nobody waits on it."""
        if not may_take(
            held=len(self.leading()),
            in_flight=self._in_flight,
            share=self.share,
            ready=self._seen_others,
        ):
            yield False
            return
        self._in_flight = True
        try:
            yield True
        finally:
            self._in_flight = False
            self._notify()

    async def _plan(self) -> NoReturn:
        """Every ``retry_period``: list the presences, recompute the share, give back one
        shard if over it for ``settle`` seconds."""
        timing = self._timing
        while True:
            published = self.presence.status.leading
            try:
                async with asyncio.timeout(timing.renew_deadline):
                    leases = await list_leases(self._api, self._namespace, self._selector)
            except (TimeoutError, ListWatchError) as exc:
                logger.warning("listing the replicas' presence Leases failed: %s", short(exc))
            else:
                self._observe(leases, published)
                await self._forget(leases)
            await asyncio.sleep(timing.retry_period)

    async def _forget(self, leases: Sequence[Lease]) -> None:
        """Delete the presences of replicas long gone (``to_forget``), each only as read."""
        now = clock()
        for lease in leases:
            seen = self._presences.get(lease.body["metadata"]["name"])
            if seen is None or not to_forget(seen[1], now=now, identity=self.identity):
                continue
            try:
                async with asyncio.timeout(self._timing.renew_deadline):
                    if await delete_lease(self._api, self._namespace, lease):
                        logger.info(
                            "deleted the presence Lease of %s, gone",
                            seen[1].holder or "a replica that stopped",
                        )
            except (TimeoutError, ListWatchError) as exc:
                logger.warning("deleting a gone replica's presence Lease failed: %s", short(exc))

    def _observe(self, leases: Sequence[Lease], published: bool) -> None:
        now = clock()
        seen: dict[str, tuple[str, Presence]] = {}
        for lease in leases:
            name = lease.body["metadata"]["name"]
            before = self._presences.get(name)
            record = lease.record
            if before is not None and before[0] == lease.resource_version:
                seen[name] = before
            else:
                presence = Presence(record.holder_identity, record.lease_duration_seconds, now)
                seen[name] = (lease.resource_version, presence)
        self._presences = seen
        live = live_replicas((p for _, p in seen.values()), now=now, identity=self.identity)
        share = fair_share(self.count, len(live))
        if live != self.live or share != self.share:
            logger.info(
                "%d live replica(s) (%s): fair share %d of %d shards",
                len(live),
                ", ".join(sorted(live)),
                share,
                self.count,
            )
        self.live, self.share = live, share
        self._seen_others = self._seen_others or published
        leading = [held for held in self.held if held.leading() and not held.give_back.is_set()]
        if len(leading) > share:
            self._over_since = now if self._over_since is None else self._over_since
        else:
            self._over_since = None
        over_for = 0.0 if self._over_since is None else now - self._over_since
        index = to_give_back(
            (held.shard.index for held in leading if held.shard.index is not None),
            share=share,
            identity=self.identity,
            over_for=over_for,
            settle=self._settle,
        )
        if index is not None:
            logger.info(
                "shard %s: giving it back (holding %d, fair share %d)",
                self.held[index].shard,
                len(leading),
                share,
            )
            self.held[index].give_back.set()
            self._over_since = None  # one per settle period
        self._notify()

    async def _hold(self, held: _Held) -> NoReturn:
        """Campaign for one shard for ever; ``lead`` returns when it is given back, and the
        elector then releases the Lease and campaigns again (admission permitting)."""
        while True:
            await held.elector.run(lambda term: self._lead(held, term))

    async def _lead(self, held: _Held, term: Term) -> None:
        held.give_back.clear()
        syncers = self._build(held.shard, term.epoch, term_gate(term))
        supervisor = Supervisor(syncers)
        for syncer in syncers:
            self.metrics.track(syncer, shard=held.shard.name)
        held.supervisor, held.epoch = supervisor, term.epoch
        logger.info(
            "shard %s: leading (epoch %d): mirroring %s",
            held.shard,
            term.epoch,
            ", ".join(supervisor.syncers),
        )
        self._notify()
        try:
            async with asyncio.TaskGroup() as group:
                running = group.create_task(supervisor.run(), name=f"shard {held.shard}")
                await held.give_back.wait()
                running.cancel()
            logger.info("shard %s: its writers stopped; releasing its Lease", held.shard)
        finally:
            held.supervisor, held.epoch = None, None
            for syncer in syncers:
                self.metrics.forget(syncer)
            self._notify()

    def shard_terms(self, index: int) -> ShardTerms:
        """Shard ``index``'s terms as ``listwatch.cli._health.watch_health`` reads an Agent's."""
        return ShardTerms(self, self.held[index])

    # -- probes ----------------------------------------------------------------------------

    def liveness(self) -> HealthReport:
        ok = self._running and self._failure is None and self.presence.status.running
        details: dict[str, object] = {
            "running": self._running,
            "shards": [str(shard) for shard in self.leading()],
        }
        if self._failure is not None:
            details["error"] = short(self._failure)
        return HealthReport(ok, details)

    def readiness(self) -> HealthReport:
        """Ready when every resource of every shard held is (``Agent.readiness``'s rule for
        one resource); a replica that holds no shard is ready and says so."""
        shards: dict[str, object] = {}
        not_ready: list[str] = []
        for held in self.held:
            if not held.leading():
                continue
            supervisor = held.supervisor
            if supervisor is None:
                shards[held.shard.name] = {"ready": False, "state": "starting"}
                not_ready.append(held.shard.name)
                continue
            resources = resource_entries(supervisor, self.stale_after)
            ready = all(entry["ready"] for entry in resources.values())
            shards[held.shard.name] = {
                "ready": ready,
                "state": "synced" if ready else "syncing",
                "epoch": held.epoch,
                "resources": resources,
            }
            if not ready:
                not_ready.append(held.shard.name)
        details: dict[str, object] = {
            "role": "sharded",
            "identity": self.identity,
            "shards": shards,
            "fair_share": self.share,
            "live_replicas": sorted(self.live),
        }
        if not shards:
            details["note"] = "this replica holds no shard"
        if not_ready:
            details["not_ready"] = not_ready
        election = self.presence.status
        if election.last_error:
            details["last_error"] = election.last_error
        return HealthReport(self._running and not not_ready, details)


class ShardTerms:
    """One shard's Supervisor while this replica leads it, and a wait for the next term."""

    def __init__(self, agent: ShardedAgent, held: _Held) -> None:
        self._agent = agent
        self._held = held

    @property
    def supervisor(self) -> Supervisor | None:
        return self._held.supervisor

    async def wait_for_supervisor(self) -> Supervisor:
        await self._agent.wait_until(lambda _agent: self._held.supervisor is not None)
        supervisor = self._held.supervisor
        assert supervisor is not None
        return supervisor


async def _forever(term: Term) -> NoReturn:
    """The presence elector's ``lead``: holding the presence Lease is all it does."""
    await asyncio.get_running_loop().create_future()
    raise AssertionError("unreachable")  # pragma: no cover
