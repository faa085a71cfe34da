"""``listwatch._kube.http``: what an API server's answer, or its absence, becomes.

Each test sends through a real kubernetes_asyncio ``ApiClient`` to a server on 127.0.0.1
that writes exactly the bytes given (status line, headers, body), so that cut bodies and
oversized ones are what the client really receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from kubernetes_asyncio.client import ApiClient, Configuration

from listwatch import ListWatch, WatchOptions
from listwatch._kube import http
from listwatch.errors import (
    MAX_ERROR_BODY_BYTES,
    ApiConnectionError,
    ConnectionLost,
    Forbidden,
    ResourceExpired,
    ResponseTooLarge,
    TooManyRequests,
)
from listwatch.testing import FakeApiServer
from tests.objects import pod


def answer(status: str, body: bytes, *headers: str, length: int | None = None) -> bytes:
    """One HTTP/1.1 response; ``length`` is the Content-Length claimed (the body's own).

    ``Connection: close``: the server hangs up after it, so the client must not reuse it.
    """
    claimed = len(body) if length is None else length
    lines = [f"HTTP/1.1 {status}", "Connection: close", f"Content-Length: {claimed}"]
    return ("\r\n".join([*lines, *headers]) + "\r\n\r\n").encode() + body


def chunked(status: str, body: bytes, *headers: str) -> bytes:
    """One HTTP/1.1 response whose body is chunked: its length is not said up front."""
    lines = [f"HTTP/1.1 {status}", "Connection: close", "Transfer-Encoding: chunked"]
    head = ("\r\n".join([*lines, *headers]) + "\r\n\r\n").encode()
    return head + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


@contextlib.asynccontextmanager
async def answering(raw: bytes) -> AsyncIterator[ApiClient]:
    """A client of a server that answers every request with ``raw``, then hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(raw)
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with ApiClient(Configuration(host=f"http://127.0.0.1:{port}")) as client:
            yield client
    finally:
        server.close()
        await server.wait_closed()


def status_body(code: int, reason: str, message: str, **extra: object) -> bytes:
    status = {"kind": "Status", "status": "Failure", "code": code, "reason": reason}
    return orjson.dumps({**status, "message": message, **extra})


async def test_a_refused_connection_is_a_connection_error_marked_refused() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with ApiClient(Configuration(host=f"http://127.0.0.1:{port}")) as client:
        with pytest.raises(ApiConnectionError) as caught:
            await http.send(client, "GET", "/api", request="discovery /api")
    assert caught.value.refused
    assert str(caught.value) == "discovery /api: cannot connect (refused)"


@pytest.mark.parametrize(
    ("raw", "expected", "reason", "retry_after"),
    [
        (
            answer("410 Gone", status_body(410, "Expired", "too old resource version: 1 (5)")),
            ResourceExpired,
            "Expired",
            None,
        ),
        (
            answer(
                "429 Too Many Requests",
                status_body(429, "TooManyRequests", "storage is (re)initializing"),
                "Retry-After: 7",
            ),
            TooManyRequests,
            "TooManyRequests",
            7.0,
        ),
        (
            answer("403 Forbidden", status_body(403, "Forbidden", 'pods is forbidden: "me"')),
            Forbidden,
            "Forbidden",
            None,
        ),
    ],
    ids=["410-expired", "429-retry-after-header", "403"],
)
async def test_an_error_status_becomes_its_class(
    raw: bytes, expected: type[Exception], reason: str, retry_after: float | None
) -> None:
    async with answering(raw) as client:
        with pytest.raises(expected) as caught:
            await http.send(client, "GET", "/api/v1/pods", request="list /api/v1/pods")
    error = caught.value
    assert type(error) is expected
    assert getattr(error, "reason", None) == reason
    assert getattr(error, "retry_after", None) == retry_after
    assert str(error).startswith(f"list /api/v1/pods: HTTP {raw[9:12].decode()} {reason}: ")


async def test_an_error_body_past_its_cap_is_cut_and_the_status_still_decides() -> None:
    body = b"x" * (4 * MAX_ERROR_BODY_BYTES)  # not a Status: what a proxy might send
    raw = answer("429 Too Many Requests", body, "Retry-After: 3")
    async with answering(raw) as client:
        with pytest.raises(TooManyRequests) as caught:
            await http.send(client, "GET", "/api/v1/pods", request="list /api/v1/pods")
    assert caught.value.retry_after == 3.0
    assert len(caught.value.message) <= 301  # the first 300 characters and an ellipsis


async def test_a_body_is_read_up_to_its_cap_and_no_further() -> None:
    async with answering(chunked("200 OK", b"x" * 100)) as client:
        body = await http.fetch(client, "GET", "/apis", request="discovery /apis", cap=100)
        assert body == b"x" * 100
        with pytest.raises(ResponseTooLarge) as caught:
            await http.fetch(client, "GET", "/apis", request="discovery /apis", cap=99)
    assert str(caught.value) == "discovery /apis: response larger than 99 bytes (read 100 bytes)"
    assert caught.value.read == 100


async def test_a_content_length_past_the_cap_is_refused_before_a_byte_is_read() -> None:
    """``Content-Length: 2 GiB`` says enough: nothing of it is read (nor waited for)."""
    raw = answer("200 OK", b'{"kind":"PodList","items":[', length=2 * 1024**3)
    async with answering(raw) as client:
        with pytest.raises(ResponseTooLarge) as caught:
            await http.fetch(
                client,
                "GET",
                "/api/v1/pods",
                request="list /api/v1/pods",
                cap=32 * 1024 * 1024,
                cap_name="max_list_bytes",
            )
    assert str(caught.value) == (
        "list /api/v1/pods: response of 2147483648 bytes (its Content-Length) is larger than "
        "max_list_bytes=33554432; not read"
    )
    assert caught.value.read == 0


async def test_the_cap_is_named_after_the_setting_that_set_it() -> None:
    async with answering(answer("200 OK", b"{}" * 100)) as client:
        with pytest.raises(ResponseTooLarge, match=r"^list /api/v1/pods: .*max_list_bytes=10\b"):
            await http.fetch(
                client,
                "GET",
                "/api/v1/pods",
                request="list /api/v1/pods",
                cap=10,
                cap_name="max_list_bytes",
            )


async def test_a_body_cut_short_is_connection_lost() -> None:
    raw = answer("200 OK", b'{"kind":"PodList","items":[', length=1000)
    async with answering(raw) as client:
        with pytest.raises(ConnectionLost, match=r"^list /api/v1/pods: ClientPayloadError$"):
            await http.fetch(
                client, "GET", "/api/v1/pods", request="list /api/v1/pods", cap=1 << 20
            )


def client_sockets_to(port: int) -> list[socket.socket]:
    """This process's connected sockets whose peer listens on ``port`` (duplicates: the
    caller closes them). Every open descriptor is looked at: the test sees the socket as
    the kernel has it, not as a library says it configured it."""
    found: dict[tuple[object, object], socket.socket] = {}
    for name in os.listdir("/dev/fd"):
        try:
            duplicate = os.dup(int(name))
        except OSError:
            continue  # the directory's own descriptor, closed by now
        try:
            sock = socket.socket(fileno=duplicate)
        except OSError:
            os.close(duplicate)  # not a socket
            continue
        try:
            peer, local = sock.getpeername(), sock.getsockname()
        except OSError:
            peer = local = None  # not connected (a listener), or not TCP
        ends = (local, peer)
        ours = isinstance(peer, tuple) and isinstance(local, tuple) and peer[1] == port != local[1]
        if ours and ends not in found:  # not a descriptor listed twice (one we duplicated)
            found[ends] = sock
        else:
            sock.close()
    return list(found.values())


async def test_a_watch_connection_has_tcp_keepalive(server: FakeApiServer, api_client: Any) -> None:
    """A quiet watch carries no byte for minutes, so its silence says nothing: the kernel's
    keepalive probes find a peer that vanished."""
    await server.create(pod("a"))
    source = ListWatch.from_client(api_client, "pods", version="v1")  # no discovery request
    stream = source.watch(WatchOptions("", timeout_seconds=30))
    try:
        assert (await anext(stream)).key == "default/a"  # the response is streaming
        sockets = client_sockets_to(int(server.url.rsplit(":", 1)[1]))
        try:
            assert len(sockets) == 1  # the watch's: no other request was made
            (sock,) = sockets
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            if hasattr(socket, "TCP_KEEPIDLE"):
                idle = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
                interval = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)
                probes = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)
                assert (idle, interval, probes) == (30, 10, 3)
        finally:
            for sock in sockets:
                sock.close()
    finally:
        await stream.aclose()
