"""What every sink shares: the mirror contract, written once (the backends keep their storage).

A sink mirrors one resource of one cluster: one row per object and one sync-state row
(``SyncState``) per (cluster, resource); several sinks (one per resource, and per cluster)
may share a database. This is the subset of a store that a reflector needs (client-go's
``ReflectorStore``, kube-rs ``reflector::store``):

* **Everything is scoped by cluster.** A database may hold a fleet: every row, sync state
  and fence belongs to a cluster (``cluster``, "default" unless named), a snapshot replaces
  exactly its (cluster, resource) rows, and epochs are compared only within a cluster (each
  is the revision of its own cluster's etcd, so a cluster with a younger etcd writes beside
  one with an older). A database written before clusters existed is migrated on open: its
  rows become the cluster of the sink (or store) that opens it first.
* ``on_list`` is the snapshot boundary, the only moment the sink learns that an object is
  *gone* without a DELETED event (it was deleted while no watch was running, or during a
  410 gap). So it replaces the resource's rows: every listed object is upserted, every row
  the snapshot does not contain is deleted, and the sync state moves to the snapshot's RV.
* **A write replaces its scope** (``Snapshot.shard``, ``Batch.shard``): a shard's snapshot
  deletes only the rows whose ``uid_hash`` (``uid_hash``) lies in its range, a shard's
  batch deletes a key only if its row does, and the sync state and the fence are the
  scope's (``fencing``: per (cluster, resource, shard), fenced by the overlapping scopes'
  epochs). None is the whole resource, as before shards
  (docs/architecture.md#shards-receivers-replace-by-scope).
* ``on_batch`` applies each key's last event (``split_batch``): upserts for ADDED and
  MODIFIED, deletes for DELETED (deleting a key the mirror does not hold is fine, the event
  may repeat one from before a relist), and moves the sync state to the batch's RV.
* Each call commits in one transaction, rolled back on any error or cancellation (a list
  error raised out of the snapshot's iteration included): readers, the sink's own and other
  processes, see the last committed state, never half a write.
* **No lock is held across a network wait.** A snapshot's pages arrive from the network (a
  LIST, or an HTTP sender), as slowly as the far side likes, or never. So ``on_list``
  first *stages* them, in a place private to this one snapshot that holds nothing another
  writer needs (no write lock, no row lock, no connection kept from a pool), and only then
  takes the lock, in one short transaction, to check the fence and *swap*: delete the rows
  the snapshot lacks, upsert the ones that changed, move the sync state (``Staging``). A
  writer paused, cut off or slow mid-snapshot delays only itself: another resource, another
  sender, a new leader all write meanwhile, and the paused one's swap is refused later if
  a newer leader wrote in between. Staging streams, a page staged while the next is read
  (``stage_pages``: memory is two pages, whatever the cluster's size), and what a writer
  that dies mid-staging leaves behind is nothing others wait for (each backend says how it
  is cleaned). A batch is in memory before it is written, so its transaction waits for
  nothing but the database either.
* **One bad object never stops a resource.** An object the sink cannot store as JSON as it
  is (bytes that are not UTF-8, nesting deeper than ``_jsonparse.MAX_DEPTH``: the rule every
  sink shares, ``_jsonparse.unreadable``; and what only one backend refuses, such as
  PostgreSQL's ``jsonb`` and U+0000) is *quarantined*: its row holds the JSON ``null`` as
  ``object``, its bytes as they came in ``raw``, and why in ``quarantined``; the write goes
  on, and the sink tells the snapshot or batch (``Snapshot.quarantine``) once it is
  committed, so that whoever called it reports the object. Refusing it instead would fail
  every generation for as long as the object exists, and anyone who may create a ConfigMap
  could stop a mirror that way (docs/architecture.md#quarantined-objects). ``objects`` and
  ``get`` read JSON rows only; ``quarantined`` reads the others, byte for byte.
* Every write is fenced: in its transaction, before anything is written, the sink applies
  ``listwatch.fencing.decide`` to its stamp and what the database recorded. A write of an
  epoch below the highest the database holds for its cluster (over all the cluster's
  resources, and the scopes that overlap the write's) is refused, an older generation of
  the same sender is refused, and a write already applied changes nothing. A snapshot is
  also checked before it is staged, without locking anything, so a refused one is refused
  at once rather than after its whole stream; the check at the swap is the one that
  counts.
* **Usage and caps.** Each sync-state row counts the resource's objects and the bytes of
  their JSON (``object_count``, ``object_bytes``), moved in each write's transaction, so a
  cluster's size is a sum over a few rows. A sink given ``limits`` (the HTTP receiver sets
  them per cluster) refuses, in that transaction, a write that would take the cluster past
  a cap and grows it (``enforce_limits``): ``LimitExceeded``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from listwatch import fencing
from listwatch._aio import OpenedOnEnter
from listwatch._jsonparse import unreadable
from listwatch._models import Batch, EventType, Item, JsonObject, KeyFunc, Snapshot, object_key
from listwatch._shard import Shard, fnv1a64
from listwatch._tolerant import uid_of
from listwatch.errors import LimitExceeded

Verdict = fencing.Verdict

_UPSERT_TYPES = frozenset({EventType.ADDED, EventType.MODIFIED})

DEFAULT_CLUSTER = "default"
"""The cluster of a sink or store that is not told one (a single cluster's mirror), and of
the rows of a database written before clusters existed, unless the opener names another."""
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True, slots=True)
class SyncState:
    """The sync-state row of one resource: how current its mirror is.

    ``resource_version`` is the point the mirror is current at (the snapshot's, then each
    batch's, bookmarks included); ``generation`` the Syncer generation that wrote last;
    ``synced_at`` the time (seconds since the epoch, as ``time.time()``) of the last write of
    any kind and ``listed_at`` that of the last full snapshot (``None`` if only batches were
    ever written); ``epoch`` the fencing token of the leader that wrote last (0 without
    leader election), and ``session``/``sequence`` the writing Syncer and its last batch
    (``listwatch.fencing``). SQLite's times are the writer's clock at the write, PostgreSQL's
    the database server's at the start of the write's transaction. ``object_count`` and
    ``object_bytes`` are how many objects the resource holds and the bytes of their JSON
    (what a cluster's caps count); ``cluster`` is the cluster the row belongs to.
    """

    resource: str
    resource_version: str
    generation: int
    synced_at: float
    listed_at: float | None
    epoch: int = 0
    session: str = ""
    sequence: int = 0
    object_count: int = 0
    object_bytes: int = 0
    cluster: str = DEFAULT_CLUSTER
    shard: str = ""
    """The scope whose state this is (``fencing.scope_text``): "" for the whole resource,
    else the range of a shard's writes, ``0xSTART-0xEND``."""

    @classmethod
    def from_row(cls, row: Iterable[Any] | None) -> SyncState | None:
        """The state of a row of the fields above, in order (``None`` for no row)."""
        return None if row is None else cls(*row)


@dataclass(frozen=True, slots=True)
class QuarantinedObject:
    """An object a sink keeps as its bytes, not as JSON (``Sink.quarantined``): the bytes as
    the sink was given them, and why it could not store them as JSON."""

    resource_version: str
    reason: str
    raw: bytes


def missing_extra(module: str, dependency: str, extra: str) -> ImportError:
    """The error of a sink module whose optional dependency is not installed."""
    return ImportError(
        f"{module} needs {dependency}, from listwatch's {extra!r} extra "
        f"(python -m pip install '.[{extra}]' in a clone of listwatch)"
    )


def check_resource(resource: str) -> str:
    if not isinstance(resource, str) or not resource:
        raise ValueError("resource must be a non-empty string, such as 'pods'")
    return resource


def check_cluster(cluster: str) -> str:
    """``cluster`` if it is a usable cluster name: 1 to 63 letters, digits, ``.``, ``_`` or
    ``-``, starting and ending with a letter or digit. It goes into every row, metric label
    and log line of the cluster, so it is kept to what an operator types and reads."""
    if not isinstance(cluster, str) or not _CLUSTER_NAME.fullmatch(cluster):
        raise ValueError(
            f"cluster must be 1 to 63 letters, digits, '.', '_' or '-', starting and ending "
            f"with a letter or digit, not {str(cluster)[:80]!r}"
        )
    return cluster


@dataclass(frozen=True, slots=True)
class Usage:
    """What a resource (or a whole cluster) holds: objects, and the bytes of their JSON."""

    objects: int = 0
    bytes: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.objects + other.objects, self.bytes + other.bytes)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.objects - other.objects, self.bytes - other.bytes)


@dataclass(frozen=True, slots=True)
class Limits:
    """A cluster's caps (``None``: no cap): how many objects, and how many bytes of their
    JSON, it may hold over all its resources."""

    max_objects: int | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        for name, value in (("max_objects", self.max_objects), ("max_bytes", self.max_bytes)):
            if value is not None and (isinstance(value, bool) or value < 0):
                raise ValueError(f"{name} must be zero or a positive whole number, not {value}")

    @property
    def any(self) -> bool:
        return self.max_objects is not None or self.max_bytes is not None

    def allowed(self, others: Usage, current: Usage) -> Usage:
        """What one resource may hold, given the rest of its cluster (``others``) and what it
        holds now (``current``, always allowed: a write that does not grow is never refused).
        A cap of ``None`` allows anything (-1)."""

        def one(cap: int | None, used: int, now: int) -> int:
            return -1 if cap is None else max(cap - used, now)

        return Usage(
            one(self.max_objects, others.objects, current.objects),
            one(self.max_bytes, others.bytes, current.bytes),
        )


def enforce_limits(
    limits: Limits | None,
    cluster: str,
    resource: str,
    *,
    others: Usage,
    before: Usage,
    after: Usage,
) -> None:
    """Raise ``LimitExceeded`` if a write taking ``resource`` from ``before`` to ``after``
    leaves the cluster (the rest of it: ``others``) over a cap, and grows it.

    Why only a growing write: one that shrinks a cluster already over a lowered cap moves it
    towards the cap, and refusing it would keep a staler, larger mirror. Checked in the
    write's transaction against what other writes committed, so two writes of one cluster's
    different resources in flight at once may together pass a cap by one write each."""
    if limits is None:
        return
    for name, cap, was, will in (
        ("max_objects", limits.max_objects, before.objects, after.objects),
        ("max_bytes", limits.max_bytes, before.bytes, after.bytes),
    ):
        total = (others.objects if name == "max_objects" else others.bytes) + will
        if cap is not None and total > cap and will > was:
            raise LimitExceeded(cluster, resource, name, cap, total)


def item_key(item: Item, key: KeyFunc | None) -> str:
    """The key to store ``item`` under: its own, or ``key`` (a custom key function) of it."""
    return item.key if key is None else key(item.object)


def item_json(resource: str, item: Item) -> bytes:
    """The object's JSON: the server's bytes, or the transformed object serialised."""
    try:
        return item.json
    except (TypeError, orjson.JSONEncodeError) as exc:  # a transform made it unserialisable
        raise TypeError(
            f"cannot store {resource} {item.key!r}: not serialisable as JSON: {exc}"
        ) from exc


def stored_json(
    resource: str, item: Item, key: KeyFunc | None
) -> tuple[str, str, bytes, str | None]:
    """What a sink stores for ``item``: its key, its RV, its JSON bytes, and why they cannot
    be kept as JSON (None: they can; the rule all sinks share, ``_jsonparse.unreadable``)."""
    data = item_json(resource, item)
    return item_key(item, key), item.resource_version, data, unreadable(data)


def decode_objects(rows: Iterable[Any]) -> dict[str, JsonObject]:
    """``(key, JSON text)`` rows as the objects by key."""
    return {key: orjson.loads(text) for key, text in rows}


_STATE_COLUMNS = tuple(field.name for field in dataclasses.fields(SyncState))
_STATE_KEY = ("cluster", "resource", "shard")


def record_state_sql(table: str, values: Sequence[str], *, snapshot: bool) -> str:
    """The statement that records a write in the resource's sync-state row.

    ``values`` are the dialect's expressions for ``SyncState``'s fields, in order (the
    sequence is 0 for a snapshot). A snapshot sets every field, its ``object_count`` and
    ``object_bytes`` what it holds. A batch gives those two as the *change* it made (added to
    the row's), leaves ``listed_at`` alone (it is not a snapshot), and a batch without an RV
    (there should be none) must not move the resume point back to "".
    """
    updates = {
        column: f"excluded.{column}" for column in _STATE_COLUMNS if column not in _STATE_KEY
    }
    if not snapshot:
        updates["resource_version"] = (
            "COALESCE(NULLIF(excluded.resource_version, ''), recorded.resource_version)"
        )
        del updates["listed_at"]
        for column in ("object_count", "object_bytes"):
            updates[column] = f"recorded.{column} + excluded.{column}"
    return (
        f"INSERT INTO {table} AS recorded ({', '.join(_STATE_COLUMNS)}) "
        f"VALUES ({', '.join(values)}) ON CONFLICT ({', '.join(_STATE_KEY)}) DO UPDATE SET "
        + ", ".join(f"{column} = {value}" for column, value in updates.items())
    )


_SIGNED_OFFSET = 1 << 63


def uid_hash(data: bytes | str) -> int:
    """The row's ``uid_hash``: FNV-1a 64 of the object's ``metadata.uid`` (``""`` when it
    has none, as the API server hashes a missing field), minus 2**63.

    Why shifted: both databases' integers are signed 64-bit, and ``h - 2**63`` keeps the
    hash's order, so that a shard ``[start, end)`` is one range of the index
    (``hash_bounds``). The uid is read as the client's shard filter reads it
    (``_tolerant.uid_of``), so that a row's range is the one its shard's snapshot replaces.
    """
    uid = uid_of(data)
    return fnv1a64(uid) - _SIGNED_OFFSET


NEWER_ACROSS_SHARDS = """
Why an upsert's conflict clause asks for ``uid_hash`` in the write's scope *or* a newer
resourceVersion (``sqlite._on_conflict``, ``postgres.upsert_changed``): a row outside the
write's scope under the same key is another object of that name (deleted and created again,
with a uid of another shard), written by that shard. A shard that lags (its watch behind,
its snapshot listed before the re-creation) would otherwise overwrite the newer object with
the older one, and then delete it at the older object's DELETED, which its range now holds:
the newer object gone until its shard lists again. So across shards the newer revision wins:
the write applies only if its resourceVersion is newer, compared as the fence compares them
(decimal, no leading zero, as integers); one that is not comparable applies, as any write
did before shards. Within its scope, and for an unsharded write (whose scope is everything),
an upsert applies as it always did.
"""


def hash_bounds(shard: Shard) -> tuple[int, int]:
    """The ``uid_hash`` values of ``shard``'s objects: ``BETWEEN`` these two, inclusive
    (an exclusive end of 2**64 would not fit a signed 64-bit integer)."""
    return shard.start - _SIGNED_OFFSET, shard.end - 1 - _SIGNED_OFFSET


def scope_bounds(shard: Shard | None) -> tuple[int, int]:
    """``hash_bounds`` of a write's scope; the whole hash space for the whole resource."""
    return hash_bounds(shard if shard is not None else Shard(0, 1 << 64))


def split_batch(batch: Batch) -> tuple[list[Item], list[str]]:
    """The batch's upserts (ADDED, MODIFIED) and the keys it deletes (DELETED).

    A batch holds each key's last event, so every key appears once and the order between
    keys does not matter. Bookmarks only move the RV and never reach a batch as events; an
    event of any other type is a bug of the sender, refused before anything is written.
    """
    upserts: list[Item] = []
    deletes: list[str] = []
    for event_key, event in batch.events.items():
        if event.type in _UPSERT_TYPES:
            upserts.append(event)
        elif event.type is EventType.DELETED:
            deletes.append(event_key)
        else:
            raise ValueError(f"a batch cannot hold a {event.type} event (key {event_key!r})")
    return upserts, deletes


def recorded_sequence(batch: Batch) -> int:
    """The sequence to record for a batch: its number, or 0 for a batch no Syncer sent."""
    return fencing.stamp_of(batch).sequence if batch.session else 0


async def drain_duplicate(snapshot: Snapshot) -> None:
    """Read a snapshot the fence found applied already, and change nothing.

    ``on_list`` must read a snapshot to its end (``Snapshot``): one left unread would make the
    Syncer take the write for a partial one and fail its generation."""
    async for _ in snapshot.pages():
        pass


class Staging(ABC):
    """One snapshot on its way in: its pages kept where only it sees them, then swapped in.

    Made by a sink's ``_staging`` once the fence (checked without a lock) lets the snapshot
    in; ``add`` takes each page as it arrives and may be slow, ``swap`` is the one short
    transaction that checks the fence again and replaces the resource's rows.
    """

    @abstractmethod
    async def add(self, page: Sequence[Item]) -> Mapping[str, str]:
        """Stage one page, without taking any lock another writer needs; return the
        objects it quarantines, by key: why."""

    @abstractmethod
    async def swap(self, snapshot: Snapshot) -> None:
        """In one transaction: the fence (``fencing.decide``, authoritative: a write that
        committed since the first check counts), then the resource's rows become the staged
        ones and the sync state the snapshot's. Changes nothing if the fence says the
        snapshot was applied already."""


async def stage_pages(snapshot: Snapshot, staging: Staging) -> dict[str, str]:
    """Stage every page of ``snapshot``, each while the next one is read; what they
    quarantine, by key.

    Why overlapped: reading a page (a LIST request, its parsing, the transform) is this
    process's work and staging one is mostly the database's, so one after the other each
    waits for the other; side by side, a snapshot takes about the longer of the two rather
    than their sum. One page is staged at a time, in order (a key staged again keeps the
    last), and memory is two pages: the one staging and the one being read. Whatever ends
    the snapshot early (a list error, a refused page, a cancellation) ends the staging of
    the other: the page in flight is cancelled and waited for, and its error, if it is
    the one that ended it, is raised as it is (never wrapped in a group)."""
    quarantined: dict[str, str] = {}
    adding: asyncio.Task[Mapping[str, str]] | None = None
    try:
        async for page in snapshot.pages():
            if adding is not None:
                quarantined.update(await adding)
            adding = asyncio.ensure_future(staging.add(page))
        if adding is not None:
            quarantined.update(await adding)
    finally:
        if adding is not None and not adding.done():
            adding.cancel()
            await asyncio.wait([adding])
        if adding is not None and not adding.cancelled():
            adding.exception()  # retrieved: the snapshot's own error is the one raised
    return quarantined


H = TypeVar("H")
"""What an open sink holds (its connections, or its pool)."""


class Sink(OpenedOnEnter, ABC, Generic[H]):
    """One resource's mirror: the receiver callbacks, the readers, and open/close.

    ``key`` must be the key function the Syncer uses (its ``key`` argument): snapshot items
    are keyed with it, batch events arrive keyed. Transactions go one at a time (each holds
    ``_lock``: a batch, a snapshot's swap), so ``close``, which takes it too, waits for one
    in progress; staging does not hold it, so several snapshots of the resource (from
    several HTTP senders) may stage at once, and a stalled one holds up nobody. Readers
    answer with the last committed state while a write is in progress, instead of queueing
    behind it (or seeing it half done).
    """

    def __init__(self, resource: str, key: KeyFunc, cluster: str = DEFAULT_CLUSTER) -> None:
        self._resource = check_resource(resource)
        self._cluster = check_cluster(cluster)
        self._key = key
        self._lock = asyncio.Lock()
        self._handle: H | None = None
        self.limits: Limits | None = None
        """The cluster's caps, checked by every write of this sink (``enforce_limits``);
        ``None``: none. The HTTP receiver sets them from its clients file."""

    def __repr__(self) -> str:
        state = "open" if self._handle is not None else "closed"
        return (
            f"{type(self).__name__}({self._location()}, cluster={self._cluster!r}, "
            f"resource={self._resource!r}, {state})"
        )

    @property
    def resource(self) -> str:
        return self._resource

    @property
    def cluster(self) -> str:
        return self._cluster

    @property
    def _custom_key(self) -> KeyFunc | None:
        """The key function to run on parsed objects, or None for the items' own keys (which
        need no parsing)."""
        return None if self._key is object_key else self._key

    @abstractmethod
    def _location(self) -> str:
        """Where the sink writes, for messages (never with a password)."""

    # -- lifecycle -------------------------------------------------------------------------

    @abstractmethod
    async def _connect(self) -> H:
        """Connect, and create or migrate the schema; what the open sink holds."""

    @abstractmethod
    async def _disconnect(self, handle: H) -> None:
        """Release what ``_connect`` returned."""

    async def open(self) -> None:
        """Connect, and create or migrate the schema if need be."""
        if self._handle is not None:
            raise RuntimeError(f"{self!r} is already open")
        self._handle = await self._connect()

    async def close(self) -> None:
        """Disconnect, after a write in progress finishes. Closing twice is fine, and a
        closed sink opens again onto the same data."""
        async with self._lock:
            handle, self._handle = self._handle, None
            if handle is not None:
                await self._disconnect(handle)

    def _opened(self) -> H:
        """What the open sink holds; an error that says how to open it if it is not."""
        if self._handle is None:
            raise RuntimeError(
                f"{self!r} is not open: use 'async with {type(self).__name__}(...)' or "
                "'await sink.open()'"
            )
        return self._handle

    async def on_list(self, snapshot: Snapshot) -> None:
        """Replace the resource's rows with ``snapshot``: staged as it streams in, then
        swapped in one short transaction (the contract above)."""
        async with self._staging(fencing.stamp_of(snapshot)) as staging:
            if staging is None:
                await drain_duplicate(snapshot)
                return
            quarantined = await stage_pages(snapshot, staging)
            await staging.swap(snapshot)
        for key, why in quarantined.items():
            snapshot.quarantine(key, why)

    @abstractmethod
    def _staging(self, stamp: fencing.Stamp) -> AbstractAsyncContextManager[Staging | None]:
        """A staging area for one snapshot of ``stamp``, discarded when the block ends
        (whether it was swapped in or not); ``None`` if the fence, checked without locking
        anything, finds the snapshot applied already. Raises ``StaleEpoch`` or
        ``StaleWrite`` if it refuses the snapshot."""

    @abstractmethod
    async def on_batch(self, batch: Batch) -> None:
        """Apply a batch of merged changes in one transaction, and advance the sync state."""

    @abstractmethod
    async def objects(self) -> dict[str, JsonObject]:
        """Every object of the resource held as JSON, by key (the last committed state);
        quarantined ones are read by ``quarantined``."""

    @abstractmethod
    async def get(self, key: str) -> JsonObject | None:
        """The object stored under ``key``, or ``None`` (also for a quarantined one)."""

    @abstractmethod
    async def quarantined(self) -> dict[str, QuarantinedObject]:
        """Every object of the resource kept as its bytes, not as JSON, by key."""

    @abstractmethod
    async def count(self) -> int:
        """How many objects of the resource the mirror holds (quarantined ones included)."""

    @abstractmethod
    async def sync_state(self, shard: Shard | None = None) -> SyncState | None:
        """The sync state of the resource's scope ``shard`` (None: of the writes of the whole
        resource), or ``None`` before its first write."""

    @abstractmethod
    async def cluster_usage(self) -> Mapping[str, Usage]:
        """What each resource of the sink's cluster holds (its sync-state rows), read
        without a lock: the last committed state."""


S = TypeVar("S", bound=Sink[Any])


class SinkStore(OpenedOnEnter, ABC, Generic[S]):
    """One database holding several resources of several clusters: a sink per (cluster,
    resource), opened on first use (``listwatch.Store``: the HTTP sync server's and the
    CLI's), all closed by ``close``.

    ``legacy_cluster`` is the cluster that the rows of a database written before clusters
    existed become, when this store is the first to open it (``_prepare``, before any sink).
    """

    def __init__(self, *, legacy_cluster: str = DEFAULT_CLUSTER) -> None:
        self._sinks: dict[tuple[str, str], S] = {}
        self._lock = asyncio.Lock()
        self._legacy_cluster = check_cluster(legacy_cluster)
        self._prepared = False

    @abstractmethod
    def _new_sink(self, resource: str, cluster: str) -> S:
        """A sink of ``resource`` of ``cluster`` in this store's database, not yet open."""

    async def _prepare(self) -> None:
        """Create or migrate the database's schema, once, before the first sink opens
        (the rows of an older schema become ``legacy_cluster``'s)."""

    async def _release(self) -> None:
        """Release what the sinks shared, once they are closed (nothing, unless overridden)."""

    async def sink(self, resource: str, *, cluster: str = DEFAULT_CLUSTER) -> S:
        async with self._lock:
            sink = self._sinks.get((cluster, resource))
            if sink is None:
                if not self._prepared:
                    await self._prepare()
                    self._prepared = True
                sink = self._new_sink(resource, cluster)
                await sink.open()
                self._sinks[cluster, resource] = sink
            return sink

    async def close(self) -> None:
        async with self._lock:
            sinks, self._sinks = self._sinks, {}
        for sink in sinks.values():
            await sink.close()
        await self._release()
