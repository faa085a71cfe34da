"""listwatch: keep a downstream system in sync with Kubernetes objects.

A full LIST goes to ``on_list`` as one snapshot (a stream, listed while the receiver reads
it); watch events are merged by key and go to ``on_batch``; any error starts a new
generation from a fresh LIST.
"""

from __future__ import annotations

import logging

from listwatch._agent import Agent
from listwatch._backoff import Backoff
from listwatch._kube.config import connect
from listwatch._managedfields import strip_managed_fields
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
from listwatch._reflector import ListStrategy
from listwatch._shard import Shard
from listwatch._source import ListWatch
from listwatch._supervisor import Supervisor
from listwatch._syncer import Syncer
from listwatch._types import ListOptions, OnBatch, OnList, Receiver, Store, WatchOptions
from listwatch._version import __version__
from listwatch.errors import (
    ApiConnectionError,
    ApiError,
    ConnectionLost,
    DiscoveryError,
    EpochError,
    EventTooLarge,
    FatalError,
    Forbidden,
    ForbiddenBeforeSync,
    IncompleteList,
    InvalidRequest,
    LeaseError,
    ListWatchError,
    MalformedEvent,
    NotLeading,
    ReceiverError,
    ReceiverTimeout,
    ResourceExpired,
    ResourceNotFound,
    ResourceVersionTooLarge,
    ResponseTooLarge,
    ServerError,
    StaleEpoch,
    StaleWrite,
    TooManyRequests,
    Unauthorized,
    VeryShortWatch,
    WatchIdle,
    WatchListRefused,
    WatchListUnsupported,
    WatchStreamError,
)
from listwatch.leaderelection import (
    ElectionStatus,
    LeaderElector,
    LeaseTiming,
    Term,
)
from listwatch.observe._status import Phase, Restart, SyncerStatus

# A library logs and lets the application choose where lines go: without this, Python's
# last-resort handler would print listwatch's warnings to stderr in an app that configured
# no logging (the logging HOWTO's rule for libraries).
logging.getLogger("listwatch").addHandler(logging.NullHandler())

__all__ = [
    "Agent",
    "ApiConnectionError",
    "ApiError",
    "Backoff",
    "Batch",
    "ConnectionLost",
    "DiscoveryError",
    "ElectionStatus",
    "EpochError",
    "Event",
    "EventTooLarge",
    "EventType",
    "FatalError",
    "Forbidden",
    "ForbiddenBeforeSync",
    "GroupVersionResource",
    "IncompleteList",
    "InvalidRequest",
    "Item",
    "JsonObject",
    "LeaderElector",
    "LeaseError",
    "LeaseTiming",
    "ListOptions",
    "ListStrategy",
    "ListWatch",
    "ListWatchError",
    "MalformedEvent",
    "NotLeading",
    "OnBatch",
    "OnList",
    "Page",
    "Phase",
    "Receiver",
    "ReceiverError",
    "ReceiverTimeout",
    "ResourceExpired",
    "ResourceNotFound",
    "ResourceVersionTooLarge",
    "ResponseTooLarge",
    "Restart",
    "Shard",
    "ServerError",
    "Snapshot",
    "StaleEpoch",
    "StaleWrite",
    "Store",
    "Supervisor",
    "Syncer",
    "SyncerStatus",
    "Term",
    "TooManyRequests",
    "Unauthorized",
    "VeryShortWatch",
    "WatchIdle",
    "WatchListRefused",
    "WatchListUnsupported",
    "WatchOptions",
    "WatchStreamError",
    "__version__",
    "connect",
    "object_key",
    "strip_managed_fields",
]
