"""The Lease record, the timing rules, and the acquire-or-renew decision, as pure functions.

client-go's ``tryAcquireOrRenew`` (``tools/leaderelection/leaderelection.go``) mixes HTTP
calls, the bookkeeping of when the record was last seen to change, and the decision itself.
The decision lives here alone, a function of (record, observed time, now, identity, timing),
so that every case can be tested without a server or a clock (tests/leaderelection).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

JITTER_FACTOR = 1.2
"""client-go's ``JitterFactor``: a candidate waits ``retry_period x [1, 1 + 1.2)`` between tries."""

LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0
"""The default timing of Kubernetes' own controllers (component-base's leader-election
defaults: 15 s, 10 s, 2 s). Written once here: ``LeaseTiming``, ``LeaderElector``, the
sharded agent and the CLI all default to it."""

_INT32_MAX = 2**31 - 1

T = TypeVar("T")


def _check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """client-go's ``LeaderElectionConfig`` durations, validated as ``NewLeaderElector`` does.

    - ``lease_duration``: how long a standby waits, from the moment *it* last saw the record
      change, before it may take the lease over.
    - ``renew_deadline``: how long the leader keeps its term without a successful renewal.
    - ``retry_period``: the pause between tries (acquire and renew).

    ``lease_duration > renew_deadline`` so that a leader gives up before any standby may
    take over; ``renew_deadline > jitter_factor x retry_period`` so that a leader gets more
    than one try at renewing. Fractional seconds are allowed; the Lease's
    ``leaseDurationSeconds`` is a whole number, so it carries ``lease_duration`` rounded up:
    standbys then wait at least as long as configured, never less.
    """

    lease_duration: float = LEASE_DURATION
    renew_deadline: float = RENEW_DEADLINE
    retry_period: float = RETRY_PERIOD
    jitter_factor: float = JITTER_FACTOR

    def __post_init__(self) -> None:
        for name in ("lease_duration", "renew_deadline", "retry_period"):
            object.__setattr__(self, name, _check_seconds(name, getattr(self, name)))
        jitter = self.jitter_factor
        if isinstance(jitter, bool) or not isinstance(jitter, int | float):
            raise ValueError(f"jitter_factor must be a number, got {jitter!r}")
        if not math.isfinite(jitter) or jitter <= 0:
            raise ValueError(f"jitter_factor must be positive and finite, got {jitter!r}")
        if self.lease_duration > _INT32_MAX:
            raise ValueError(f"lease_duration must be at most {_INT32_MAX} s (an int32 field)")
        if not self.lease_duration > self.renew_deadline:
            raise ValueError(
                f"lease_duration ({self.lease_duration:g} s) must be greater than "
                f"renew_deadline ({self.renew_deadline:g} s): a leader must give up its term "
                "before a standby may take the lease over"
            )
        if not self.renew_deadline > self.jitter_factor * self.retry_period:
            raise ValueError(
                f"renew_deadline ({self.renew_deadline:g} s) must be greater than "
                f"jitter_factor x retry_period ({self.jitter_factor:g} x "
                f"{self.retry_period:g} s): a leader needs more than one try at renewing"
            )

    @property
    def lease_duration_seconds(self) -> int:
        """``spec.leaseDurationSeconds`` as written: ``lease_duration`` rounded up."""
        return math.ceil(self.lease_duration)


def micro_time(moment: datetime) -> str:
    """``metav1.MicroTime`` as the API server writes it: RFC 3339, UTC, microseconds.

    ``2026-12-02T05:50:43.123456Z``. A naive datetime is refused: its zone is unknown, and
    writing local time with a ``Z`` (as kubernetes_asyncio's LeaseLock does) is wrong.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("micro_time needs an aware datetime (with a timezone)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_micro_time() -> str:
    return micro_time(datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The election record in a Lease's ``spec`` (client-go's ``LeaderElectionRecord``).

    The timestamps are kept as the strings the server holds: they are for people and
    dashboards; the election never reads them (see :func:`decide`).
    """

    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    lease_transitions: int = 0

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> LeaseRecord:
        """Read a ``LeaseSpec``; absent fields take Go's zero values, wrong types raise."""
        holder = _field(spec, "holderIdentity", str, "")
        duration = _field(spec, "leaseDurationSeconds", int, 0)
        acquire = _optional(spec, "acquireTime", str)
        renew = _optional(spec, "renewTime", str)
        transitions = _field(spec, "leaseTransitions", int, 0)
        return cls(holder, duration, acquire, renew, transitions)

    def to_spec(self) -> dict[str, Any]:
        """The ``LeaseSpec`` client-go's ``LeaderElectionRecordToLeaseSpec`` writes."""
        spec: dict[str, Any] = {
            "holderIdentity": self.holder_identity,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "leaseTransitions": self.lease_transitions,
        }
        if self.acquire_time is not None:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time is not None:
            spec["renewTime"] = self.renew_time
        return spec


def _optional(spec: Mapping[str, Any], name: str, kind: type[T]) -> T | None:
    value = spec.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        wanted = "an integer" if kind is int else "a string"
        raise ValueError(f"spec.{name} must be {wanted}, got {type(value).__name__}")
    return value


def _field(spec: Mapping[str, Any], name: str, kind: type[T], default: T) -> T:
    value = _optional(spec, name, kind)
    return default if value is None else value


@dataclass(frozen=True, slots=True)
class Wait:
    """The lease is held by someone else and has not expired: it cannot be taken.

    ``expires_at`` (on the elector's clock) is when it would expire if no change is seen.
    """

    holder: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class Write:
    """Write ``record``: create the Lease (``create``), or update it with the RV read.

    ``transition``: a different holder takes over (``leaseTransitions`` grew by one).
    """

    record: LeaseRecord
    create: bool
    transition: bool


Decision = Wait | Write


def decide(
    record: LeaseRecord | None,
    *,
    observed_at: float,
    now: float,
    identity: str,
    timing: LeaseTiming,
    wall_time: str,
) -> Decision:
    """What ``tryAcquireOrRenew`` does with the record it read, steps 2 to 4.

    ``record`` is ``None`` when there is no Lease (create it). ``observed_at`` is the time,
    on this elector's monotonic clock, at which it *first saw the record as it is now*;
    ``now`` is the same clock. The lease has expired when ``now`` has passed ``observed_at``
    plus the record's own ``leaseDurationSeconds`` (client-go's ``isLeaseValid``): the
    record's timestamps are never read, since they come from another machine's clock. A
    record held by someone else that has not expired cannot be taken; an empty holder (a
    released lease) can be taken at once. ``acquireTime`` and ``leaseTransitions`` are kept
    while the same holder writes; a different holder bumps ``leaseTransitions`` by one.
    ``wall_time`` (a :func:`micro_time`) stamps ``renewTime``, and ``acquireTime`` on a
    takeover.
    """
    duration = timing.lease_duration_seconds
    if record is None:
        return Write(LeaseRecord(identity, duration, wall_time, wall_time, 0), True, False)
    holder = record.holder_identity
    expires_at = observed_at + max(record.lease_duration_seconds, 0)
    if holder and holder != identity and now < expires_at:
        return Wait(holder, expires_at)
    if holder == identity:
        renewed = LeaseRecord(
            identity,
            duration,
            record.acquire_time or wall_time,
            wall_time,
            record.lease_transitions,
        )
        return Write(renewed, False, False)
    taken = LeaseRecord(identity, duration, wall_time, wall_time, record.lease_transitions + 1)
    return Write(taken, False, True)
