"""Test support: a strict fake Kubernetes API server that speaks the real API over HTTPS.

``FakeApiServer`` serves LIST and WATCH with kube-apiserver's semantics (resourceVersions,
consistent paging, compaction and 410s, bookmarks, WatchList, PartialObjectMetadata), the
discovery and OpenAPI documents kubectl needs, and injects the faults a list/watch client
meets in production (``Fault``, ``FaultRule``, ``FakeApiServer.cut_watches``).
``RecordedRequest`` is one entry of its request log. A pytest plugin provides the
``fake_apiserver`` fixture.
"""

from __future__ import annotations

from listwatch.testing._faults import Fault, FaultKind, FaultRule
from listwatch.testing._requestlog import RecordedRequest
from listwatch.testing._server import FakeApiServer
from listwatch.testing._status import StatusError

__all__ = ["FakeApiServer", "Fault", "FaultKind", "FaultRule", "RecordedRequest", "StatusError"]
