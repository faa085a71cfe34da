"""A TCP proxy on 127.0.0.1 that can black-hole its traffic: a network partition on demand.

The fake API server's faults hit every client of a path alike; a partition must cut one
replica off while the others still reach the server. An elector given this proxy's URL
talks real HTTP through it; ``blackhole()`` stops every byte in both directions (requests
hang, as on a dead network, until the client gives up), ``restore()`` lets them flow again.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self


class BlackholeProxy:
    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def blackhole(self) -> None:
        self._open.clear()

    def restore(self) -> None:
        self._open.set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Aborting the sockets ends every connection's pumps (closing would wait to flush to
        # a peer that may not read); cancelling the handler tasks would make asyncio's
        # stream callback log their cancellation as an error.
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._open.set()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self._writers.add(client)
        upstream: asyncio.StreamWriter | None = None
        try:
            await self._open.wait()
            target = ("127.0.0.1", self._target_port)
            upstream_reader, upstream = await asyncio.open_connection(*target)
            self._writers.add(upstream)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pump(client_reader, upstream))
                group.create_task(self._pump(upstream_reader, client))
        except (OSError, ExceptionGroup):
            pass
        finally:
            self._connections.discard(task)
            for writer in (client, upstream):
                if writer is not None:
                    self._writers.discard(writer)
                    writer.close()
                    with contextlib.suppress(OSError, asyncio.CancelledError):
                        await writer.wait_closed()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await self._open.wait()
            data = await reader.read(65536)
            await self._open.wait()  # a partition that began mid-read keeps what was read
            if not data:
                writer.write_eof() if writer.can_write_eof() else writer.close()
                return
            writer.write(data)
            await writer.drain()
