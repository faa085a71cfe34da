"""An aiohttp application served on 127.0.0.1 for a test: real HTTP, an ephemeral port."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator

from aiohttp import web


@contextlib.asynccontextmanager
async def serving(
    app: web.Application | web.AppRunner,
    *,
    ssl_context: ssl.SSLContext | None = None,
    shutdown_timeout: float = 60.0,
) -> AsyncIterator[str]:
    """Serve ``app`` until the block ends; yields its base URL (``http(s)://127.0.0.1:N``).

    ``app`` may be a runner made already (``SyncServer.runner()``, with its own options).
    ``shutdown_timeout`` bounds how long the end waits for handlers still running (a test
    whose handler hangs on purpose gives a short one)."""
    runner = (
        app
        if isinstance(app, web.AppRunner)
        else web.AppRunner(app, shutdown_timeout=shutdown_timeout)
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        scheme = "https" if ssl_context is not None else "http"
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
