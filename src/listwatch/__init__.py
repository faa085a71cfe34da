"""listwatch: keep a downstream system in sync with Kubernetes objects.

A full LIST goes to ``on_list`` as one snapshot; watch events are merged by key and go to
``on_batch``; any error starts a new generation from a fresh LIST.
"""

from __future__ import annotations

from listwatch.backoff import Backoff
from listwatch.connect import connect
from listwatch.errors import (
    ApiConnectionError,
    ApiError,
    ConnectionLost,
    EventTooLarge,
    FatalError,
    InvalidRequest,
    ListWatchError,
    MalformedEvent,
    ReceiverError,
    ReceiverTimeout,
    ResourceExpired,
    ResourceNotFound,
    ResourceVersionTooLarge,
    ResponseTooLarge,
    ServerError,
    TooManyRequests,
    Unauthorized,
    WatchIdle,
    WatchStreamError,
)
from listwatch.events import Batch, Event, EventType, JsonObject, Snapshot, object_key
from listwatch.loop import VeryShortWatch
from listwatch.merger import EventMerger, MergeBuffer
from listwatch.source import ListOptions, ListWatch, Page, WatchOptions
from listwatch.status import Phase, Restart, SyncerStatus
from listwatch.syncer import Syncer

__version__ = "0.1.0"

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "Backoff",
    "Batch",
    "ConnectionLost",
    "Event",
    "EventMerger",
    "EventTooLarge",
    "EventType",
    "FatalError",
    "InvalidRequest",
    "JsonObject",
    "ListOptions",
    "ListWatch",
    "ListWatchError",
    "MalformedEvent",
    "MergeBuffer",
    "Page",
    "Phase",
    "ReceiverError",
    "ReceiverTimeout",
    "ResourceExpired",
    "ResourceNotFound",
    "ResourceVersionTooLarge",
    "ResponseTooLarge",
    "Restart",
    "ServerError",
    "Snapshot",
    "Syncer",
    "SyncerStatus",
    "TooManyRequests",
    "Unauthorized",
    "VeryShortWatch",
    "WatchIdle",
    "WatchOptions",
    "WatchStreamError",
    "__version__",
    "connect",
    "object_key",
]
