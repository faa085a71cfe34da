"""A FastAPI app that mirrors the cluster's pods in memory and serves them.

What it shows:

- The app's lifespan opens a Kubernetes ``ApiClient`` and runs a ``listwatch.Syncer`` in the
  background for as long as the app runs (``async with syncer``); shutdown stops it cleanly.
- The receiver is a plain dict: each snapshot (``on_list``) replaces it, so pods deleted
  while no watch was running disappear too; each batch (``on_batch``) upserts and deletes.
- ``GET /healthz`` reports ``syncer.status`` as JSON: 200 while the mirror holds a complete
  snapshot, 503 while it does not yet (or is relisting after an error, or has failed for
  good: an unknown resource, say). Point a readiness probe at it.
- ``GET /objects`` (optionally ``?namespace=NS``) and ``GET /objects/{namespace}/{name}``
  serve the mirror.

Run it against the cluster of your current kubeconfig (or in a pod, with its service
account)::

    python -m pip install '.[examples]'   # in a clone of listwatch: aiosqlite, fastapi, uvicorn
    python examples/fastapi_app.py --port 8000        # --kubeconfig, --context, --namespace
    curl -i localhost:8000/healthz
    curl localhost:8000/objects?namespace=kube-system

or with uvicorn's own command line: ``uvicorn --app-dir examples --factory
fastapi_app:create_app``.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request, Response

import listwatch

logger = logging.getLogger("fastapi_app")


class MemoryMirror:
    """The receiver: every object by key (``namespace/name``), as of ``resource_version``."""

    def __init__(self) -> None:
        self.objects: dict[str, listwatch.JsonObject] = {}
        self.resource_version = ""

    async def on_list(self, snapshot: listwatch.Snapshot) -> None:
        # The snapshot is a stream, listed while we read it. Build the new state aside and
        # swap it in at the end: a list error raised out of the loop leaves the old state.
        # Replace, do not merge: whatever the snapshot lacks is gone from the cluster.
        objects = {item.key: item.object async for item in snapshot}
        self.objects = objects
        self.resource_version = snapshot.resource_version  # known once the stream has ended

    async def on_batch(self, batch: listwatch.Batch) -> None:
        for key, event in batch.events.items():
            if event.type is listwatch.EventType.DELETED:
                self.objects.pop(key, None)  # the key may be unknown: that is fine
            else:
                self.objects[key] = event.object
        self.resource_version = batch.resource_version


def json_response(content: object, status_code: int = 200) -> Response:
    # Objects are large plain dicts: orjson encodes them as they are, much faster than
    # FastAPI's default encoder, which would walk (and copy) every one of them first.
    return Response(orjson.dumps(content), status_code, media_type="application/json")


# FastAPI dependencies: the running app's Syncer and mirror, which its lifespan sets.
def get_syncer(request: Request) -> listwatch.Syncer:
    syncer: listwatch.Syncer = request.app.state.syncer
    return syncer


def get_mirror(request: Request) -> MemoryMirror:
    mirror: MemoryMirror = request.app.state.mirror
    return mirror


SyncerDep = Annotated[listwatch.Syncer, Depends(get_syncer)]
MirrorDep = Annotated[MemoryMirror, Depends(get_mirror)]


def ready(status: listwatch.SyncerStatus) -> bool:
    """Ready once the mirror holds a complete snapshot (it keeps it through relists), until
    the Syncer gives up for good."""
    return status.has_synced and status.phase is not listwatch.Phase.FAILED


def create_app(
    kubeconfig: str | os.PathLike[str] | None = None,
    *,
    context: str | None = None,
    resource: str = "pods",
    group: str | None = None,
    version: str = "v1",
    namespace: str | None = None,
    merge_interval: float = 1.0,
    backoff: listwatch.Backoff | None = None,
) -> FastAPI:
    """The app. Nothing happens until it starts: its lifespan connects and syncs.

    While it runs, ``app.state.syncer`` and ``app.state.mirror`` hold the Syncer and the
    mirror (for other routes, or for tests to wait on).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with await listwatch.connect(kubeconfig, context=context) as api:
            source = listwatch.ListWatch.from_client(
                api, resource, group=group, version=version, namespace=namespace
            )
            mirror = MemoryMirror()
            syncer = listwatch.Syncer(
                source,
                on_list=mirror.on_list,
                on_batch=mirror.on_batch,
                merge_interval=merge_interval,
                backoff=backoff,
            )
            app.state.mirror, app.state.syncer = mirror, syncer
            try:
                async with syncer:  # runs syncer.run() in a task; cancels it on exit
                    yield
            except listwatch.FatalError as exc:
                # Retrying could not help (an unknown resource, a bad selector). /healthz has
                # answered 503 with the reason since it happened; say it once more on the way out.
                logger.error("the mirror had stopped: %s", exc)

    app = FastAPI(title="listwatch mirror", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz(syncer: SyncerDep) -> Response:
        status = syncer.status  # a frozen dataclass: orjson serialises it as it is
        return json_response(status, 200 if ready(status) else 503)

    @app.get("/objects")
    async def list_objects(mirror: MirrorDep, namespace: str | None = None) -> Response:
        items = [
            obj
            for obj in mirror.objects.values()
            if namespace is None or obj["metadata"].get("namespace") == namespace
        ]
        return json_response({"resourceVersion": mirror.resource_version, "items": items})

    @app.get("/objects/{namespace}/{name}")
    async def get_object(namespace: str, name: str, mirror: MirrorDep) -> Response:
        obj = mirror.objects.get(f"{namespace}/{name}")
        if obj is None:
            raise HTTPException(404, f"no object {namespace}/{name} in the mirror")
        return json_response(obj)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    parser.add_argument("--context", help="a kubeconfig context (default: the current one)")
    parser.add_argument("--resource", default="pods", help="plural name (default: pods)")
    parser.add_argument("--group", help="API group (default: the core API)")
    parser.add_argument("--version", default="v1", help="API version (default: v1)")
    parser.add_argument("--namespace", help="one namespace (default: all)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import uvicorn  # noqa: PLC0415 (only needed to serve; the tests drive the app in-process)

    app = create_app(
        args.kubeconfig,
        context=args.context,
        resource=args.resource,
        group=args.group,
        version=args.version,
        namespace=args.namespace,
    )
    uvicorn.run(app, host=args.host, port=args.port)  # Ctrl-C / SIGTERM: graceful shutdown


if __name__ == "__main__":
    main()
