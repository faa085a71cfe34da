"""The HTTP front of the fake server: one aiohttp handler, the apiserver's filter chain.

Each request is, in order: recorded in the request log; authenticated (bearer token, else
401); matched against injected faults; routed (discovery, or a resource path: else the
generic 404); its ``Accept`` header negotiated (``negotiation.py``: 406 when nothing can be
served); then served by LIST, WATCH, GET, POST, PUT, PATCH or DELETE, the answer converted
to the negotiated representation (``conversion.py``: PartialObjectMetadata). Every refusal is
a ``metav1.Status`` built in ``status.py``. POST/PUT/PATCH/DELETE go through the same
:class:`ObjectStore` calls as the Python API of :class:`FakeApiServer`.
"""

from __future__ import annotations

import asyncio
import gzip
import hmac
import random
from collections.abc import Awaitable, Callable
from types import MappingProxyType
from typing import Any

import orjson
from aiohttp import web

from listwatch.testing import discovery, negotiation, options, status
from listwatch.testing.conversion import Converter
from listwatch.testing.faults import Fault, FaultInjector, FaultKind
from listwatch.testing.listing import Lister
from listwatch.testing.paths import RouteNotFound, Target, is_watch, parse_resource_path
from listwatch.testing.requestlog import RecordedRequest, RequestLog
from listwatch.testing.resources import ResourceRegistry, ResourceType
from listwatch.testing.store import JsonDict, ObjectStore
from listwatch.testing.watch import ActiveWatches, WatchConfig, WatchStream

MERGE_PATCH = "application/merge-patch+json"

_ObjectHandler = Callable[[web.BaseRequest, Target], Awaitable[tuple[int, JsonDict]]]
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
        faults: FaultInjector,
        log: RequestLog,
        token: str,
        active: ActiveWatches,
        rng: random.Random,
        stopping: Callable[[], bool],
        server_address: Callable[[], str],
    ) -> None:
        self._registry = registry
        self._store = store
        self._lister = Lister(store, too_large_wait=watch_config.too_large_wait)
        self._watch_config = watch_config
        self._watch_list = watch_list
        self._faults = faults
        self._log = log
        self._token = token
        self._active = active
        self._rng = rng
        self._stopping = stopping
        self._server_address = server_address

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        query = {key: request.query.getone(key) for key in request.query}
        path = request.path
        watch = is_watch(path, query)
        authorized = self._authorized(request)
        fault = self._faults.pick(request.method, path, watch) if authorized else None
        self._log.append(RecordedRequest(request.method, path, MappingProxyType(query), fault))
        body_fault = None if watch else fault
        try:
            if not authorized:
                raise status.unauthorized()
            if fault is not None:
                immediate = await self._immediate_fault(request, fault, watch, query)
                if immediate is not None:
                    return immediate
            return await self._route(request, query, watch, fault, body_fault)
        except status.StatusError as error:
            return await _send_json(request, error.code, error.body, error.headers, body_fault)

    def _authorized(self, request: web.BaseRequest) -> bool:
        """Bearer token authentication; the scheme is case-insensitive, as in Go."""
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode(), self._token.encode())

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
        document = discovery.document(request.path, self._registry, self._server_address())
        if document is not None:
            if request.method != "GET":
                raise status.method_not_allowed(request.method, request.path)
            return await _send_json(request, 200, document, {}, body_fault)
        try:
            target = parse_resource_path(request.path, self._registry)
        except RouteNotFound:
            raise status.resource_not_found() from None
        # The Accept header is negotiated before the request is decoded (get.go, create.go).
        media_type = negotiation.negotiate(request.headers.get("Accept", ""), tables=False)
        converter = Converter(media_type, target.resource)
        method = request.method
        if method == "GET" and (target.name is None or watch):
            return await self._list_or_watch(
                request, target, query, fault, body_fault, converter=converter
            )
        handler = self._object_handlers(target).get(method)
        if handler is None:
            raise status.method_not_allowed(method, f"{target.resource.qualified} at this path")
        code, body = await handler(request, target)
        return await _send_json(request, code, converter.object_body(body), {}, body_fault)

    def _object_handlers(self, target: Target) -> dict[str, _ObjectHandler]:
        if target.name is None:
            if target.resource.namespaced and target.namespace is None:
                return {}  # a namespaced collection only accepts writes per namespace
            return {"POST": self._create}
        return {
            "GET": self._get,
            "PUT": self._replace,
            "PATCH": self._patch,
            "DELETE": self._delete,
        }

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
            )
            return await stream.serve()
        result = await self._lister.list(target.resource, target.namespace, opts, selection)
        body = converter.list_body(result.body(target.resource))
        return await _send_json(request, 200, body, {}, body_fault)

    # ------------------------------------------------------------------ objects

    async def _get(self, request: web.BaseRequest, target: Target) -> tuple[int, JsonDict]:
        assert target.name is not None
        obj = self._store.get(target.resource, target.namespace, target.name)
        if obj is None:
            raise status.object_not_found(
                target.resource.group, target.resource.plural, target.name
            )
        return 200, obj

    async def _create(self, request: web.BaseRequest, target: Target) -> tuple[int, JsonDict]:
        obj = await self._read_object(request, target)
        return 201, self._store.create(target.resource, obj)

    async def _replace(self, request: web.BaseRequest, target: Target) -> tuple[int, JsonDict]:
        obj = await self._read_object(request, target)
        _check_name(obj, target)
        stored, created = self._store.update(target.resource, obj)
        return (201 if created else 200), stored

    async def _patch(self, request: web.BaseRequest, target: Target) -> tuple[int, JsonDict]:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type != MERGE_PATCH:
            raise status.failure(
                415,
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {MERGE_PATCH}",
                reason="UnsupportedMediaType",
            )
        patch = await _read_json(request)
        current = (await self._get(request, target))[1]
        patched = merge_patch(current, patch)
        if not isinstance(patched, dict):
            raise status.bad_request("the patch must produce a JSON object")
        _check_name(patched, target)
        return 200, self._store.replace(target.resource, patched)

    async def _delete(self, request: web.BaseRequest, target: Target) -> tuple[int, JsonDict]:
        assert target.name is not None
        resource = target.resource
        final, deleted = self._store.delete(resource, target.namespace, target.name)
        if not deleted:
            # Only marked (finalizers remain, or a namespace terminating): the object, with
            # 200 (delete.go answers 202 only to orphanDependents=false).
            return 200, final
        if resource.returns_deleted_object:
            return 200, final
        return 200, _success(resource, final)

    async def _read_object(self, request: web.BaseRequest, target: Target) -> JsonDict:
        obj = await _read_json(request)
        if not isinstance(obj, dict):
            raise status.bad_request("the request body must be a JSON object")
        _check_type(obj, target.resource)
        metadata = obj.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise status.bad_request("metadata must be a JSON object")
        if target.resource.namespaced:
            if metadata.get("namespace") and metadata["namespace"] != target.namespace:
                raise status.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            metadata["namespace"] = target.namespace
        return obj


# ---------------------------------------------------------------------- helpers


async def _read_json(request: web.BaseRequest) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise status.failure(
            413, "Request entity too large", reason="RequestEntityTooLarge"
        ) from exc
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise status.bad_request(f"the request body is not valid JSON: {exc}") from exc


def _check_type(obj: JsonDict, resource: ResourceType) -> None:
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if api_version and api_version != resource.api_version:
        raise status.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({resource.api_version})"
        )
    if kind and kind != resource.kind:
        raise status.bad_request(
            f'{kind} in version "{resource.version}" cannot be handled as a {resource.kind}'
        )


def _check_name(obj: JsonDict, target: Target) -> None:
    name = (obj.get("metadata") or {}).get("name") or ""
    if name != target.name:
        raise status.bad_request(
            f"the name of the object ({name}) does not match the name on the URL ({target.name})"
        )


def _success(resource: ResourceType, final: JsonDict) -> JsonDict:
    metadata = final.get("metadata", {})
    details: JsonDict = {"name": metadata.get("name", "")}
    if resource.group:
        details["group"] = resource.group
    details["kind"] = resource.plural
    details["uid"] = metadata.get("uid", "")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, ``null`` deletes a member."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _accepts_gzip(request: web.BaseRequest) -> bool:
    codings = request.headers.get("Accept-Encoding", "")
    return any(c.split(";")[0].strip().lower() == "gzip" for c in codings.split(","))


async def _empty_ok(request: web.BaseRequest, *, chunked: bool) -> web.StreamResponse:
    """200 with headers and nothing else (doc §2.4: the Events stale-RV quirk)."""
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
    client accepts gzip (doc §1.1).
    """
    data = orjson.dumps(body)
    headers = {**headers}
    if len(data) > GZIP_THRESHOLD and _accepts_gzip(request):
        data = gzip.compress(data, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    if fault is not None and fault.kind is FaultKind.SLOW:
        await asyncio.sleep(fault.delay)
    if fault is not None and fault.kind is FaultKind.CUT_STREAM:
        response = web.StreamResponse(status=code, headers=headers)
        response.content_type = "application/json"
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        if request.transport is not None:
            request.transport.close()
        return response
    return web.Response(status=code, body=data, content_type="application/json", headers=headers)
