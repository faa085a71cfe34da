"""The values that flow from the API server to a receiver: items, events, snapshots, batches.

Objects travel as the JSON bytes the API server sent. A receiver that forwards JSON (to a
database column, over HTTP) takes ``.json`` and never parses; one that reads fields takes
``.object``, parsed on first access. Parsing is where a mirror spends its time and memory
(a 7 KB pod is ~38 KB as dicts), so it happens only for objects a receiver actually reads,
and a batch or a snapshot keeps only the dict its receiver read last (``Item``).

A :class:`Snapshot` is a single-pass *stream* of items: the LIST pages (or the streaming
list's initial events) are fetched while the receiver consumes them, so a mirror of any
cluster holds one page at a time. Nothing here knows HTTP; a receiver imports only this
module.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from listwatch import _jsonparse as jsonparse
from listwatch._managedfields import strip_json, strip_managed_fields
from listwatch._shard import Shard
from listwatch.errors import ReceiverError

JsonObject = dict[str, Any]
"""A Kubernetes object as decoded from JSON."""

KeyFunc = Callable[[JsonObject], str]
"""Maps an object to the key the merger coalesces on."""

Transform = Callable[[JsonObject], JsonObject]
"""Rewrites an object before the receiver sees it (``listwatch.strip_managed_fields`` is one)."""


class EventType(enum.StrEnum):
    """The watch event types of the API server (``metav1.WatchEvent.type``)."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    BOOKMARK = "BOOKMARK"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class GroupVersionResource:
    """Which collection objects come from, as Kubernetes names it (``schema.GroupVersionResource``).

    The receiver learns it from every snapshot and batch. It matters most in metadata-only
    mode, where every object's ``kind`` is ``PartialObjectMetadata`` and nothing else says
    that these are pods.
    """

    group: str
    version: str
    resource: str

    @property
    def api_version(self) -> str:
        """``v1`` for the core group, ``group/version`` otherwise."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``resource.group`` as kubectl writes it: ``pods``, ``deployments.apps``."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    def __str__(self) -> str:
        return (
            f"{self.resource}.{self.version}.{self.group}"
            if self.group
            else (f"{self.resource}.{self.version}")
        )


def object_key(obj: Mapping[str, Any]) -> str:
    """``namespace/name`` for namespaced objects, ``name`` for cluster-scoped ones.

    The same key client-go's ``MetaNamespaceKeyFunc`` builds, so receivers can share keys
    with Go tooling.
    """
    metadata = obj.get("metadata") or {}
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("object has no metadata.name; cannot build its key")
    namespace = metadata.get("namespace")
    return f"{namespace}/{name}" if namespace else name


def resource_version_of(obj: Mapping[str, Any]) -> str:
    """The object's ``metadata.resourceVersion`` ("" when absent)."""
    metadata = obj.get("metadata") or {}
    rv = metadata.get("resourceVersion")
    return rv if isinstance(rv, str) else ""


RawJson = bytes | bytearray | memoryview
"""JSON text as the server sent it (often a view into a larger response buffer)."""


class _Slot:
    """The one parsed object a batch (or a snapshot) keeps: the last one its receiver read.

    A receiver that reads ``event.object`` for every event of a batch used to keep every
    dict alive until the batch was dropped, and CPython's cyclic collector walked all of
    them again at each pass it made meanwhile: on a busy watch most of ``object``'s time was
    the collector's, not the parser's (issue 22; docs/architecture.md#the-watch-hot-path).
    A snapshot's pages were the same on a smaller scale. With one slot per batch and per
    snapshot a dict lives as long as the receiver is using it (or holds it itself), and
    the batch's memory stays that of its bytes.

    ``current`` is the item and its dict as one tuple, replaced in one store: a receiver
    that reads from threads (a sink's writer thread) never sees one item's dict paired
    with another item.
    """

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current: tuple[Item, JsonObject] | None = None


class Item:
    """One object: its key, its resourceVersion, and its JSON, parsed only when read.

    ``json`` is the object's JSON text, as the server sent it (for a built-in list item,
    with the ``kind`` and ``apiVersion`` the server leaves out; kubernetes/kubernetes#3030).
    ``object`` is the parsed dict, built on first access. With a ``transform``, ``object``
    is the transformed dict and ``json`` its serialisation, so a receiver sees the same
    object either way.

    **The items of a snapshot read one by one (``async for item in snapshot``), and the
    events of a batch, keep one parsed object between them**, the *current* one: the last
    one whose ``object`` the receiver read. Reading ``item.object`` again while it is
    current returns the same dict (changes made to it are seen, ``json`` included); reading
    another item's ``object`` makes that one current, and this item lets go of its dict.
    Reading this item's ``object`` again then parses its bytes again (and runs a
    ``transform`` again): an equal dict, not the same one, without the changes made to the
    old one. A dict the receiver keeps itself
    (``rows.append(item.object)``, ``Snapshot.collect()``) stays alive and unchanged as
    long as the receiver keeps it. Why: a receiver that reads every object of a batch once
    would otherwise keep them all alive until the batch is dropped, and the cyclic
    collector walks them all at each of its passes; that cost more than the parsing
    (docs/architecture.md#the-watch-hot-path). ``parse()``, ``json`` and ``==`` leave the
    current object as it is. An item built from a dict (``Item.of``), one read through
    ``Snapshot.pages()`` (the receiver holds its page as a whole anyway, at most
    ``PAGE_BYTES``) and one outside a snapshot or batch (a ``WatchFunc``'s event) keep
    their object.
    """

    __slots__ = (
        "_object",
        "_prefix",
        "_raw",
        "_slot",
        "_transform",
        "key",
        "nbytes",
        "resource_version",
    )

    key: str
    resource_version: str
    nbytes: int
    """The bytes of the JSON the server sent for it, as the byte budgets count them
    (``PAGE_BYTES``, the merger's), kept once it is parsed; 0 for an item built from a
    parsed object, whose size is not known without serialising it. A plain attribute, not
    computed: the merger reads it for every watch event."""

    def __init__(
        self,
        key: str,
        resource_version: str,
        *,
        raw: RawJson | None = None,
        object: JsonObject | None = None,
        transform: Transform | None = None,
        prefix: bytes = b"",
    ) -> None:
        if (object is None) == (raw is None):
            raise ValueError(f"{type(self).__name__} needs exactly one of object and raw")
        self.key = key
        self.resource_version = resource_version
        self._object = object
        self._raw = raw
        self._transform = transform
        # Members spliced in front of the raw object's own: b'{"kind":"Pod",...,' replaces
        # its opening brace. Kept apart so that nothing is copied until someone asks.
        self._prefix = prefix
        self.nbytes = 0 if raw is None else (len(raw) + len(prefix) - 1 if prefix else len(raw))
        self._slot: _Slot | None = None

    @classmethod
    def of(cls, obj: JsonObject, key: KeyFunc = object_key) -> Item:
        """An item for an object already parsed (tests, custom sources)."""
        return cls(key(obj), resource_version_of(obj), object=obj)

    @property
    def object(self) -> JsonObject:
        """The object, parsed (and transformed) on first access, and kept: by an item of a
        snapshot or an event of a batch only while it is the current one, until the receiver
        reads another one's ``object`` (the rule in the class's docstring)."""
        obj = self._object
        if obj is not None:
            return obj
        slot = self._slot
        if slot is None:
            obj = self._parsed()
            self._object, self._raw, self._transform, self._prefix = obj, None, None, b""
            return obj
        current = slot.current
        if current is not None and current[0] is self:
            return current[1]
        obj = self._parsed()
        # The previous current object goes (unless its receiver holds it); this one's
        # bytes stay, so reading it again later parses them again.
        slot.current = (self, obj)
        return obj

    def parse(self) -> JsonObject:
        """The object, parsed (and transformed) anew on every call, and *not* kept.

        For a receiver that reads each object once and lets it go: a dict from ``parse`` is
        freed as soon as the receiver drops it, and reading it takes nothing from the
        batch's current object (``Item``). While ``object`` keeps a dict (or for an item
        built from a dict), ``parse`` returns that same dict.
        """
        # _kept(), written out: once per event on the hot path of a receiver that parses.
        obj = self._object
        if obj is None:
            slot = self._slot
            current = None if slot is None else slot.current
            if current is None or current[0] is not self:
                return self._parsed()
            obj = current[1]
        return obj

    def _kept(self) -> JsonObject | None:
        """The dict ``object`` would return without parsing, if there is one."""
        obj = self._object
        if obj is None:
            slot = self._slot
            current = None if slot is None else slot.current
            if current is not None and current[0] is self:
                obj = current[1]
        return obj

    def _parsed(self) -> JsonObject:
        raw = self._raw
        # orjson reads a view as it is: no copy of the bytes for an object without a prefix.
        text = raw if raw is not None and not self._prefix else self._server_json()
        try:
            obj: JsonObject = jsonparse.loads(text)
        except orjson.JSONDecodeError as exc:
            self._checked(None)
            raise ValueError(f"{self._what()}: bad JSON: {exc}") from None
        self._checked(obj)
        if not isinstance(obj, dict):
            raise ValueError(f"{self._what()}: not a JSON object")
        if self._transform is not None:
            obj = self._transform(obj)
        return obj

    def _checked(self, obj: builtins.object) -> None:
        """Hook: an ``Event`` keyed from its head checks its line when it is first read."""

    @property
    def json(self) -> bytes:
        """The object's JSON, without parsing it unless a transform must run
        (``strip_managed_fields`` need not: it cuts the server's bytes)."""
        obj = self._kept()
        if obj is None:
            self._checked(None)
            if self._transform is None:
                return self._server_json()
            if self._transform is strip_managed_fields:
                return strip_json(self._server_json())
            obj = self._parsed()  # not kept: reading the JSON is not reading the object
        return orjson.dumps(obj)

    @property
    def decoded(self) -> bool:
        """Whether ``object`` holds a parsed dict now (it would return it without parsing)."""
        return self._kept() is not None

    def _server_json(self) -> bytes:
        raw = self._raw
        assert raw is not None
        if self._prefix:
            return self._prefix + raw[1:]
        return raw if isinstance(raw, bytes) else bytes(raw)

    def _what(self) -> str:
        return f"object {self.key or '(bookmark)'}"

    def with_transform(self, transform: Transform) -> Item:
        """This item with ``transform`` applied to its object (when the object is parsed)."""
        obj = self._kept()
        if obj is not None:
            return Item(self.key, self.resource_version, object=transform(obj))
        return Item(
            self.key, self.resource_version, raw=self._raw, transform=transform, prefix=self._prefix
        )

    def __eq__(self, other: builtins.object) -> bool:
        if not isinstance(other, Item):
            return NotImplemented
        # parse(), not object: comparing takes nothing from a batch's current object.
        return (self.key, self.resource_version, self.parse()) == (
            other.key,
            other.resource_version,
            other.parse(),
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Item(key={self.key!r}, resource_version={self.resource_version!r})"


class Event(Item):
    """One change to one object, as the watch delivered it.

    ``resource_version`` is the RV of the change: for DELETED it is the deletion's RV, which
    the API server writes into the object's metadata. BOOKMARK events carry only it, and have
    an empty ``key``; ``initial_events_end`` marks the bookmark that ends a streaming list's
    initial events (``k8s.io/initial-events-end``).

    The watch reads only an event's envelope and metadata and keeps the object's JSON bytes;
    events that the merger drops for a newer one on the same key are never parsed at all.
    Treat an event as immutable.

    The events of a ``Batch`` keep one parsed object between them, the one the receiver
    read last, as a snapshot's items do (``Item``). An event built from a dict
    (``from_object``), one a custom key function read in the merger (parsed before the
    batch existed, and kept so that it is not parsed twice) and one outside a batch (a
    ``WatchFunc``'s) keep their object.
    """

    __slots__ = ("_check", "initial_events_end", "type", "uid")

    type: EventType
    initial_events_end: bool
    uid: str
    """The object's ``metadata.uid`` where the watch read it with the key (from the line's
    head, or in msgspec's one pass over a change event in the server's layout), else "":
    unknown, not absent. For the
    client-side filter by uid (``listwatch._shard``) without a parse; read
    ``object["metadata"]["uid"]`` when it is ""."""

    def __init__(
        self,
        type: EventType,
        object: JsonObject | None = None,
        key: str = "",
        resource_version: str = "",
        *,
        raw: RawJson | None = None,
        transform: Transform | None = None,
        initial_events_end: bool = False,
        uid: str = "",
        _check: Callable[[Event, builtins.object], None] | None = None,
    ) -> None:
        # Item.__init__'s work, written out: one event per watch line is built on the hot
        # path, and the super() call with keywords made it 4x slower (measured 2.4 us
        # against 0.55 us per event; benchmarks/results/issue13).
        if (object is None) == (raw is None):
            raise ValueError("Event needs exactly one of object and raw")
        self.key = key
        self.resource_version = resource_version
        self._object = object
        self._raw = raw
        self._transform = transform
        self._prefix = b""
        self.nbytes = 0 if raw is None else len(raw)
        self._slot = None
        self.type = type
        self.initial_events_end = initial_events_end
        self.uid = uid
        # Set by a decoder that keyed the event from the head of its line and read no
        # further: called with the object once it is read (None: read as bytes, or not
        # JSON), to raise if the line is not what its head said. Once, then dropped. A
        # private parameter: a decoder's, not part of the public constructor.
        self._check = _check

    def _checked(self, obj: builtins.object) -> None:
        check = self._check
        if check is not None:
            check(self, obj)
            self._check = None

    @classmethod
    def from_object(cls, type: EventType, obj: JsonObject, key: KeyFunc = object_key) -> Event:
        """Build an event, deriving the key and RV from the object."""
        event_key = "" if type is EventType.BOOKMARK else key(obj)
        return cls(type, obj, event_key, resource_version_of(obj))

    def _what(self) -> str:
        return f"{self.type} event for {self.key or '(bookmark)'}"

    def transformed(self, transform: Transform) -> Event:
        """This event with ``transform`` applied to its object (when the object is parsed)."""
        obj = self._kept()
        if obj is not None:
            return Event(self.type, transform(obj), self.key, self.resource_version, uid=self.uid)
        return Event(
            self.type,
            None,
            self.key,
            self.resource_version,
            raw=self._raw,
            transform=transform,
            uid=self.uid,
            _check=self._check,
        )

    def __eq__(self, other: builtins.object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self.type == other.type and Item.__eq__(self, other) is True

    __hash__ = None

    def __repr__(self) -> str:
        rv = self.resource_version
        return f"Event({self.type.value}, key={self.key!r}, resource_version={rv!r})"


PAGE_BYTES = 8 * 1024 * 1024
"""The byte budget of one snapshot page: a LIST page's ``limit`` is cut to keep it about
this large (``listwatch._kube.resource``), and a streaming list's initial events are
grouped into pages of at most this many bytes (``listwatch._reflector``); a single object
larger than the budget still makes a page of its own. ``page_size`` counts objects, but
objects range from 1 KB to the ~1.5 MiB etcd stores (docs/kubernetes-semantics.md#size-limits):
500 pods of 7 KB are 3.5 MB, 500 ConfigMaps of 1.4 MiB would be 700 MiB. A receiver may hold
a page two or three times over (the bytes, its rows, their encoding) and the agent runs in
256 MiB, of which ~85 MiB is the interpreter and its libraries; 8 MiB keeps 500 ordinary
objects per page (up to 16 KB each) and five of the largest."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a LIST (or one run of a streaming list's initial events).

    Items already carry ``kind`` and ``apiVersion``. ``resource_version`` is the list's RV
    (every page of a paged LIST has the same one); a streaming list's pages have ``""``
    until the last one, which carries the RV of the bookmark that ended it.
    """

    items: Sequence[Item]
    resource_version: str
    continue_token: str | None = None

    @classmethod
    def of(
        cls,
        objects: Iterable[JsonObject],
        resource_version: str,
        continue_token: str | None = None,
        *,
        key: KeyFunc = object_key,
    ) -> Page:
        """A page of parsed objects (for a custom ``list_func``)."""
        return cls([Item.of(obj, key) for obj in objects], resource_version, continue_token)


PageStream = AsyncGenerator[Page, None]
"""Where a snapshot's items come from: pages, fetched as they are asked for."""


class Snapshot:
    """One generation's complete, consistent LIST, as a single-pass asynchronous stream.

    ``on_list`` receives it once per generation. Iterate it (``async for item in snapshot``)
    or iterate its pages (``async for page in snapshot.pages()``), once: the items are
    fetched from the API server while you consume them, so nothing holds the whole cluster.
    When the iteration ends, you have seen every object at ``resource_version``: replace
    your state with them (delete what was not there), commit, and return.

    Rules a receiver can rely on, and must follow:

    * A list error while you iterate (an expired continue token, a dropped connection, a
      5xx) is raised *out of your iteration*: let it propagate (after rolling back), and the
      Syncer lists again. Your previous state stays as it was.
    * ``on_list`` must read the stream to its end (or raise). Returning early would take
      a partial snapshot as complete and lose the deletions of what was not read, so the
      Syncer fails the generation with a ``ReceiverError`` instead (``ensure_read``; then
      it backs off, and lists again). An empty snapshot must be read too: iterating it is
      how you learn that everything is gone.
    * ``await snapshot.collect()`` gives all objects as one list: O(cluster) memory, the
      very thing streaming avoids, for receivers that need it anyway.

    ``resource_version`` is the RV the snapshot was listed at. For a paged LIST it is known
    when ``on_list`` is called (the first page carries it). A streaming list (WatchList)
    learns it only from the bookmark after the last item: there it is ``""`` until the
    iteration has ended. Record it after the iteration, when you commit, and both work.
    """

    def __init__(
        self,
        pages: PageStream,
        *,
        resource_version: str = "",
        generation: int = 0,
        epoch: int = 0,
        resource: GroupVersionResource | None = None,
        session: str = "",
        shard: Shard | None = None,
    ) -> None:
        self._pages = pages
        self._resource_version = resource_version
        self.generation = generation
        self.epoch = epoch
        self.resource = resource
        self.session = session
        """The sending Syncer's random id: generations are ordered within a session (see
        ``listwatch.fencing``); "" for snapshots no Syncer sent."""
        self.shard = shard
        """The shard this snapshot is the whole of (``listwatch._shard``): it replaces only
        the objects whose uid hashes into the shard's range. None: the whole collection."""
        self._started = False
        self._complete = False
        self._count = 0
        self.failure: BaseException | None = None
        """The list error raised out of the iteration, if one was (the Syncer reports it)."""
        self.quarantined: dict[str, str] = {}
        """What the receiver kept as bytes rather than as JSON, by key: why (``quarantine``)."""

    @classmethod
    def of(
        cls,
        items: Iterable[Item | JsonObject],
        resource_version: str,
        *,
        generation: int = 0,
        epoch: int = 0,
        resource: GroupVersionResource | None = None,
        session: str = "",
        page_size: int = 500,
        shard: Shard | None = None,
    ) -> Snapshot:
        """A snapshot of objects already in memory (tests, custom sources, replays)."""
        materialized = [i if isinstance(i, Item) else Item.of(i) for i in items]

        async def pages() -> PageStream:
            for start in range(0, len(materialized), page_size):
                yield Page(materialized[start : start + page_size], resource_version)

        return cls(
            pages(),
            resource_version=resource_version,
            generation=generation,
            epoch=epoch,
            resource=resource,
            session=session,
            shard=shard,
        )

    # -- what the receiver reads -----------------------------------------------------------

    @property
    def resource_version(self) -> str:
        """The snapshot's RV; for a streaming list, ``""`` until the iteration has ended."""
        return self._resource_version

    @property
    def complete(self) -> bool:
        """Whether the stream has been read to its end."""
        return self._complete

    @property
    def count(self) -> int:
        """How many items have been handed out so far (all of them once ``complete``)."""
        return self._count

    def __len__(self) -> int:
        if not self._complete:
            raise TypeError("a Snapshot's length is known only once it has been read to its end")
        return self._count

    def ensure_read(self, reader: str = "on_list") -> None:
        """Raise unless ``reader`` took the whole snapshot: the rule above, checked once
        ``reader`` has returned (by the Syncer, and by ``SyncServer`` of its store's sink).

        A list error raised out of the iteration is raised again, whatever the reader made
        of it (wrapped, swallowed): the stream failed, not the reader. Otherwise a stream
        not read to its end is a ``ReceiverError``.
        """
        if self.failure is not None:
            raise self.failure
        if not self._complete:
            raise ReceiverError(
                f"{reader} returned after reading {self._count} items, before the end of the "
                "snapshot: a receiver must read the whole stream (or raise), or it would take "
                "part of the cluster for all of it"
            )

    def quarantine(self, key: str, reason: str) -> None:
        """Say that the receiver keeps the object ``key`` as its bytes, not as JSON, and why
        (in words that quote nothing of it): an object it could not store as it is, kept
        rather than refused so that the rest of the resource goes on syncing
        (docs/architecture.md#quarantined-objects). Call it once the snapshot is committed;
        the Syncer reports each such object (a WARNING, a metric, ``/readyz``)."""
        self.quarantined[key] = reason

    def pages(self) -> AsyncIterator[Sequence[Item]]:
        """The items, a page at a time (a LIST page, or a run of initial events)."""
        self._start()
        return self._iterate_pages()

    def __aiter__(self) -> AsyncIterator[Item]:
        self._start()
        return self._iterate_items()

    async def collect(self) -> list[JsonObject]:
        """Every object, parsed, in one list. O(cluster) memory: use it only when you must."""
        return [item.object async for item in self]

    # -- the stream ------------------------------------------------------------------------

    def _start(self) -> None:
        if self._started:
            raise RuntimeError(
                "a Snapshot is a single-pass stream and has been iterated already; "
                "use collect() to keep the items"
            )
        self._started = True

    async def _iterate_pages(self) -> AsyncGenerator[Sequence[Item], None]:
        while True:
            try:
                page = await anext(self._pages)
            except StopAsyncIteration:
                self._complete = True
                return
            except Exception as exc:
                self.failure = exc
                raise
            if page.resource_version:
                self._resource_version = page.resource_version
            self._count += len(page.items)
            yield page.items

    async def _iterate_items(self) -> AsyncGenerator[Item, None]:
        # The items read one by one keep one parsed object between them (Item). Set as each
        # is handed out: a page is a Sequence the stream does not iterate on its own (a
        # custom one may be lazy), and pages() hands it over as it came.
        slot = _Slot()
        async for page in self._iterate_pages():
            for item in page:
                item._slot = slot
                yield item

    async def aclose(self) -> None:
        """Release the stream (its HTTP connection); the Syncer does this after ``on_list``."""
        await self._pages.aclose()

    def __repr__(self) -> str:
        state = f"{self._count} items" + (" (complete)" if self._complete else " so far")
        return (
            f"Snapshot(generation={self.generation}, epoch={self.epoch}, "
            f"resource_version={self._resource_version!r}, {state})"
        )


@dataclass(frozen=True, slots=True)
class Batch:
    """The merged changes since the previous batch: each key's last event.

    ``events`` is ordered by when each key's last event arrived. ``resource_version`` is the
    newest RV the watch reported (bookmarks included), the point to resume from. ``epoch``
    is the fencing token of the leader that sent it (0 without leader election);
    ``session`` the sending Syncer's id and ``sequence`` the batch's number in its
    generation (1, 2, ...), so a receiver can tell a replayed batch from a new one
    (``listwatch.fencing``).
    """

    events: Mapping[str, Event]
    resource_version: str
    generation: int = 0
    received: int = field(default=0, compare=False)
    """How many events (before merging) this batch stands for."""
    epoch: int = 0
    resource: GroupVersionResource | None = None
    session: str = ""
    sequence: int = 0
    shard: Shard | None = None
    """The shard whose changes these are (``Snapshot.shard``); None: the whole collection."""
    quarantined: dict[str, str] = field(default_factory=dict, compare=False)
    """What the receiver kept as bytes rather than as JSON, by key: why (``quarantine``)."""

    def __post_init__(self) -> None:
        # One slot for all the events: each keeps its parsed object only while it is the
        # one the receiver read last (Item).
        slot = _Slot()
        for event in self.events.values():
            event._slot = slot

    def __len__(self) -> int:
        return len(self.events)

    def quarantine(self, key: str, reason: str) -> None:
        """``Snapshot.quarantine``, for an object this batch writes; once it is committed."""
        self.quarantined[key] = reason
