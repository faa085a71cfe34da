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

What one sender can make it hold or wait for, each bounded (docs/http-sync-protocol.md,
"Timeouts and sizes"):

* the fence first: after the header record and before the body, the write meets
  ``fencing.decide`` on the resource's committed stamp, so a stale epoch, an older
  generation or a replayed older snapshot is answered 409 before a byte of it is buffered
  (the write's own transaction decides again, over every resource's epoch);
* bytes: a snapshot reaches the sink in pages of at most ``PAGE_SIZE`` records and
  ``PAGE_BYTES``, a batch is at most ``MAX_BATCH_BYTES``, blank lines at most
  ``MAX_BLANK_BYTES``, each counted after inflating: the receiver inflates gzip itself, a
  piece of at most ``_CHUNK`` at a time, and lets other requests run between pieces, so a
  small body that inflates to a great deal neither fills memory nor stalls the loop;
* time: a body that sends no byte for ``idle_timeout`` is answered 408 and applies nothing;
  served through ``runner()``, a connection that sends no whole request header within
  ``header_timeout`` is closed;
* resources: ``MAX_RESOURCES``, counted when a request with a valid header first opens one,
  so requests refused before that (a bad path, a bad header, no token) count nothing.

Malformed input of every kind is the sender's fault and is answered 4xx, naming the record,
never echoing a header; 503 means the store failed and is worth retrying. An object the
store cannot keep as JSON is neither: the sink keeps its bytes (quarantined,
``listwatch.sinks._base``), the receiver logs a WARNING naming it, and the 200 names it too,
so that the sender reports it (``_wire.quarantine_details``).

``listwatch receiver`` serves this application (``SyncServer.runner()``);
``SyncServer.app()`` mounts it in yours.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import zlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
)
from contextlib import aclosing
from http import HTTPStatus
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from listwatch._aio import short
from listwatch._framing import LineFramer
from listwatch._models import Batch, Event, Item, Page, PageStream, Snapshot
from listwatch._types import Receiver, Store
from listwatch.errors import ProtocolError
from listwatch.fencing import Stamp, decide
from listwatch.httpsync import _wire as protocol
from listwatch.httpsync._wire import Header
from listwatch.sinks._base import Sink

__all__ = ["SyncServer", "TokenFile"]

logger = logging.getLogger("listwatch.httpsync._server")
requests_log = logging.getLogger("listwatch.httpsync.requests")
"""One line per request: method, path, status, records, duration and the client's name
(its certificate's common name), never a body or a credential. Sync requests at INFO, the
probes and scrapes (``/metrics``, ``/healthz``) at DEBUG: every few seconds, not news."""

PAGE_SIZE = 500
PAGE_BYTES = 8 * 1024 * 1024
"""A snapshot page goes to the sink at 500 records or at 8 MiB of records, whichever comes
first: what the receiver stages is bounded by bytes (plus one record), whatever the objects
weigh."""
MAX_BATCH_EVENTS = 100_000
"""A batch holds at most ``max_batch`` keys (1000 by default)."""
MAX_BATCH_BYTES = 64 * 1024 * 1024
"""A batch is applied in one transaction, so the receiver holds all of it: at most this
many bytes of body, after inflating (413 beyond). A sender's batch of 1,000 ordinary objects
is a few MiB."""
MAX_BLANK_BYTES = 1024 * 1024
"""Blank lines are allowed (a sender's heartbeat while its listing is slow: one byte every
few seconds), up to this many bytes per request: the bytes a request may carry that no
other limit counts (400 beyond)."""
MAX_RESOURCES = 256
"""Distinct resources one receiver serves: each has a sink (connections, statements)."""
HEADER_TIMEOUT = 10.0
"""Seconds a connection has to send a whole request header, from its opening or from the
previous answer on it (``runner()``): a client that sends nothing, or a header a byte at a
time, is closed. Go's servers call it ReadHeaderTimeout."""
IDLE_TIMEOUT = 30.0
"""Seconds a request body may send no byte. ``HttpSink`` sends a blank line every
``HEARTBEAT`` (5 s) while its listing is slow, so only a sender that is gone or stopped
trips it."""
_CHUNK = 64 * 1024
"""Read, and inflate, at most this much at a time; other requests run in between."""
_GZIP_MAGIC = b"\x1f\x8b"


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
        self.quarantined = Counter(
            "listwatch_receiver_quarantined_records",
            "Objects the store kept as bytes, not as JSON (it could not store them as they "
            "are), each time one was written, by resource.",
            ("resource",),
            registry=registry,
        )


class SyncServer:
    """The receiving side: ``POST /sync/{resource}/snapshot`` and ``/batch`` into ``store``.

    ``token`` (a string or a ``TokenFile``) is required from every request (``/metrics``
    and ``/healthz`` too) as a bearer token; ``client_certificate=True`` says the TLS
    layer verifies a client certificate (mutual TLS) on every connection, which then
    suffices. One of the two is required. ``idle_timeout`` bounds the wait for each byte of
    a body; ``header_timeout`` the wait for a request's header, in ``runner()``.
    """

    def __init__(
        self,
        store: Store,
        *,
        token: str | TokenFile | None = None,
        client_certificate: bool = False,
        registry: CollectorRegistry | None = None,
        header_timeout: float = HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        if token is None and not client_certificate:
            raise ValueError(
                "a receiver authenticates every request: give a token, or serve with "
                "client-certificate TLS"
            )
        if not (header_timeout > 0 and idle_timeout > 0):
            raise ValueError("header_timeout and idle_timeout must be positive")
        self._header_timeout = header_timeout
        self._idle_timeout = idle_timeout
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

    def runner(self, **options: Any) -> web.AppRunner:
        """An ``AppRunner`` of ``app()`` as ``listwatch receiver`` serves it: a connection
        is closed when it sends no whole request header within ``header_timeout``, and a
        request aiohttp cannot parse is answered with a Status of its code alone, never
        quoting the header (aiohttp's own answer and error log quote its first 100 bytes,
        which can be a bearer token). ``options`` go to ``web.AppRunner``."""
        options.setdefault("access_log", None)
        options["keepalive_timeout"] = self._header_timeout
        options["auto_decompress"] = False  # inflated by the receiver, a piece at a time
        return _Runner(self.app(), **options)

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

    @staticmethod
    def _resource(request: web.Request) -> str:
        resource = request.match_info["resource"]
        if not protocol.is_resource_name(resource):
            raise ProtocolError(
                f"{resource[:100]!r} is not a resource name", code=404, reason="NotFound"
            )
        return resource

    async def _sink(self, resource: str) -> Receiver:
        """The resource's sink, opened on its first valid request: what ``MAX_RESOURCES``
        counts (a request refused before its header was read counts nothing)."""
        new = resource not in self._resources
        if new:
            if len(self._resources) >= MAX_RESOURCES:
                raise ProtocolError(
                    f"this receiver serves at most {MAX_RESOURCES} resources",
                    code=403,
                    reason="Forbidden",
                )
            self._resources.add(resource)
        try:
            return await self._store.sink(resource)
        except BaseException:
            if new:  # it could not be opened: it takes no place
                self._resources.discard(resource)
            raise

    @staticmethod
    def _check_content_type(request: web.Request) -> None:
        if request.content_type != protocol.CONTENT_TYPE:
            raise ProtocolError(
                f"the body must be {protocol.CONTENT_TYPE}, not {request.content_type[:100]!r}",
                code=415,
                reason="UnsupportedMediaType",
            )
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise ProtocolError(
                f"the body's Content-Encoding must be gzip or none, not {encoding[:40]!r}",
                code=415,
                reason="UnsupportedMediaType",
            )

    async def _snapshot(self, request: web.Request) -> web.Response:
        return await self._write(request, "snapshot", self._apply_snapshot)

    async def _write(
        self,
        request: web.Request,
        kind: protocol.Kind,
        apply: Callable[[Receiver, Header, AsyncIterator[bytes], float], Awaitable[web.Response]],
    ) -> web.Response:
        """What every write request goes through before its body is read: authentication,
        the resource named by the path, the body's media type, its header record and the
        fence on it; then its records, in order."""
        self._authenticate(request)
        resource = self._resource(request)
        self._check_content_type(request)
        started = time.monotonic()
        limit = MAX_BATCH_BYTES if kind == "batch" else None
        async with aclosing(self._lines(request, limit)) as lines:
            header = protocol.decode_header(await _first(lines), kind=kind, resource=resource)
            sink = await self._sink(resource)
            await _refuse_early(resource, sink, header)
            return await apply(sink, header, lines, started)

    async def _apply_snapshot(
        self, sink: Receiver, header: Header, lines: AsyncIterator[bytes], started: float
    ) -> web.Response:
        resource = header.resource.qualified
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
        quarantined = self._quarantined(resource, snapshot.quarantined)
        return _status(200, "", "", records=counted.value, **quarantined)

    async def _snapshot_pages(
        self, lines: AsyncIterator[bytes], header: Header, counted: _Count
    ) -> PageStream:
        """The records as pages for the sink, cut by count and bytes. The keys seen are
        kept to refuse one that comes twice (about 100 bytes a key: 5 MB for 50,000)."""
        page: list[Item] = []
        size = 0
        keys: set[str] = set()
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
            item = protocol.decode_object_record(line, counted.value + 1)
            if item.key in keys:
                raise ProtocolError(
                    f"record {counted.value + 1}: key {item.key!r} twice in one snapshot"
                )
            keys.add(item.key)
            page.append(item)
            size += len(line)
            counted.value += 1
            self._metrics.records_in_flight.inc()
            if len(page) >= PAGE_SIZE or size >= PAGE_BYTES:
                yield Page(page, "")
                page, size = [], 0
        raise ProtocolError(
            f"the request ended after {counted.value} objects, before its commit record: "
            "nothing was applied"
        )

    async def _batch(self, request: web.Request) -> web.Response:
        return await self._write(request, "batch", self._apply_batch)

    async def _apply_batch(
        self, sink: Receiver, header: Header, lines: AsyncIterator[bytes], started: float
    ) -> web.Response:
        resource = header.resource.qualified
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
        with self._metrics.in_progress.labels("batch").track_inprogress():
            await sink.on_batch(batch)
        self._metrics.objects.labels(resource, "batch").inc(len(events))
        self._metrics.duration.labels("batch").observe(time.monotonic() - started)
        quarantined = self._quarantined(resource, batch.quarantined)
        return _status(200, "", "", records=len(events), **quarantined)

    def _quarantined(self, resource: str, quarantined: Mapping[str, str]) -> dict[str, Any]:
        """Report what the store kept as bytes rather than as JSON (a WARNING per object,
        the first ``MAX_QUARANTINED_NAMED``; a metric), and the answer's details for it."""
        if not quarantined:
            return {}
        self._metrics.quarantined.labels(resource).inc(len(quarantined))
        details = protocol.quarantine_details(quarantined)
        for entry in details["quarantined"]:
            logger.warning(
                "%s %s is quarantined: %s; the store keeps its bytes, not its JSON",
                resource,
                entry["key"],
                entry["reason"],
                extra={"resource": resource, "key": entry["key"], "reason": entry["reason"]},
            )
        unnamed = len(quarantined) - len(details["quarantined"])
        if unnamed:
            logger.warning(
                "%s: %d more objects are quarantined (kept as bytes, not as JSON)",
                resource,
                unnamed,
                extra={"resource": resource},
            )
        return details

    async def _lines(self, request: web.Request, limit: int | None) -> AsyncGenerator[bytes, None]:
        """The body's non-blank lines, each capped (a line over ``MAX_RECORD_BYTES`` is
        refused before it is whole), every inflated byte counted: against ``limit`` (a
        batch's), and the blank ones against ``MAX_BLANK_BYTES``. Other requests run between
        two pieces of the body, however fast they arrive."""
        framer = LineFramer(protocol.MAX_RECORD_BYTES)
        received = kept = 0
        async for chunk in self._body(request):
            received += len(chunk)
            if limit is not None and received > limit:
                raise ProtocolError(
                    f"a batch holds at most {limit} bytes (after gzip)",
                    code=413,
                    reason="RequestEntityTooLarge",
                )
            # A piece of blank lines between records is skipped whole, not line by line.
            lines = () if not framer.pending and chunk.isspace() else framer.feed(chunk)
            for line in lines:
                if not line[:1].isspace() or line.strip():
                    kept += len(line) + 1
                    yield line
            if received - kept - framer.pending > MAX_BLANK_BYTES:
                raise ProtocolError(f"more than {MAX_BLANK_BYTES} bytes of blank lines")
            await asyncio.sleep(0)
        if framer.pending:
            raise ProtocolError(
                f"the body ended inside a record ({framer.pending} bytes): nothing was applied"
            )

    async def _body(self, request: web.Request) -> AsyncIterator[bytes]:
        """The body in pieces of at most ``_CHUNK``, inflated here when it is gzip.

        ``runner()`` turns aiohttp's inflating off. An app mounted elsewhere may get bodies
        aiohttp inflated already: a body that does not open with gzip's magic bytes is
        taken as it is (no record of the protocol starts with them)."""
        gzip = request.headers.get("Content-Encoding", "").strip().lower() == "gzip"
        inflater: _Inflater | None = None
        head = b""
        while chunk := await self._read(request):
            if gzip and inflater is None and len(head) + len(chunk) < len(_GZIP_MAGIC):
                head += chunk  # too short to tell yet
                continue
            if head:
                chunk, head = head + chunk, b""
            if gzip and inflater is None and chunk.startswith(_GZIP_MAGIC):
                inflater = _Inflater()
            gzip = False  # decided: inflate, or take as it is
            if inflater is None:
                yield chunk
            else:
                for piece in inflater.feed(chunk):
                    yield piece
        if head:
            yield head
        if inflater is not None:
            inflater.end()

    async def _read(self, request: web.Request) -> bytes:
        try:
            async with asyncio.timeout(self._idle_timeout):
                return await request.content.read(_CHUNK)
        except TimeoutError:
            raise ProtocolError(
                f"no byte of the body came for {self._idle_timeout:g} s: nothing was applied",
                code=408,
                reason="RequestTimeout",
            ) from None

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


class _Inflater:
    """gzip undone a piece of at most ``_CHUNK`` at a time (zlib's ``max_length``): a body
    that inflates a thousandfold is never held whole. Members may follow one another, as
    gzip allows."""

    def __init__(self) -> None:
        self._zlib = zlib.decompressobj(wbits=31)
        self._started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            while data:
                if self._zlib.eof:  # another member follows
                    self._zlib = zlib.decompressobj(wbits=31)
                self._started = True
                piece = self._zlib.decompress(data, _CHUNK)
                data = self._zlib.unused_data if self._zlib.eof else self._zlib.unconsumed_tail
                if piece:
                    yield piece
        except zlib.error as exc:
            raise ProtocolError(f"the body is not valid gzip: {exc}") from None

    def end(self) -> None:
        if self._started and not self._zlib.eof:
            raise ProtocolError("the body ended inside its gzip stream: nothing was applied")


class _Connection(web.RequestHandler):
    """aiohttp's connection handler, but a request it cannot parse (a header line over 8190
    bytes, a broken request line) is answered with a Status of its code alone, and logged
    as one line without the parser's text: aiohttp's answer and its error log quote the
    first 100 bytes of the offending header, which can be a bearer token."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("an answer is already being sent: the connection is broken")
        what = type(exc).__name__ if exc is not None else "no detail"
        if status >= 500:  # a bug of the receiver's own: its traceback names no header
            logger.error(
                "%s %s: HTTP %d (%s)", request.method, request.path, status, what, exc_info=exc
            )
        else:
            logger.warning(
                "a request from %s could not be read as HTTP: %d (%s)", request.remote, status, what
            )
        reason = HTTPStatus(status).phrase.replace(" ", "")
        response = _status(status, reason, f"the request could not be read ({what})")
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    """``web.AppRunner`` whose connections are ``_Connection``s. aiohttp has no option for
    its error answers; the server it makes is given this class (it adds no state)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server
        return server


async def _first(lines: AsyncIterator[bytes]) -> bytes:
    line = await anext(lines, None)
    if line is None:
        raise ProtocolError("the body is empty: it must open with a header record")
    return line


async def _refuse_early(resource: str, sink: Receiver, header: Header) -> None:
    """``fencing.decide`` on the header and the resource's committed stamp, before the body
    is read: what it refuses is answered at once, and a stale leader's batch is never
    buffered. The stamp is read without a lock, and the write's own transaction decides
    again (this check sees the resource's epoch, that one the highest of all resources), so
    this only ever refuses what that would refuse. A store whose sinks keep no stamp (not
    a listwatch sink) is left to its own fence."""
    if not isinstance(sink, Sink):
        return
    state = await sink.sync_state()
    if state is None:
        return
    recorded = Stamp(
        state.epoch, state.session, state.generation, state.sequence, state.resource_version
    )
    write = Stamp(
        header.epoch, header.session, header.generation, header.sequence, header.resource_version
    )
    decide(resource, write, recorded, state.epoch)


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
    if resource is not None and not protocol.is_resource_name(resource):
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
