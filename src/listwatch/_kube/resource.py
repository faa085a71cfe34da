"""LIST and WATCH of one resource over a ``kubernetes_asyncio`` ``ApiClient``, as raw JSON.

Requests go through ``listwatch._kube.http`` (the user's ``ApiClient``, the raw ``aiohttp``
response, the one mapping of failures to ``listwatch.errors``); this module turns the bytes
into pages and events itself, with msgspec and orjson, because building kubernetes_asyncio's
models costs ~40x the parse. A LIST body is capped at ``max_list_bytes``, a watch event at
``max_event_bytes``; a LIST page's ``limit`` is cut to keep the page within ``PAGE_BYTES``
(``PageLimit``).

A watch is presumed dead in two ways, and never merely for being quiet (a quiet resource's
watch carries no byte for minutes: docs/kubernetes-semantics.md#bookmarks): TCP keepalive
finds a peer that vanished (``http.keep_alive``), and a watch still open and silent
``WATCH_END_GRACE`` s past the ``timeoutSeconds`` it asked for finds a peer that is alive
at TCP level but stuck, since kube-apiserver ends every watch at that deadline
(docs/kubernetes-semantics.md#watch).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import AsyncGenerator
from contextlib import aclosing
from types import TracebackType
from typing import TYPE_CHECKING

import aiohttp
import msgspec
import orjson

from listwatch import _tolerant as tolerant
from listwatch._framing import LineFramer, LineTooLong
from listwatch._kube import http
from listwatch._kube.sharding import ShardFilter, echoed_selector
from listwatch._models import PAGE_BYTES, Event, EventType, Item, Page
from listwatch._shard import Shard
from listwatch._types import ListOptions, WatchOptions
from listwatch.errors import (
    ConnectionLost,
    EventTooLarge,
    ListWatchError,
    MalformedEvent,
    ResponseTooLarge,
    WatchIdle,
    api_error_from_status,
)

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

logger = logging.getLogger("listwatch")

MAX_EVENT_BYTES = 16 * 1024 * 1024
"""The default hard cap of one watch event (one object): etcd stores at most ~1.5 MiB and
kube-apiserver takes write bodies of at most 3 MiB (docs/kubernetes-semantics.md#size-limits),
but an object's JSON may be larger than its stored protobuf and an aggregated API stores
nothing in etcd; a larger line is refused (``EventTooLarge``) before it is whole."""

MAX_LIST_BYTES = 32 * 1024 * 1024
"""The default hard cap of one LIST response, as inflated (``ResponseTooLarge``). Pages aim
at ``PAGE_BYTES`` (``PageLimit``); this allows four times that for a page whose objects are
bigger than the last ones, and a page of one object up to ``MAX_EVENT_BYTES``. A receiver
may hold a page about three times over (the bytes, its rows or their encoding), which keeps
a 256 MiB agent with ~85 MiB of interpreter and libraries within its limit. A larger page
is asked for again one object at a time; a single object past it fails the list."""

_CONNECT_TIMEOUT = 30.0
_LIST_READ_TIMEOUT = 60.0

WATCH_END_GRACE = 5.0
"""How long past its deadline (``timeoutSeconds`` after its response began) a watch may stay
open and silent before it is presumed dead (``WatchIdle``: resumed from its RV at once).
kube-apiserver ends a watch at that deadline with the final chunk; the grace is for that
chunk to cross a slow network. A watch that keeps sending past its deadline is alive (a
server that does not honour ``timeoutSeconds``): each silence may then last this long."""

_SERVER_WATCH_TIMEOUT = 3600.0
"""The latest a watch without ``timeoutSeconds`` ends: kube-apiserver picks a random time
in [1, 2) x ``--min-request-timeout`` (30 min; docs/kubernetes-semantics.md#watch)."""
_METADATA_LIST_ACCEPT = (
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
)
_METADATA_WATCH_ACCEPT = (
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
)
_EVENT_TYPES = {member.value: member for member in EventType}
_NAME_IN_HEAD = re.compile(rb'"metadata"\s*:\s*\{.*?"name"\s*:\s*"([^"\\]{1,253})"', re.DOTALL)
_NAMESPACE_IN_HEAD = re.compile(rb'"namespace"\s*:\s*"([^"\\]{1,63})"')


def resource_path(resource: str, *, group: str | None, version: str, namespace: str | None) -> str:
    """The collection path: ``/api/v1/...`` for the core group, ``/apis/G/V/...`` otherwise."""
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    return f"{base}/namespaces/{namespace}/{resource}" if namespace else f"{base}/{resource}"


class _ListMeta(msgspec.Struct):
    resourceVersion: str | None = None
    continue_: str | None = msgspec.field(default=None, name="continue")


class _ListBody(msgspec.Struct):
    """A LIST response: the list's own fields, and each item as its raw JSON."""

    kind: str | None = None
    apiVersion: str | None = None
    metadata: _ListMeta | None = None
    items: list[msgspec.Raw] | None = None


class _Metadata(msgspec.Struct):
    name: str | None = None
    namespace: str | None = None
    resourceVersion: str | None = None


class _ItemHead(msgspec.Struct):
    """What a list item must tell before it is parsed: its key, RV, and type fields."""

    kind: str | None = None
    apiVersion: str | None = None
    metadata: _Metadata | None = None


_LIST_BODY = msgspec.json.Decoder(_ListBody)
_ITEM_HEAD = msgspec.json.Decoder(_ItemHead)


def _type_prefix(kind: str | None, api_version: str | None) -> bytes:
    """The JSON members that open an item lacking ``kind``/``apiVersion``, with its brace."""
    members = []
    if kind is not None:
        members.append(b'"kind":' + orjson.dumps(kind))
    if api_version is not None:
        members.append(b'"apiVersion":' + orjson.dumps(api_version))
    return b"{" + b",".join(members) + b","


def page_from_list_body(body: bytes | bytearray | memoryview, *, what: str = "LIST") -> Page:
    """A LIST response as a ``Page`` of raw items, each with ``kind``/``apiVersion``.

    Nothing is parsed into dicts: msgspec cuts the body into one raw JSON span per item
    and reads each item's metadata (key and RV), skipping everything else. Built-in lists
    omit ``kind``/``apiVersion`` on items (kubernetes/kubernetes#3030) while watch objects
    carry them; the item's JSON gets them spliced in front, so a snapshot item and a watch
    object look alike, and an item's bytes are otherwise exactly what the server sent.
    """
    decoded: _ListBody | tolerant.ListBody | None
    try:
        decoded = _LIST_BODY.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:  # an item msgspec cannot skip
        decoded = tolerant.list_body(bytes(body))
        if decoded is None:
            raise MalformedEvent(f"{what} response is not a list: {exc}") from None
    metadata = decoded.metadata
    rv = metadata.resourceVersion if metadata is not None else None
    if not rv:
        raise MalformedEvent(f"{what} response has no metadata.resourceVersion")
    list_kind = decoded.kind
    kind = (
        list_kind[:-4] if list_kind and list_kind.endswith("List") and len(list_kind) > 4 else None
    )
    api_version = decoded.apiVersion
    prefixes: dict[tuple[bool, bool], bytes] = {}
    items: list[Item] = []
    for raw in decoded.items or ():
        head: _ItemHead | tolerant.ObjectHead | None
        try:
            head = _ITEM_HEAD.decode(raw)
        except (msgspec.DecodeError, RecursionError) as exc:
            head = tolerant.item_head(raw)
            if head is None:
                raise MalformedEvent(
                    f"{what} response has an item that is not an object: {exc}"
                ) from None
        meta = head.metadata
        if meta is None or not meta.name:
            raise MalformedEvent(f"{what} response has an item without metadata.name")
        key = f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name
        missing = (
            head.kind is None and kind is not None,
            head.apiVersion is None and api_version is not None,
        )
        prefix = b""
        if missing[0] or missing[1]:
            prefix = prefixes.get(missing, b"")
            if not prefix:
                prefix = prefixes[missing] = _type_prefix(
                    kind if missing[0] else None, api_version if missing[1] else None
                )
        items.append(Item(key, meta.resourceVersion or "", raw=memoryview(raw), prefix=prefix))
    token = metadata.continue_ if metadata is not None else None
    return Page(items, rv, token or None)


class _WatchMetadata(msgspec.Struct, gc=False):
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    """Read in the same pass, so that a sharded watch (``_kube.sharding``) need not read
    the line again for it: ``Event.uid``."""
    resourceVersion: str | None = None


class _ObjectHead(msgspec.Struct, gc=False):
    """The only part of a watched object the loop and the merger need.

    ``gc=False`` (here and below): these hold strings only, so they can never be part of a
    cycle, and one of each per watch event is then not counted towards the collector's
    next pass.
    """

    metadata: _WatchMetadata | None = None


class _Envelope(msgspec.Struct):
    type: str
    object: msgspec.Raw


class _WireEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """An event in the API server's own layout: ``{"type":"…","object":{…}}``, nothing else."""

    type: str
    object: _ObjectHead


class _BookmarkMetadata(msgspec.Struct):
    annotations: dict[str, str] | None = None


class _BookmarkObject(msgspec.Struct):
    metadata: _BookmarkMetadata | None = None


INITIAL_EVENTS_END = "k8s.io/initial-events-end"
"""The annotation of the bookmark that ends a streaming list's initial events (KEP-3157)."""

_ENVELOPE = msgspec.json.Decoder(_Envelope)
_BOOKMARK = msgspec.json.Decoder(_BookmarkObject)
_HEAD = msgspec.json.Decoder(_ObjectHead)
_WIRE = msgspec.json.Decoder(_WireEvent)
_TYPE_PREFIX = b'{"type":"'
_OBJECT_FIELD = b'","object":'
_TYPE_PREFIX_LEN = len(_TYPE_PREFIX)
_OBJECT_FIELD_LEN = len(_OBJECT_FIELD)


_STR = rb'"([^"\\\x00-\x1f]*)"'
"""A JSON string without escapes or control characters: its bytes are its value (once they
are checked to be UTF-8), so nothing is left to interpret."""
_SKIPPED_STR = rb'"[^"\\\x00-\x1f]*"'
_SERVER_ENVELOPE = re.compile(
    b"".join(
        [
            rb'\{"type":"(ADDED|MODIFIED|DELETED)","object":\{',
            rb'(?:"kind":%s,)?(?:"apiVersion":%s,)?' % (_SKIPPED_STR, _SKIPPED_STR),
            rb'"metadata":\{"name":%s(?:,"generateName":%s)?' % (_STR, _SKIPPED_STR),
            rb'(?:,"namespace":%s)?(?:,"selfLink":%s)?' % (_STR, _SKIPPED_STR),
            rb'(?:,"uid":%s)?,"resourceVersion":%s' % (_STR, _STR),
            rb'(?:\}|,"(?:generation|creationTimestamp|deletionTimestamp|',
            rb"deletionGracePeriodSeconds|labels|annotations|ownerReferences|finalizers|clusterName|",
            rb'managedFields)":)',
        ]
    )
)
"""The head of a change event as kube-apiserver writes a built-in object: the envelope,
then ``kind``, ``apiVersion`` and ``metadata`` first, and metadata's members in the order
of the Go struct (``ObjectMeta``: name, generateName, namespace, selfLink, uid,
resourceVersion, then generation, creationTimestamp, ...; docs/kubernetes-semantics.md#wire-order).
The member after resourceVersion must be one that follows it in that order (or the end of
metadata): only then is the head known to come from that order, with no namespace or uid
further on. Custom resources (sorted keys: managedFields before name), other spacing or
order, escapes, and anything else take the full decoders."""

_CHANGE_TYPES = {
    member.value: member for member in (EventType.ADDED, EventType.MODIFIED, EventType.DELETED)
}
_HEAD_TYPES = {
    member.value.encode(): (member, _TYPE_PREFIX_LEN + len(member.value) + _OBJECT_FIELD_LEN)
    for member in _CHANGE_TYPES.values()
}
"""A head's type as the regular expression gives it (bytes), and where its object starts:
a dict lookup where a decode, a lookup and a sum were (once per watch line)."""


class ReadHabit:
    """How a resource's receiver reads its events' objects: as bytes, or parsed.

    Keying a line from its head (``_SERVER_ENVELOPE``) and reading the rest with the
    object pays where the object is parsed anyway (``object``, ``parse()``: orjson reads
    every byte once, not msgspec and then orjson) and where the merger drops most events
    unread. A receiver that takes ``json`` needs every byte read as JSON all the same,
    and the head is then work on top of msgspec's pass: once the last object read was read
    as bytes, lines take msgspec's one pass again. Every event reports how it is read, so
    a receiver that changes its habit is followed at its next read. One per resource,
    across its watches.
    """

    __slots__ = ("as_bytes", "on_full_read", "on_head_read")

    def __init__(self) -> None:
        self.as_bytes = False
        # Bound once: an attribute lookup of a method builds a new object each time, one
        # per event on the hot path (and one more for the collector to count).
        self.on_head_read = self.head_read
        self.on_full_read = self.full_read

    def head_read(self, event: Event, obj: object) -> None:
        self.as_bytes = obj is None
        _check_read(event, obj)

    def full_read(self, event: Event, obj: object) -> None:
        self.as_bytes = obj is None


def decode_event(line: bytes, habit: ReadHabit | None = None) -> Event:
    """One watch line as an ``Event``; an ERROR event is raised as its ``ApiError``.

    The object stays JSON bytes until someone reads it; most events of a busy key are
    replaced in the merger before that. A line that opens in the server's own layout
    (``_SERVER_ENVELOPE``) is keyed from that head alone, one regular-expression match over
    its first few hundred bytes, and the rest of it is not read here: it is checked when
    the object is (``_check_read``), by the parse a receiver makes anyway (``object``,
    ``parse()``) or by the full decoder (``json``). Any other line, and every line of a
    receiver that reads bytes (``habit``), takes the full decoder at once (msgspec reads
    the envelope and the object's metadata and checks that the whole line is JSON), which
    also words the errors.
    """
    if habit is None or not habit.as_bytes:
        head = _SERVER_ENVELOPE.match(line)
        if head is not None and line.endswith(b"}}"):
            type_name, name, namespace, uid, rv = head.groups()
            event_type, start = _HEAD_TYPES[type_name]
            try:
                key = f"{namespace.decode()}/{name.decode()}" if namespace else name.decode()
                event = Event(
                    event_type,
                    None,
                    key,
                    rv.decode(),
                    raw=memoryview(line)[start:-1],
                    uid=uid.decode() if uid else "",
                    _check=_check_read if habit is None else habit.on_head_read,
                )
            except UnicodeDecodeError:
                pass  # the full decoder reads (or refuses) a name that is not UTF-8
            else:
                if name:
                    return event
    event = decode_full(line)
    if habit is not None:
        event._check = habit.on_full_read  # the hook of the event just built
    return event


def decode_full(line: bytes) -> Event:
    """One watch line as an ``Event``, every byte of it read as JSON by msgspec first.

    For a change event in exactly the server's layout one msgspec pass reads type and
    metadata, and the object's bytes are cut from the line by position. Anything else (a
    BOOKMARK, an ERROR, other field order, spaces, extra fields, a bad line) takes the
    general two-pass path, which also words the errors.
    """
    try:
        wire: _WireEvent | None = _WIRE.decode(line)
    except (msgspec.DecodeError, RecursionError):
        wire = None
    if wire is not None:
        event_type = _CHANGE_TYPES.get(wire.type)
        metadata = wire.object.metadata
        if event_type is not None and metadata is not None and metadata.name:
            start = _TYPE_PREFIX_LEN + len(wire.type)
            if (
                line.startswith(_TYPE_PREFIX)
                and line.startswith(_OBJECT_FIELD, start)
                and line.endswith(b"}")
            ):
                namespace = metadata.namespace
                return Event(
                    event_type,
                    None,
                    f"{namespace}/{metadata.name}" if namespace else metadata.name,
                    metadata.resourceVersion or "",
                    raw=memoryview(line)[start + _OBJECT_FIELD_LEN : -1],
                    uid=metadata.uid or "",
                )
    return _decode_general(line)


def _check_read(event: Event, obj: object) -> None:
    """Check an event keyed from its head (``decode_event``) once its object is read.

    ``obj`` is the object as the receiver's parse built it, or None when it was not
    parsed (``json``) or could not be (orjson refuses it). The event stands only if the
    full reading agrees on its type, key and resourceVersion; otherwise the line was not
    what its head said (a duplicate member, a body that is not JSON) and the stream is
    broken: ``MalformedEvent``, as the full decoder would have raised when it arrived. An
    object orjson cannot parse but the full decoder can key (nested too deep, not UTF-8)
    passes here, and its parse fails as any such object's does.
    """
    if isinstance(obj, dict):
        metadata = obj.get("metadata")
        if isinstance(metadata, dict):
            name, namespace = metadata.get("name"), metadata.get("namespace")
            rv = metadata.get("resourceVersion")
            if isinstance(name, str) and (namespace is None or isinstance(namespace, str)):
                key = f"{namespace}/{name}" if namespace else name
                if key == event.key and rv == event.resource_version:
                    return
        mismatch, line = "its object", _line_of(event)
    else:
        line = _line_of(event)
        full = decode_full(line)  # raises what the line's arrival would have raised
        if (full.type, full.key, full.resource_version) == (
            event.type,
            event.key,
            event.resource_version,
        ) and full.nbytes == event.nbytes:  # both begin where the envelope's "object" does
            return
        mismatch = "the whole line"  # or it has its object elsewhere
    raise MalformedEvent(
        f"watch line of {len(line)} bytes is not a watch event: {mismatch} does not say "
        f"the type, key and resourceVersion its head does ({event.type} {event.key})"
    )


def _line_of(event: Event) -> bytes:
    """The watch line an event keyed from its head was cut from (its bytes are a view)."""
    raw = event._raw
    assert isinstance(raw, memoryview)
    line = raw.obj
    assert isinstance(line, bytes)
    return line


def decode_lines(
    lines: list[bytes], events: list[Event], habit: ReadHabit | None = None
) -> list[Event]:
    """Decode ``lines`` in order, appending each event to ``events`` (and returning it).

    A bad line or an ERROR event raises as :func:`decode_event` does, with ``events``
    holding everything before it: those were sent before the error and are delivered first.
    """
    append, decode = events.append, decode_event
    for line in lines:
        append(decode(line, habit))
    return events


def _decode_general(line: bytes) -> Event:
    try:
        envelope = _ENVELOPE.decode(line)
        if envelope.type == EventType.ERROR:
            status = orjson.loads(memoryview(envelope.object))
            raise api_error_from_status(
                status if isinstance(status, dict) else {}, request="watch ERROR event"
            )
        head = _HEAD.decode(envelope.object)
    except (msgspec.DecodeError, orjson.JSONDecodeError, RecursionError) as exc:
        event = tolerant.event(line)  # an object msgspec cannot read may still be keyed
        if event is not None:
            return event
        raise MalformedEvent(
            f"watch line of {len(line)} bytes is not a watch event: {exc}"
        ) from None
    return _event(envelope.type, head, memoryview(envelope.object), len(line))


def _event(type_name: str, head: _ObjectHead, raw: memoryview, size: int) -> Event:
    event_type = _EVENT_TYPES.get(type_name)
    if event_type is None or event_type is EventType.ERROR:
        raise MalformedEvent(f"watch line of {size} bytes has an unknown event type")
    metadata = head.metadata or _WatchMetadata()
    rv = metadata.resourceVersion or ""
    if event_type is EventType.BOOKMARK:
        # Only bookmarks have their annotations read: rare events, and a pod's annotations
        # would cost every ordinary event a dict.
        try:
            bookmark = _BOOKMARK.decode(raw)
        except msgspec.DecodeError as exc:
            raise MalformedEvent(f"BOOKMARK event of {size} bytes: {exc}") from None
        annotations = (bookmark.metadata.annotations if bookmark.metadata else None) or {}
        end = annotations.get(INITIAL_EVENTS_END) == "true"
        return Event(event_type, None, "", rv, raw=raw, initial_events_end=end)
    if not metadata.name:
        raise MalformedEvent(f"{event_type} event: object has no metadata.name")
    key = f"{metadata.namespace}/{metadata.name}" if metadata.namespace else metadata.name
    return Event(event_type, None, key, rv, raw=raw)


def _name_in(head: bytes) -> str:
    """Best-effort ``namespace/name`` of an object from the first bytes of its JSON."""
    name = _NAME_IN_HEAD.search(head)
    if name is None:
        return "an unnamed object"
    namespace = _NAMESPACE_IN_HEAD.search(head)
    parts = [namespace.group(1), name.group(1)] if namespace else [name.group(1)]
    return "/".join(part.decode("utf-8", "replace") for part in parts)


class WatchDecoder:
    """A watch response's bytes, a network chunk at a time, as events.

    Framing (the line cap) and decoding in one place, without I/O, so that chunk boundaries
    can be property-tested. :meth:`feed` appends the events a chunk completes to a list the
    caller owns; on an oversized line, a malformed one or an ERROR event it raises with that
    list holding every event before it, in order: those were sent before the error.
    """

    __slots__ = ("_framer", "_habit", "_max_event_bytes", "_what")

    def __init__(
        self, max_event_bytes: int, *, what: str = "watch", habit: ReadHabit | None = None
    ) -> None:
        self._framer = LineFramer(max_event_bytes)
        self._max_event_bytes = max_event_bytes
        self._what = what
        self._habit = habit

    def feed(self, chunk: bytes, events: list[Event]) -> list[Event]:
        """Decode the lines ``chunk`` completes into ``events`` (which is returned)."""
        try:
            lines = self._framer.feed(chunk)
        except LineTooLong as exc:
            decode_lines(exc.complete, events, self._habit)
            raise EventTooLarge(
                f"{self._what}: the event for {_name_in(exc.head)} is larger than "
                f"max_event_bytes={self._max_event_bytes} (at least {exc.size} bytes)"
            ) from None
        return decode_lines(lines, events, self._habit)

    def finish(self) -> None:
        """The response ended: raise ``ConnectionLost`` if it ended inside an event."""
        if self._framer.pending:
            raise ConnectionLost(
                f"{self._what} ended inside an event ({self._framer.pending} bytes)"
            )


class WatchStream(AsyncGenerator[Event, None]):
    """One watch response: an async generator of events that can also be read by the chunk.

    :meth:`event_lists` hands over each network chunk's events as one list. The watch loop
    reads it so, and the merger gets one list per chunk rather than one generator step, one
    ``await`` and one queue operation per event: on a busy watch those cost as much as the
    decoding. Iterating the stream itself gives the same events one by one, as the
    ``WatchFunc`` contract says (a streaming list reads its initial events so); the two may
    follow each other, as a streaming list's watch goes on: :meth:`event_lists` starts with
    what the event-by-event reader left of its last chunk.
    """

    __slots__ = ("_left", "_lists")

    def __init__(self, lists: AsyncGenerator[list[Event], None]) -> None:
        self._lists = lists
        self._left: deque[Event] = deque()

    async def __anext__(self) -> Event:
        left = self._left
        while not left:
            left.extend(await anext(self._lists))
        return left.popleft()

    async def asend(self, value: None) -> Event:
        return await self.__anext__()

    async def athrow(
        self,
        typ: type[BaseException] | BaseException,
        val: object = None,
        tb: TracebackType | None = None,
        /,
    ) -> Event:
        """Close the response, then raise the exception here (nothing inside can catch it)."""
        await self.aclose()
        if isinstance(typ, BaseException):
            raise typ
        raise val if isinstance(val, BaseException) else typ()

    async def aclose(self) -> None:
        self._left.clear()
        await self._lists.aclose()

    async def event_lists(self) -> AsyncGenerator[list[Event], None]:
        """The events, one list per network chunk, in order; each list holds at least one."""
        if self._left:
            left = list(self._left)
            self._left.clear()
            yield left
        async for events in self._lists:
            yield events


class PageLimit:
    """The ``limit`` of the next LIST page: as many objects as fit ``budget`` bytes.

    A page's ``limit`` is a count, and objects range from a 1 KB ConfigMap to the ~1.5 MiB
    etcd stores, so a fixed count is either wasteful or a page of hundreds of MiB. The
    bytes per object come from the pages read so far (of this resource, across
    generations): the next limit is ``budget`` over that, at most what the caller asked
    for and never below 1. Bigger objects shrink it at once; smaller ones let it grow back
    at most twice per page (the estimate at most halves), so a run of small objects does
    not open the way to a page of big ones. A page larger than the hard cap
    (``max_list_bytes``) is asked for again one object at a time (``too_large``).
    """

    __slots__ = ("_budget", "_per_object")

    def __init__(self, budget: int = PAGE_BYTES) -> None:
        if budget < 1:
            raise ValueError("the page budget must be at least one byte")
        self._budget = budget
        self._per_object: float | None = None  # bytes per object; None before any page

    def limit(self, asked: int | None) -> int:
        """The limit to send for a caller's ``asked`` (0 or None: none asked, none sent)."""
        if not asked or asked < 1:
            return 0
        if self._per_object is None:
            return asked
        return max(1, min(asked, int(self._budget // self._per_object)))

    def observed(self, body_bytes: int, objects: int) -> None:
        """A page of ``objects`` items in ``body_bytes`` was read."""
        if objects < 1:
            return  # an empty page (a selector matched none) says nothing of sizes
        per_object = body_bytes / objects
        previous = self._per_object
        self._per_object = per_object if previous is None else max(per_object, previous / 2)

    def too_large(self, cap: int) -> None:
        """A page passed the hard cap: as if one object were that large (limit 1)."""
        self._per_object = max(self._per_object or 0.0, float(cap))


class ResourceClient:
    """LIST pages and WATCH streams of one resource; the functions behind ``from_client``."""

    def __init__(
        self,
        api_client: ApiClient,
        resource: str,
        *,
        group: str | None,
        version: str,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        metadata_only: bool,
        max_event_bytes: int,
        max_list_bytes: int,
        shard: Shard | None = None,
    ) -> None:
        if max_event_bytes < 1 or max_list_bytes < 1:
            raise ValueError("max_event_bytes and max_list_bytes must be positive")
        self._api_client = api_client
        self._path = resource_path(resource, group=group, version=version, namespace=namespace)
        self._selectors: list[tuple[str, str]] = []
        if label_selector:
            self._selectors.append(("labelSelector", label_selector))
        if field_selector:
            self._selectors.append(("fieldSelector", field_selector))
        self.shard_filter = None if shard is None else ShardFilter(shard, self._path)
        if self.shard_filter is not None:
            self._selectors.append(("shardSelector", self.shard_filter.selector))
        self._max_event_bytes = max_event_bytes
        self._max_list_bytes = max_list_bytes
        self._page_limit = PageLimit()
        self._habit = ReadHabit()
        # client-go's metadata client asks for the PartialObjectMetadata form first and plain
        # JSON second: a server (or an aggregated API) that cannot convert answers with the
        # full objects rather than refusing (docs/kubernetes-semantics.md#metadata-only).
        self._list_accept = _METADATA_LIST_ACCEPT if metadata_only else http.JSON
        self._watch_accept = _METADATA_WATCH_ACCEPT if metadata_only else http.JSON
        self.description = self._path + (" (metadata only)" if metadata_only else "")
        if shard is not None:
            self.description += f" (shard {shard.name})"

    async def list_page(self, options: ListOptions) -> Page:
        """One page of at most ``options.limit`` objects, fewer when they are big
        (``PageLimit``); it may end before the collection does (its continue token says)."""
        limit = self._page_limit.limit(options.limit)
        try:
            return await self._list_page(options, limit)
        except ResponseTooLarge:
            if limit <= 1:
                raise  # one object over max_list_bytes: nothing smaller to ask for
        # Out of the except block: the first attempt is let go before the second is read.
        self._page_limit.too_large(self._max_list_bytes)
        logger.info(
            "list %s: a page of up to %d objects is larger than max_list_bytes=%d; "
            "asking for the same page again, one object at a time",
            self._path,
            limit,
            self._max_list_bytes,
        )
        return await self._list_page(options, self._page_limit.limit(options.limit))

    async def _list_page(self, options: ListOptions, limit: int) -> Page:
        query = list(self._selectors)
        if limit:
            query.append(("limit", str(limit)))
        if options.continue_token:
            query.append(("continue", options.continue_token))
        if options.resource_version:
            query.append(("resourceVersion", options.resource_version))
        body = await http.fetch(
            self._api_client,
            "GET",
            self._path,
            request=f"list {self._path}",
            query=query,
            accept=self._list_accept,
            limits=aiohttp.ClientTimeout(
                sock_connect=_CONNECT_TIMEOUT, sock_read=_LIST_READ_TIMEOUT
            ),
            cap=self._max_list_bytes,
            cap_name="max_list_bytes",
        )
        page = page_from_list_body(body, what=f"LIST {self._path}")
        self._page_limit.observed(len(body), len(page.items))
        if self.shard_filter is not None:
            return self.shard_filter.page(page, echoed_selector(body))
        return page

    def watch_events(self, options: WatchOptions) -> WatchStream:
        """A WATCH as a stream of events that can also be read a network chunk at a time."""
        return WatchStream(self._watch_event_lists(options))

    async def _watch_event_lists(self, options: WatchOptions) -> AsyncGenerator[list[Event], None]:
        query = [*self._selectors, ("watch", "true")]
        if options.resource_version:
            query.append(("resourceVersion", options.resource_version))
        if options.send_initial_events:
            query.append(("sendInitialEvents", "true"))
            query.append(("resourceVersionMatch", "NotOlderThan"))
        if options.allow_bookmarks:
            query.append(("allowWatchBookmarks", "true"))
        if options.timeout_seconds is not None:
            query.append(("timeoutSeconds", str(options.timeout_seconds)))
        request = f"watch {self._path}"
        response = await http.send(
            self._api_client,
            "GET",
            self._path,
            request=request,
            query=query,
            accept=self._watch_accept,
            limits=aiohttp.ClientTimeout(sock_connect=_CONNECT_TIMEOUT),
        )
        loop = asyncio.get_running_loop()
        timeout = options.timeout_seconds or _SERVER_WATCH_TIMEOUT
        silent_until = loop.time() + timeout + WATCH_END_GRACE
        decoder = WatchDecoder(self._max_event_bytes, what=request, habit=self._habit)
        shard_filter = self.shard_filter
        if shard_filter is not None:
            shard_filter.watch_started()
        try:
            http.keep_alive(response)
            async with aclosing(http.chunks(response, request=request)) as reading:
                while True:
                    try:
                        # Only the wait on the network is bounded, never the consumer's.
                        async with asyncio.timeout_at(
                            max(silent_until, loop.time() + WATCH_END_GRACE)
                        ):
                            chunk = await anext(reading, None)
                    except TimeoutError:
                        raise WatchIdle(
                            f"{request}: still open and silent {WATCH_END_GRACE:g} s past its "
                            f"timeoutSeconds ({timeout:g} s): the connection is presumed dead"
                        ) from None
                    if chunk is None:
                        break
                    events: list[Event] = []
                    try:
                        decoder.feed(chunk, events)
                    except ListWatchError:
                        if shard_filter is not None:
                            events = shard_filter.events(events)
                        if events:  # sent before the error: delivered before it is raised
                            yield events
                        raise
                    if shard_filter is not None:
                        events = shard_filter.events(events)
                    if events:
                        yield events
            decoder.finish()
        finally:
            response.close()
