"""Which writes a receiver applies: the fencing and ordering rules, in one place.

Every snapshot and batch a Syncer sends is stamped (``Stamp``) with:

* ``epoch``: the fencing token of the leader's term (``listwatch.leaderelection``; 0
  without leader election). It never decreases from one leader to the next.
* ``session``: the sending Syncer's random id. A Syncer numbers its generations from 1, so
  generation numbers are comparable only within one session.
* ``generation``: which snapshot the write belongs to (each generation starts with one).
* ``sequence``: the batch's number within its generation (1, 2, ...); 0 for the snapshot.

* ``shard``: the scope the write replaces (``Snapshot.shard``): a range of the uid hash
  (``listwatch._shard``), or None for the whole collection.

A receiver records the stamp of its last applied write per (cluster, resource, scope) (the
scope as ``scope_text``: "" for the whole collection) and, in the same transaction as each
new write, decides with ``decide``:

| the write                                                    | verdict                  |
|--------------------------------------------------------------|--------------------------|
| epoch below the highest recorded for the write's cluster     | ``StaleEpoch``: refused  |
| over the scopes that overlap the write's (``highest_epoch``)  |                          |
| same session, older generation                                | ``StaleWrite``: refused  |
| same session and generation: a snapshot, or a batch already   | ``DUPLICATE``: nothing   |
| applied (sequence <= recorded): a retried or replayed request | to do, and not an error  |
| same session and generation, the next batch (recorded + 1)    | ``APPLY``                |
| same session and generation, a batch beyond the next one      | ``StaleWrite``: a batch  |
|                                                               | went missing: refused    |
| a batch of a generation whose snapshot the receiver lacks      | ``StaleWrite``: refused  |
| a snapshot of a newer generation, or of another session       | ``APPLY``                |
| ... unless, in the recorded epoch, its resourceVersion is      | ``StaleWrite``: refused  |
| older than the recorded one (an older snapshot replayed)       |                          |

Why refusing is safe: the sender's receiver call raises, its generation ends, and the next
one starts from a fresh snapshot (or, for a stale epoch, the old leader stops). Why the
epoch check is over all of a cluster's resources: one agent's resources share one leader,
and a leader that was paused and wakes up must not write *anything*, not even a resource
the new leader has not written yet. Why over one cluster's only: an epoch is a revision of
the cluster's own etcd (docs/kubernetes-semantics.md#fencing-epoch), so two clusters'
epochs say nothing about each other, and a cluster whose etcd is younger must write beside
one whose etcd is older. ``highest_epoch`` is therefore the write's cluster's. A write with
an empty session (made by hand, not by a Syncer) is checked only against the epoch.

Why over the scopes that *overlap* the write's, and over all of the cluster's resources
(``highest_epoch``): a sharded agent holds one Lease per shard (``<lease>-shard-<i>``, for
all the resources it mirrors), each with its own epoch, so a shard's leader is fenced by
the Lease of its shard, over all its resources, as an unsharded leader is by its one Lease.
Shards of one layout are disjoint: a new leader of shard 2 (epoch 900) never fences shard
1's current leader (epoch 700), and shards fail over independently. Writers whose scopes
overlap write the same rows, and are ordered by their epochs exactly as one leader's
successive terms are: an unsharded scope overlaps every shard (so an unsharded write is
checked against every epoch of its cluster, as before shards existed), and when the shard
count changes (4 to 8) the new layout's leaders, whose Leases were taken later and whose
epochs (etcd revisions) are therefore higher, fence the old layout's leaders of the
overlapping ranges, and only those. Within one scope, the rows below apply to the
scope's own recorded stamp.

Why an older snapshot is refused within an epoch: a snapshot replaces the resource's rows,
so one replayed from an earlier sync (another session's request retried late, or sent
again by hand) would take the mirror back in time (RV 301 back to 200) although every write
in it is genuine. Within one epoch there is one leader, and every listing of listwatch is a
consistent read (docs/kubernetes-semantics.md#where-listwatch-deliberately-differs-from-client-go),
so a genuine new snapshot is never older than what the receiver holds. resourceVersions are
compared as integers, as etcd revisions are, only when both are decimal integers without
leading zeros (comparable RVs: docs/kubernetes-semantics.md#resource-versions);
anything else is not compared. Limits: a snapshot whose RV is not known when the fence
decides (a streaming list learns it at its end; its header then says "") is judged by its
stamp alone; across epochs the rule does not apply (the epoch orders leaders, and a new
leader's snapshot is the truth); and a cluster name given to a *different* cluster (a
recreated test cluster, whose RVs start low again) refuses its snapshots at the same epoch
until its RVs pass the recorded one: give a new cluster a new name.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from listwatch._models import Batch, Snapshot
from listwatch._shard import Shard
from listwatch.errors import StaleEpoch, StaleWrite

__all__ = [
    "Stamp",
    "StaleWrite",
    "Verdict",
    "decide",
    "highest_epoch",
    "scope_shard",
    "scope_text",
    "stamp_of",
]


class Verdict(enum.Enum):
    APPLY = "apply"
    DUPLICATE = "duplicate"
    """Already applied (a retried request): change nothing, report success."""


@dataclass(frozen=True, slots=True)
class Stamp:
    epoch: int
    session: str
    generation: int
    sequence: int = 0
    """0 for a snapshot; the batch's number within its generation otherwise."""
    resource_version: str = ""
    """The write's resourceVersion (a recorded stamp: the resource's current one); "" when
    not known yet."""
    shard: Shard | None = None
    """The scope the write replaces (None: the whole collection). Not compared by
    ``decide``: a recorded stamp is the one of the write's own scope."""

    @property
    def snapshot(self) -> bool:
        return self.sequence == 0


def stamp_of(write: Snapshot | Batch) -> Stamp:
    shard = None if write.shard is None or write.shard.everything else write.shard
    sequence = 0 if isinstance(write, Snapshot) else max(write.sequence, 1)
    return Stamp(
        write.epoch, write.session, write.generation, sequence, write.resource_version, shard
    )


def scope_text(shard: Shard | None) -> str:
    """The scope as receivers record it: "" for the whole collection (also a shard that is
    the whole hash space: it replaces the same rows), else the range, ``0xSTART-0xEND``
    (never ``I/N``: two layouts may name one range differently, and the range is what the
    rows and the fence depend on)."""
    if shard is None or shard.everything:
        return ""
    return f"0x{shard.start:016x}-0x{shard.end:016x}"


def scope_shard(text: str) -> Shard | None:
    """The shard of a recorded scope (``scope_text``'s inverse)."""
    return Shard.parse(text) if text else None


def overlap(a: Shard | None, b: Shard | None) -> bool:
    if a is None or b is None:
        return True
    """Whether two scopes share objects (None: the whole collection, overlapping all)."""
    return a.start < b.end and b.start < a.end


def highest_epoch(shard: Shard | None, recorded: Iterable[tuple[str, int]]) -> int | None:
    """The highest epoch that fences a write of ``shard``: over the cluster's recorded
    ``(scope_text, epoch)`` pairs (all its resources), those whose scope overlaps the
    write's (the module's doc says why). None if there is none."""
    epochs = [epoch for text, epoch in recorded if overlap(shard, scope_shard(text))]
    return max(epochs, default=None)


def named(resource: str, shard: Shard | None) -> str:
    """How refusals name the write's resource: with its shard, if it has one."""
    return resource if shard is None else f"{resource} (shard {shard.name})"


def decide(
    resource: str, write: Stamp, recorded: Stamp | None, highest_epoch: int | None
) -> Verdict:
    """The verdict on ``write``, given the resource's last applied stamp and the highest
    epoch the receiver has recorded for the write's cluster (for a sharded write, over the
    scopes that overlap its own: ``highest_epoch``); raises ``StaleEpoch`` or ``StaleWrite``
    to refuse."""
    resource = named(resource, write.shard)
    if highest_epoch is not None and write.epoch < highest_epoch:
        raise StaleEpoch(resource, write.epoch, highest_epoch)
    if not write.session:
        return Verdict.APPLY
    same = (
        recorded is not None and recorded.session == write.session and recorded.epoch == write.epoch
    )
    if not same:
        if write.snapshot:
            return _unless_older(resource, write, recorded)
        raise StaleWrite(
            f"{resource}: refused batch {write.sequence} of generation {write.generation}: "
            "the receiver does not hold that generation's snapshot"
        )
    assert recorded is not None
    if write.generation < recorded.generation:
        raise StaleWrite(
            f"{resource}: refused a write of generation {write.generation}: the receiver "
            f"holds generation {recorded.generation} of the same sender"
        )
    if write.generation > recorded.generation:
        if write.snapshot:
            return _unless_older(resource, write, recorded)
        raise StaleWrite(
            f"{resource}: refused batch {write.sequence} of generation {write.generation}: "
            f"the receiver holds generation {recorded.generation}, not its snapshot"
        )
    if write.snapshot or write.sequence <= recorded.sequence:
        return Verdict.DUPLICATE
    if write.sequence == recorded.sequence + 1:
        return Verdict.APPLY
    raise StaleWrite(
        f"{resource}: refused batch {write.sequence} of generation {write.generation}: the "
        f"receiver's last is batch {recorded.sequence} (one went missing)"
    )


def _unless_older(resource: str, snapshot: Stamp, recorded: Stamp | None) -> Verdict:
    """``APPLY`` for a snapshot the rules above accept, unless it is older than what the
    resource holds in the same epoch (the module's doc says why, and where this stops)."""
    if (
        recorded is not None
        and recorded.epoch == snapshot.epoch
        and _older(snapshot.resource_version, recorded.resource_version)
    ):
        raise StaleWrite(
            f"{resource}: refused a snapshot at resourceVersion {snapshot.resource_version}: "
            f"the receiver holds resourceVersion {recorded.resource_version} of the same "
            "epoch (an older snapshot, replayed)"
        )
    return Verdict.APPLY


_COMPARABLE = re.compile(r"[1-9][0-9]{0,30}")
"""A resourceVersion that orders as an integer: digits without a leading zero ("0" means
"any" in a request and is no revision). 31 digits is far beyond any etcd revision
(an int64) and keeps ``int()`` cheap."""


def _older(resource_version: str, than: str) -> bool:
    """Whether ``resource_version`` is known to be older than ``than``: both comparable,
    and smaller as an integer. Anything not comparable is never older."""
    if not (_COMPARABLE.fullmatch(resource_version) and _COMPARABLE.fullmatch(than)):
        return False
    return int(resource_version) < int(than)
