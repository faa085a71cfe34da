"""WATCH: one chunked stream of newline-delimited JSON events per request
(docs/kubernetes-semantics.md#watch).

Where a watch starts (docs/kubernetes-semantics.md#watch, #streaming-lists):

* RV "" or "0" ("Get State and Start"): synthetic ADDED events for the current objects in
  key order, each with its own RV, then the changes after that state. With
  ``sendInitialEvents=true`` (explicit, or by WatchList defaulting) and
  ``allowWatchBookmarks=true`` the ADDEDs end with a BOOKMARK annotated
  ``k8s.io/initial-events-end: "true"``.
* RV X ("Start at Exact"): only events with RV > X. X older than the compaction point, or
  than the RV the watch cache was rebuilt at when the server restarted, is "too old
  resource version" (answered per ``stale_watch``); X newer than the store is waited for
  with the stream open. With ``sendInitialEvents=true`` the state not older
  than X is sent, after waiting up to ``too_large_wait`` for X (then a 504 ERROR event).
* ``sendInitialEvents=false``: no initial state; RV ""/"0" start at the latest RV.
* With ``request_watch_progress=False`` (an etcd without RequestWatchProgress:
  before 3.4.31, or 3.5.0 to 3.5.12) a streaming list (``sendInitialEvents=true`` with
  ``allowWatchBookmarks=true``: the cacher's ``isListWatchRequest``) is answered 200, then
  one ERROR event (500 InternalError, "a watch stream was requested by the client but the
  required storage feature RequestWatchProgress is disabled"), then the end; plain watches
  are served (docs/kubernetes-semantics.md#streaming-lists).

When a resource stops being served (``FakeApiServer.unregister_resource``: its CRD
deleted), its watches send the events up to its last write (the DELETED of each object)
and end cleanly, as the cacher's watchers end when the CRD's storage is torn down.

Each watcher reads the store's shared event log through its own cursor (an RV), woken by
the store's ``changed`` event: memory per watcher is one cursor and the socket buffer. A
watcher whose cursor falls behind compaction is ended cleanly, as the watch cache closes
an unresponsive watcher; its client must re-watch and then meets the 410.

Selector transitions follow the watch cache's ``convertToWatchEvent``: an update that
makes an object match is ADDED, one that makes it stop matching is DELETED with the old
content at the event's RV. BOOKMARKs (only with ``allowWatchBookmarks=true``) carry the
watcher's RV every ``bookmark_interval`` seconds and about 2 s before its deadline, and
only when that RV is newer than what the watcher already sent. A bookmark's object is the
kind's zero value (``BOOKMARK_ZERO_FIELDS``) with its RV. ``timeoutSeconds`` (or a
random 30-60 min) ends the stream cleanly with the final zero-length chunk, no event.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import enum
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import orjson
from aiohttp import web

from listwatch.testing import _status as status
from listwatch.testing._conversion import EndStream
from listwatch.testing._faults import Fault, FaultKind
from listwatch.testing._options import ListOptions, parse_resource_version
from listwatch.testing._resources import ResourceType
from listwatch.testing._selectors import Selection
from listwatch.testing._signals import Signal
from listwatch.testing._store import (
    DELETED,
    JsonDict,
    ObjectStore,
    StoredEvent,
    with_resource_version,
)

StaleWatch = Literal["error-event", "http-410", "empty-200"]

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
#: A bookmark's object is the zero value of the kind's Go type with only its RV (and
#: annotations) set, so the fields ``encoding/json`` writes without ``omitempty`` come with
#: it (as kube-apiserver 1.36 sends them; clients must ignore them). Other kinds, custom
#: resources among them, carry ``metadata`` alone.
BOOKMARK_ZERO_FIELDS: dict[tuple[str, str], JsonDict] = {
    ("", "Pod"): {"spec": {"containers": None}, "status": {}},
    ("", "Namespace"): {"spec": {}, "status": {}},
    ("", "Service"): {"spec": {}, "status": {"loadBalancer": {}}},
    ("", "Node"): {
        "spec": {},
        "status": {
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": dict.fromkeys(
                (
                    "machineID",
                    "systemUUID",
                    "bootID",
                    "kernelVersion",
                    "osImage",
                    "containerRuntimeVersion",
                    "kubeletVersion",
                    "kubeProxyVersion",
                    "operatingSystem",
                    "architecture",
                ),
                "",
            ),
        },
    },
    ("", "Event"): {
        "involvedObject": {},
        "source": {},
        "firstTimestamp": None,
        "lastTimestamp": None,
        "eventTime": None,
        "reportingComponent": "",
        "reportingInstance": "",
    },
    ("apps", "Deployment"): {
        "spec": {
            "replicas": 0,
            "selector": None,
            "template": {"metadata": {}, "spec": {"containers": None}},
            "strategy": {},
        },
        "status": {},
    },
    ("coordination.k8s.io", "Lease"): {"spec": {}},
}
MIN_REQUEST_TIMEOUT = 1800.0  # --min-request-timeout; the default watch timeout is [1x, 2x)
PRE_TIMEOUT_BOOKMARK = 2.0  # the cacher's last bookmark comes this long before the deadline


#: What kube-apiserver's cacher answers a streaming list with when etcd lacks the
#: RequestWatchProgress feature (etcd before 3.4.31, or 3.5.0 to 3.5.12), in an ERROR event.
NO_WATCH_PROGRESS = (
    "a watch stream was requested by the client but the required storage feature "
    "RequestWatchProgress is disabled"
)


@dataclass(frozen=True)
class WatchConfig:
    bookmark_interval: float
    stale_watch: StaleWatch
    too_large_wait: float
    #: etcd serves RequestWatchProgress; without it, streaming lists are refused.
    request_watch_progress: bool = True


class ActiveWatches:
    """The watch streams whose headers are out: counted, awaitable, and cuttable at once.

    Memory is one entry per open watch, removed when the stream ends.
    """

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._writers: set[_EventWriter] = set()
        self._changes = Signal(on_change)

    @property
    def count(self) -> int:
        return len(self._writers)

    def opened(self, writer: _EventWriter) -> None:
        self._writers.add(writer)
        self._changes.notify()

    def ended(self, writer: _EventWriter) -> None:
        self._writers.discard(writer)
        self._changes.notify()

    async def wait_for(self, count: int, within: float) -> None:
        await self._changes.wait_until(lambda: len(self._writers) >= count, within)

    def cut_all(self, *, mid_line: bool) -> int:
        """Ask every open stream to end (see ``FakeApiServer.cut_watches``); how many."""
        writers = list(self._writers)
        for writer in writers:
            writer.request_cut(mid_line=mid_line)
        return len(writers)


class _EventWriter:
    """Writes events to the response and applies a stream fault at its trigger point."""

    def __init__(
        self,
        request: web.BaseRequest,
        fault: Fault | None,
        rvs: Callable[[], tuple[int, int]] = lambda: (0, 0),
        convert: Callable[[JsonDict], JsonDict] = lambda obj: obj,
    ) -> None:
        self._request = request
        self._fault = fault
        self._rvs = rvs  # (requested, current) RV for the Status of an ERROR event
        self._convert = convert  # to the negotiated representation (conversion.py)
        self._response = web.StreamResponse(status=200)
        self._response.content_type = "application/json"
        self._response.enable_chunked_encoding()
        self.sent = 0
        self.ended = False
        self._malformed_done = False
        self.stalled = False
        self._on_end: Callable[[], None] = lambda: None
        self._cut_mid_line: bool | None = None  # a cut asked for: mid-line or clean

    def request_cut(self, *, mid_line: bool) -> None:
        """End the stream at its next step: cleanly, or in the middle of a line."""
        if self._cut_mid_line is None:
            self._cut_mid_line = mid_line

    @property
    def cut_requested(self) -> bool:
        return self._cut_mid_line is not None and not self.ended

    async def cut(self, line: bytes) -> None:
        """Carry out a requested cut; ``line`` is the event that would have come next."""
        if self._cut_mid_line:
            await self._response.write(line[: max(1, len(line) // 2)])
            self._cut()
        else:
            await self.finish()

    def on_end(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, just before the stream's last byte is written."""
        self._on_end = callback

    async def open(self) -> None:
        """Send the status line and headers now, before any event (``BeginStream``)."""
        await self._response.prepare(self._request)

    @property
    def response(self) -> web.StreamResponse:
        return self._response

    async def send(self, event: JsonDict) -> bool:
        """Write one event; False when a fault ended the stream (stop sending then)."""
        if self.ended:
            return False
        fault = self._fault
        if event["type"] != "ERROR":
            try:
                event = {"type": event["type"], "object": self._convert(event["object"])}
            except EndStream:
                await self.finish()
                return False
        line = orjson.dumps(event) + b"\n"
        if self.cut_requested:
            await self.cut(line)
            return False
        if fault is not None and fault.kind is FaultKind.SLOW:
            await asyncio.sleep(fault.delay)
        if self._due(FaultKind.CUT_STREAM) and fault is not None and fault.mid_line:
            await self._response.write(line[: max(1, len(line) // 2)])
            self._cut()
            return False
        await self._response.write(line)
        self.sent += 1
        return await self.apply_due_fault()

    async def apply_due_fault(self) -> bool:
        """Fire a fault whose ``after_events`` count is reached; False if the stream ended."""
        fault = self._fault
        if fault is None or self.ended:
            return not self.ended
        if self._due(FaultKind.CUT_STREAM) and not fault.mid_line:
            self._cut()
            return False
        if self._due(FaultKind.ERROR_EVENT):
            error = fault.error_event_status(*self._rvs())
            await self._response.write(
                orjson.dumps({"type": "ERROR", "object": error.body}) + b"\n"
            )
            await self.finish()
            return False
        if self._due(FaultKind.STALL):
            self.stalled = True  # nothing more is sent; the stream is held open
            return False
        if self._due(FaultKind.MALFORMED_LINE) and not self._malformed_done:
            self._malformed_done = True
            await self._response.write(b"this is not JSON {\n")
        if self._due(FaultKind.RAW_LINE) and not self._malformed_done:
            self._malformed_done = True
            await self._response.write(fault.line + b"\n")
        return True

    def _due(self, kind: FaultKind) -> bool:
        return (
            self._fault is not None
            and self._fault.kind is kind
            and self.sent == self._fault.after_events
        )

    def _cut(self) -> None:
        """Drop the connection: buffered bytes go out, the terminating chunk never does."""
        self._end()
        transport = self._request.transport
        if transport is not None:
            transport.close()

    async def finish(self) -> None:
        """End cleanly: the final zero-length chunk, no terminal event
        (docs/kubernetes-semantics.md#watch)."""
        if not self.ended:
            self._end()
            await self._response.write_eof()

    def end_silently(self) -> None:
        """Mark the stream over without writing (the client is gone, or we are done)."""
        if not self.ended:
            self._end()

    def _end(self) -> None:
        self.ended = True
        callback, self._on_end = self._on_end, lambda: None
        callback()


class WatchStream:
    """Serves one WATCH request."""

    def __init__(
        self,
        *,
        request: web.BaseRequest,
        store: ObjectStore,
        resource: ResourceType,
        namespace: str | None,
        options: ListOptions,
        selection: Selection,
        config: WatchConfig,
        fault: Fault | None,
        active: ActiveWatches,
        rng: random.Random,
        stopping: Callable[[], bool],
        convert: Callable[[JsonDict], JsonDict] = lambda obj: obj,
        served_until: Callable[[], int | None] = lambda: None,
    ) -> None:
        self._request = request
        self._served_until = served_until
        self._representation = convert
        self._store = store
        self._resource = resource
        self._namespace = namespace
        self._options = options
        self._selection = selection
        self._config = config
        self._fault = fault
        self._active = active
        self._rng = rng
        self._stopping = stopping
        self._loop = asyncio.get_running_loop()
        self._requested_rv = 0

    async def serve(self) -> web.StreamResponse:
        deadline = self._loop.time() + self._timeout()
        options = self._options
        start_rv = self._parse_start_rv()
        self._requested_rv = start_rv or 0
        if options.send_initial_events:
            if options.allow_watch_bookmarks and not self._config.request_watch_progress:
                # The cacher's isListWatchRequest check: client-go falls back to a LIST.
                return await self._error_only(
                    status.failure(500, NO_WATCH_PROGRESS, reason="InternalError")
                )
            return await self._watch_list(start_rv or 0, deadline)
        if start_rv is None:
            if options.send_initial_events is False:
                return await self._stream(None, self._store.resource_version, deadline)
            return await self._stream(self._snapshot(), self._store.resource_version, deadline)
        if start_rv < self._store.watchable_rv:
            return await self._too_old(start_rv)
        return await self._stream(None, start_rv, deadline)

    # ------------------------------------------------------------------ start

    def _timeout(self) -> float:
        seconds = self._options.timeout_seconds
        if seconds:
            return float(seconds)
        return MIN_REQUEST_TIMEOUT * (1.0 + self._rng.random())  # [1800, 3600) s

    def _parse_start_rv(self) -> int | None:
        raw = self._options.resource_version
        if raw in ("", "0"):
            return None
        try:
            return parse_resource_version(raw)
        except ValueError as exc:
            # The cacher returns the storage error as is: HTTP 500 without a reason
            # (docs/kubernetes-semantics.md#expired-resource-versions).
            raise status.failure(500, str(exc)) from exc

    def _snapshot(self) -> list[JsonDict]:
        items = self._store.items(self._resource, self._namespace)
        return [obj for _, obj in items if self._selection.matches(obj)]

    async def _watch_list(self, required_rv: int, deadline: float) -> web.StreamResponse:
        store = self._store
        if required_rv > store.resource_version and not await store.wait_for_rv(
            required_rv, self._config.too_large_wait
        ):
            error = status.too_large_resource_version(required_rv, store.resource_version)
            return await self._error_only(error)
        end_bookmark = self._options.allow_watch_bookmarks
        return await self._stream(self._snapshot(), store.resource_version, deadline, end_bookmark)

    async def _too_old(self, requested_rv: int) -> web.StreamResponse:
        error = status.too_old_resource_version(requested_rv, self._store.watchable_rv)
        mode = self._config.stale_watch
        if mode == "http-410":
            raise error
        if mode == "empty-200":
            writer = _EventWriter(self._request, None)
            await writer.open()
            await writer.finish()
            return writer.response
        return await self._error_only(error)

    async def _error_only(self, error: status.StatusError) -> web.StreamResponse:
        """200, one ERROR event carrying the Status, then the end
        (docs/kubernetes-semantics.md#expired-resource-versions)."""
        writer = _EventWriter(self._request, None)
        await writer.open()
        await writer.send({"type": "ERROR", "object": error.body})
        await writer.finish()
        return writer.response

    # ------------------------------------------------------------------ streaming

    async def _stream(
        self,
        initial: list[JsonDict] | None,
        cursor: int,
        deadline: float,
        end_bookmark: bool = False,
    ) -> web.StreamResponse:
        writer = _EventWriter(
            self._request,
            self._fault,
            lambda: (self._requested_rv, self._store.resource_version),
            self._representation,
        )
        await writer.open()
        self._active.opened(writer)
        # Uncounted before the end reaches the client, so a client that saw the end sees
        # active_watches without this stream.
        writer.on_end(lambda: self._active.ended(writer))
        try:
            await self._run(writer, initial, cursor, deadline, end_bookmark)
            if writer.stalled:
                await self._hold(writer)
        except ConnectionError:
            pass  # the client went away; nothing left to say
        finally:
            writer.end_silently()
        return writer.response

    async def _run(
        self,
        writer: _EventWriter,
        initial: list[JsonDict] | None,
        cursor: int,
        deadline: float,
        end_bookmark: bool,
    ) -> None:
        if not await writer.apply_due_fault():
            return
        if not await self._send_initial(writer, initial, cursor, end_bookmark):
            return
        progress = _Progress(position=cursor, last_sent=cursor)
        next_bookmark = self._next_bookmark(deadline)
        while not self._over(deadline):
            if writer.cut_requested:
                # Idle when the cut came: what would have come next is a bookmark.
                await writer.cut(orjson.dumps(self._bookmark(progress.position)) + b"\n")
                return
            delivered = await self._deliver(writer, progress, deadline)
            if delivered is not _Delivered.CAUGHT_UP:
                if delivered is _Delivered.FELL_BEHIND:
                    await writer.finish()  # like the cacher closing a watcher too slow for it
                return
            if self._served_until() is not None:
                await writer.finish()  # its storage is torn down, its cacher's watchers end
                return
            changed = self._store.changed  # taken with no await since the last check
            if next_bookmark is not None and self._loop.time() >= next_bookmark:
                if not await self._bookmark_if_newer(writer, progress):
                    return
                next_bookmark = self._next_bookmark(deadline)
            if progress.position >= self._store.resource_version and not writer.cut_requested:
                wake_at = deadline if next_bookmark is None else min(deadline, next_bookmark)
                await _wait(changed, wake_at)
        await writer.finish()

    async def _hold(self, writer: _EventWriter) -> None:
        """A stalled stream: no byte and no end, whatever its deadline, until the server
        stops or the stream is cut; the client hanging up cancels the handler."""
        while not self._stopping() and not writer.cut_requested:
            await self._store.changed.wait()
        if writer.cut_requested:
            await writer.cut(b"")

    def _over(self, deadline: float) -> bool:
        return self._stopping() or self._loop.time() >= deadline

    async def _send_initial(
        self, writer: _EventWriter, initial: list[JsonDict] | None, rv: int, end_bookmark: bool
    ) -> bool:
        """The synthetic ADDEDs, then the initial-events-end BOOKMARK if asked for."""
        for obj in initial or ():
            if not await writer.send({"type": "ADDED", "object": obj}):
                return False
        return not end_bookmark or await writer.send(self._bookmark(rv, initial_end=True))

    async def _deliver(
        self, writer: _EventWriter, progress: _Progress, deadline: float
    ) -> _Delivered:
        """Send this watcher's events from the log until it is caught up (or must stop): up
        to the resource's last write once it is no longer served."""
        while progress.position < self._last_rv():
            event = self._store.event_at(progress.position + 1)
            if event is None:
                return _Delivered.FELL_BEHIND
            progress.position = event.rv
            converted = self._convert(event)
            if converted is not None:
                if not await writer.send(converted):
                    return _Delivered.ENDED
                progress.last_sent = event.rv
            if self._over(deadline):
                break
        return _Delivered.CAUGHT_UP

    def _last_rv(self) -> int:
        served_until = self._served_until()
        current = self._store.resource_version
        return current if served_until is None else min(current, served_until)

    async def _bookmark_if_newer(self, writer: _EventWriter, progress: _Progress) -> bool:
        """A BOOKMARK at the watcher's RV, only if newer than what it already sent."""
        if progress.position <= progress.last_sent:
            return True
        progress.last_sent = progress.position
        return await writer.send(self._bookmark(progress.position))

    def _convert(self, event: StoredEvent) -> JsonDict | None:
        """The event this watcher sees, if any (selector transitions,
        docs/kubernetes-semantics.md#watch)."""
        if event.resource != self._resource:
            return None
        if self._namespace is not None and not event.key.startswith(self._namespace + "/"):
            return None
        prev = event.prev
        now_matches = event.type != DELETED and self._selection.matches(event.obj)
        was_matching = prev is not None and self._selection.matches(prev)
        if now_matches:
            return {"type": "MODIFIED" if was_matching else "ADDED", "object": event.obj}
        if not was_matching or prev is None:
            return None
        if event.type == DELETED:
            return {"type": "DELETED", "object": event.obj}  # carries the deletion RV
        # Stopped matching: the previous content at the event's RV.
        return {"type": "DELETED", "object": with_resource_version(prev, event.rv)}

    def _bookmark(self, rv: int, *, initial_end: bool = False) -> JsonDict:
        metadata: JsonDict = {"resourceVersion": str(rv)}
        if initial_end:
            metadata["annotations"] = {INITIAL_EVENTS_END: "true"}
        resource = self._resource
        zero = (
            BOOKMARK_ZERO_FIELDS.get((resource.group, resource.kind), {})
            if resource.builtin
            else {}
        )
        obj = {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": metadata}
        return {"type": "BOOKMARK", "object": {**obj, **copy.deepcopy(zero)}}

    def _next_bookmark(self, deadline: float) -> float | None:
        """The cacher's ``nextBookmarkTime``: every interval, and 2 s before the deadline."""
        if not self._options.allow_watch_bookmarks:
            return None
        now = self._loop.time()
        heartbeat = now + self._config.bookmark_interval
        heartbeat = min(heartbeat, deadline - PRE_TIMEOUT_BOOKMARK)
        return None if heartbeat < now else heartbeat


class _Delivered(enum.Enum):
    CAUGHT_UP = "caught up"
    FELL_BEHIND = "fell behind compaction"
    ENDED = "stream ended by a fault"


@dataclass
class _Progress:
    """Where a watcher is in the event log, and the newest RV it has sent."""

    position: int
    last_sent: int


async def _wait(changed: asyncio.Event, wake_at: float) -> None:
    """Until the store changes or the loop clock reaches ``wake_at``."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout_at(wake_at):
            await changed.wait()
