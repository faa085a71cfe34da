"""HTTP sync: a mirror in one process, its receiving server in another, over one protocol.

``HttpSink`` is the sending side: a sink for a ``Syncer`` that streams each snapshot and
batch to a URL, or to one of several (``ReceiverUrls``: which one, and when to move on).
``SyncServer`` is the receiving side: an aiohttp application that applies them to a
``Store`` under the fence (``listwatch receiver`` runs one), each request into the cluster
its credential names (``ClientsFile``: a fleet's credentials). The wire format, and the
mapping of fence verdicts to HTTP answers both ways, live in one private module;
``docs/http-sync-protocol.md`` is its prose.
"""

from __future__ import annotations

from listwatch.errors import HttpSyncError
from listwatch.httpsync._client import HttpSink, ReceiverUrls
from listwatch.httpsync._clients import ClientsFile, TokenFile
from listwatch.httpsync._server import SyncServer
from listwatch.httpsync._wire import PROTOCOL_VERSION

__all__ = [
    "PROTOCOL_VERSION",
    "ClientsFile",
    "HttpSink",
    "HttpSyncError",
    "ReceiverUrls",
    "SyncServer",
    "TokenFile",
]
