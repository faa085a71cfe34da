"""``listwatch receiver`` as a real process against slow and hostile clients: connections
that never send a whole header are closed after ``--header-timeout``, a body that stops
coming is answered 408 after ``--idle-timeout`` (and logged), and a header too long to
parse is refused without being quoted back or logged; meanwhile the receiver serves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from listwatch import GroupVersionResource
from listwatch.httpsync import _wire as protocol
from tests.processes import running
from tests.receiver.helpers import Connection, chunk, request_head

TOKEN = "process-token-71d0"
PODS = GroupVersionResource("", "v1", "pods")
HEADER = protocol.encode_header(protocol.Header("snapshot", PODS, 1, "s", 1, 0, "5"))


async def test_slow_and_hostile_clients_are_bounded(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    args = ("receiver", "--listen", "127.0.0.1:0", "--sqlite", str(tmp_path / "r.db"))
    args += ("--token-file", str(token_file), "--header-timeout", "1", "--idle-timeout", "1")
    async with running("receiver", *args) as receiver:
        url = (await receiver.wait_for_line(r"serving (http://127\.0\.0\.1:\d+)")).group(1)

        # 200 slow connections: half send nothing, half a header that never ends.
        slow = [await Connection.to(url) for _ in range(200)]
        for connection in slow[100:]:
            await connection.send(b"POST /sync/pods/snapshot HTTP/1.1\r\nHost: r\r\nAuthoriz")
        try:
            closed = await asyncio.gather(*(c.closed_by_server(within=30) for c in slow))
        finally:
            for connection in slow:
                connection.close()
        assert all(closed)

        # A snapshot that stops mid-body: 408, nothing applied, one request line.
        stalled = await Connection.to(url)
        try:
            await stalled.send(request_head("/sync/pods/snapshot", token=TOKEN) + chunk(HEADER))
            status, answer = await stalled.answer(within=30)
        finally:
            stalled.close()
        assert (status, answer["reason"]) == (408, "RequestTimeout")
        await receiver.wait_for_line(
            r"pods: POST /sync/pods/snapshot 408, [\d.]+ s, cluster default, RequestTimeout: "
            r"no byte of the "
            r"body came for 1 s: nothing was applied$"
        )

        # A token of 10 KB: refused, neither quoted back nor logged.
        long_token = "Secret" * 1700
        oversized = await Connection.to(url)
        try:
            await oversized.send(request_head("/sync/pods/snapshot", token=long_token))
            status, refused = await oversized.answer()
        finally:
            oversized.close()
        assert (status, refused["message"]) == (400, "the request could not be read (LineTooLong)")
        await receiver.wait_for_line(r"could not be read as HTTP: 400 \(LineTooLong\)")

        # ... and it still serves.
        served = await Connection.to(url)
        try:
            body = HEADER + protocol.encode_commit(0, "5")
            await served.send(request_head("/sync/pods/snapshot", token=TOKEN) + chunk(body))
            await served.send(chunk(b""))
            status, answer = await served.answer()
        finally:
            served.close()
        assert status == 200, answer
        assert await receiver.stop() == 0
    assert "SecretSe" not in receiver.text() + orjson.dumps(refused).decode()
    assert TOKEN not in receiver.text()
