"""The versioned object store: what etcd plus the watch cache are to kube-apiserver.

One global ``resourceVersion`` counter orders every write of every resource, as etcd's
revision does; each write is one event in a single log. Besides the current state, every
key keeps its version history, so a LIST can be answered at an exact past RV (continue
pages, ``resourceVersionMatch=Exact``) and a WATCH can start from any RV still in the log.

Compaction forgets history up to an RV, like etcd compaction: a LIST at an older RV then
fails with 410, and a WATCH from an older RV with "too old resource version". With
``history_limit`` the log keeps at most that many events, dropping the oldest on each
write, like the watch cache's bounded event window (docs/kubernetes-semantics.md#watch). Memory is
therefore bounded
by the live objects plus the history kept.

All mutations are synchronous: on one event loop a write is atomic, and a reader sees
either all or nothing of it. Watchers wait for :attr:`ObjectStore.changed` instead of
polling.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from listwatch.testing import _leases as leases
from listwatch.testing import _names as names
from listwatch.testing import _namespaces as namespaces
from listwatch.testing import _status as status
from listwatch.testing._resources import NAMESPACES, ResourceType
from listwatch.testing._signals import Signal

JsonDict = dict[str, Any]

#: Per-type decoding, defaulting and validation (the part of a registry strategy that
#: clients can observe): ``rule(new, old)`` with ``old`` None on create.
TYPE_RULES: dict[tuple[str, str], Callable[[JsonDict, JsonDict | None], JsonDict]] = {
    (leases.GROUP, leases.KIND): lambda new, old: leases.prepare(new, creating=old is None),
    ("", "Namespace"): namespaces.prepare,
}

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class Version:
    """One state of a key: the object written at ``rv``, or ``None`` once deleted there."""

    rv: int
    obj: JsonDict | None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One write, as the watch cache records it: the new and the previous state.

    For DELETED, ``obj`` is the last state with ``metadata.resourceVersion`` set to the
    deletion RV (docs/kubernetes-semantics.md#watch), and ``prev`` the state before the deletion.
    """

    rv: int
    resource: ResourceType
    key: str
    type: str
    obj: JsonDict
    prev: JsonDict | None


def object_key(namespace: str | None, name: str) -> str:
    """The key relative to the resource prefix, as etcd orders it: ``ns/name`` or ``name``.

    Lists come back in this order, and continue tokens point into it
    (docs/kubernetes-semantics.md#paging).
    """
    return f"{namespace}/{name}" if namespace else name


def copy_json(obj: Any) -> JsonDict:
    """A deep, JSON-only copy; refuses what the API server could not store."""
    try:
        copied = orjson.loads(orjson.dumps(obj))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise status.bad_request(f"the object is not valid JSON: {exc}") from exc
    if not isinstance(copied, dict):
        raise status.bad_request("the object must be a JSON object")
    return copied


def with_resource_version(obj: JsonDict, rv: int) -> JsonDict:
    """A shallow copy of ``obj`` whose ``metadata.resourceVersion`` is ``rv``."""
    return {**obj, "metadata": {**obj.get("metadata", {}), "resourceVersion": str(rv)}}


class _Collection:
    """The keys of one resource, kept sorted, each with its version chain (oldest first)."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.chains: dict[str, list[Version]] = {}

    def append(self, key: str, version: Version) -> None:
        chain = self.chains.get(key)
        if chain is None:
            bisect.insort(self.keys, key)
            self.chains[key] = [version]
        else:
            chain.append(version)

    def current(self, key: str) -> JsonDict | None:
        chain = self.chains.get(key)
        return chain[-1].obj if chain else None

    def at(self, key: str, rv: int) -> JsonDict | None:
        """The state of ``key`` at ``rv`` (``None``: absent then)."""
        chain = self.chains[key]
        index = bisect.bisect_right(chain, rv, key=lambda v: v.rv)
        return chain[index - 1].obj if index else None

    def forget_before(self, key: str, rv: int) -> None:
        """Drop the versions of ``key`` that the write at ``rv`` superseded (compaction)."""
        chain = self.chains.get(key)
        if chain is None:
            return
        index = bisect.bisect_left(chain, rv, key=lambda v: v.rv)
        del chain[:index]
        if chain and chain[0].rv == rv and chain[0].obj is None:
            del chain[0]  # a deletion at or before the compaction point leaves nothing
        if not chain:
            del self.chains[key]
            del self.keys[bisect.bisect_left(self.keys, key)]

    def range(self, start: str, prefix: str) -> Iterator[str]:
        """Keys ``>= start`` that begin with ``prefix``, in order."""
        index = bisect.bisect_left(self.keys, max(start, prefix))
        while index < len(self.keys):
            key = self.keys[index]
            if not key.startswith(prefix):
                return
            yield key
            index += 1


class ObjectStore:
    """Objects of every resource, one RV counter, one event log, etcd-like compaction."""

    def __init__(
        self,
        *,
        rng: random.Random,
        history_limit: int | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if history_limit is not None and history_limit < 1:
            raise ValueError("history_limit must be at least 1 (or None to keep all history)")
        self._rng = rng
        self._history_limit = history_limit
        self._collections: dict[ResourceType, _Collection] = {}
        self._events: dict[int, StoredEvent] = {}
        self._oldest_event_rv = 1
        self._rv = 0
        self._compacted_rv = 0
        self._watch_cache_rv = 0
        self._changes = Signal(on_change)
        self._observers: list[Callable[[StoredEvent], None]] = []
        self._pending: deque[StoredEvent] = deque()
        self._observing = False

    # ------------------------------------------------------------------ reading

    @property
    def resource_version(self) -> int:
        """The RV of the latest write (etcd's current revision)."""
        return self._rv

    @property
    def compacted_rv(self) -> int:
        """The oldest RV still readable: exact lists and watches need an RV >= this."""
        return self._compacted_rv

    @property
    def watchable_rv(self) -> int:
        """The oldest RV a watch may start from: the compaction point, or the RV the watch
        cache was last rebuilt at, whichever is newer (a watch from an older RV is "too old
        resource version"; docs/kubernetes-semantics.md#expired-resource-versions)."""
        return max(self._compacted_rv, self._watch_cache_rv)

    def rebuild_watch_cache(self) -> None:
        """Start the watch cache afresh at the current RV, as kube-apiserver's starts empty
        and fills from one LIST of etcd: events before it can no longer be watched from,
        while etcd (exact lists, continue tokens) still has them until compaction."""
        self._watch_cache_rv = self._rv

    @property
    def changed(self) -> asyncio.Event:
        """Set by the next write or :meth:`wake_all`; take it before checking the state."""
        return self._changes.event

    def add_observer(self, observer: Callable[[StoredEvent], None]) -> None:
        """Call ``observer`` with every committed write, in order, like a controller's
        informer; it may write in turn (its writes are observed after it returns)."""
        self._observers.append(observer)

    def wake_all(self) -> None:
        """Wake every waiter, e.g. so watches notice that the server is stopping."""
        self._changes.notify()

    async def wait_for_rv(self, rv: int, within: float) -> bool:
        """Wait until the store reaches ``rv``; False when ``within`` seconds pass first."""
        try:
            await self._changes.wait_until(lambda: self._rv >= rv, within)
        except TimeoutError:
            return False
        return True

    def get(self, resource: ResourceType, namespace: str | None, name: str) -> JsonDict | None:
        collection = self._collections.get(resource)
        if collection is None:
            return None
        return collection.current(object_key(self._scope(resource, namespace), name))

    def items(
        self,
        resource: ResourceType,
        namespace: str | None = None,
        *,
        at: int | None = None,
        start: str = "",
    ) -> Iterator[tuple[str, JsonDict]]:
        """``(key, object)`` of the objects that existed at RV ``at`` (default: now).

        In key order, from key ``start`` on, only in ``namespace`` when given. The caller
        must check that ``at`` is not compacted. Iterate without awaiting in between.
        """
        collection = self._collections.get(resource)
        if collection is None:
            return
        prefix = f"{namespace}/" if namespace and resource.namespaced else ""
        for key in collection.range(start, prefix):
            obj = collection.current(key) if at is None else collection.at(key, at)
            if obj is not None:
                yield key, obj

    def event_at(self, rv: int) -> StoredEvent | None:
        """The write at ``rv``; ``None`` when compacted away or not written yet."""
        return self._events.get(rv)

    # ------------------------------------------------------------------ writing

    def create(self, resource: ResourceType, obj: JsonDict) -> JsonDict:
        """Store a new object; it gets ``uid``, ``creationTimestamp`` and the next RV."""
        new = self._normalize(resource, obj, old=None)
        metadata = new["metadata"]
        if metadata.get("resourceVersion"):
            # etcd3 store.Create refuses this before anything else is written.
            raise status.internal_error(
                "resourceVersion should not be set on objects to be created"
            )
        self._assign_name(resource, metadata)
        invalid = names.name_errors(resource.kind, metadata["name"], metadata.get("generateName"))
        if invalid:
            raise status.invalid(resource.group, resource.kind, metadata["name"], invalid)
        namespace = metadata.get("namespace")
        self._admit_namespace(resource, namespace, metadata["name"])
        key = object_key(namespace, metadata["name"])
        if self._collection(resource).current(key) is not None:
            raise status.already_exists(resource.group, resource.plural, metadata["name"])
        metadata["uid"] = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        metadata["creationTimestamp"] = _now()
        for system_field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            metadata.pop(system_field, None)
        return self._write(resource, key, ADDED, new, None)

    def replace(self, resource: ResourceType, obj: JsonDict) -> JsonDict:
        """Update an existing object (``PUT``), honouring a ``resourceVersion`` precondition.

        An update that changes nothing is not written, as etcd3's ``GuaranteedUpdate``
        skips identical bytes: no new RV, no event. Removing the last finalizer of an
        object marked for deletion deletes it.
        """
        metadata = obj.get("metadata") or {}
        name = metadata.get("name") or ""
        namespace = metadata.get("namespace") if resource.namespaced else None
        key = object_key(namespace, name)
        current = self._collection(resource).current(key)
        if not name or current is None:
            raise status.object_not_found(resource.group, resource.plural, name)
        new = self._normalize(resource, obj, old=current)
        metadata = new["metadata"]
        old_metadata = current["metadata"]
        if not resource.unconditional_update and not metadata.get("resourceVersion"):
            raise _unconditional_update_refused(resource, name)
        self._check_preconditions(resource, metadata, old_metadata)
        _carry_system_fields(metadata, old_metadata)
        if new == current:
            return current
        if "deletionTimestamp" in metadata and not metadata.get("finalizers"):
            # The registry deletes the stored object instead of writing the update: one
            # DELETED event, carrying the stored state at the deletion RV.
            return self._remove(resource, key, current)
        return self._write(resource, key, MODIFIED, new, current)

    def update(self, resource: ResourceType, obj: JsonDict) -> tuple[JsonDict, bool]:
        """A PUT: ``(object, created)``. A missing object is created where the resource
        allows it (``AllowCreateOnUpdate``: leases), else 404 as :meth:`replace`."""
        metadata = obj.get("metadata") or {}
        if resource.create_on_update and metadata.get("name"):
            namespace = metadata.get("namespace") if resource.namespaced else None
            if self.get(resource, namespace, metadata["name"]) is None:
                fresh = {**obj, "metadata": {**metadata}}
                fresh["metadata"].pop("resourceVersion", None)  # storage ignores it on create
                return self.create(resource, fresh), True
        return self.replace(resource, obj), False

    def delete(
        self, resource: ResourceType, namespace: str | None, name: str
    ) -> tuple[JsonDict, bool]:
        """Delete an object: ``(final state, True)``, or ``(marked object, False)``.

        An object with finalizers is only marked (``deletionTimestamp``, a MODIFIED
        event); it goes when its last finalizer is removed (DOC "Resource deletion").
        """
        key = object_key(self._scope(resource, namespace), name)
        current = self._collection(resource).current(key)
        if current is None:
            raise status.object_not_found(resource.group, resource.plural, name)
        if resource == NAMESPACES and (current.get("spec") or {}).get("finalizers"):
            # The namespace registry only marks it: the namespace controller empties it,
            # then removes the "kubernetes" finalizer (namespaces.py).
            if namespaces.is_terminating(current):
                return current, False
            return self._write(
                resource, key, MODIFIED, namespaces.terminating(current), current
            ), False
        if current["metadata"].get("finalizers"):
            if "deletionTimestamp" in current["metadata"]:
                return current, False
            marked = copy_json(current)
            marked["metadata"]["deletionTimestamp"] = _now()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            return self._write(resource, key, MODIFIED, marked, current), False
        return self._remove(resource, key, current), True

    def finalize(
        self, resource: ResourceType, current: JsonDict, finalizers: list[str]
    ) -> JsonDict:
        """The ``/finalize`` subresource of a namespace: set ``spec.finalizers`` only."""
        metadata = current["metadata"]
        new = copy_json(current)
        new["spec"]["finalizers"] = finalizers
        return self._write(resource, object_key(None, metadata["name"]), MODIFIED, new, current)

    def compact(self, rv: int) -> None:
        """Forget history up to ``rv`` (etcd compaction). Lists and watches need RV >= it."""
        if rv > self._rv:
            raise ValueError(f"cannot compact to {rv}: the current resourceVersion is {self._rv}")
        while self._oldest_event_rv <= rv:
            self._forget_oldest_event()
        self._compacted_rv = max(self._compacted_rv, rv)

    # ------------------------------------------------------------------ internals

    def _collection(self, resource: ResourceType) -> _Collection:
        collection = self._collections.get(resource)
        if collection is None:
            collection = self._collections[resource] = _Collection()
        return collection

    @staticmethod
    def _scope(resource: ResourceType, namespace: str | None) -> str | None:
        return namespace if resource.namespaced else None

    def _normalize(
        self, resource: ResourceType, obj: JsonDict, *, old: JsonDict | None
    ) -> JsonDict:
        """A private copy with ``kind``/``apiVersion`` set and the namespace fitting scope."""
        new = copy_json(obj)
        metadata = new.get("metadata")
        if metadata is None:
            metadata = new["metadata"] = {}
        if not isinstance(metadata, dict):
            raise status.bad_request("metadata must be a JSON object")
        new = {"apiVersion": resource.api_version, "kind": resource.kind, **new}
        new["apiVersion"], new["kind"] = resource.api_version, resource.kind
        prepare = TYPE_RULES.get((resource.group, resource.kind))
        if prepare is not None:
            new = prepare(new, old)
        if not resource.namespaced:
            metadata.pop("namespace", None)  # cluster-scoped objects have none
        elif not metadata.get("namespace"):
            raise status.bad_request("the namespace of the object must be set")
        return new

    def _assign_name(self, resource: ResourceType, metadata: JsonDict) -> None:
        if metadata.get("name"):
            return
        prefix = metadata.get("generateName")
        if not prefix:
            raise status.invalid(
                resource.group,
                resource.kind,
                "",
                [status.FieldError.required("metadata.name", "name or generateName is required")],
            )
        alphabet = "bcdfghjklmnpqrstvwxz2456789"  # the name generator's alphabet
        metadata["name"] = prefix + "".join(self._rng.choice(alphabet) for _ in range(5))

    def _admit_namespace(self, resource: ResourceType, namespace: str | None, name: str) -> None:
        """NamespaceLifecycle admission: a namespaced object needs its namespace."""
        if not resource.namespaced or namespace is None:
            return
        ns = self.get(NAMESPACES, None, namespace)
        if ns is None:
            raise status.object_not_found("", "namespaces", namespace)
        if namespaces.is_terminating(ns):
            raise status.namespace_terminating(resource.group, resource.plural, name, namespace)

    @staticmethod
    def _check_preconditions(
        resource: ResourceType, metadata: JsonDict, old_metadata: JsonDict
    ) -> None:
        name = old_metadata["name"]
        uid = metadata.get("uid")
        if uid and uid != old_metadata["uid"]:
            raise status.conflict(
                resource.group,
                resource.plural,
                name,
                f"Precondition failed: UID in precondition: {uid}, "
                f"UID in object meta: {old_metadata['uid']}",
            )
        rv = metadata.get("resourceVersion")
        if rv and rv != old_metadata["resourceVersion"]:
            raise status.conflict(
                resource.group,
                resource.plural,
                name,
                "the object has been modified; please apply your changes to the latest "
                "version and try again",
            )

    def _remove(self, resource: ResourceType, key: str, current: JsonDict) -> JsonDict:
        rv = self._rv + 1
        final = with_resource_version(current, rv)
        self._commit(StoredEvent(rv, resource, key, DELETED, final, current), None)
        return final

    def _write(
        self, resource: ResourceType, key: str, kind: str, new: JsonDict, prev: JsonDict | None
    ) -> JsonDict:
        rv = self._rv + 1
        new["metadata"]["resourceVersion"] = str(rv)
        self._commit(StoredEvent(rv, resource, key, kind, new, prev), new)
        return new

    def _commit(self, event: StoredEvent, state: JsonDict | None) -> None:
        self._rv = event.rv
        self._collection(event.resource).append(event.key, Version(event.rv, state))
        self._events[event.rv] = event
        if self._history_limit is not None:
            while len(self._events) > self._history_limit:
                self._forget_oldest_event()
        self.wake_all()
        if self._observers:
            self._pending.append(event)
            self._notify_observers()

    def _notify_observers(self) -> None:
        """Deliver pending writes to the observers; writes they make queue up behind."""
        if self._observing:
            return
        self._observing = True
        try:
            while self._pending:
                event = self._pending.popleft()
                for observer in self._observers:
                    observer(event)
        finally:
            self._observing = False
            self._pending.clear()

    def _forget_oldest_event(self) -> None:
        event = self._events.pop(self._oldest_event_rv, None)
        if event is not None:
            self._collection(event.resource).forget_before(event.key, event.rv)
            self._compacted_rv = max(self._compacted_rv, event.rv)
        self._oldest_event_rv += 1


def _carry_system_fields(metadata: JsonDict, old_metadata: JsonDict) -> None:
    """Fields an update cannot change: they stay as stored."""
    for name in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
        if name in old_metadata:
            metadata[name] = old_metadata[name]
        else:
            metadata.pop(name, None)
    metadata["resourceVersion"] = old_metadata["resourceVersion"]


def _unconditional_update_refused(resource: ResourceType, name: str) -> status.StatusError:
    """Custom resources refuse updates without ``resourceVersion`` (422 Invalid)."""
    error = status.FieldError.invalid(
        "metadata.resourceVersion", "0", "must be specified for an update", quote=False
    )
    return status.invalid(resource.group, resource.plural, name, [error])


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
