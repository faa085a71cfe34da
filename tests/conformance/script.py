"""The vocabulary of the conformance script: requests, how to read their answers, and steps.

A group is an ordered script of steps that the recorder runs against a real kube-apiserver
and the replay runs against ``FakeApiServer``, over HTTP both times. Steps are:

* :class:`Exchange`: one HTTP request. ``record=False`` makes it setup (sent on both
  servers, answer not kept); otherwise its answer is recorded and compared.
* :class:`Compact`: the store forgets its history up to now (etcd compaction on the real
  server, ``FakeApiServer.compact`` on the fake).
* :class:`PrepareNamespace`: what a controller would do for a new namespace (the real
  server's recorder creates its ``default`` ServiceAccount; the fake needs none).

Values in a request may be :class:`Ref`: a value taken from the raw answer of an earlier
step of the same run ("the continue token of ``list_pods_page1``"), so that each server is
asked about its own resourceVersions and tokens. The string ``{ns}`` anywhere in a path,
query value or body stands for the run's namespace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: ``Accept`` headers as the clients send them (kubectl 1.37 from ``-v=8``; kubernetes and
#: kubernetes_asyncio's generated code; listwatch's ``_kube/resource.py``).
JSON = "application/json"
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
AGGREGATED_DISCOVERY = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
)
TABLE = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)

#: The User-Agent of each client (the server names a write's field manager after it).
USER_AGENTS: Mapping[str, str] = {
    "listwatch": "listwatch/0.1.0 (linux/amd64; python/3.12.0) kubernetes_asyncio/33.3.0",
    "kubectl": "kubectl/v1.37.1 (linux/amd64) kubernetes/f78e722",
    "official": "OpenAPI-Generator/37.0.3/python",
}

#: A resourceVersion no server has reached (and none will while the corpus is recorded).
HUGE_RV = "900000000000"


@dataclass(frozen=True)
class Ref:
    """A value from an earlier step's raw answer: ``path`` is dotted keys into the JSON body
    (``metadata.resourceVersion``), or ``events[N].`` + keys into a watch event."""

    step: str
    path: str


@dataclass(frozen=True)
class ShardAround:
    """A ``shardSelector`` of one-hash-wide ranges, OR-ed: each holds exactly the 64-bit
    FNV-1a hash of the ``metadata.uid`` an earlier answer carries (``Ref``), so it selects
    that object on any server whatever uids the server made. Its bounds are abstracted in
    the corpus (``<hash:N>``, normalize.py)."""

    uids: tuple[Ref, ...]
    field: str = "object.metadata.uid"


Value = str | Ref | ShardAround


@dataclass(frozen=True)
class WatchRead:
    """How to read a watch stream, and when to stop reading it.

    ``count``: after that many events. ``initial-events-end``: after the BOOKMARK that ends
    a streaming list's initial events. ``bookmark``: after the first BOOKMARK. ``end``:
    when the server ends the stream (the request's ``timeoutSeconds`` bounds it). Every
    read fails after ``within`` seconds.
    """

    until: Literal["count", "initial-events-end", "bookmark", "end"]
    count: int = 0
    within: float = 30.0


@dataclass(frozen=True)
class Relation:
    """An RV fact the answer shows, checked on the recording and on the replay alike:
    ``left`` and ``right`` are paths into the normalized exchange (``request.query.X``,
    ``response.body.metadata.resourceVersion``, ``response.events[2].object...``)."""

    left: str
    op: Literal["==", "<", "<="]
    right: str


@dataclass(frozen=True)
class Exchange:
    """One request, as a client sends it; see the module doc."""

    name: str
    method: str
    path: str
    query: tuple[tuple[str, Value], ...] = ()
    client: str = "listwatch"
    accept: str = JSON
    content_type: str | None = None
    body: Any = None
    #: None for a plain answer (the whole body), else how to read a watch stream.
    read: WatchRead | None = None
    #: ``nobody``: an identity the server authenticates and RBAC grants nothing;
    #: ``invalid``: a bearer token the server does not know.
    as_user: Literal["admin", "nobody", "invalid"] = "admin"
    #: Requests sent once the watch's headers are in, before its events are read.
    during: tuple[Exchange, ...] = ()
    #: Resend until the answer has this status (the real server needs time to notice a
    #: compaction), at most for ``within`` seconds. The last answer is the one recorded.
    until_status: int | None = None
    record: bool = True
    relations: tuple[Relation, ...] = ()
    #: Compare the Status ``message`` only by type (a text no client reads; say why).
    message_shape_only: str = ""
    #: Lists the real server fills with more than the fake serves (discovery): ``(path,
    #: key)`` pairs, the path as compare.py writes it (``response.body.resources``). Their
    #: entries are matched by ``key``; each of the fake's must be among the real server's,
    #: with the same shape and values.
    subsets: tuple[tuple[str, str], ...] = ()
    #: What the exchange shows, kept in the corpus for its readers.
    note: str = ""


@dataclass(frozen=True)
class Compact:
    """Compact the store at its current resourceVersion (see the module doc)."""

    name: str = "compact"


@dataclass(frozen=True)
class PrepareNamespace:
    """Make ``{ns}`` ready for pods (see the module doc)."""

    name: str = "prepare-namespace"


Step = Exchange | Compact | PrepareNamespace


@dataclass(frozen=True)
class Group:
    """A script run against one server configuration.

    ``requires`` names feature gates and the state the recorder checks them in (from the
    server's ``/metrics``); ``server_args`` is how to start kube-apiserver for it;
    ``fake_options`` the ``FakeApiServer`` keyword arguments that model it.
    """

    name: str
    description: str
    steps: tuple[Step, ...]
    requires: Mapping[str, bool] = field(default_factory=dict)
    server_args: str = ""
    needs_etcd: bool = False
    fake_options: Mapping[str, Any] = field(default_factory=dict)

    def exchanges(self) -> list[Exchange]:
        """The recorded exchanges, in order."""
        return [s for s in self.steps if isinstance(s, Exchange) and s.record]
