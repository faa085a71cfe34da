"""The HTTP sink: sends each snapshot and batch to a ``listwatch receiver`` (or any server
that speaks ``docs/http-sync-protocol.md``). It lives in ``listwatch.httpsync`` beside the
receiving side; this module keeps the sinks' import path."""

from __future__ import annotations

from listwatch.errors import HttpSyncError
from listwatch.httpsync import HttpSink

__all__ = ["HttpSink", "HttpSyncError"]
