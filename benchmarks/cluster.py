"""A pre-serialized pod cluster that speaks the list/watch wire protocol ``listwatch mirror`` uses.

The memory benchmark runs the real CLI against it, so it must answer exactly what the CLI
asks, the way kube-apiserver would (``docs/kubernetes-semantics.md``):

* bearer-token authentication (401 ``Unauthorized`` Status otherwise);
* LIST at RV "" (a consistent read), paged with ``limit``/``continue``, every page at one
  RV; the ``limit=1`` preflight is just a short page. RV "0" ignores the limit (the watch
  cache). A continue token taken before the state changed is 410 ``Expired`` (the fake keeps
  no old list states: as after an etcd compaction). The request validation of section 1.2;
* streaming lists (section 2.6): ``watch`` with ``sendInitialEvents=true&
  resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true`` sends an ADDED per pod, then
  a BOOKMARK annotated ``k8s.io/initial-events-end: "true"``, then goes on as a watch; a
  watch at RV ""/"0" without those parameters is defaulted to one (WatchList defaulting);
* plain watches from an RV: the events after it from a bounded history (older: an ERROR
  410 ``Expired`` event), then live ones, BOOKMARKs every ``bookmark_interval`` when
  allowed, and a clean close at ``timeoutSeconds``;
* metadata only (section 8.1): ``Accept: application/json;as=PartialObjectMetadataList;
  g=meta.k8s.io;v=v1`` on a LIST gives a ``PartialObjectMetadataList``, ``as=
  PartialObjectMetadata`` on a WATCH gives ``PartialObjectMetadata`` events; the quirks too
  (a LIST asking for the singular form is 406, a WATCH asking for the list form gets full
  objects).

Not served (refused with a 400 that says so, never silently ignored): selectors.
Compression: kube-apiserver gzips a LIST response over 128 KiB for a client that accepts
it (``Accept-Encoding: gzip``, which aiohttp sends), at level 1 (BestSpeed); watch streams
are not compressed. Under the ``clustergz<N>`` prefix this server does the same, in a worker
thread; under ``cluster<N>`` every body is identity-encoded, so serving stays a memcpy.

The pods are ``benchmarks.payloads.list_item(i)`` (~7 KB of JSON each). Nothing is
serialized per request: a page is the pre-built item bytes joined between a head and a
tail, a streaming list the same items spliced into event lines, about 1 MiB per write.

*Churn* (``POST <prefix>/_bench/churn?rate=R&seconds=S``): R MODIFIED events per second
for S seconds over a fixed set of keys; each event gets the next RV, and the LIST state
follows (the changed pods are served in their new version), so a relist after churn stays
consistent with the watch. ``GET <prefix>/_bench/state`` tells the current RV and whether
churn is running (the benchmark waits on it to know what the mirror must reach).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import gzip
import hmac
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from multidict import MultiMapping

from benchmarks import payloads

GZIP_THRESHOLD = 128 * 1024
"""kube-apiserver's ``defaultGzipThresholdBytes``: smaller responses go uncompressed."""

GZIP_LEVEL = 1
"""kube-apiserver compresses with gzip.BestSpeed."""

WRITE_BYTES = 1024 * 1024
"""A streaming list is written in pieces of about this size."""

HISTORY_EVENTS = 102_400
"""Watch history kept for resuming: kube-apiserver's largest watch-cache window."""

TOO_LARGE_WAIT = 3.0
"""How long a request for a future RV waits before 504 (the watch cache's blockTimeout)."""

CHURN_KEYS = 5000
"""Churn cycles over this many pods (or all of them, in a smaller cluster)."""

CHURN_ANNOTATION = "bench.listwatch.io/churn"

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
META_GROUP_VERSION = "meta.k8s.io/v1"
_FULL_PREFIX = b'{"kind":"Pod","apiVersion":"v1",'
_META_PREFIX = b'{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1",'
_RV_MARK = "\x01RV\x01"
_RV_MARK_JSON = orjson.dumps(_RV_MARK)[1:-1]
_CHURN_MARK = "\x01CHURN\x01"
_CHURN_MARK_JSON = orjson.dumps(_CHURN_MARK)[1:-1]
_TRUE = ("true", "1", "")
_LIST_TOO_OLD = "The resourceVersion for the provided list is too old."
_CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter."
)


# -- Status bodies ------------------------------------------------------------------------


class StatusError(Exception):
    """A ``metav1.Status`` failure; ``response()`` is the HTTP answer for it."""

    def __init__(self, code: int, reason: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.code = code
        self.body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            **extra,
            "code": code,
        }

    def response(self) -> web.Response:
        headers = {"Retry-After": "1"} if self.code == 504 else None
        return web.Response(
            status=self.code,
            body=orjson.dumps(self.body),
            content_type="application/json",
            headers=headers,
        )

    def event_line(self) -> bytes:
        return orjson.dumps({"type": "ERROR", "object": self.body}) + b"\n"


def _invalid(message: str) -> StatusError:
    return StatusError(422, "Invalid", message, details={"kind": "ListOptions"})


def _too_large(rv: int, current: int) -> StatusError:
    return StatusError(
        504,
        "Timeout",
        f"Timeout: Too large resource version: {rv}, current: {current}",
        details={
            "causes": [
                {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
            ],
            "retryAfterSeconds": 1,
        },
    )


# -- the pods as bytes --------------------------------------------------------------------


def _meta_item(item: bytes) -> bytes:
    """A list item as ``PartialObjectMetadata``: its metadata and the type, nothing else."""
    metadata = orjson.loads(item)["metadata"]
    return _META_PREFIX + orjson.dumps({"metadata": metadata})[1:]


class _Template:
    """An object's JSON split around its resourceVersion and a churn counter annotation."""

    __slots__ = ("parts",)

    def __init__(self, obj: dict[str, object]) -> None:
        data = orjson.dumps(obj)
        rv_at = data.index(_RV_MARK_JSON)
        churn_at = data.index(_CHURN_MARK_JSON)
        (first, first_mark), (second, second_mark) = sorted(
            ((rv_at, _RV_MARK_JSON), (churn_at, _CHURN_MARK_JSON))
        )
        rv_first = first_mark == _RV_MARK_JSON
        self.parts = (
            data[:first],
            data[first + len(first_mark) : second],
            data[second + len(second_mark) :],
            rv_first,
        )

    def render(self, rv: int, count: int) -> bytes:
        head, middle, tail, rv_first = self.parts
        a, b = (str(rv), str(count)) if rv_first else (str(count), str(rv))
        return b"".join((head, a.encode(), middle, b.encode(), tail))


def _templates(item: bytes) -> tuple[_Template, _Template]:
    """The list-item form (no kind, as built-in lists send) and the metadata form."""
    obj = orjson.loads(item)
    metadata = obj["metadata"]
    metadata["resourceVersion"] = _RV_MARK
    metadata["annotations"][CHURN_ANNOTATION] = _CHURN_MARK
    meta_obj = {
        "kind": "PartialObjectMetadata",
        "apiVersion": META_GROUP_VERSION,
        "metadata": metadata,
    }
    return _Template(obj), _Template(meta_obj)


@dataclass
class PodBytes:
    """Every pod the server can serve, serialized once: ``full[i]``, ``meta[i]``."""

    full: list[bytes]
    meta: list[bytes]

    @classmethod
    def build(cls, count: int) -> PodBytes:
        full = list(payloads.pod_items(count))
        # The metadata form of pod i is that of its pool pod, renamed, like list_item(i).
        pool = [_meta_item(item) for item in full[: payloads.POOL_SIZE]]
        meta = [
            pool[i] if i < payloads.POOL_SIZE else _renamed(pool[i % payloads.POOL_SIZE], i)
            for i in range(count)
        ]
        return cls(full, meta)


def _renamed(data: bytes, index: int) -> bytes:
    """``data`` of pool pod ``index % POOL_SIZE`` with pod ``index``'s name, as ``list_item``."""
    _, base_name = payloads._base_item(index % payloads.POOL_SIZE)
    return payloads._renamed(data, base_name, index)


# -- one cluster's state ------------------------------------------------------------------


@dataclass
class _Event:
    rv: int
    full: bytes
    """The MODIFIED line with the full object."""
    meta: bytes
    """The same as PartialObjectMetadata."""


@dataclass
class Cluster:
    """N pods, their current state and RV, and the recent events, behind one URL prefix."""

    size: int
    pods: PodBytes
    resource_version: int
    bookmark_interval: float
    overrides: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    """Pods changed by churn: index -> (list item, metadata item) at their newest RV."""
    history: collections.deque[_Event] = field(
        default_factory=lambda: collections.deque(maxlen=HISTORY_EVENTS)
    )
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    churn_task: asyncio.Task[None] | None = None
    churn_events: int = 0
    _templates: dict[int, tuple[_Template, _Template]] = field(default_factory=dict)

    @property
    def oldest_resumable(self) -> int:
        """The oldest RV a watch may resume from: events after it are all in the history."""
        return self.history[0].rv - 1 if self.history else self.resource_version

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def wait_for(self, rv: int, within: float) -> bool:
        """Until the state reaches ``rv``; False when ``within`` seconds pass first."""
        deadline = time.monotonic() + within
        while self.resource_version < rv:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return True

    def item(self, index: int, meta: bool) -> bytes:
        changed = self.overrides.get(index)
        if changed is not None:
            return changed[1] if meta else changed[0]
        return self.pods.meta[index] if meta else self.pods.full[index]

    # -- churn -----------------------------------------------------------------------------

    def start_churn(self, rate: float, seconds: float) -> int:
        """Begin ``rate`` MODIFIED events/s for ``seconds``; returns the events planned."""
        if self.churn_task is not None and not self.churn_task.done():
            raise StatusError(409, "Conflict", "churn is already running")
        if self.size == 0:
            raise StatusError(400, "BadRequest", "an empty cluster cannot churn")
        total = int(rate * seconds)
        self.churn_task = asyncio.get_running_loop().create_task(self._churn(rate, total))
        return total

    async def _churn(self, rate: float, total: int) -> None:
        keys = min(self.size, CHURN_KEYS)
        step = self.size / keys
        started = time.monotonic()
        sent = 0
        while sent < total:
            due = min(total, int((time.monotonic() - started) * rate) + 1)
            for n in range(sent, due):
                self._modify(int((n % keys) * step), n)
            sent = due
            self._notify()
            await asyncio.sleep(0.005)

    def _modify(self, index: int, count: int) -> None:
        templates = self._templates.get(index)
        if templates is None:
            templates = self._templates[index] = _templates(self.pods.full[index])
        full_t, meta_t = templates
        self.resource_version += 1
        rv = self.resource_version
        item = full_t.render(rv, count)
        meta = meta_t.render(rv, count)
        self.overrides[index] = (item, meta)
        full_line = b'{"type":"MODIFIED","object":' + _FULL_PREFIX + item[1:] + b"}\n"
        meta_line = b'{"type":"MODIFIED","object":' + meta + b"}\n"
        self.history.append(_Event(rv, full_line, meta_line))
        self.churn_events += 1

    def events_after(self, rv: int) -> Iterator[_Event]:
        """History events newer than ``rv`` (the caller checked ``oldest_resumable``)."""
        if not self.history or self.history[-1].rv <= rv:
            return iter(())
        first = self.history[0].rv
        start = max(0, rv + 1 - first)
        return (self.history[i] for i in range(start, len(self.history)))

    def state(self) -> dict[str, object]:
        running = self.churn_task is not None and not self.churn_task.done()
        return {
            "size": self.size,
            "resourceVersion": str(self.resource_version),
            "churnRunning": running,
            "churnEvents": self.churn_events,
        }


# -- content negotiation ------------------------------------------------------------------


def _wants_metadata(accept: str, *, watch: bool) -> bool:
    """Whether the request's Accept header asks for ``PartialObjectMetadata[List]``.

    The first JSON media type decides (client-go puts its preferred form first). Quirks of
    kube-apiserver kept on purpose (docs/kubernetes-semantics.md#metadata-only): a WATCH that asks
    for the *list* form
    gets full objects; a LIST that asks for the singular form is refused (406).
    """
    for media in accept.split(","):
        kind, *params = (part.strip() for part in media.split(";"))
        if kind not in ("application/json", "*/*", "application/*"):
            continue
        options = dict(p.split("=", 1) for p in params if "=" in p)
        as_kind = options.get("as")
        if as_kind is None:
            return False
        if options.get("g") != "meta.k8s.io" or options.get("v") != "v1":
            raise StatusError(406, "NotAcceptable", f"only meta.k8s.io/v1 is served as {as_kind}")
        if as_kind == "PartialObjectMetadataList":
            return not watch
        if as_kind == "PartialObjectMetadata":
            if not watch:
                raise StatusError(
                    406, "NotAcceptable", "PartialObjectMetadata is served for single objects"
                )
            return True
        raise StatusError(406, "NotAcceptable", f"the benchmark server does not serve as={as_kind}")
    return False


# -- continue tokens ----------------------------------------------------------------------


def encode_continue(rv: int, start: int) -> str:
    """Like kube-apiserver's: base64url (no padding) of ``{"v":..,"rv":..,"start":..}``;
    ``start`` is the index of the next pod (the fake's key)."""
    data = orjson.dumps({"v": META_GROUP_VERSION, "rv": rv, "start": str(start)})
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_continue(token: str) -> tuple[int, int]:
    try:
        data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = orjson.loads(data)
        if decoded.get("v") != META_GROUP_VERSION:
            raise ValueError("unknown version")
        return int(decoded["rv"]), int(decoded["start"])
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StatusError(400, "BadRequest", f"invalid continue token: {exc}") from None


def _parse_rv(value: str) -> int:
    try:
        rv = int(value)
    except ValueError:
        rv = -1
    if rv < 0:
        raise StatusError(400, "BadRequest", f"invalid resource version: {value!r}")
    return rv


# -- the handlers -------------------------------------------------------------------------


DISCOVERY: dict[str, dict[str, Any]] = {
    # The legacy discovery documents ``listwatch mirror pods`` resolves its names through
    # (``listwatch._kube.discovery``): this cluster serves pods of the core group, nothing else.
    "api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "pods",
                "singularName": "pod",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["get", "list", "watch"],
                "shortNames": ["po"],
            }
        ],
    },
}


class ClusterApi:
    """Serves ``/<prefix>/api/v1/pods`` for the clusters of one server process."""

    def __init__(self, pods: PodBytes, token: str, *, bookmark_interval: float) -> None:
        self._pods = pods
        self._token = token
        self._bookmark_interval = bookmark_interval
        self._clusters: dict[int, Cluster] = {}

    def cluster(self, size: int) -> Cluster:
        if size > len(self._pods.full):
            raise StatusError(404, "NotFound", f"the server was built for {len(self._pods.full)}")
        cluster = self._clusters.get(size)
        if cluster is None:
            # Every listed pod's RV (1000 + i mod 1000) is older than the list's.
            cluster = self._clusters[size] = Cluster(
                size=size,
                pods=self._pods,
                resource_version=10_000 + size,
                bookmark_interval=self._bookmark_interval,
            )
        return cluster

    async def handle(
        self, request: web.BaseRequest, size: int, rest: list[str], *, gzip_lists: bool = False
    ) -> web.StreamResponse:
        try:
            if not self._authorized(request):
                raise StatusError(401, "Unauthorized", "Unauthorized")
            cluster = self.cluster(size)
            if rest == ["_bench", "churn"] and request.method == "POST":
                rate = float(request.query.get("rate", "300"))
                seconds = float(request.query.get("seconds", "30"))
                planned = cluster.start_churn(rate, seconds)
                return _json({"planned": planned, **cluster.state()})
            if rest == ["_bench", "state"]:
                return _json(cluster.state())
            if request.method == "GET" and "/".join(rest) in DISCOVERY:
                return _json(DISCOVERY["/".join(rest)])
            if rest != ["api", "v1", "pods"]:
                raise StatusError(
                    404, "NotFound", "the server could not find the requested resource"
                )
            if request.method != "GET":
                raise StatusError(405, "MethodNotAllowed", f"{request.method} is not served")
            query = request.query
            for unsupported in ("labelSelector", "fieldSelector"):
                if query.get(unsupported):
                    raise StatusError(400, "BadRequest", f"{unsupported} is not served here")
            watch = query.get("watch", "false").lower() in _TRUE
            meta = _wants_metadata(request.headers.get("Accept", "application/json"), watch=watch)
            if watch:
                return await self._watch(request, cluster, meta)
            response = await self._list(cluster, meta, query)
            accepts = "gzip" in request.headers.get("Accept-Encoding", "").lower()
            if gzip_lists and accepts and len(response.body or b"") > GZIP_THRESHOLD:
                body = response.body
                assert isinstance(body, bytes)
                compressed = await asyncio.to_thread(gzip.compress, body, GZIP_LEVEL)
                response = web.Response(
                    body=compressed,
                    content_type="application/json",
                    headers={"Content-Encoding": "gzip"},
                )
            return response
        except StatusError as error:
            return error.response()

    def _authorized(self, request: web.BaseRequest) -> bool:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self._token.encode()
        )

    # -- LIST ------------------------------------------------------------------------------

    async def _list(self, cluster: Cluster, meta: bool, query: MultiMapping[str]) -> web.Response:
        if query.get("sendInitialEvents"):
            raise _invalid("sendInitialEvents is forbidden for list")
        rv_param = query.get("resourceVersion", "")
        match = query.get("resourceVersionMatch", "")
        token = query.get("continue", "")
        limit_text = query.get("limit", "0") or "0"
        try:
            limit = max(0, int(limit_text))
        except ValueError:
            raise StatusError(400, "BadRequest", f"invalid limit {limit_text!r}") from None
        if match and not rv_param:
            raise _invalid("resourceVersionMatch is forbidden unless resourceVersion is provided")
        if match and token:
            raise _invalid("resourceVersionMatch is forbidden when continue is provided")
        if match not in ("", "Exact", "NotOlderThan"):
            raise _invalid(f"resourceVersionMatch {match!r} is not supported")
        start = 0
        if token:
            if rv_param not in ("", "0"):
                raise StatusError(
                    400,
                    "BadRequest",
                    "specifying resource version is not allowed when using continue",
                )
            token_rv, start = decode_continue(token)
            if token_rv != cluster.resource_version:
                # No old list states are kept: as if etcd had compacted the token's revision.
                raise StatusError(410, "Expired", _CONTINUE_EXPIRED)
        elif rv_param == "0":
            limit = 0  # served from the watch cache: the limit is ignored
        elif rv_param:
            rv = _parse_rv(rv_param)
            exact = match == "Exact" or (not match and limit > 0)
            if rv > cluster.resource_version and not await cluster.wait_for(rv, TOO_LARGE_WAIT):
                raise _too_large(rv, cluster.resource_version)
            if exact and rv != cluster.resource_version:
                raise StatusError(
                    410, "Expired", "The resourceVersion for the provided list is too old."
                )
        return web.Response(
            body=self._page(cluster, meta, start, limit), content_type="application/json"
        )

    def _page(self, cluster: Cluster, meta: bool, start: int, limit: int) -> bytes:
        end = cluster.size if not limit else min(cluster.size, start + limit)
        metadata: dict[str, object] = {"resourceVersion": str(cluster.resource_version)}
        if end < cluster.size:
            metadata["continue"] = encode_continue(cluster.resource_version, end)
            metadata["remainingItemCount"] = cluster.size - end
        kind, api_version = (
            ("PartialObjectMetadataList", META_GROUP_VERSION) if meta else ("PodList", "v1")
        )
        head = orjson.dumps({"kind": kind, "apiVersion": api_version, "metadata": metadata})
        items = (cluster.item(i, meta) for i in range(start, end))
        return b"".join((head[:-1], b',"items":[', b",".join(items), b"]}"))

    # -- WATCH -----------------------------------------------------------------------------

    async def _watch(
        self, request: web.BaseRequest, cluster: Cluster, meta: bool
    ) -> web.StreamResponse:
        query = request.query
        rv_param = query.get("resourceVersion", "")
        match = query.get("resourceVersionMatch", "")
        initial = query.get("sendInitialEvents", "").lower()
        bookmarks = query.get("allowWatchBookmarks", "false").lower() in ("true", "1")
        if match and not initial:
            raise _invalid("resourceVersionMatch is forbidden for watch unless sendInitialEvents")
        if initial and initial not in ("true", "false"):
            raise StatusError(400, "BadRequest", f"invalid sendInitialEvents {initial!r}")
        send_initial = initial == "true"
        if send_initial and match != "NotOlderThan":
            raise _invalid("sendInitialEvents requires resourceVersionMatch=NotOlderThan")
        if not initial and not match and rv_param in ("", "0"):
            send_initial = True  # WatchList defaulting (kubernetes-semantics.md#watch)
        try:
            timeout = float(query.get("timeoutSeconds", "1800") or "1800")
        except ValueError:
            raise StatusError(400, "BadRequest", "invalid timeoutSeconds") from None
        deadline = time.monotonic() + timeout
        from_rv: int
        if send_initial:
            if rv_param not in ("", "0"):
                wanted = _parse_rv(rv_param)
                if not await cluster.wait_for(wanted, TOO_LARGE_WAIT):
                    raise _too_large(wanted, cluster.resource_version)
            from_rv = cluster.resource_version
        else:
            from_rv = _parse_rv(rv_param)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            # A client that stops (a mirror on SIGTERM) may hang up before the headers go.
            await response.prepare(request)
            if send_initial:
                await self._initial_events(response, cluster, meta)
                if bookmarks:
                    await response.write(_bookmark(from_rv, meta, initial_end=True))
            elif from_rv < cluster.oldest_resumable:
                error = StatusError(
                    410,
                    "Expired",
                    f"too old resource version: {from_rv}",
                )
                await response.write(error.event_line())
                return response
            await self._follow(
                request,
                response,
                cluster,
                meta=meta,
                position=from_rv,
                bookmarks=bookmarks,
                deadline=deadline,
            )
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away
        return response

    async def _initial_events(
        self, response: web.StreamResponse, cluster: Cluster, meta: bool
    ) -> None:
        """An ADDED line per pod of the current state, written ~1 MiB at a time."""
        open_event = b'{"type":"ADDED","object":'
        parts: list[bytes] = []
        size = 0
        for index in range(cluster.size):
            item = cluster.item(index, meta)
            if meta:
                parts += (open_event, item, b"}\n")
            else:
                parts += (open_event, _FULL_PREFIX, memoryview(item)[1:], b"}\n")
            size += len(item) + 40
            if size >= WRITE_BYTES:
                await response.write(b"".join(parts))
                parts, size = [], 0
        if parts:
            await response.write(b"".join(parts))

    async def _follow(
        self,
        request: web.BaseRequest,
        response: web.StreamResponse,
        cluster: Cluster,
        *,
        meta: bool,
        position: int,
        bookmarks: bool,
        deadline: float,
    ) -> None:
        """Events after ``position`` as they happen; bookmarks while idle; closes at deadline."""
        next_bookmark = time.monotonic() + self._bookmark_interval
        while True:
            if request.transport is None or request.transport.is_closing():
                return
            now = time.monotonic()
            if now >= deadline:
                return
            if position < cluster.oldest_resumable:
                error = StatusError(410, "Expired", f"too old resource version: {position}")
                await response.write(error.event_line())
                return
            lines = []
            for event in cluster.events_after(position):
                lines.append(event.meta if meta else event.full)
                position = event.rv
            if lines:
                await response.write(b"".join(lines))
                continue
            if bookmarks and now >= next_bookmark:
                next_bookmark = now + self._bookmark_interval
                # Periodic, as the cacher's bookmark timer: an idle client learns it is current.
                await response.write(_bookmark(cluster.resource_version, meta))
                position = max(position, cluster.resource_version)
            wake = min(deadline, next_bookmark if bookmarks else deadline, now + 1.0)
            changed = cluster.changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), max(0.0, wake - time.monotonic()))


def _bookmark(rv: int, meta: bool, *, initial_end: bool = False) -> bytes:
    metadata: dict[str, object] = {"resourceVersion": str(rv)}
    if initial_end:
        metadata["annotations"] = {INITIAL_EVENTS_END: "true"}
    kind, api_version = ("PartialObjectMetadata", META_GROUP_VERSION) if meta else ("Pod", "v1")
    obj = {"kind": kind, "apiVersion": api_version, "metadata": metadata}
    return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"


def _json(body: object) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")
