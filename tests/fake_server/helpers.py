"""Shared helpers of the FakeApiServer tests: object builders and a raw watch reader."""

from __future__ import annotations

import asyncio
import base64
import ssl
from typing import Any

import aiohttp
import orjson

from listwatch.testing import FakeApiServer

#: Upper bound for awaiting something that should happen almost at once (never asserted on).
WAIT = 5.0


def names(items: list[Any]) -> list[str]:
    """Names of typed model items or of dicts."""
    out = []
    for item in items:
        meta = item["metadata"] if isinstance(item, dict) else item.metadata
        out.append(meta["name"] if isinstance(meta, dict) else meta.name)
    return out


class EventReader:
    """Reads a raw watch response event by event, framing on newlines incrementally."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self._buffer = b""

    async def next_line(self) -> bytes | None:
        """The next line without its newline, or None at a clean end of the body."""
        while b"\n" not in self._buffer:
            chunk = await asyncio.wait_for(self.response.content.readany(), WAIT)
            if not chunk:
                if self._buffer:
                    raise AssertionError(f"stream ended inside a line: {self._buffer!r}")
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    async def next(self) -> dict[str, Any]:
        line = await self.next_line()
        assert line is not None, "the stream ended, an event was expected"
        event: dict[str, Any] = orjson.loads(line)
        return event

    async def take(self, count: int) -> list[dict[str, Any]]:
        return [await self.next() for _ in range(count)]

    async def rest(self) -> list[dict[str, Any]]:
        """Every remaining event until the clean end of the stream."""
        events = []
        while (line := await self.next_line()) is not None:
            events.append(orjson.loads(line))
        return events


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """``(type, name, resourceVersion)`` per event, for compact assertions."""
    out = []
    for event in events:
        meta = event["object"].get("metadata", {})
        out.append((event["type"], meta.get("name", ""), meta.get("resourceVersion", "")))
    return out


def status_of(error: Any) -> dict[str, Any]:
    """The Status body of a kubernetes_asyncio ``ApiException``."""
    body: dict[str, Any] = orjson.loads(error.body)
    return body


def decode_token(token: str) -> dict[str, Any]:
    """The JSON inside a continue token (base64url without padding)."""
    assert "=" not in token
    fields: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    return fields


def encode_token(fields: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(fields)).rstrip(b"=").decode()


def client_ssl(server: FakeApiServer) -> ssl.SSLContext | bool:
    """What a raw aiohttp client passes as ``ssl=``: the server's CA over HTTPS."""
    return server.ssl_context if server.tls else True
