"""The reference receiver of the HTTP sync protocol: an aiohttp application to mount.

It applies each snapshot request to a *store* (one sink per resource: ``SQLiteSink`` or
``PostgresSink``) as the request streams in: the request body becomes a ``Snapshot``
whose pages the sink writes inside its one transaction, which commits only once the commit
record has arrived and counted what came before it. A request cut short (the sender died,
the connection dropped) ends the stream early, the sink rolls back, nothing changed. A
batch request is one ``Batch`` in one transaction. The sinks apply the fencing rules
(``listwatch.fencing``) in the same transaction as the write, and the receiver answers a
refused write with 409 and a Status naming why. Every request is authenticated (a bearer
token, and/or a client certificate the TLS layer verified) before its body is read.

``listwatch receiver`` serves this application; ``SyncServer.app()`` mounts it in yours.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from listwatch._aio import short
from listwatch._framing import LineFramer
from listwatch._models import Batch, Event, Item, Page, PageStream, Snapshot
from listwatch._types import Store
from listwatch.errors import ProtocolError
from listwatch.httpsync import _wire as protocol
from listwatch.httpsync._wire import Header

__all__ = ["SyncServer", "TokenFile"]

logger = logging.getLogger("listwatch.httpsync._server")
requests_log = logging.getLogger("listwatch.httpsync.requests")
"""One line per request: method, path, status, records, duration and the client's name
(its certificate's common name), never a body or a credential. Sync requests at INFO, the
probes and scrapes (``/metrics``, ``/healthz``) at DEBUG: every few seconds, not news."""

PAGE_SIZE = 500
MAX_BATCH_EVENTS = 100_000
"""A batch holds at most ``max_batch`` keys (1000 by default); this bounds what one batch
request can make the receiver hold."""
MAX_RESOURCES = 256
"""Distinct resources one receiver serves: each has a sink (connections, statements)."""
_CHUNK = 256 * 1024


class TokenFile:
    """A bearer token read from a file, and read again when the file changes (rotated
    secrets are picked up without a restart)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._token = ""
        self.read()

    def read(self) -> str:
        stat = self._path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            token = self._path.read_text().strip()
            if not token:
                raise ValueError(f"token file {self._path} is empty")
            self._token, self._stamp = token, stamp
        return self._token


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "listwatch_receiver_requests",
            "Sync requests, by kind and HTTP status answered.",
            ("kind", "code"),
            registry=registry,
        )
        self.objects = Counter(
            "listwatch_receiver_records",
            "Object and event records applied (committed), by resource and kind.",
            ("resource", "kind"),
            registry=registry,
        )
        self.duration = Histogram(
            "listwatch_receiver_request_duration_seconds",
            "Sync requests, from the first byte read to the answer.",
            ("kind",),
            registry=registry,
        )
        self.in_progress = Gauge(
            "listwatch_receiver_syncs_in_progress",
            "Sync requests being applied now.",
            ("kind",),
            registry=registry,
        )
        self.records_in_flight = Gauge(
            "listwatch_receiver_records_in_flight",
            "Records read by requests still being applied (not committed yet).",
            registry=registry,
        )


class SyncServer:
    """The receiving side: ``POST /sync/{resource}/snapshot`` and ``/batch`` into ``store``.

    ``token`` (a string or a ``TokenFile``) is required from every request (``/metrics``
    and ``/healthz`` too) as a bearer token; ``client_certificate=True`` says the TLS
    layer verifies a client certificate (mutual TLS) on every connection, which then
    suffices. One of the two is required.
    """

    def __init__(
        self,
        store: Store,
        *,
        token: str | TokenFile | None = None,
        client_certificate: bool = False,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if token is None and not client_certificate:
            raise ValueError(
                "a receiver authenticates every request: give a token, or serve with "
                "client-certificate TLS"
            )
        self._store = store
        self._token = token
        self._client_certificate = client_certificate
        self.registry = registry if registry is not None else CollectorRegistry()
        self._metrics = _Metrics(self.registry)
        self._resources: set[str] = set()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        app.router.add_post("/sync/{resource}/snapshot", self._snapshot)
        app.router.add_post("/sync/{resource}/batch", self._batch)
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/healthz", self._healthz)
        return app

    # -- requests --------------------------------------------------------------------------

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        kind = request.path.rsplit("/", 1)[-1] if request.path.startswith("/sync/") else ""
        started = time.monotonic()
        error = ""
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _log_request(request, exc.status, None, time.monotonic() - started, exc.reason)
            raise
        except Exception as exc:  # answered as the wire's table says (protocol.status_for)
            answer = protocol.status_for(exc)
            if answer.code >= 500:  # the store failed: the sender retries with backoff
                logger.warning("%s %s: the store failed: %s", request.method, request.path, exc)
            response = _status(answer.code, answer.reason, answer.message, **answer.details)
            error = f"{answer.reason}: {answer.message}"
        if kind in ("snapshot", "batch"):
            self._metrics.requests.labels(kind, str(response.status)).inc()
        records = response.records if isinstance(response, _Answer) else None
        _log_request(request, response.status, records, time.monotonic() - started, error)
        return response

    def _authenticate(self, request: web.Request) -> None:
        if self._client_certificate:
            transport = request.transport
            certificate = transport.get_extra_info("peercert") if transport else None
            if not certificate:
                raise ProtocolError(
                    "a client certificate is required", code=401, reason="Unauthorized"
                )
        if self._token is not None:
            expected = self._token.read() if isinstance(self._token, TokenFile) else self._token
            scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                credentials.strip().encode(), expected.encode()
            ):
                raise ProtocolError(
                    "a valid bearer token is required", code=401, reason="Unauthorized"
                )

    def _resource(self, request: web.Request) -> str:
        resource = request.match_info["resource"]
        if len(resource) > 253 or not protocol.RESOURCE_NAME.match(resource):
            raise ProtocolError(
                f"{resource[:100]!r} is not a resource name", code=404, reason="NotFound"
            )
        if resource not in self._resources and len(self._resources) >= MAX_RESOURCES:
            raise ProtocolError(
                f"this receiver serves at most {MAX_RESOURCES} resources",
                code=403,
                reason="Forbidden",
            )
        self._resources.add(resource)
        return resource

    def _check_content_type(self, request: web.Request) -> None:
        if request.content_type != protocol.CONTENT_TYPE:
            raise ProtocolError(
                f"the body must be {protocol.CONTENT_TYPE}, not {request.content_type!r}",
                code=415,
                reason="UnsupportedMediaType",
            )

    async def _snapshot(self, request: web.Request) -> web.Response:
        return await self._write(request, self._apply_snapshot)

    async def _write(
        self,
        request: web.Request,
        apply: Callable[[str, AsyncIterator[bytes], float], Awaitable[web.Response]],
    ) -> web.Response:
        """What every write request goes through before its body is read: authentication,
        the resource named by the path, the body's media type; then its records, in order."""
        self._authenticate(request)
        resource = self._resource(request)
        self._check_content_type(request)
        started = time.monotonic()
        async with aclosing(_lines(request)) as lines:
            return await apply(resource, lines, started)

    async def _apply_snapshot(
        self, resource: str, lines: AsyncIterator[bytes], started: float
    ) -> web.Response:
        header = protocol.decode_header(await _first(lines), kind="snapshot", resource=resource)
        sink = await self._store.sink(resource)
        counted = _Count()
        snapshot = Snapshot(
            self._snapshot_pages(lines, header, counted),
            resource_version=header.resource_version,
            generation=header.generation,
            epoch=header.epoch,
            resource=header.resource,
            session=header.session,
        )
        with self._metrics.in_progress.labels("snapshot").track_inprogress():
            try:
                await sink.on_list(snapshot)
            finally:
                self._metrics.records_in_flight.dec(counted.value)
        snapshot.ensure_read(f"the store's sink for {resource}")
        self._metrics.objects.labels(resource, "snapshot").inc(counted.value)
        self._metrics.duration.labels("snapshot").observe(time.monotonic() - started)
        return _status(200, "", "", records=counted.value)

    async def _snapshot_pages(
        self, lines: AsyncIterator[bytes], header: Header, counted: _Count
    ) -> PageStream:
        page: list[Item] = []
        async for line in lines:
            if protocol.is_commit(line):
                commit = protocol.decode_commit(line)
                if commit.count != counted.value:
                    raise ProtocolError(
                        f"the commit record counts {commit.count} objects, {counted.value} came"
                    )
                if await anext(lines, None) is not None:
                    raise ProtocolError("records after the commit record")
                yield Page(page, commit.resource_version or header.resource_version)
                return
            page.append(protocol.decode_object_record(line, counted.value + 1))
            counted.value += 1
            self._metrics.records_in_flight.inc()
            if len(page) >= PAGE_SIZE:
                yield Page(page, "")
                page = []
        raise ProtocolError(
            f"the request ended after {counted.value} objects, before its commit record: "
            "nothing was applied"
        )

    async def _batch(self, request: web.Request) -> web.Response:
        return await self._write(request, self._apply_batch)

    async def _apply_batch(
        self, resource: str, lines: AsyncIterator[bytes], started: float
    ) -> web.Response:
        header = protocol.decode_header(await _first(lines), kind="batch", resource=resource)
        events: dict[str, Event] = {}
        resource_version = header.resource_version
        async for line in lines:
            if protocol.is_commit(line):
                commit = protocol.decode_commit(line)
                if commit.count != len(events):
                    raise ProtocolError(
                        f"the commit record counts {commit.count} events, {len(events)} came"
                    )
                if await anext(lines, None) is not None:
                    raise ProtocolError("records after the commit record")
                resource_version = commit.resource_version or resource_version
                break
            event = protocol.decode_event_record(line, len(events) + 1)
            if event.key in events:
                raise ProtocolError(f"key {event.key!r} twice in one batch")
            if len(events) >= MAX_BATCH_EVENTS:
                raise ProtocolError(
                    f"a batch holds at most {MAX_BATCH_EVENTS} events",
                    code=413,
                    reason="RequestEntityTooLarge",
                )
            events[event.key] = event
        else:
            raise ProtocolError(
                f"the request ended after {len(events)} events, before its commit record: "
                "nothing was applied"
            )
        batch = Batch(
            events,
            resource_version,
            header.generation,
            received=len(events),
            epoch=header.epoch,
            resource=header.resource,
            session=header.session,
            sequence=header.sequence,
        )
        sink = await self._store.sink(resource)
        with self._metrics.in_progress.labels("batch").track_inprogress():
            await sink.on_batch(batch)
        self._metrics.objects.labels(resource, "batch").inc(len(events))
        self._metrics.duration.labels("batch").observe(time.monotonic() - started)
        return _status(200, "", "", records=len(events))

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        # Authenticated like a sync: the series name the resources this receiver holds.
        # Prometheus sends the token with ``authorization: {credentials_file: ...}``.
        self._authenticate(request)
        response = web.Response(body=generate_latest(self.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        return web.json_response({"ok": True})


class _Count:
    value = 0


async def _first(lines: AsyncIterator[bytes]) -> bytes:
    line = await anext(lines, None)
    if line is None:
        raise ProtocolError("the body is empty: it must open with a header record")
    return line


async def _lines(request: web.Request) -> AsyncGenerator[bytes, None]:
    """The body's lines (aiohttp has already undone a gzip Content-Encoding), each capped:
    a line over the limit is refused before it is whole."""
    framer = LineFramer(protocol.MAX_RECORD_BYTES)
    content = request.content
    while True:
        chunk = await content.read(_CHUNK)
        if not chunk:
            break
        for line in framer.feed(chunk):
            if line.strip():
                yield line
    if framer.pending:
        raise ProtocolError(
            f"the body ended inside a record ({framer.pending} bytes): nothing was applied"
        )


class _Answer(web.Response):
    """A Status answer that remembers how many records it applied, for the request log."""

    records: int | None = None


def _status(code: int, reason: str, message: str, **details: object) -> web.Response:
    response = _Answer(
        status=code,
        body=protocol.status_body(code, reason, message, **details),
        content_type="application/json",
    )
    records = details.get("records")
    if isinstance(records, int):
        response.records = records
    return response


def _log_request(
    request: web.Request, status: int, records: int | None, seconds: float, error: str
) -> None:
    sync = request.path.startswith("/sync/")
    level = logging.INFO if sync else logging.DEBUG
    if not requests_log.isEnabledFor(level):
        return
    identity = _client_name(request)
    path = request.rel_url.raw_path  # still percent-encoded: one line, whatever was sent
    resource = request.match_info.get("resource") if sync else None
    if resource is not None and not (
        len(resource) <= 253 and protocol.RESOURCE_NAME.match(resource)
    ):
        resource = None
    parts = [f"{request.method} {path} {status}"]
    if records is not None:
        parts.append(f"{records} records")
    parts.append(f"{seconds:.3f} s")
    if identity:
        parts.append(f"client {identity}")
    if error:
        parts.append(short(" ".join(error.split()), 200))
    requests_log.log(
        level,
        "%s",
        ", ".join(parts),
        extra={
            "method": request.method,
            "path": path,
            "resource": resource,
            "status": status,
            "records": records,
            "duration": round(seconds, 6),
            "client": identity,
            "error": error or None,
        },
    )


def _client_name(request: web.Request) -> str | None:
    """The verified client certificate's common name (mutual TLS), if there is one: a
    bearer token has no name, and is never logged."""
    transport = request.transport
    certificate = transport.get_extra_info("peercert") if transport is not None else None
    if not isinstance(certificate, dict):
        return None
    for entry in certificate.get("subject", ()):
        for key, value in entry:
            if key == "commonName":
                return str(value)
    return None
