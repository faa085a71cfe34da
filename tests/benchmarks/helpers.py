"""Helpers the tests of benchmarks/ import."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from benchmarks.server import BenchServer


@contextlib.asynccontextmanager
async def served(bench: BenchServer) -> AsyncIterator[str]:
    """``bench`` on a free port of 127.0.0.1 in this event loop, while inside; its URL."""
    runner = web.ServerRunner(web.Server(bench.handle))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
