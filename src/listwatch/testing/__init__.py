"""Test support: a strict fake Kubernetes API server that speaks the real API over HTTPS.

``FakeApiServer`` serves LIST and WATCH with kube-apiserver's semantics (resourceVersions,
consistent paging, compaction and 410s, bookmarks, WatchList, PartialObjectMetadata,
managedFields recorded on writes through the API), the discovery and OpenAPI documents
kubectl needs, and injects the faults a list/watch client meets in production (``Fault``,
``FaultRule``, ``FakeApiServer.cut_watches``).
``RecordedRequest`` is one entry of its request log. A pytest plugin provides the
``fake_apiserver`` fixture.

The fake is held to kube-apiserver by a conformance corpus: ``tests/conformance`` replays
requests recorded from kube-apiserver 1.36 (as listwatch, kubectl and the official client
send them) and compares status, headers and bodies. Where the answers differ on purpose:

* **No metadata.generation.** kube-apiserver sets it on pods, deployments and custom
  resources and raises it on spec changes and graceful deletion; no list/watch behaviour
  depends on it.
* **A pod is deleted in one write.** kube-apiserver first writes ``deletionTimestamp``
  (a MODIFIED event; a grace period of 0 for a pod on no node), then removes the pod
  (DELETED). The fake, which has no kubelet to confirm a graceful deletion, removes it at
  once, as it removes every object without finalizers. A client must take a DELETED with
  or without a MODIFIED before it.
* **No Table output.** kubectl asks for ``as=Table`` first; the fake skips that ``Accept``
  clause (as kube-apiserver does for resources without a table convertor) and answers
  with the objects, which kubectl prints instead.
* **No deletecollection.** The fake serves no DELETE of a collection, and its discovery
  does not list the verb.
* **No subresources.** Aggregated discovery lists none (``status``, ``log``, ``scale``...):
  the fake serves none.
* **A watch from a compacted RV is 410 at once.** kube-apiserver serves watches from its
  watch cache's own window of events (at least 75 s, up to 102,400 events), so a watch
  from an RV etcd compacted a moment ago still replays what followed it. The fake's watch
  history ends at the compaction point (and at ``history_limit``): compacting is how a
  test gets the "too old resource version" answer, which kube-apiserver gives once the RV
  has left its cache.
* **/version names the fake.** Its ``gitVersion``, ``gitCommit`` and ``goVersion`` are the
  fake's own; the rest is shaped as kube-apiserver 1.36's.
"""

from __future__ import annotations

from listwatch.testing._faults import Fault, FaultKind, FaultRule
from listwatch.testing._requestlog import RecordedRequest
from listwatch.testing._server import FakeApiServer
from listwatch.testing._status import StatusError

__all__ = ["FakeApiServer", "Fault", "FaultKind", "FaultRule", "RecordedRequest", "StatusError"]
