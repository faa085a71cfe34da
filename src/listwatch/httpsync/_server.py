"""The reference receiver of the HTTP sync protocol: an aiohttp application to mount.

It applies each snapshot request to a *store* (one sink per resource: ``SQLiteSink`` or
``PostgresSink``) as the request streams in: the request body becomes a ``Snapshot``
whose pages the sink writes inside its one transaction, which commits only once the commit
record has arrived and counted what came before it. A request cut short (the sender died,
the connection dropped) ends the stream early, the sink rolls back, nothing changed. A
batch request is one ``Batch`` in one transaction. The sinks apply the fencing rules
(``listwatch.fencing``) in the same transaction as the write, and the receiver answers a
refused write with 409 and a Status naming why. Every request is authenticated (a bearer
token, and/or a client certificate the TLS layer verified) before its body is read, and
its credential names its cluster (``listwatch.httpsync._clients``): the sender never does,
so a credential writes its own cluster's rows and nothing else. Everything the store keeps
is scoped by that cluster: rows, sync state, the fence.

The receiver keeps nothing of its own between requests (every decision is the store's, in
the store's transactions), so any number of receivers may serve one PostgreSQL database at
once, a sender may send each request to another one, and a receiver may die at any moment:
a request it was applying either committed or left nothing, and the sender's retry, to
whichever receiver, meets the fence (a duplicate changes nothing).

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
* resources: ``MAX_RESOURCES`` per cluster, counted when a request with a valid header first
  opens one, so requests refused before that (a bad path, a bad header, no token) count
  nothing;
* a cluster's caps (its clients-file entry's ``max_objects``, ``max_bytes``): a snapshot
  is refused (413) as soon as the records streamed in would take the cluster past one, and
  each write's transaction checks again (``listwatch.sinks._base.enforce_limits``).

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
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from listwatch._aio import short
from listwatch._framing import LineFramer
from listwatch._models import Batch, Event, Item, Page, PageStream, Snapshot
from listwatch._types import Receiver, Store
from listwatch.errors import LimitExceeded, ProtocolError, StaleEpoch, StaleWrite
from listwatch.fencing import Stamp, decide
from listwatch.httpsync import _wire as protocol
from listwatch.httpsync._clients import Client, ClientsFile, SingleCluster, TokenFile
from listwatch.httpsync._wire import Header
from listwatch.sinks._base import DEFAULT_CLUSTER, Limits, Sink, Usage

__all__ = ["SyncServer", "TokenFile"]

logger = logging.getLogger("listwatch.httpsync._server")
requests_log = logging.getLogger("listwatch.httpsync.requests")
"""One line per request: method, path, status, records, duration, the cluster its credential
names and the client's name (its certificate's common name), never a body or a credential.
Sync requests at INFO (refusals included, each with its cluster), the probes and scrapes
(``/metrics``, ``/healthz``) at DEBUG: every few seconds, not news."""

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
"""Distinct resources one receiver serves per cluster: each has a sink (connections,
statements)."""
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
_CLUSTER = web.RequestKey("listwatch.cluster", str)
"""The request's key for the cluster its credential names (for the log line and metrics)."""
_RESOURCE = web.RequestKey("listwatch.resource", str)
"""The request's key for the resource it writes, once its header was valid."""


class _Metrics:
    """The receiver's series. ``cluster`` is the cluster the request's credential names ("" for
    a request refused before it was known): one label value per clients-file entry, so a
    noisy or stale cluster shows at a glance. Several receivers behind one Service each count
    their own requests: sum the counters, take the max of the last-sync times."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "listwatch_receiver_requests",
            "Sync requests, by cluster, kind and HTTP status answered.",
            ("cluster", "kind", "code"),
            registry=registry,
        )
        self.objects = Counter(
            "listwatch_receiver_records",
            "Object and event records applied (committed), by cluster, resource and kind.",
            ("cluster", "resource", "kind"),
            registry=registry,
        )
        self.bytes = Counter(
            "listwatch_receiver_body_bytes",
            "Bytes of sync request bodies read (after gzip), applied or not, by cluster, "
            "resource and kind.",
            ("cluster", "resource", "kind"),
            registry=registry,
        )
        self.refusals = Counter(
            "listwatch_receiver_refusals",
            "Requests refused (4xx), by cluster and why: the Status reason, or the fence's "
            "cause (StaleEpoch, StaleWrite), or LimitExceeded.",
            ("cluster", "reason"),
            registry=registry,
        )
        self.last_sync = Gauge(
            "listwatch_receiver_last_sync_timestamp_seconds",
            "When a sync request of the cluster's resource was last answered 200 by this "
            "receiver (seconds since the epoch).",
            ("cluster", "resource"),
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
            "are), each time one was written, by cluster and resource.",
            ("cluster", "resource"),
            registry=registry,
        )


class SyncServer:
    """The receiving side: ``POST /sync/{resource}/snapshot`` and ``/batch`` into ``store``.

    Every request (``/metrics`` and ``/healthz`` too) is authenticated, and its credential
    names the cluster it writes: ``clients`` (a ``ClientsFile``) maps each bearer token and
    client certificate of a fleet to its cluster and caps. Without it, the receiver serves
    the one cluster ``cluster``: ``token`` (a string or a ``TokenFile``) is required from
    every request as a bearer token, and ``client_certificate=True`` says the TLS layer
    verifies a client certificate (mutual TLS) on every connection, which then suffices
    without a token. One of the three is required. ``idle_timeout`` bounds the wait for
    each byte of a body; ``header_timeout`` the wait for a request's header, in
    ``runner()``. ``protocol_version`` is the newest version of the protocol it serves
    (every one from 1 up): pinned to 1 it answers as a receiver from before shards did,
    refusing a sharded write (a staged rollout, and the compatibility tests).
    """

    def __init__(
        self,
        store: Store,
        *,
        token: str | TokenFile | None = None,
        client_certificate: bool = False,
        clients: ClientsFile | None = None,
        cluster: str = DEFAULT_CLUSTER,
        registry: CollectorRegistry | None = None,
        header_timeout: float = HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        protocol_version: int = protocol.PROTOCOL_VERSION,
    ) -> None:
        if not 1 <= protocol_version <= protocol.PROTOCOL_VERSION:
            raise ValueError(f"protocol_version is 1 to {protocol.PROTOCOL_VERSION}")
        self._protocol_version = protocol_version
        if clients is not None and token is not None:
            raise ValueError("give a clients file or a token, not both")
        if token is None and clients is None and not client_certificate:
            raise ValueError(
                "a receiver authenticates every request: give a clients file, a token, or "
                "serve with client-certificate TLS"
            )
        if not (header_timeout > 0 and idle_timeout > 0):
            raise ValueError("header_timeout and idle_timeout must be positive")
        self._header_timeout = header_timeout
        self._idle_timeout = idle_timeout
        self._store = store
        self._credentials: ClientsFile | SingleCluster = (
            clients
            if clients is not None
            else SingleCluster(token, cluster=cluster, client_certificate=client_certificate)
        )
        self._client_certificate = client_certificate
        self.registry = registry if registry is not None else CollectorRegistry()
        self._metrics = _Metrics(self.registry)
        self._resources: dict[str, set[str]] = {}

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
                logger.warning(
                    "%s %s: cluster %s: the store failed: %s",
                    request.method,
                    request.path,
                    request.get(_CLUSTER) or "unknown",
                    exc,
                )
            else:
                self._metrics.refusals.labels(request.get(_CLUSTER, ""), _why(exc, answer)).inc()
            response = _status(answer.code, answer.reason, answer.message, **answer.details)
            error = f"{answer.reason}: {answer.message}"
        if kind in ("snapshot", "batch"):
            cluster = request.get(_CLUSTER, "")
            self._metrics.requests.labels(cluster, kind, str(response.status)).inc()
            resource = request.match_info.get("resource", "")
            if response.status == 200 and request.get(_RESOURCE):
                self._metrics.last_sync.labels(cluster, resource).set(time.time())
        records = response.records if isinstance(response, _Answer) else None
        _log_request(request, response.status, records, time.monotonic() - started, error)
        return response

    def _authenticate(self, request: web.Request) -> Client:
        """The client (its cluster) the request's credential names, or 401.

        A bearer token, when one is sent, decides (a client certificate naming another
        cluster beside it is refused: one request, one cluster); without one, a verified
        client certificate does, by its common name. The cluster is kept on the request for
        the log line and the metrics."""
        clients = self._credentials.current()
        transport = request.transport
        certificate = transport.get_extra_info("peercert") if transport else None
        if self._client_certificate and not certificate:
            raise ProtocolError("a client certificate is required", code=401, reason="Unauthorized")
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        by_certificate = clients.for_certificate(_common_name(certificate)) if certificate else None
        if scheme.lower() == "bearer" and credentials.strip():
            client = clients.for_token(credentials.strip())
            if client is not None and by_certificate not in (None, client):
                raise ProtocolError(
                    "the bearer token and the client certificate name different clusters",
                    code=401,
                    reason="Unauthorized",
                )
        else:
            client = by_certificate
        if client is None:
            raise ProtocolError("a valid bearer token is required", code=401, reason="Unauthorized")
        request[_CLUSTER] = client.cluster
        return client

    @staticmethod
    def _resource(request: web.Request) -> str:
        resource = request.match_info["resource"]
        if not protocol.is_resource_name(resource):
            raise ProtocolError(
                f"{resource[:100]!r} is not a resource name", code=404, reason="NotFound"
            )
        return resource

    async def _sink(self, client: Client, resource: str) -> Receiver:
        """The cluster's resource's sink, opened on its first valid request: what
        ``MAX_RESOURCES`` counts (a request refused before its header was read counts
        nothing). It is given the cluster's caps as they are now (the clients file may
        have changed them)."""
        resources = self._resources.setdefault(client.cluster, set())
        new = resource not in resources
        if new:
            if len(resources) >= MAX_RESOURCES:
                raise ProtocolError(
                    f"this receiver serves at most {MAX_RESOURCES} resources per cluster",
                    code=403,
                    reason="Forbidden",
                )
            resources.add(resource)
        try:
            if client.cluster == DEFAULT_CLUSTER:  # as a Store written before clusters takes it
                sink = await self._store.sink(resource)
            else:
                sink = await self._store.sink(resource, cluster=client.cluster)
        except BaseException:
            if new:  # it could not be opened: it takes no place
                resources.discard(resource)
            raise
        if isinstance(sink, Sink):
            sink.limits = client.limits if client.limits.any else None
        return sink

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
        apply: Callable[[_Request, AsyncIterator[bytes]], Awaitable[web.Response]],
    ) -> web.Response:
        """What every write request goes through before its body is read: authentication
        (which names the cluster), the resource named by the path, the body's media type,
        its header record and the fence on it; then its records, in order."""
        client = self._authenticate(request)
        resource = self._resource(request)
        self._check_content_type(request)
        started = time.monotonic()
        limit = MAX_BATCH_BYTES if kind == "batch" else None
        read = self._metrics.bytes.labels(client.cluster, resource, kind)
        async with aclosing(self._lines(request, limit, read)) as lines:
            header = protocol.decode_header(
                await _first(lines), kind=kind, resource=resource, newest=self._protocol_version
            )
            sink = await self._sink(client, resource)
            request[_RESOURCE] = resource
            await _refuse_early(resource, sink, header)
            return await apply(_Request(client, sink, header, started), lines)

    async def _apply_snapshot(self, write: _Request, lines: AsyncIterator[bytes]) -> web.Response:
        sink, header, started = write.sink, write.header, write.started
        resource = header.resource.qualified
        counted = _Count()
        allowed = await _allowance(write.client.limits, sink, resource)
        snapshot = Snapshot(
            self._snapshot_pages(lines, header, counted, write.client, allowed),
            resource_version=header.resource_version,
            generation=header.generation,
            epoch=header.epoch,
            resource=header.resource,
            session=header.session,
            shard=header.shard,
        )
        with self._metrics.in_progress.labels("snapshot").track_inprogress():
            try:
                await sink.on_list(snapshot)
            finally:
                self._metrics.records_in_flight.dec(counted.value)
        snapshot.ensure_read(f"the store's sink for {resource}")
        self._metrics.objects.labels(write.client.cluster, resource, "snapshot").inc(counted.value)
        self._metrics.duration.labels("snapshot").observe(time.monotonic() - started)
        quarantined = self._quarantined(write.client.cluster, resource, snapshot.quarantined)
        return _status(200, "", "", records=counted.value, **quarantined)

    async def _snapshot_pages(
        self,
        lines: AsyncIterator[bytes],
        header: Header,
        counted: _Count,
        client: Client,
        allowed: _Allowance | None,
    ) -> PageStream:
        """The records as pages for the sink, cut by count and bytes. The keys seen are
        kept to refuse one that comes twice (about 100 bytes a key: 5 MB for 50,000). A
        snapshot that would take its cluster past a cap is refused as soon as its records
        say so, not after it was staged whole."""
        page: list[Item] = []
        size = 0
        stored = 0
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
            if allowed is not None:
                stored += len(item.json)
                allowed.check(client.cluster, header.resource.qualified, counted.value, stored)
            if len(page) >= PAGE_SIZE or size >= PAGE_BYTES:
                yield Page(page, "")
                page, size = [], 0
        raise ProtocolError(
            f"the request ended after {counted.value} objects, before its commit record: "
            "nothing was applied"
        )

    async def _batch(self, request: web.Request) -> web.Response:
        return await self._write(request, "batch", self._apply_batch)

    async def _apply_batch(self, write: _Request, lines: AsyncIterator[bytes]) -> web.Response:
        sink, header, started = write.sink, write.header, write.started
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
            shard=header.shard,
        )
        with self._metrics.in_progress.labels("batch").track_inprogress():
            await sink.on_batch(batch)
        self._metrics.objects.labels(write.client.cluster, resource, "batch").inc(len(events))
        self._metrics.duration.labels("batch").observe(time.monotonic() - started)
        quarantined = self._quarantined(write.client.cluster, resource, batch.quarantined)
        return _status(200, "", "", records=len(events), **quarantined)

    def _quarantined(
        self, cluster: str, resource: str, quarantined: Mapping[str, str]
    ) -> dict[str, Any]:
        """Report what the store kept as bytes rather than as JSON (a WARNING per object,
        the first ``MAX_QUARANTINED_NAMED``; a metric), and the answer's details for it."""
        if not quarantined:
            return {}
        self._metrics.quarantined.labels(cluster, resource).inc(len(quarantined))
        details = protocol.quarantine_details(quarantined)
        for entry in details["quarantined"]:
            logger.warning(
                "cluster %s: %s %s is quarantined: %s; the store keeps its bytes, not its JSON",
                cluster,
                resource,
                entry["key"],
                entry["reason"],
                extra={
                    "cluster": cluster,
                    "resource": resource,
                    "key": entry["key"],
                    "reason": entry["reason"],
                },
            )
        unnamed = len(quarantined) - len(details["quarantined"])
        if unnamed:
            logger.warning(
                "cluster %s: %s: %d more objects are quarantined (kept as bytes, not as JSON)",
                cluster,
                resource,
                unnamed,
                extra={"cluster": cluster, "resource": resource},
            )
        return details

    async def _lines(
        self, request: web.Request, limit: int | None, read: Counter
    ) -> AsyncGenerator[bytes, None]:
        """The body's non-blank lines, each capped (a line over ``MAX_RECORD_BYTES`` is
        refused before it is whole), every inflated byte counted: against ``limit`` (a
        batch's), the blank ones against ``MAX_BLANK_BYTES``, and all in ``read`` (the
        cluster's body bytes). Other requests run between two pieces of the body, however
        fast they arrive."""
        framer = LineFramer(protocol.MAX_RECORD_BYTES)
        received = kept = 0
        async for chunk in self._body(request):
            received += len(chunk)
            read.inc(len(chunk))
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


@dataclass(frozen=True, slots=True)
class _Request:
    """A write request past its header: whose, into which sink, what, since when."""

    client: Client
    sink: Receiver
    header: Header
    started: float


@dataclass(frozen=True, slots=True)
class _Allowance:
    """What one snapshot of a resource may hold under its cluster's caps (-1: no cap), and
    what the rest of the cluster holds, for the message."""

    limits: Limits
    allowed: Usage
    others: Usage

    def check(self, cluster: str, resource: str, objects: int, stored: int) -> None:
        """Refuse (``LimitExceeded``) once the records so far are past what is allowed."""
        limits, allowed, others = self.limits, self.allowed, self.others
        if limits.max_objects is not None and 0 <= allowed.objects < objects:
            would = others.objects + objects
            raise LimitExceeded(cluster, resource, "max_objects", limits.max_objects, would)
        if limits.max_bytes is not None and 0 <= allowed.bytes < stored:
            would = others.bytes + stored
            raise LimitExceeded(cluster, resource, "max_bytes", limits.max_bytes, would)


async def _allowance(limits: Limits, sink: Receiver, resource: str) -> _Allowance | None:
    """The allowance of a snapshot of ``resource`` under ``limits``, from what the cluster
    holds now (read without a lock: the swap's transaction checks again); ``None`` without
    caps, or for a store whose sinks keep no counts."""
    if not limits.any or not isinstance(sink, Sink):
        return None
    usage = await sink.cluster_usage()
    current = usage.get(resource, Usage())
    others = sum(usage.values(), Usage()) - current
    return _Allowance(limits, limits.allowed(others, current), others)


def _why(exc: Exception, answer: protocol.Answer) -> str:
    """A refusal's reason for the metrics: the fence's cause or a cap, else the Status's."""
    if isinstance(exc, StaleEpoch | StaleWrite | LimitExceeded):
        return type(exc).__name__
    return answer.reason


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
    a listwatch sink) is left to its own fence. A sharded write is checked against its
    shard's stamp (the write's transaction, against every overlapping scope's epoch)."""
    if not isinstance(sink, Sink):
        return
    state = await sink.sync_state(header.shard)
    if state is None:
        return
    recorded = Stamp(
        state.epoch, state.session, state.generation, state.sequence, state.resource_version
    )
    write = Stamp(
        header.epoch,
        header.session,
        header.generation,
        header.sequence,
        header.resource_version,
        header.shard,
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
    cluster = request.get(_CLUSTER)
    path = request.rel_url.raw_path  # still percent-encoded: one line, whatever was sent
    resource = request.match_info.get("resource") if sync else None
    if resource is not None and not protocol.is_resource_name(resource):
        resource = None
    parts = [f"{request.method} {path} {status}"]
    if records is not None:
        parts.append(f"{records} records")
    parts.append(f"{seconds:.3f} s")
    parts.append(f"cluster {cluster}" if cluster else "cluster unknown")
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
            "cluster": cluster,
            "error": error or None,
        },
    )


def _client_name(request: web.Request) -> str | None:
    """The verified client certificate's common name (mutual TLS), if there is one: a
    bearer token has no name, and is never logged."""
    transport = request.transport
    certificate = transport.get_extra_info("peercert") if transport is not None else None
    return _common_name(certificate)


def _common_name(certificate: object) -> str | None:
    """The common name of a certificate as ``ssl`` gives it (``getpeercert()``), or None."""
    if not isinstance(certificate, dict):
        return None
    for entry in certificate.get("subject", ()):
        for key, value in entry:
            if key == "commonName":
                return str(value)
    return None
