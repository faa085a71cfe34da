"""Which writes a receiver applies: the fencing and ordering rules, in one place.

Every snapshot and batch a Syncer sends is stamped (``Stamp``) with:

* ``epoch``: the fencing token of the leader's term (``listwatch.leaderelection``; 0
  without leader election). It never decreases from one leader to the next.
* ``session``: the sending Syncer's random id. A Syncer numbers its generations from 1, so
  generation numbers are comparable only within one session.
* ``generation``: which snapshot the write belongs to (each generation starts with one).
* ``sequence``: the batch's number within its generation (1, 2, ...); 0 for the snapshot.

A receiver records the stamp of its last applied write per (cluster, resource) and, in the
same transaction as each new write, decides with ``decide``:

| the write                                                    | verdict                  |
|--------------------------------------------------------------|--------------------------|
| epoch below the highest recorded for the write's cluster     | ``StaleEpoch``: refused  |
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
from dataclasses import dataclass

from listwatch._models import Batch, Snapshot
from listwatch.errors import StaleEpoch, StaleWrite

__all__ = ["Stamp", "StaleWrite", "Verdict", "decide", "stamp_of"]


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

    @property
    def snapshot(self) -> bool:
        return self.sequence == 0


def stamp_of(write: Snapshot | Batch) -> Stamp:
    if isinstance(write, Snapshot):
        return Stamp(write.epoch, write.session, write.generation, 0, write.resource_version)
    sequence = max(write.sequence, 1)
    return Stamp(write.epoch, write.session, write.generation, sequence, write.resource_version)


def decide(
    resource: str, write: Stamp, recorded: Stamp | None, highest_epoch: int | None
) -> Verdict:
    """The verdict on ``write``, given the resource's last applied stamp and the highest
    epoch the receiver has recorded for the write's cluster; raises ``StaleEpoch`` or
    ``StaleWrite`` to refuse."""
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
