"""The values that flow from the API server to a receiver: events, snapshots and batches.

They are plain, immutable containers over the decoded JSON dicts, so a receiver can hand
them on (to a database, over HTTP) without knowing anything about Kubernetes models.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from listwatch import jsonparse

JsonObject = dict[str, Any]
"""A Kubernetes object as decoded from JSON."""

KeyFunc = Callable[[JsonObject], str]
"""Maps an object to the key the merger coalesces on."""


class EventType(enum.StrEnum):
    """The watch event types of the API server (``metav1.WatchEvent.type``)."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    BOOKMARK = "BOOKMARK"
    ERROR = "ERROR"


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


Transform = Callable[[JsonObject], JsonObject]
"""Rewrites an object before the receiver sees it (for example, drops ``managedFields``)."""


class Event:
    """One change to one object, as the watch delivered it.

    ``resource_version`` is the RV of the change: for DELETED it is the deletion's RV, which
    the API server writes into the object's metadata. BOOKMARK events carry only it, and have
    an empty ``key``.

    ``object`` may be decoded lazily: the watch reads only an event's envelope and metadata,
    keeps the object's JSON bytes (several times smaller than the dicts), and parses them on
    first access. Events that the merger drops for a newer one on the same key are never
    parsed at all. Treat an event as immutable.
    """

    __slots__ = ("_object", "_raw", "_transform", "key", "resource_version", "type")

    type: EventType
    key: str
    resource_version: str

    def __init__(
        self,
        type: EventType,
        object: JsonObject | None = None,
        key: str = "",
        resource_version: str = "",
        *,
        raw: bytes | memoryview | None = None,
        transform: Transform | None = None,
    ) -> None:
        if (object is None) == (raw is None):
            raise ValueError("an Event needs exactly one of object and raw")
        self.type = type
        self.key = key
        self.resource_version = resource_version
        self._object = object
        self._raw = raw
        self._transform = transform

    @classmethod
    def from_object(cls, type: EventType, obj: JsonObject, key: KeyFunc = object_key) -> Event:
        """Build an event, deriving the key and RV from the object."""
        event_key = "" if type is EventType.BOOKMARK else key(obj)
        return cls(type, obj, event_key, resource_version_of(obj))

    @property
    def object(self) -> JsonObject:
        """The object, parsed (and transformed) on first access."""
        obj = self._object
        if obj is None:
            try:
                obj = jsonparse.loads(self._raw)  # type: ignore[arg-type]  # raw is set
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{self.type} event for {self.key}: bad JSON: {exc}") from None
            if self._transform is not None:
                obj = self._transform(obj)
            self._object, self._raw, self._transform = obj, None, None
        return obj

    @property
    def decoded(self) -> bool:
        """Whether ``object`` has been parsed already."""
        return self._object is not None

    def transformed(self, transform: Transform) -> Event:
        """This event with ``transform`` applied to its object (when the object is parsed)."""
        if self._object is not None:
            return Event(self.type, transform(self._object), self.key, self.resource_version)
        return Event(
            self.type,
            None,
            self.key,
            self.resource_version,
            raw=self._raw,
            transform=transform,
        )

    def __eq__(self, other: builtins.object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.type, self.key, self.resource_version, self.object) == (
            other.type,
            other.key,
            other.resource_version,
            other.object,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        rv = self.resource_version
        return f"Event({self.type.value}, key={self.key!r}, resource_version={rv!r})"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A complete, consistent LIST: every object at one resourceVersion.

    Items carry ``kind`` and ``apiVersion`` (the API server omits them on built-in list items;
    listwatch fills them in) so a snapshot item and a watch object look alike.
    """

    items: Sequence[JsonObject]
    resource_version: str
    generation: int = 0

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class Batch:
    """The merged changes since the previous batch: each key's last event.

    ``events`` is ordered by when each key's last event arrived. ``resource_version`` is the
    newest RV the watch reported (bookmarks included), the point to resume from.
    """

    events: Mapping[str, Event]
    resource_version: str
    generation: int = 0
    received: int = field(default=0, compare=False)
    """How many events (before merging) this batch stands for."""

    def __len__(self) -> int:
        return len(self.events)
