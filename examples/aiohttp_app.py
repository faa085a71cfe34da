"""An aiohttp app that mirrors the cluster's pods into SQLite and serves them.

What it shows:

- A ``cleanup_ctx`` context (the code before its ``yield`` runs at startup, the code after it
  at cleanup) opens a Kubernetes ``ApiClient`` and a ``listwatch.sinks.sqlite.SQLiteSink``,
  and runs a ``listwatch.Syncer`` into the sink for the app's lifetime (``async with syncer``).
- The sink is a ready receiver: each snapshot replaces the resource's rows in one transaction
  (deleting what vanished), each batch is one transaction of upserts and deletes. The file
  survives restarts, and other processes can read it while it is written (WAL mode).
- ``GET /healthz`` reports ``syncer.status`` as JSON: 200 while the mirror holds a complete
  snapshot, 503 while it does not yet, while it relists after an error, or after a fatal one.
- ``GET /objects`` and ``GET /objects/{namespace}/{name}`` serve the mirror from SQLite.

Run it against the cluster of your current kubeconfig (or in a pod, with its service
account)::

    python -m pip install '.[examples]'   # in a clone of listwatch: aiosqlite, fastapi, uvicorn
    python examples/aiohttp_app.py --database pods.db --port 8080   # --kubeconfig, --namespace
    curl -i localhost:8080/healthz
    sqlite3 pods.db "select key, json_extract(object, '$.status.phase') from objects"
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
from aiohttp import web

import listwatch
from listwatch.sinks.sqlite import SQLiteSink

logger = logging.getLogger("aiohttp_app")

# Typed keys for what the cleanup context puts into the app while it runs.
SYNCER = web.AppKey("syncer", listwatch.Syncer)
SINK = web.AppKey("sink", SQLiteSink)


def json_response(content: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(content), status=status, content_type="application/json")


def ready(status: listwatch.SyncerStatus) -> bool:
    """Ready once the mirror holds a complete snapshot (it keeps it through relists), until
    the Syncer gives up for good."""
    return status.has_synced and status.phase is not listwatch.Phase.FAILED


async def healthz(request: web.Request) -> web.Response:
    status = request.app[SYNCER].status  # a frozen dataclass: orjson serialises it as it is
    return json_response(status, 200 if ready(status) else 503)


async def list_objects(request: web.Request) -> web.Response:
    sink = request.app[SINK]
    # The sink's readers use their own connection: this answers with the last committed
    # state even while a large snapshot is being written.
    objects = await sink.objects()
    state = await sink.sync_state()
    namespace = request.query.get("namespace")
    items = [
        obj
        for obj in objects.values()
        if namespace is None or obj["metadata"].get("namespace") == namespace
    ]
    resource_version = state.resource_version if state is not None else ""
    return json_response({"resourceVersion": resource_version, "items": items})


async def get_object(request: web.Request) -> web.Response:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    obj = await request.app[SINK].get(f"{namespace}/{name}")
    if obj is None:
        return json_response({"detail": f"no object {namespace}/{name} in the mirror"}, 404)
    return json_response(obj)


def create_app(
    database: str | os.PathLike[str],
    kubeconfig: str | os.PathLike[str] | None = None,
    *,
    context: str | None = None,
    resource: str = "pods",
    group: str | None = None,
    version: str = "v1",
    namespace: str | None = None,
    merge_interval: float = 1.0,
    backoff: listwatch.Backoff | None = None,
) -> web.Application:
    """The app. Nothing happens until it starts: its cleanup context connects and syncs."""

    async def mirror(app: web.Application) -> AsyncIterator[None]:
        async with (
            await listwatch.connect(kubeconfig, context=context) as api,
            SQLiteSink(database, resource=resource) as sink,
        ):
            source = listwatch.ListWatch.from_client(
                api, resource, group=group, version=version, namespace=namespace
            )
            syncer = listwatch.Syncer(
                source,
                on_list=sink.on_list,
                on_batch=sink.on_batch,
                merge_interval=merge_interval,
                backoff=backoff,
            )
            app[SINK], app[SYNCER] = sink, syncer
            try:
                async with syncer:  # runs syncer.run() in a task; cancels it on exit
                    yield
            except listwatch.FatalError as exc:
                # Retrying could not help (an unknown resource, a bad selector). /healthz has
                # answered 503 with the reason since it happened; say it once more on the way out.
                logger.error("the mirror had stopped: %s", exc)

    app = web.Application()
    app.cleanup_ctx.append(mirror)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/objects", list_objects)
    app.router.add_get("/objects/{namespace}/{name}", get_object)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", type=Path, default=Path("mirror.db"))
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    parser.add_argument("--context", help="a kubeconfig context (default: the current one)")
    parser.add_argument("--resource", default="pods", help="plural name (default: pods)")
    parser.add_argument("--group", help="API group (default: the core API)")
    parser.add_argument("--version", default="v1", help="API version (default: v1)")
    parser.add_argument("--namespace", help="one namespace (default: all)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = create_app(
        args.database,
        args.kubeconfig,
        context=args.context,
        resource=args.resource,
        group=args.group,
        version=args.version,
        namespace=args.namespace,
    )
    web.run_app(app, host=args.host, port=args.port)  # Ctrl-C / SIGTERM: graceful shutdown


if __name__ == "__main__":
    main()
