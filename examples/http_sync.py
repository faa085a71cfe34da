"""Keep your own service in sync over HTTP: listwatch's receiver mounted in your aiohttp app.

Two halves, run as two processes:

- ``serve``: *your* service. Its own routes (``GET /pods/{namespace}/{name}``, ``GET
  /state``) read a mirror that listwatch's reference receiver (``listwatch.httpsync.SyncServer``)
  writes, mounted under ``/listwatch/``: it speaks the HTTP sync protocol
  (``docs/http-sync-protocol.md``): a snapshot is one streamed request applied atomically at
  its commit record, a batch one transaction, stale writes refused with 409, and every
  request authenticated with the bearer token.
- ``sync``: the listwatch side, a ``Syncer`` whose receiver is ``HttpSink``. It streams each
  snapshot page by page (neither side ever holds the cluster) and raises on any failure,
  so the Syncer restarts with backoff and a fresh snapshot repairs whatever was lost.

Run it against the cluster of your current kubeconfig::

    echo "$(openssl rand -hex 24)" > token
    python examples/http_sync.py serve --port 8080 --db mirror.db --token-file token
    python examples/http_sync.py sync --url http://127.0.0.1:8080 --token-file token
    curl localhost:8080/state

(``listwatch receiver`` and ``listwatch mirror --http`` are the same two halves as commands.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient

import listwatch
from listwatch.httpsync import SyncServer, TokenFile
from listwatch.sinks.http import HttpSink
from listwatch.sinks.sqlite import SQLiteSink, SQLiteStore

RECEIVER_PREFIX = "/listwatch"
RESOURCE = "pods"
STORE = web.AppKey("store", SQLiteStore)


# -- your service ----------------------------------------------------------------------------


async def _pods(request: web.Request) -> SQLiteSink:
    return await request.app[STORE].sink(RESOURCE)


async def get_pod(request: web.Request) -> web.Response:
    sink = await _pods(request)
    key = f"{request.match_info['namespace']}/{request.match_info['name']}"
    obj = await sink.get(key)
    if obj is None:
        return web.json_response({"error": f"no pod {key}"}, status=404)
    return web.json_response(obj)


async def get_state(request: web.Request) -> web.Response:
    sink = await _pods(request)
    state = await sink.sync_state()
    return web.json_response(
        {
            "objects": await sink.count(),
            "resourceVersion": state.resource_version if state else None,
            "generation": state.generation if state else None,
        }
    )


def create_app(db: Path, token: str | TokenFile) -> web.Application:
    """Your application: its own routes, and listwatch's receiver under ``/listwatch/``."""
    app = web.Application()
    store = SQLiteStore(db)
    app[STORE] = store

    async def close_store(_: web.Application) -> AsyncIterator[None]:
        yield
        await store.close()

    app.cleanup_ctx.append(close_store)
    app.router.add_get("/pods/{namespace}/{name}", get_pod)
    app.router.add_get("/state", get_state)
    app.add_subapp(RECEIVER_PREFIX + "/", SyncServer(store, token=token).app())
    return app


# -- the listwatch side ----------------------------------------------------------------------


def create_syncer(
    api: ApiClient,
    sink: HttpSink,
    *,
    namespace: str | None = None,
    merge_interval: float = 1.0,
    backoff: listwatch.Backoff | None = None,
) -> listwatch.Syncer:
    """A Syncer that mirrors pods through ``sink``.

    ``sync_timeout`` bounds each receiver call as a whole: a receiver that stops reading
    (its disk is full, it hangs) fails the generation instead of stalling it forever.
    """
    source = listwatch.ListWatch.from_client(api, RESOURCE, namespace=namespace)
    return listwatch.Syncer(
        source,
        on_list=sink.on_list,
        on_batch=sink.on_batch,
        merge_interval=merge_interval,
        sync_timeout=300.0,
        backoff=backoff,
    )


def cancel_on_sigterm() -> None:
    """Let SIGTERM cancel the running task, as Ctrl-C does: ``async with`` blocks unwind."""
    task = asyncio.current_task()
    assert task is not None
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' loop
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


async def sync(args: argparse.Namespace) -> None:
    """Mirror into the service until cancelled (Ctrl-C, SIGTERM)."""
    cancel_on_sigterm()
    url = args.url.rstrip("/") + RECEIVER_PREFIX
    async with (
        await listwatch.connect(args.kubeconfig, context=args.context) as api,
        HttpSink(url, token_file=args.token_file, resource=RESOURCE) as sink,
    ):
        await create_syncer(api, sink, namespace=args.namespace).run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the service")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8080)
    serve_parser.add_argument("--db", type=Path, default=Path("mirror.db"))
    serve_parser.add_argument("--token-file", type=Path, required=True)
    sync_parser = commands.add_parser("sync", help="mirror pods into the service")
    sync_parser.add_argument("--url", default="http://127.0.0.1:8080")
    sync_parser.add_argument("--token-file", type=Path, required=True)
    sync_parser.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    sync_parser.add_argument("--context", help="a kubeconfig context (default: the current one)")
    sync_parser.add_argument("--namespace", help="one namespace (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "serve":
        web.run_app(create_app(args.db, TokenFile(args.token_file)), host=args.host, port=args.port)
        return
    try:
        asyncio.run(sync(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass  # the Syncer was cancelled and the sessions closed on the way out
    except (listwatch.FatalError, config.ConfigException) as exc:
        # Retrying cannot help (an unknown resource, a bad kubeconfig): say why in one line.
        raise SystemExit(f"http_sync: {exc}") from None


if __name__ == "__main__":
    main()
