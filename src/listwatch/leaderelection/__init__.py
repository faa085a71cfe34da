"""Leader election on a ``coordination.k8s.io/v1`` Lease, with a fencing epoch per term.

Why not an existing elector: kubernetes_asyncio's ``leaderelection`` (``LeaseLock``) never
reads or writes ``leaseTransitions``, formats naive local timestamps with a ``Z`` (so a
replica outside UTC writes times hours off), times expiry with the wall clock
(``time.time()``), and cannot release on shutdown (it has no release, and its lock asserts
a non-empty holder on every write); client-go's
``tools/leaderelection`` states that it gives no fencing ("does not guarantee that only one
client is acting as a leader"), and a split brain has been reproduced with it
(kubernetes/kubernetes#67651). listwatch needs both the election and a fence, so it
follows client-go's algorithm (``leaderelection.go``, ``resourcelock/leaselock.go``;
docs/kubernetes-semantics.md#leader-election) and adds two things.

The write gate. ``Term.valid()`` is true while the term's last successful write was sent
less than ``renew_deadline`` ago by the local monotonic clock. A standby may take over only
``leaseDurationSeconds`` (> ``renew_deadline``) after *it* saw the holder's last write, which
was after that write was sent, and only by a conditional PUT on the record it saw; so by
the time any standby can succeed, the old leader's gate has closed, provided the two clocks'
rates differ by less than ``lease_duration / renew_deadline`` (client-go's stated
tolerance). A paused process needs no running code for this: the clock ran on, and its
first check after waking says no. A write already past the gate when the pause began is
what the epoch is for.

The epoch (fencing token). A term's epoch is the ``resourceVersion`` returned by the write
that acquired the lease. kube-apiserver takes an object's resourceVersion from etcd's
revision (``APIObjectVersioner`` in ``k8s.io/apiserver/pkg/storage``): one counter for the
whole cluster, and every write that commits later gets a larger value. Each term begins
with a write of its own (an acquiring write that changed nothing, which the API server
skips without a new resourceVersion, is not accepted as one), so a term's epoch is larger
than that of every term acquired before it, whoever held it, and also across the Lease
being deleted and created again (``leaseTransitions`` restarts at 0 then, which is why it
is not the epoch). A term never survives its Lease object: a deleted or recreated Lease
ends it. Receivers keep the highest epoch seen and refuse lower ones, so a deposed leader
that still writes (it was paused mid-write, say) is refused once the new leader has
written. The holder publishes its epoch in the annotation ``listwatch.io/leader-epoch`` for
observers; the elector never reads an epoch back from it.

Assumptions, stated: (1) resourceVersions are decimal integers from one counter that only
grows. Kubernetes calls them opaque; where one is not an integer the elector raises
``EpochError`` instead of leading. etcd-backed kube-apiserver satisfies this; another
storage backend (kine, for instance) must too [unverified for kine]. (2) An etcd restored
from a backup without ``etcdutl snapshot restore --bump-revision`` can reissue revisions
that were already used (etcd-io/etcd#16028): epochs then go back, and receivers refuse
writes (``StaleEpoch``) until revisions pass the highest epoch they recorded or an operator
resets them; that is safe and loud, not silent. (3)
Identities are unique among candidates (a pod name): a second process with the same
identity is detected when it writes during a term, which then ends.
"""

from __future__ import annotations

from listwatch.errors import EpochError, LeaseError
from listwatch.leaderelection._elector import LeaderElector
from listwatch.leaderelection._lease import EPOCH_ANNOTATION
from listwatch.leaderelection._record import LeaseRecord, LeaseTiming
from listwatch.leaderelection._term import ElectionStatus, Term

__all__ = [
    "EPOCH_ANNOTATION",
    "ElectionStatus",
    "EpochError",
    "LeaderElector",
    "LeaseError",
    "LeaseRecord",
    "LeaseTiming",
    "Term",
]
