"""The HTTP front of the fake server: one aiohttp handler, the apiserver's filter chain.

Each request is, in order: recorded in the request log; authenticated (bearer token, else
401); authorized (``authz.py``: a user added without roles gets 403); matched against
injected faults; routed (discovery, or a resource path: else a 404, see
``paths.in_served_api``); its ``Accept`` header negotiated (``negotiation.py``: 406 when
nothing can be served); then served by LIST, WATCH (``listing.py``, ``watch.py``) or an
object endpoint (``objects.py``), the answer converted to the negotiated representation
(``conversion.py``: PartialObjectMetadata). Discovery and OpenAPI documents come from
``discovery.py`` and ``openapi.py``. Every refusal is a ``metav1.Status`` built in
``status.py``, but the plain-text 404 of a path no API group serves.
"""

from __future__ import annotations

import asyncio
import gzip
import hmac
import random
from collections.abc import Callable, Mapping
from types import MappingProxyType

import orjson
from aiohttp import web

from listwatch.testing import _authz as authz
from listwatch.testing import _discovery as discovery
from listwatch.testing import _negotiation as negotiation
from listwatch.testing import _openapi as openapi
from listwatch.testing import _options as options
from listwatch.testing import _status as status
from listwatch.testing._conversion import Converter
from listwatch.testing._faults import Fault, FaultInjector, FaultKind, stream_oversized
from listwatch.testing._listing import Lister
from listwatch.testing._objects import ObjectHandlers
from listwatch.testing._paths import (
    RouteNotFound,
    Target,
    in_served_api,
    is_watch,
    parse_resource_path,
)
from listwatch.testing._requestlog import RecordedRequest, RequestLog
from listwatch.testing._resources import ResourceRegistry
from listwatch.testing._store import JsonDict, ObjectStore
from listwatch.testing._watch import ActiveWatches, WatchConfig, WatchStream

GZIP_THRESHOLD = 128 * 1024  # defaultGzipThresholdBytes
#: APF names the flow schema and priority level that rejected a request.
APF_HEADERS = {
    "X-Kubernetes-PF-FlowSchema-UID": "2f2c2b5e-6f0c-4a11-9a53-1f6f7f0b8e01",
    "X-Kubernetes-PF-PriorityLevel-UID": "8d0c7a0e-3b7e-4c5e-8f43-0c4e2b9d6a02",
}


class ApiHandler:
    """Serves the Kubernetes REST API from a store, for one :class:`FakeApiServer`."""

    def __init__(
        self,
        *,
        registry: ResourceRegistry,
        store: ObjectStore,
        watch_config: WatchConfig,
        watch_list: bool,
        sharding: bool,
        faults: FaultInjector,
        log: RequestLog,
        token: str,
        users: Mapping[str, str],
        active: ActiveWatches,
        rng: random.Random,
        stopping: Callable[[], bool],
        server_address: Callable[[], str],
    ) -> None:
        self._registry = registry
        self._store = store
        self._lister = Lister(store, too_large_wait=watch_config.too_large_wait)
        self._objects = ObjectHandlers(store)
        self._watch_config = watch_config
        self._watch_list = watch_list
        self._sharding = sharding
        self._faults = faults
        self._log = log
        self._token = token
        self._users = users  # token -> name of a user bound to no role
        self._active = active
        self._rng = rng
        self._stopping = stopping
        self._server_address = server_address

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        query = {key: request.query.getone(key) for key in request.query}
        path = request.path
        watch = is_watch(path, query)
        authenticated, user = self._authenticate(request)
        admitted = authenticated and user is None
        fault = self._faults.pick(request.method, path, watch, query) if admitted else None
        self._log.append(
            RecordedRequest(
                request.method,
                path,
                MappingProxyType(query),
                fault,
                user_agent=request.headers.get("User-Agent", ""),
            )
        )
        body_fault = None if watch else fault
        try:
            if not authenticated:
                raise status.unauthorized()
            authz.authorize(user, request.method, path, query)
            if fault is not None:
                immediate = await self._immediate_fault(request, fault, watch, query)
                if immediate is not None:
                    return immediate
            return await self._route(request, query, watch, fault, body_fault)
        except status.StatusError as error:
            return await _send_json(request, error.code, error.body, error.headers, body_fault)

    def _authenticate(self, request: web.BaseRequest) -> tuple[bool, str | None]:
        """Bearer token authentication (the scheme is case-insensitive, as in Go):
        ``(authenticated, user)``, the user ``None`` for the server's own (admin) token."""
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False, None
        token = credentials.strip()
        if hmac.compare_digest(token.encode(), self._token.encode()):
            return True, None
        user = self._users.get(token)
        return user is not None, user

    # ------------------------------------------------------------------ faults

    async def _immediate_fault(
        self, request: web.BaseRequest, fault: Fault, watch: bool, query: dict[str, str]
    ) -> web.StreamResponse | None:
        """Answer for a fault that replaces the response, or ``None`` to serve normally."""
        if fault.kind is FaultKind.CLOSE_CONNECTION:
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)  # never written: the connection is gone
        if fault.kind is FaultKind.EMPTY_RESPONSE:
            return await _empty_ok(request, chunked=watch)
        if fault.kind in (FaultKind.GZIP_BOMB, FaultKind.HUGE_CONTENT_LENGTH):
            return await stream_oversized(request, fault)
        if fault.kind is not FaultKind.STATUS:
            return None
        if fault.plain_text:
            headers = {"X-Content-Type-Options": "nosniff", **APF_HEADERS}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            text = status.APF_PLAIN_TEXT_BODY if fault.code == 429 else f"{fault.message or ''}\n"
            return web.Response(
                status=fault.code,
                text=text,
                content_type="text/plain",
                charset="utf-8",
                headers=headers,
            )
        requested = query.get("resourceVersion", "")
        error = fault.status_error(
            requested_rv=int(requested) if requested.isdigit() else 0,
            current_rv=self._store.resource_version,
        )
        raise error

    # ------------------------------------------------------------------ routing

    async def _route(
        self,
        request: web.BaseRequest,
        query: dict[str, str],
        watch: bool,
        fault: Fault | None,
        body_fault: Fault | None,
    ) -> web.StreamResponse:
        accept = request.headers.get("Accept", "")
        document = discovery.document(request.path, accept, self._registry, self._server_address())
        if document is not None:
            if request.method != "GET":
                raise status.method_not_allowed()
            return await _send_json(request, 200, document.body, document.headers, body_fault)
        spec = openapi.document(request.path, self._registry)
        if spec is not None:
            if request.method != "GET":
                raise status.method_not_allowed()
            return await _send_json(request, 200, spec, {}, body_fault)
        try:
            target = parse_resource_path(request.path, self._registry)
        except RouteNotFound:
            if not in_served_api(request.path, self._registry):
                return _page_not_found()
            raise status.resource_not_found() from None
        # The Accept header is negotiated before the request is decoded (get.go, create.go).
        media_type = negotiation.negotiate(
            request.headers.get("Accept", ""), negotiation.resource_conversions(tables=False)
        )
        converter = Converter(media_type, target.resource)
        method = request.method
        if method == "GET" and (target.name is None or watch):
            return await self._list_or_watch(
                request, target, query, fault, body_fault, converter=converter
            )
        answer = await self._objects.handle(request, target, query)
        body = converter.object_body(answer.body)
        return await _send_json(request, answer.code, body, answer.headers, body_fault)

    # ------------------------------------------------------------------ list / watch

    async def _list_or_watch(
        self,
        request: web.BaseRequest,
        target: Target,
        query: dict[str, str],
        fault: Fault | None,
        body_fault: Fault | None,
        *,
        converter: Converter,
    ) -> web.StreamResponse:
        opts = options.decode(query, force_watch=target.legacy_watch)
        opts = options.apply_watch_list_default(opts, watch_list=self._watch_list)
        options.validate(opts, watch_list=self._watch_list)
        selection = options.selection(opts, name=target.name)
        if self._sharding:
            selection = options.sharded(selection, query.get("shardSelector", ""))
        if opts.watch:
            stream = WatchStream(
                request=request,
                store=self._store,
                resource=target.resource,
                namespace=target.namespace,
                options=opts,
                selection=selection,
                config=self._watch_config,
                fault=fault,
                active=self._active,
                rng=self._rng,
                stopping=self._stopping,
                convert=converter.watch_object,
                served_until=lambda: self._registry.served_until(target.resource),
            )
            return await stream.serve()
        result = await self._lister.list(target.resource, target.namespace, opts, selection)
        body = converter.list_body(result.body(target.resource))
        return await _send_json(request, 200, body, {}, body_fault)


# ---------------------------------------------------------------------- helpers


def _accepts_gzip(request: web.BaseRequest) -> bool:
    codings = request.headers.get("Accept-Encoding", "")
    return any(c.split(";")[0].strip().lower() == "gzip" for c in codings.split(","))


def _page_not_found() -> web.Response:
    """Go's ``http.NotFound``, which answers paths no API handler owns."""
    return web.Response(
        status=404,
        text="404 page not found\n",
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


async def _empty_ok(request: web.BaseRequest, *, chunked: bool) -> web.StreamResponse:
    """200 with headers and nothing else (docs/kubernetes-semantics.md#expired-resource-versions:
    the Events stale-RV quirk)."""
    if not chunked:
        return web.Response(status=200, body=b"", content_type="application/json")
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write_eof()
    return response


async def _send_json(
    request: web.BaseRequest,
    code: int,
    body: JsonDict,
    headers: dict[str, str],
    fault: Fault | None,
) -> web.StreamResponse:
    """A JSON response, delayed or cut in half when a SLOW or CUT_STREAM fault applies.

    Like kube-apiserver's APIResponseCompression, a body over 128 KiB is gzipped when the
    client accepts gzip (docs/kubernetes-semantics.md#list).
    """
    data = orjson.dumps(body)
    headers = {**headers}
    content_type = headers.pop("Content-Type", "application/json")
    if len(data) > GZIP_THRESHOLD and _accepts_gzip(request):
        data = gzip.compress(data, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    if fault is not None and fault.kind is FaultKind.SLOW:
        await asyncio.sleep(fault.delay)
    if fault is not None and fault.kind is FaultKind.CUT_STREAM:
        response = web.StreamResponse(status=code, headers=headers)
        response.content_type = content_type
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        if request.transport is not None:
            request.transport.close()
        return response
    return web.Response(status=code, body=data, headers={**headers, "Content-Type": content_type})
