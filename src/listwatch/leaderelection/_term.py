"""The values an elector hands out: a ``Term`` with its write gate, and ``ElectionStatus``.

Kept apart from the elector so that code which only *checks* a term (a receiver's write
path, a metrics hook) needs nothing else.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

T = TypeVar("T")

#: How many of a term's recent ``renewTime`` values are remembered (see ``_Gate.sent``).
_SENT_KEPT = 4


def _boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


#: The elector's clock: monotonic, and on Linux counting time while the machine is
#: suspended (CLOCK_BOOTTIME), which CLOCK_MONOTONIC does not: a leader whose VM was frozen
#: must see, when it wakes, that its term ran out. A SIGSTOPped process sees it either way.
clock: Callable[[], float] = _boottime if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic


class _Gate:
    """The live part of a term: when its last write was sent, and whether it has ended.

    ``sent`` keeps the ``renewTime`` of the term's last few writes: a record that names
    this identity with a ``renewTime`` it never sent was written by someone else.
    """

    __slots__ = ("ended", "renew_deadline", "renewed_at", "sent")

    def __init__(self, renewed_at: float, renew_deadline: float, renew_time: str | None) -> None:
        self.renewed_at = renewed_at
        self.renew_deadline = renew_deadline
        self.ended = False
        self.sent: deque[str | None] = deque([renew_time], maxlen=_SENT_KEPT)

    @property
    def deadline(self) -> float:
        return self.renewed_at + self.renew_deadline


@dataclass(frozen=True)
class Term:
    """One uninterrupted period of leadership, and the fencing epoch of everything it writes.

    ``epoch`` is the resourceVersion of the write that acquired the lease; a later term (of
    any elector, this one included) has a larger epoch. ``acquired_at`` is on
    :data:`clock`. ``lease_transitions`` is the Lease's count at acquisition.
    """

    identity: str
    epoch: int
    lease: str
    lease_uid: str
    acquired_at: float
    lease_transitions: int
    _gate: _Gate = field(repr=False, compare=False)

    def valid(self) -> bool:
        """The write gate: may this term still write? Cheap: one clock read.

        True while the term has not ended and its last successful write (acquisition or
        renewal) was *sent* less than ``renew_deadline`` ago by the local monotonic clock.
        It needs no running code to turn false: a process that was paused past the deadline
        sees False on its first check after waking, before its renew loop has run.
        """
        gate = self._gate
        return not gate.ended and clock() < gate.deadline

    def remaining(self) -> float:
        """Seconds until :meth:`valid` turns false unless renewed (0 once it is false)."""
        gate = self._gate
        return 0.0 if gate.ended else max(0.0, gate.deadline - clock())


@dataclass(frozen=True, slots=True)
class ElectionStatus:
    """A consistent copy of what one elector knows, for metrics, readiness and tests.

    ``leading`` is true from acquisition until ``lead`` has been cancelled and awaited
    (``leader_election_master_status``); for the write gate use ``term.valid()``.
    ``holder`` is the observed ``holderIdentity`` ("" once released, ``None`` before the
    Lease was read or while it does not exist); ``observed_epoch`` the holder's published
    epoch (the annotation); ``observed_at`` when, on :data:`clock`, the current record was
    first seen. ``terms`` counts the terms this elector has led.
    """

    identity: str
    running: bool
    leading: bool
    term: Term | None
    holder: str | None
    observed_epoch: int | None
    lease_transitions: int | None
    observed_at: float | None
    terms: int
    last_error: str | None


Lead: TypeAlias = Callable[[Term], Coroutine[Any, Any, T]]
"""The caller's coroutine function, run while this elector holds the lease."""
