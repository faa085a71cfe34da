"""``LeaderElector``: campaign for a Lease, run the caller's ``lead(term)`` while holding it.

The loops follow client-go's ``LeaderElector`` (``tools/leaderelection/leaderelection.go``):
``acquire`` tries at once and then every ``retry_period`` with ``JitterUntil``'s jitter;
``renew`` tries every ``retry_period`` and gives up when the renew deadline passes;
``tryAcquireOrRenew`` is :meth:`LeaderElector._try_acquire` / :meth:`_renew_once` around the
pure :func:`~listwatch.leaderelection._record.decide`; ``release`` is :meth:`_release`. Where
this differs from client-go, the method says so and why.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from listwatch._aio import Signal, first_error, short
from listwatch.errors import ApiError, FatalError, InvalidRequest, ListWatchError
from listwatch.leaderelection._lease import Lease, LeaseClient, is_conflict, parse_epoch
from listwatch.leaderelection._record import (
    JITTER_FACTOR,
    LEASE_DURATION,
    RENEW_DEADLINE,
    RETRY_PERIOD,
    LeaseRecord,
    LeaseTiming,
    Wait,
    Write,
    decide,
    now_micro_time,
)
from listwatch.leaderelection._term import ElectionStatus, Lead, Term, _Gate, clock

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

logger = logging.getLogger("listwatch.leaderelection")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Finished(Generic[T]):
    """What ``lead`` returned."""

    value: T


@dataclass(frozen=True, slots=True)
class _Observation:
    lease: Lease
    observed_at: float

    def same_record(self, lease: Lease) -> bool:
        seen = self.lease
        return (
            seen.uid == lease.uid
            and seen.spec == lease.spec
            and seen.annotated_epoch == lease.annotated_epoch
        )


class LeaderElector:
    """Campaign for the Lease ``lease_namespace/lease_name`` as ``identity``.

    ``await elector.run(lead)`` campaigns until cancelled. While this elector holds the
    lease it runs ``lead(term)``; when the term cannot be renewed before ``renew_deadline``
    (or another holder or a recreated Lease is seen), ``lead`` is cancelled and awaited,
    the loss is reported, and the campaign resumes: a later term is a new term with a
    larger epoch. Cancelling ``run`` while leading cancels ``lead``, awaits it, and then
    releases the lease so that a standby takes over at once. If ``lead`` returns or raises,
    the lease is released and ``run`` returns its value or raises its exception.

    ``lead`` must let cancellation through promptly: the elector awaits it before it
    reports the loss or releases the lease, and nothing of the term may outlive it.

    ``identity`` must be unique among the candidates (a pod name). ``on_change`` is called
    with every new status (it must be quick and must not block; an exception it raises is
    logged). ``rng`` seeds the jitter. ``labels`` go on the Lease if this elector creates
    it. ``admission``, when given, is entered around every acquiring write and says whether
    to write at all: the elector keeps reading the Lease (so its expiry clock stays
    current) but takes it only when admitted (``listwatch.leaderelection._shares``: a
    replica takes shards only up to its fair share, one at a time).
    """

    def __init__(
        self,
        api_client: ApiClient,
        *,
        lease_name: str,
        lease_namespace: str,
        identity: str,
        lease_duration: float = LEASE_DURATION,
        renew_deadline: float = RENEW_DEADLINE,
        retry_period: float = RETRY_PERIOD,
        jitter_factor: float = JITTER_FACTOR,
        on_change: Callable[[ElectionStatus], None] | None = None,
        rng: random.Random | None = None,
        labels: Mapping[str, str] | None = None,
        admission: Callable[[], AbstractContextManager[bool]] | None = None,
    ) -> None:
        if not isinstance(identity, str) or not identity:
            raise ValueError("identity must be a non-empty string, unique among the candidates")
        self._timing = LeaseTiming(lease_duration, renew_deadline, retry_period, jitter_factor)
        self._leases = LeaseClient(api_client, lease_namespace, lease_name, labels)
        self._admission = admission
        self._identity = identity
        self._on_change = on_change
        self._rng = rng or random.Random()
        self._changed = Signal()
        self._running = False
        self._stopped = False
        self._failure: BaseException | None = None
        self._observed: _Observation | None = None
        self._reported_holder: str | None = None
        self._term: Term | None = None
        self._terms = 0
        self._last_error: str | None = None

    @property
    def lease(self) -> str:
        """``namespace/name`` of the Lease."""
        return self._leases.description

    @property
    def timing(self) -> LeaseTiming:
        return self._timing

    # -- observing -------------------------------------------------------------------------

    @property
    def status(self) -> ElectionStatus:
        seen = self._observed.lease if self._observed is not None else None
        return ElectionStatus(
            identity=self._identity,
            running=self._running,
            leading=self._term is not None,
            term=self._term,
            holder=seen.record.holder_identity if seen is not None else None,
            observed_epoch=seen.annotated_epoch if seen is not None else None,
            lease_transitions=seen.record.lease_transitions if seen is not None else None,
            observed_at=self._observed.observed_at if self._observed is not None else None,
            terms=self._terms,
            last_error=self._last_error,
        )

    async def wait_until(self, predicate: Callable[[ElectionStatus], bool]) -> ElectionStatus:
        """Wait for a status that satisfies ``predicate`` (checked at every change).

        Level-triggered: a waiter sees the latest status, not every one in between (use
        ``on_change`` for that). Raises the error that stopped ``run`` if it failed, and
        ``RuntimeError`` if ``run`` ended before the predicate held.
        """
        while True:
            changed = self._changed.event
            status = self.status
            if predicate(status):
                return status
            if self._failure is not None:
                raise self._failure
            if self._stopped:
                raise RuntimeError("the LeaderElector stopped before the awaited status")
            await changed.wait()

    def _notify(self) -> None:
        self._changed.notify()
        if self._on_change is not None:
            try:
                self._on_change(self.status)
            except Exception:
                logger.exception("lease %s: the on_change observer raised", self.lease)

    def _note_error(self, what: str, exc: BaseException) -> None:
        self._last_error = f"{what}: {short(exc)}"
        logger.warning("lease %s: %s", self.lease, self._last_error)
        self._notify()

    def _observe(self, lease: Lease | None, now: float) -> float:
        """Remember ``lease``; returns when (on :data:`clock`) this record was first seen.

        client-go's ``setObservedRecord`` after comparing the raw record: a record that
        has not changed keeps its first observation time, which is what expiry counts from.
        """
        if lease is None:
            if self._observed is not None:
                self._observed = None
                self._report_holder(None)
            return now
        seen = self._observed
        if seen is not None and seen.same_record(lease):
            self._observed = _Observation(lease, seen.observed_at)  # the newest object
            return seen.observed_at
        self._observed = _Observation(lease, now)
        self._report_holder(lease.record.holder_identity)
        return now

    def _report_holder(self, holder: str | None) -> None:
        """client-go's ``maybeReportTransition``: log a new leader once, then notify."""
        if holder != self._reported_holder and holder is not None:
            if holder:
                logger.info("lease %s: new leader observed: %s", self.lease, holder)
            else:
                logger.info("lease %s: released, no leader", self.lease)
        self._reported_holder = holder
        self._notify()

    # -- running ---------------------------------------------------------------------------

    async def run(self, lead: Lead[T]) -> T:
        """Campaign, lead, campaign again..., until cancelled or ``lead`` finishes."""
        if self._running:
            raise RuntimeError("this LeaderElector is already running")
        self._running, self._stopped, self._failure = True, False, None
        self._notify()
        try:
            while True:
                term = await self._campaign()
                finished = await self._serve(term, lead)
                if finished is not None:
                    return finished.value
        except FatalError as exc:
            self._failure = exc
            raise
        finally:
            await self._release()
            self._running, self._stopped = False, True
            self._notify()

    async def _campaign(self) -> Term:
        """client-go's ``acquire``: try at once, then after ``retry_period x [1, 1+jitter)``."""
        logger.info("lease %s: %s is campaigning", self.lease, self._identity)
        timing = self._timing
        first = True
        while True:
            if not first:
                jitter = self._rng.random() * timing.jitter_factor
                await asyncio.sleep(timing.retry_period * (1.0 + jitter))
            first = False
            try:
                async with asyncio.timeout(timing.renew_deadline):
                    term = await self._try_acquire()
            except TimeoutError as exc:
                self._note_error("acquiring timed out", exc)
                continue
            except InvalidRequest:
                raise  # the server refuses our request as malformed: retrying cannot help
            except FatalError as exc:
                if not isinstance(exc, ApiError):
                    raise  # EpochError
                self._note_error("acquiring failed", exc)  # 404: e.g. the namespace is missing
                continue
            except ListWatchError as exc:
                self._note_error("acquiring failed", exc)
                continue
            if term is not None:
                return term

    async def _try_acquire(self) -> Term | None:
        """``tryAcquireOrRenew`` for a candidate: read (or create), decide, write once.

        A 409 means someone else wrote since the read: the attempt fails, and the next one
        reads again (client-go's slow path); it never repeats the write blindly.
        """
        lease = await self._leases.get()
        now = clock()
        observed_at = self._observe(lease, now)
        decision = decide(
            lease.record if lease is not None else None,
            observed_at=observed_at,
            now=now,
            identity=self._identity,
            timing=self._timing,
            wall_time=now_micro_time(),
        )
        if isinstance(decision, Wait):
            return None
        if self._admission is None:
            return await self._acquire(lease, decision)
        with self._admission() as admitted:
            if not admitted:
                return None
            return await self._acquire(lease, decision)

    async def _acquire(self, lease: Lease | None, decision: Write) -> Term | None:
        """The acquiring write ``decision``, over ``lease`` as read; the term, if it led."""
        sent = clock()
        try:
            if lease is None or decision.create:
                written = await self._leases.create(decision.record)
            else:
                written = await self._leases.replace(lease, decision.record, epoch=None)
        except ApiError as exc:
            if is_conflict(exc) or (exc.status == 404 and lease is not None):
                logger.debug("lease %s: lost the race to write: %s", self.lease, exc)
                return None
            raise
        self._observe(written, clock())
        epoch = parse_epoch(written.resource_version, self.lease)
        if lease is not None and epoch <= parse_epoch(lease.resource_version, self.lease):
            # The server skipped a write that changed nothing: no new revision, no epoch.
            logger.warning("lease %s: the acquiring write was not written", self.lease)
            return None
        term = Term(
            identity=self._identity,
            epoch=epoch,
            lease=self.lease,
            lease_uid=written.uid,
            acquired_at=sent,
            lease_transitions=written.record.lease_transitions,
            _gate=_Gate(sent, self._timing.renew_deadline, decision.record.renew_time),
        )
        if not term.valid():
            logger.info("lease %s: acquired too late to lead (%s)", self.lease, self._identity)
            return None
        self._term = term
        self._terms += 1
        logger.info(
            "lease %s: acquired by %s: term epoch %d, leaseTransitions %d",
            self.lease,
            self._identity,
            epoch,
            term.lease_transitions,
        )
        self._notify()
        return term

    async def _serve(self, term: Term, lead: Lead[T]) -> _Finished[T] | None:
        """Run ``lead(term)`` beside the renew loop; what it returned, or ``None`` if lost.

        The gate closes (``term.valid()`` false) before ``lead`` is cancelled, and the loss
        is reported only after ``lead`` has finished, so no write of this term is left
        running once anyone is told that the term is over.
        """
        gate = term._gate
        lost = ""
        try:
            async with asyncio.TaskGroup() as group:
                leading = group.create_task(lead(term), name=f"lead {self.lease} {term.epoch}")
                renewing = group.create_task(self._renew(term), name=f"renew {self.lease}")
                try:
                    await asyncio.wait({leading, renewing}, return_when=asyncio.FIRST_COMPLETED)
                except asyncio.CancelledError:
                    gate.ended = True  # shutting down, or ``lead`` raised: close the gate first
                    raise
                gate.ended = True
                if leading.done():
                    renewing.cancel()
                else:
                    lost = renewing.result()
                    leading.cancel()
        except BaseExceptionGroup as group_error:
            self._end_term(term, "lead raised")
            raise first_error(group_error, if_alone=True) from None
        except asyncio.CancelledError:
            self._end_term(term, "shutting down")
            raise
        if lost:
            self._end_term(term, lost)
            return None
        self._end_term(term, "lead returned")
        return _Finished(leading.result())

    def _end_term(self, term: Term, reason: str) -> None:
        term._gate.ended = True
        if self._term is term:
            self._term = None
            logger.info(
                "lease %s: %s stopped leading (term epoch %d): %s",
                self.lease,
                self._identity,
                term.epoch,
                reason,
            )
            self._notify()

    async def _renew(self, term: Term) -> str:
        """client-go's ``renew``; returns why the term ended.

        Tries every ``retry_period``; the term ends when ``renew_deadline`` has passed since
        its last successful write was sent. client-go counts the deadline from the start of
        each renewal round (one retry period after the last success); counting from the
        success itself ends a stuck term ``retry_period`` sooner, which only widens the
        margin before a standby may take over. The first renewal is at once: it publishes
        the term's epoch in the annotation. A record held by another, or a Lease deleted or
        recreated, ends the term at once rather than at the deadline: it cannot come back.
        """
        gate = term._gate
        timing = self._timing
        next_try = clock()
        while True:
            delay = min(next_try, gate.deadline) - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            now = clock()
            if now >= gate.deadline:
                return f"not renewed within renew_deadline={timing.renew_deadline:g} s"
            try:
                async with asyncio.timeout(gate.deadline - now):
                    lost = await self._renew_once(term)
            except TimeoutError as exc:
                self._note_error("renewing timed out", exc)
                lost = None
            except ListWatchError as exc:
                self._note_error("renewing failed", exc)
                lost = None
            if lost is not None:
                return lost
            next_try = clock() + timing.retry_period

    async def _renew_once(self, term: Term) -> str | None:
        """One renewal: ``None`` when renewed, the reason when the term is over, or raises.

        client-go's fast path first (PUT over the object as last seen, no GET); if that
        fails for any reason, the slow path re-reads and decides again, within the attempt.
        """
        seen = self._observed.lease if self._observed is not None else None
        if seen is not None and self._ours(term, seen) is None:
            try:
                return await self._write_renewal(term, seen)
            except ListWatchError as exc:
                logger.debug("lease %s: fast renewal failed, reading again: %s", self.lease, exc)
        lease = await self._leases.get()
        self._observe(lease, clock())
        if lease is None:
            return "the Lease was deleted"
        lost = self._ours(term, lease)
        if lost is not None:
            return lost
        return await self._write_renewal(term, lease)

    def _ours(self, term: Term, lease: Lease) -> str | None:
        """``None`` if ``lease`` is still this term's, else why not."""
        holder = lease.record.holder_identity
        if lease.uid != term.lease_uid:
            return "the Lease was deleted and created again"
        if holder != self._identity:
            return f"the lease is held by {holder or 'nobody'} now"
        if lease.record.renew_time not in term._gate.sent:
            logger.error(
                "lease %s: another process renews it as %s: identities must be unique",
                self.lease,
                holder,
            )
            return f"another process writes the lease as {holder}"
        return None

    async def _write_renewal(self, term: Term, base: Lease) -> str | None:
        decision = decide(
            base.record,
            observed_at=clock(),
            now=clock(),
            identity=self._identity,
            timing=self._timing,
            wall_time=now_micro_time(),
        )
        # The record names this elector (checked by the caller), so it is never a Wait.
        assert isinstance(decision, Write), decision
        gate = term._gate
        gate.sent.append(decision.record.renew_time)
        sent = clock()
        try:
            written = await self._leases.replace(base, decision.record, epoch=term.epoch)
        except ApiError as exc:
            if exc.status == 404:
                return "the Lease was deleted"
            raise
        gate.renewed_at = max(gate.renewed_at, sent)
        self._observe(written, clock())
        return None

    async def _release(self) -> None:
        """client-go's ``release`` (ReleaseOnCancel): holder "", leaseDurationSeconds 1.

        Only when the last record seen names this elector, and only by a conditional PUT: on
        409 it re-reads and releases only if the record still names it (client-go's
        ``tryRelease`` re-reads but decides from its old observation). Bounded by
        ``renew_deadline``; on failure standbys take over when the lease expires.
        """
        try:
            async with asyncio.timeout(self._timing.renew_deadline):
                await self._release_once()
        except TimeoutError:
            logger.warning("lease %s: not released within renew_deadline", self.lease)
        except ListWatchError as exc:
            logger.warning("lease %s: not released: %s", self.lease, short(exc))

    async def _release_once(self) -> None:
        while True:
            seen = self._observed.lease if self._observed is not None else None
            if seen is None or seen.record.holder_identity != self._identity:
                return
            wall = now_micro_time()
            released = LeaseRecord("", 1, wall, wall, seen.record.lease_transitions)
            try:
                written = await self._leases.replace(seen, released, epoch=None)
            except ApiError as exc:
                if exc.status == 404:
                    return
                if not is_conflict(exc):
                    raise
                self._observe(await self._leases.get(), clock())
                continue
            self._observe(written, clock())
            logger.info("lease %s: released by %s", self.lease, self._identity)
            return
