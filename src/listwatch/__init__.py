"""listwatch: keep a downstream system in sync with Kubernetes objects.

A full LIST goes to ``on_list`` as one snapshot (a stream, listed while the receiver reads
it); watch events are merged by key and go to ``on_batch``; any error starts a new
generation from a fresh LIST.
"""

from __future__ import annotations

from listwatch._agent import Agent, NotLeading
from listwatch._backoff import Backoff
from listwatch._kube.config import connect
from listwatch._models import (
    Batch,
    Event,
    EventType,
    GroupVersionResource,
    Item,
    JsonObject,
    Page,
    Snapshot,
    object_key,
)
from listwatch._reflector import ListStrategy, VeryShortWatch, WatchListUnsupported
from listwatch._source import ListOptions, ListWatch, WatchOptions
from listwatch._supervisor import Supervisor
from listwatch._syncer import Syncer
from listwatch.errors import (
    ApiConnectionError,
    ApiError,
    ConnectionLost,
    EventTooLarge,
    FatalError,
    Forbidden,
    IncompleteList,
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
    StaleEpoch,
    TooManyRequests,
    Unauthorized,
    WatchIdle,
    WatchStreamError,
)
from listwatch.leaderelection import (
    ElectionStatus,
    EpochError,
    LeaderElector,
    LeaseTiming,
    Term,
)
from listwatch.observe._status import Phase, Restart, SyncerStatus

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "ApiConnectionError",
    "ApiError",
    "Backoff",
    "Batch",
    "ConnectionLost",
    "ElectionStatus",
    "EpochError",
    "Event",
    "EventTooLarge",
    "EventType",
    "FatalError",
    "Forbidden",
    "GroupVersionResource",
    "IncompleteList",
    "InvalidRequest",
    "Item",
    "JsonObject",
    "LeaderElector",
    "LeaseTiming",
    "ListOptions",
    "ListStrategy",
    "ListWatch",
    "ListWatchError",
    "MalformedEvent",
    "NotLeading",
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
    "StaleEpoch",
    "Supervisor",
    "Syncer",
    "SyncerStatus",
    "Term",
    "TooManyRequests",
    "Unauthorized",
    "VeryShortWatch",
    "WatchIdle",
    "WatchListUnsupported",
    "WatchOptions",
    "WatchStreamError",
    "__version__",
    "connect",
    "object_key",
]
