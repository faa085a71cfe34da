"""Raw HTTP/1.1 for the receiver's tests: what a sender, or an attacker, writes byte by
byte, and the answer as it comes back."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from listwatch import Item
from listwatch.httpsync import _wire as protocol

TOKEN = "receiver-token-5e02"


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def request_head(path: str, *, gzip: bool = False, token: str = TOKEN) -> bytes:
    encoding = "Content-Encoding: gzip\r\n" if gzip else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: receiver\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: {protocol.CONTENT_TYPE}\r\n{encoding}Transfer-Encoding: chunked\r\n\r\n"
    ).encode()


class Connection:
    """One raw HTTP/1.1 connection: what a sender (or an attacker) writes, byte by byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def to(cls, url: str) -> Connection:
        host, port = url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, within: float = 10.0) -> tuple[int, dict[str, Any]]:
        """The status and Status body of the answer (``within``: a safety net, no pacing)."""
        async with asyncio.timeout(within):
            status = int((await self.reader.readline()).split()[1])
            length = 0
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            return status, orjson.loads(await self.reader.readexactly(length))

    async def closed_by_server(self, within: float = 10.0) -> bool:
        async with asyncio.timeout(within):
            while await self.reader.read(1024):
                pass
        return True

    def close(self) -> None:
        self.writer.close()


async def post(url: str, path: str, body: bytes, *, gzip: bool = False) -> tuple[int, Any]:
    """One chunked POST of ``body``, with ``TOKEN``: the answer's status and Status."""
    connection = await Connection.to(url)
    try:
        await connection.send(request_head(path, gzip=gzip) + chunk(body) + chunk(b""))
        return await connection.answer()
    finally:
        connection.close()


def items(*objs: dict[str, Any]) -> list[Item]:
    """``objs`` (namespace ``default``) as a snapshot's items."""
    return [
        Item(
            f"default/{o['metadata']['name']}",
            o["metadata"]["resourceVersion"],
            raw=orjson.dumps(o),
        )
        for o in objs
    ]
