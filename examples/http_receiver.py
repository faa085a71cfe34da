"""Keep a service in sync over HTTP: full-sync and delta-sync endpoints, fed by listwatch.

Two halves, run as two processes:

- ``serve``: a small sync server (aiohttp) holding a mirror in memory. ``POST /sync/full``
  replaces its state with a snapshot (what the snapshot lacks is deleted); ``POST
  /sync/delta`` applies a batch of upserts and deletes. ``GET /objects`` and ``GET /state``
  show what it holds.
- ``sync``: the listwatch side. An ``HttpReceiver`` whose ``on_list`` POSTs each snapshot to
  ``/sync/full`` and whose ``on_batch`` POSTs each batch to ``/sync/delta``. Any answer but a
  2xx raises, which ends the Syncer's generation: after a backoff it lists again and sends a
  full sync, so the server converges whatever was lost (a 500, a timeout, a server restart).

The wire format (orjson on both sides)::

    POST /sync/full   {"session": S, "generation": G, "resourceVersion": RV,
                       "objects": {"namespace/name": {...}, ...}}
    POST /sync/delta  {"session": S, "generation": G, "resourceVersion": RV,
                       "upserts": {"namespace/name": {...}, ...}, "deletes": ["namespace/name"]}

Each payload says which generation it belongs to, so the server can refuse (409) what is
stale: a full sync older than the one it holds, and a delta of any other generation than the
current one (say a request of an old generation that a timeout abandoned and that arrives after
the new snapshot). Generations count from 1 in every Syncer, so they are compared only within
one ``session``: a random id per receiver process. A restarted receiver starts a new session
with a full sync; one receiver per server is assumed.

Run it against the cluster of your current kubeconfig::

    python examples/http_receiver.py serve --port 8080
    python examples/http_receiver.py sync --url http://127.0.0.1:8080   # --kubeconfig, --namespace
    curl localhost:8080/state
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient

import listwatch

logger = logging.getLogger("http_receiver")

MAX_BODY = 512 * 1024 * 1024
"""A full sync carries every object at once: aiohttp's default 1 MiB limit is far too small."""


# -- the sync server -------------------------------------------------------------------------


class Refused(Exception):
    """The payload is stale or out of sequence: the server answers 409."""


class MirrorState:
    """What the sync server holds: objects by key, and which snapshot they descend from."""

    def __init__(self) -> None:
        self.objects: dict[str, listwatch.JsonObject] = {}
        self.session: str | None = None
        self.generation = 0
        self.resource_version = ""

    def full_sync(self, payload: Mapping[str, Any]) -> None:
        session, generation = str(payload["session"]), int(payload["generation"])
        if session == self.session and generation < self.generation:
            raise Refused(
                f"full sync of generation {generation} after generation {self.generation}"
            )
        objects = payload["objects"]
        if not isinstance(objects, dict):
            raise TypeError("objects must be a JSON object")
        self.objects = objects  # replace: what the snapshot lacks is gone
        self.session, self.generation = session, generation
        self.resource_version = str(payload["resourceVersion"])

    def delta_sync(self, payload: Mapping[str, Any]) -> None:
        session, generation = str(payload["session"]), int(payload["generation"])
        if session != self.session:
            raise Refused("delta before a full sync of this session")
        if generation != self.generation:
            raise Refused(f"delta of generation {generation}; current is {self.generation}")
        upserts, deletes = payload["upserts"], payload["deletes"]
        if not isinstance(upserts, dict) or not isinstance(deletes, list):
            raise TypeError("upserts must be a JSON object and deletes a list")
        self.objects.update(upserts)
        for key in deletes:
            self.objects.pop(key, None)  # deleting an unknown key is fine
        self.resource_version = str(payload["resourceVersion"])


STATE = web.AppKey("state", MirrorState)


def json_response(content: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(content), status=status, content_type="application/json")


async def _apply(request: web.Request, full: bool) -> web.Response:
    state = request.app[STATE]
    try:
        # Read and decode first: applying it is synchronous, so requests cannot interleave.
        payload = orjson.loads(await request.read())
        if full:
            state.full_sync(payload)
        else:
            state.delta_sync(payload)
    except Refused as exc:
        logger.warning("refused: %s", exc)
        return json_response({"error": str(exc)}, 409)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return json_response({"error": f"bad payload: {exc!r}"}, 400)
    return json_response(
        {"generation": state.generation, "resourceVersion": state.resource_version}
    )


async def full_sync(request: web.Request) -> web.Response:
    return await _apply(request, full=True)


async def delta_sync(request: web.Request) -> web.Response:
    return await _apply(request, full=False)


async def get_objects(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].objects)


async def get_state(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return json_response(
        {
            "session": state.session,
            "generation": state.generation,
            "resourceVersion": state.resource_version,
            "objects": len(state.objects),
        }
    )


def create_sync_server(state: MirrorState | None = None) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[STATE] = state if state is not None else MirrorState()
    app.router.add_post("/sync/full", full_sync)
    app.router.add_post("/sync/delta", delta_sync)
    app.router.add_get("/objects", get_objects)
    app.router.add_get("/state", get_state)
    return app


# -- the receiver ----------------------------------------------------------------------------


class SyncRefused(Exception):
    """The sync server answered something else than a 2xx."""


class HttpReceiver:
    """``on_list`` and ``on_batch`` for a Syncer: POST snapshots and batches to the server.

    Snapshot items are keyed with ``listwatch.object_key``, the Syncer's default ``key``; batch
    events arrive keyed by it. Use the same function for both if you pass the Syncer a ``key``.
    """

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self._http = http
        self._url = url.rstrip("/")
        self.session = uuid.uuid4().hex

    async def on_list(self, snapshot: listwatch.Snapshot) -> None:
        # One JSON document holds the whole snapshot: O(cluster) memory on both sides, fine
        # for a small resource. listwatch.sinks.http streams it instead.
        objects = {item.key: item.object async for item in snapshot}
        await self._post(
            "/sync/full",
            {
                "session": self.session,
                "generation": snapshot.generation,
                "resourceVersion": snapshot.resource_version,
                "objects": objects,
            },
        )

    async def on_batch(self, batch: listwatch.Batch) -> None:
        # A batch may hold no events at all (bookmarks only): it still moves the RV forward.
        upserts: dict[str, listwatch.JsonObject] = {}
        deletes: list[str] = []
        for key, event in batch.events.items():
            if event.type is listwatch.EventType.DELETED:
                deletes.append(key)
            else:
                upserts[key] = event.object
        await self._post(
            "/sync/delta",
            {
                "session": self.session,
                "generation": batch.generation,
                "resourceVersion": batch.resource_version,
                "upserts": upserts,
                "deletes": deletes,
            },
        )

    async def _post(self, path: str, payload: Mapping[str, Any]) -> None:
        body = orjson.dumps(payload)
        headers = {"Content-Type": "application/json"}
        async with self._http.post(self._url + path, data=body, headers=headers) as response:
            if not 200 <= response.status < 300:
                detail = (await response.text())[:300]
                # Raising ends the generation: the Syncer relists and sends a full sync.
                raise SyncRefused(f"POST {path}: HTTP {response.status}: {detail}")


def create_syncer(
    api: ApiClient,
    http: aiohttp.ClientSession,
    url: str,
    *,
    resource: str = "pods",
    group: str | None = None,
    version: str = "v1",
    namespace: str | None = None,
    merge_interval: float = 1.0,
    sync_timeout: float | None = 120.0,
    backoff: listwatch.Backoff | None = None,
) -> listwatch.Syncer:
    """A Syncer that mirrors ``resource`` into the sync server at ``url``.

    ``sync_timeout``: a POST that takes longer fails the generation, like an error answer.
    """
    receiver = HttpReceiver(http, url)
    source = listwatch.ListWatch.from_client(
        api, resource, group=group, version=version, namespace=namespace
    )
    return listwatch.Syncer(
        source,
        on_list=receiver.on_list,
        on_batch=receiver.on_batch,
        merge_interval=merge_interval,
        sync_timeout=sync_timeout,
        backoff=backoff,
    )


def cancel_on_sigterm() -> None:
    """Let SIGTERM cancel the running task, as Ctrl-C does: ``async with`` blocks unwind."""
    task = asyncio.current_task()
    assert task is not None
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' loop
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


async def sync(args: argparse.Namespace) -> None:
    """Mirror into the sync server until cancelled (Ctrl-C, SIGTERM)."""
    cancel_on_sigterm()
    async with (
        await listwatch.connect(args.kubeconfig, context=args.context) as api,
        aiohttp.ClientSession() as http,
    ):
        syncer = create_syncer(
            api,
            http,
            args.url,
            resource=args.resource,
            group=args.group,
            version=args.version,
            namespace=args.namespace,
        )
        await syncer.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the sync server")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8080)
    sync_parser = commands.add_parser("sync", help="mirror a resource into the sync server")
    sync_parser.add_argument("--url", default="http://127.0.0.1:8080")
    sync_parser.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    sync_parser.add_argument("--context", help="a kubeconfig context (default: the current one)")
    sync_parser.add_argument("--resource", default="pods", help="plural name (default: pods)")
    sync_parser.add_argument("--group", help="API group (default: the core API)")
    sync_parser.add_argument("--version", default="v1", help="API version (default: v1)")
    sync_parser.add_argument("--namespace", help="one namespace (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "serve":
        web.run_app(create_sync_server(), host=args.host, port=args.port)
    else:
        try:
            asyncio.run(sync(args))
        except (KeyboardInterrupt, asyncio.CancelledError):
            pass  # the Syncer was cancelled and the sessions closed on the way out
        except (listwatch.FatalError, config.ConfigException) as exc:
            # Retrying cannot help (an unknown resource, a bad kubeconfig): say why in one line.
            raise SystemExit(f"http_receiver: {exc}") from None


if __name__ == "__main__":
    main()
