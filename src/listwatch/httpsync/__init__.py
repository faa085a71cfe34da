"""HTTP sync: a mirror in one process, its receiver in another, over one documented protocol.

``HttpSink`` is the sending side (a receiver for a ``Syncer`` that streams each snapshot and
batch to a URL); ``Receiver`` is the receiving side (an aiohttp application that applies
them to a store under the fence). The wire format, and the mapping of fence verdicts to
HTTP answers both ways, live in one private module; ``docs/http-sync-protocol.md`` is its
prose.
"""

from __future__ import annotations

from listwatch.httpsync._client import HttpSink, HttpSyncError
from listwatch.httpsync._server import Receiver, ReceiverStore, ResourceSink, TokenFile
from listwatch.httpsync._wire import PROTOCOL_VERSION

__all__ = [
    "PROTOCOL_VERSION",
    "HttpSink",
    "HttpSyncError",
    "Receiver",
    "ReceiverStore",
    "ResourceSink",
    "TokenFile",
]
