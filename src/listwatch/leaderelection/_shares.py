"""Active-active sharding: which shard Leases a replica may take and which it gives back.

``listwatch mirror --shards N --leader-elect`` splits the hash space into N shards, each
with its own Lease (``<lease-name>-shard-<i>``) and so its own elector, term and epoch: a
shard fails over on its own, exactly as a whole-collection Lease does (``_elector``). What
this module adds is how many of them one replica holds. The rules are pure functions of
what a replica has seen, so that they are tested as tables (tests/leaderelection):

* **Who is alive.** A replica that holds no shard must still be counted, or the others
  would never make room for it; so each replica also holds a presence Lease of its own
  (``<lease-name>-replica-<identity>``), renewed like any other, and labelled with the
  lease set so that one LIST finds them all. A presence is alive while its holder is set
  and its record changed less than ``leaseDurationSeconds`` ago *as this replica observed
  it* (client-go's expiry rule: the record's timestamps come from another clock and are
  never read). A replica that stops releases its presence (holder ``""``) and is gone at
  once; one that died is gone after the lease duration.
* **The fair share** is ``ceil(N / live replicas)``, this replica included: with N shards
  and R replicas nobody holds more than that, and together they can hold all N.
* **Taking.** A replica under its share may acquire a free or expired shard Lease; it
  acquires one at a time (an acquisition in flight counts as held), so that two survivors
  of a failed replica do not both grab every orphan and then give the extras back.
* **Giving back.** A replica over its share (a replica joined) gives back one shard per
  round, and only once it has been over its share for ``settle`` seconds: a presence that
  blinks (a replica restarting) moves nothing. A shard moves only when the share changes.
  The shard given back is the one ranked last for this replica by rendezvous hashing, so
  that replicas keep the same shards across restarts of the others. Giving back stops the
  shard's writers first, then releases its Lease; the next holder's larger epoch fences
  anything that was still in flight.

A dead replica's shards are taken over when their Leases expire: the survivors' electors
keep observing every shard Lease (their expiry clocks run from their own observations), so
one of them writes the takeover within one retry period of ``lease_duration``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from listwatch._shard import fnv1a64

_NOT_IN_NAME = re.compile(r"[^a-z0-9.-]+")
_NAME_MAX = 253

SET_LABEL = "listwatch.io/lease-set"
"""The label every Lease of one sharded lease set carries (shards and presences alike), with
the lease name's hash as its value (a label value is at most 63 characters; a name is not)."""

ROLE_LABEL = "listwatch.io/lease-role"
"""``shard`` or ``replica``: what a Lease of the set is for."""


def set_label_value(lease_name: str) -> str:
    return f"{fnv1a64(lease_name):016x}"


def shard_lease_name(lease_name: str, index: int) -> str:
    """``<lease-name>-shard-<i>``, i from 0."""
    return f"{lease_name}-shard-{index}"


def presence_lease_name(lease_name: str, identity: str) -> str:
    """``<lease-name>-replica-<identity>``, the identity made a valid name if it is not one
    (lowercased, other characters turned to ``-``, and then the original's hash appended so
    that two identities never map to one name)."""
    prefix = f"{lease_name}-replica-"
    cleaned = _NOT_IN_NAME.sub("-", identity.lower()).strip("-.")
    if cleaned == identity and len(prefix) + len(cleaned) <= _NAME_MAX:
        return prefix + cleaned
    suffix = f"{fnv1a64(identity):016x}"
    room = _NAME_MAX - len(prefix) - len(suffix) - 1
    kept = cleaned[: max(room, 0)].strip("-.")
    return f"{prefix}{kept}-{suffix}" if kept else prefix + suffix


def fair_share(shards: int, live_replicas: int) -> int:
    """``ceil(shards / live_replicas)``; this replica is always one of the live ones."""
    if shards < 1:
        raise ValueError("there is at least one shard")
    return math.ceil(shards / max(live_replicas, 1))


@dataclass(frozen=True, slots=True)
class Presence:
    """A presence Lease as one replica saw it: its holder, its ``leaseDurationSeconds``, and
    when (on the elector's monotonic clock) this replica first saw its current record."""

    holder: str
    lease_duration_seconds: int
    observed_at: float


def live_replicas(presences: Iterable[Presence], *, now: float, identity: str) -> frozenset[str]:
    """The identities alive by their presence Leases, and always ``identity`` itself.

    Alive: held (a released presence has holder ``""``) and not expired, counting from the
    observation (``observed_at + leaseDurationSeconds > now``)."""
    alive = {
        p.holder
        for p in presences
        if p.holder and now < p.observed_at + max(p.lease_duration_seconds, 0)
    }
    alive.add(identity)
    return frozenset(alive)


FORGET_AFTER = 10
"""A presence expired for this many lease durations (or released) is deleted by whichever
replica sees it: with a random identity per process (the default), every restart leaves
one behind, and the set must not grow for ever. Ten lease durations is far past any pause
the election survives; a replica that comes back after that finds its presence gone,
and its elector creates it again."""


def to_forget(presence: Presence, *, now: float, identity: str) -> bool:
    """Whether to delete this presence Lease: released (holder ``""``), or expired for
    ``FORGET_AFTER`` lease durations by this replica's observation; never its own."""
    if presence.holder == identity:
        return False
    if not presence.holder:
        return True
    duration = max(presence.lease_duration_seconds, 1)
    return now >= presence.observed_at + FORGET_AFTER * duration


def may_take(*, held: int, in_flight: bool, share: int, ready: bool) -> bool:
    """May this replica write an acquisition of one more shard Lease now?

    Not before it has seen the others (``ready``: its presence is published and the set has
    been listed once since, so a replica that starts beside others does not take every
    shard first and give most back); not while another of its acquisitions is in flight;
    and only while under its share."""
    return ready and not in_flight and held < share


def rank(identity: str, index: int) -> int:
    """Rendezvous score of shard ``index`` for ``identity``: higher is kept longer."""
    return fnv1a64(f"{identity}/{index}")


def to_give_back(
    held: Iterable[int], *, share: int, identity: str, over_for: float, settle: float
) -> int | None:
    """The one shard to give back this round, or None.

    Only when over the share, and only once over it for ``settle`` seconds (``over_for``:
    how long this replica has been over continuously): hysteresis, so that a blinking
    presence moves nothing. One shard per round; the lowest-ranked for this identity."""
    held = sorted(held)
    if len(held) <= share or over_for < settle:
        return None
    return min(held, key=lambda index: rank(identity, index))


def holders(leases: Mapping[int, str | None]) -> dict[str, list[int]]:
    """Shard indices by holder (None or ``""``: free), for status lines and tests."""
    by_holder: dict[str, list[int]] = {}
    for index, holder in sorted(leases.items()):
        if holder:
            by_holder.setdefault(holder, []).append(index)
    return by_holder
