"""``/metrics``, ``/healthz`` and ``/readyz`` over HTTP, for an agent or an app.

Kubernetes probes a pod with two questions, and they have different answers:

* **liveness** (``/healthz``): is the process alive and are its loops turning? If not, the
  kubelet restarts it. A replica that is merely waiting (a standby, a resource relisting
  after an error) is alive.
* **readiness** (``/readyz``): is it doing its job? Every resource has synced (its receiver
  holds a complete snapshot; client-go's ``HasSynced``) and none has gone longer than the
  agent's ``stale_after`` without a sync (``SyncerStatus.unsynced_for``: its receiver keeps
  an ever older copy while every attempt fails, or while a relist waits, say on a
  server's ``Retry-After``), or the replica is a healthy standby. The body names each
  resource that is not ready, and why.

Each is a ``HealthReport``: 200 with the JSON when ``ok``, 503 with it when not. Apps that
serve their own endpoints take the same reports from ``listwatch._agent.Agent`` (or build
them from Syncer statuses) and the exposition text from ``SyncMetrics.render()``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from listwatch.observe.metrics import CONTENT_TYPE_LATEST, SyncMetrics

__all__ = ["HealthReport", "make_app", "serving"]

logger = logging.getLogger("listwatch")


@dataclass(frozen=True, slots=True)
class HealthReport:
    """One probe's answer: ``ok``, and the details a human needs to see why not."""

    ok: bool
    details: dict[str, Any] = field(default_factory=dict)

    def body(self) -> bytes:
        return orjson.dumps({"ok": self.ok, **self.details})


Probe = Callable[[], HealthReport]


def make_app(metrics: SyncMetrics, *, liveness: Probe, readiness: Probe) -> web.Application:
    """An aiohttp application serving ``/metrics``, ``/healthz`` and ``/readyz``."""

    async def serve_metrics(request: web.Request) -> web.Response:
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    def probe(report: Probe) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            answer = report()
            return web.Response(
                status=200 if answer.ok else 503,
                body=answer.body(),
                content_type="application/json",
            )

        return handler

    app = web.Application()
    app.router.add_get("/metrics", serve_metrics)
    app.router.add_get("/healthz", probe(liveness))
    app.router.add_get("/readyz", probe(readiness))
    return app


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9090`` for IPv6); port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"  # ':9090' means every interface, as usual
    return host, int(port)


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str, port: int) -> AsyncIterator[tuple[str, int]]:
    """Serve ``app`` on ``host:port`` while inside; yields the bound address."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        sockets = getattr(server, "sockets", None) or ()
        bound = sockets[0].getsockname()[:2] if sockets else (host, port)
        logger.info("serving /metrics, /healthz and /readyz on %s:%d", bound[0], bound[1])
        yield str(bound[0]), int(bound[1])
    finally:
        await runner.cleanup()
