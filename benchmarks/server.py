"""The benchmark's API server: a separate process that only copies pre-serialized bytes.

Clients are measured against this server, so it must never be the bottleneck: it runs in its
own process (its CPU is not the client's), builds every LIST page and every throughput watch
stream before it reports ready, and then only writes bytes, watch streams in ~1 MiB chunks.
The raw-read baseline in the results shows how fast it serves.

URL layout: the scenario is a path prefix, so any client (``kubernetes_asyncio`` included)
can be pointed at it by its ``host``: ``http://127.0.0.1:PORT/<scenario>/api/v1/pods``.

* ``list<N>``: a PodList of the first N pods; with ``limit`` it pages (``continue`` tokens,
  ``remainingItemCount``), without it the whole list in one body.
* ``unique``, ``hot``: LIST is an empty PodList at RV "1"; WATCH from RV "1" streams the
  pre-built events (RVs 2..N+1), then holds the connection open and silent (a listwatch
  re-watch from a later RV gets the same silent stream, so it never re-reads anything).
* ``stall``: like ``unique`` but ``--stall-events`` events cycling over ``--stall-keys``
  keys, made while writing, so a million events need not sit in memory. A stalled reader
  stops the writer through TCP flow control.
* ``sharded``: the ``unique`` stream as a server with ``ShardedListAndWatch`` serves it
  (``benchmarks.shards``): a LIST or WATCH whose ``shardSelector`` is that of shard I of N
  (N in ``--shard-counts``) gets the empty PodList with the selector echoed in
  ``metadata.shardInfo``, and the stream of that shard's events alone, ended by a bookmark
  at the stream's last RV (as the watch cache bookmarks past what it filtered); any other
  selector is a 400. ``unique`` ignores the parameter, as a server without the gate does.
* ``latency<R>x<S>``: R events/s for S seconds, each stamped (an annotation) with
  ``time.time()`` just before it is written.
* ``cluster<N>``: N pods behind the full list/watch protocol that ``listwatch mirror`` speaks
  (bearer token, paged and streaming lists, watches from an RV, metadata-only, churn on
  request): see ``benchmarks.cluster``. ``clustergz<N>`` is the same cluster with LIST
  responses gzip-compressed, as kube-apiserver sends them. Built with ``--cluster-size``
  (the largest N); the token is read from the ``BENCH_TOKEN`` environment variable, never
  from the command line.

Run alone: ``python -m benchmarks.server --port 8080``; it prints ``READY <port>`` when the
payloads are built, and stops on SIGTERM or SIGINT (or, with ``--stop-on-stdin-eof``, when
its stdin closes: the driver's pipe, so the server never outlives the driver).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from benchmarks import payloads
from benchmarks.cluster import ClusterApi, PodBytes
from listwatch._shard import Shard

CHUNK_BYTES = 1024 * 1024
"""Watch streams are written in chunks of about this size: few syscalls per event."""

HOLD_POLL_SECONDS = 0.2
_LATENCY = re.compile(r"latency(\d+)x(\d+(?:\.\d+)?)")
_LIST = re.compile(r"list(\d+)")
_CLUSTER = re.compile(r"cluster(gz)?(\d+)")


@dataclass
class Payloads:
    """Everything the server sends, built before it says READY."""

    list_pages: dict[int, dict[int, bytes]] = field(default_factory=dict)
    """``{list size: {offset: page body}}`` for ``limit=page_size``."""
    list_items: list[bytes] = field(default_factory=list)
    page_size: int = 500
    streams: dict[str, list[bytes]] = field(default_factory=dict)
    """Pre-built watch streams as chunks: ``unique`` and ``hot``."""
    stall_events: int = 0
    stall_keys: int = 0
    latency_keys: int = 5000
    cluster_pods: PodBytes | None = None
    """The pods of the ``cluster<N>`` scenarios (``--cluster-size``)."""
    shard_streams: dict[str, list[bytes]] = field(default_factory=dict)
    """The ``sharded`` scenario's streams, by the ``shardSelector`` that asks for each."""


def _chunked(lines: Iterator[bytes]) -> list[bytes]:
    chunks: list[bytes] = []
    pending: list[bytes] = []
    size = 0
    for line in lines:
        pending.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            chunks.append(b"".join(pending))
            pending, size = [], 0
    if pending:
        chunks.append(b"".join(pending))
    return chunks


def _event_lines(count: int, keys: int | None) -> Iterator[bytes]:
    """``count`` MODIFIED lines, RVs 2..count+1; unique keys, or cycling over ``keys``."""
    templates = [payloads.event_template(i) for i in range(keys)] if keys else None
    for i in range(count):
        template = templates[i % len(templates)] if templates else payloads.event_template(i)
        yield template.line(payloads.format_rv(i + 2))


def _shard_lines(count: int, shard: Shard) -> Iterator[bytes]:
    """The ``unique`` stream's lines of the pods ``shard`` holds, then a bookmark at the
    stream's last RV (pod ``i`` is pod ``i % POOL_SIZE`` renamed: the same uid)."""
    holds = [
        shard.holds_uid(payloads.pod(base)["metadata"]["uid"])
        for base in range(min(count, payloads.POOL_SIZE))
    ]
    for i in range(count):
        if holds[i % payloads.POOL_SIZE]:
            yield payloads.event_template(i).line(payloads.format_rv(i + 2))
    last = payloads.format_rv(count + 1).decode()
    metadata = {"resourceVersion": last}
    bookmark = {
        "type": "BOOKMARK",
        "object": {"kind": "Pod", "apiVersion": "v1", "metadata": metadata},
    }
    yield orjson.dumps(bookmark) + b"\n"


def build(args: argparse.Namespace) -> Payloads:
    """Serialize every payload up front, so serving is only copying."""
    built = Payloads(page_size=args.page_size)
    sizes = sorted({int(n) for n in args.list_sizes.split(",") if n})
    if sizes:
        built.list_items = list(payloads.pod_items(sizes[-1]))
    for size in sizes:
        items = built.list_items[:size]
        pages: dict[int, bytes] = {}
        for offset in range(0, size, args.page_size):
            end = offset + args.page_size
            more = end < size
            pages[offset] = payloads.pod_list_page(
                items[offset:end],
                continue_token=f"{size}:{end}" if more else None,
                remaining=size - end if more else None,
            )
        built.list_pages[size] = pages
    if args.watch_events:
        built.streams["unique"] = _chunked(_event_lines(args.watch_events, None))
        built.streams["hot"] = _chunked(_event_lines(args.hot_events, args.hot_keys))
    for count in sorted({int(n) for n in args.shard_counts.split(",") if n}):
        for index in range(count):
            shard = Shard.of(index, count)
            lines = _shard_lines(args.watch_events, shard)
            built.shard_streams[shard.selector] = _chunked(lines)
    built.stall_events = args.stall_events
    built.stall_keys = args.stall_keys
    built.latency_keys = args.latency_keys
    if args.cluster_size:
        built.cluster_pods = PodBytes.build(args.cluster_size)
    return built


class BenchServer:
    """The aiohttp handlers over a ``Payloads``."""

    def __init__(
        self, built: Payloads, *, token: str = "", bookmark_interval: float = 10.0
    ) -> None:
        self.built = built
        self._clusters = (
            ClusterApi(built.cluster_pods, token, bookmark_interval=bookmark_interval)
            if built.cluster_pods is not None and token
            else None
        )
        self._stall_templates: list[payloads.EventTemplate] | None = None
        self._latency_templates: list[payloads.EventTemplate] | None = None

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        parts = request.path.strip("/").split("/")
        cluster = _CLUSTER.fullmatch(parts[0])
        if cluster is not None and self._clusters is not None:
            return await self._clusters.handle(
                request, int(cluster.group(2)), parts[1:], gzip_lists=bool(cluster.group(1))
            )
        if len(parts) != 4 or parts[1:] != ["api", "v1", "pods"]:
            return web.Response(status=404, text="not a benchmark path")
        scenario = parts[0]
        query = request.query
        if scenario == "sharded":
            return await self._sharded(request, query.get("shardSelector", ""))
        if query.get("watch", "").lower() in ("true", "1"):
            return await self._watch(request, scenario, query.get("resourceVersion", ""))
        return self._list(scenario, query.get("limit"), query.get("continue"))

    def _list(self, scenario: str, limit: str | None, token: str | None) -> web.Response:
        match = _LIST.fullmatch(scenario)
        if match is None:
            return _json(payloads.EMPTY_POD_LIST)
        size = int(match.group(1))
        pages = self.built.list_pages.get(size)
        if pages is None:
            return web.Response(status=404, text=f"list of {size} not built")
        if not limit:
            items = self.built.list_items[:size]
            return _json(payloads.pod_list_page(items, continue_token=None, remaining=None))
        if int(limit) != self.built.page_size:
            return web.Response(
                status=400, text=f"pages are built for limit={self.built.page_size}"
            )
        offset = int(token.split(":")[1]) if token else 0
        return _json(pages[offset])

    async def _watch(self, request: web.BaseRequest, scenario: str, rv: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            if rv == payloads.LIST_RESOURCE_VERSION:
                if scenario in self.built.streams:
                    for chunk in self.built.streams[scenario]:
                        await response.write(chunk)
                elif scenario == "stall":
                    await self._write_stall(response)
                elif match := _LATENCY.fullmatch(scenario):
                    await self._write_timed(response, int(match.group(1)), float(match.group(2)))
            await _hold(request)
        except (ConnectionResetError, ConnectionError):
            pass  # the client stopped reading: the stock and raw clients stop after N events
        return response

    async def _sharded(self, request: web.BaseRequest, selector: str) -> web.StreamResponse:
        stream = self.built.shard_streams.get(selector)
        if stream is None:
            return web.Response(status=400, text="no stream built for that shardSelector")
        if request.query.get("watch", "").lower() not in ("true", "1"):
            body = orjson.loads(payloads.EMPTY_POD_LIST)
            body["metadata"]["shardInfo"] = {"selector": selector}
            return _json(orjson.dumps(body))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            if request.query.get("resourceVersion") == payloads.LIST_RESOURCE_VERSION:
                for chunk in stream:
                    await response.write(chunk)
            await _hold(request)
        except (ConnectionResetError, ConnectionError):
            pass
        return response

    async def _write_stall(self, response: web.StreamResponse) -> None:
        if self._stall_templates is None:
            self._stall_templates = [
                payloads.event_template(i) for i in range(self.built.stall_keys)
            ]
        templates = self._stall_templates
        keys, total = len(templates), self.built.stall_events
        per_chunk = max(1, CHUNK_BYTES // len(templates[0].line(b"0")))
        for start in range(0, total, per_chunk):
            parts: list[bytes] = []
            for i in range(start, min(total, start + per_chunk)):
                parts.extend(templates[i % keys].parts(payloads.format_rv(i + 2)))
            await response.write(b"".join(parts))

    async def _write_timed(self, response: web.StreamResponse, rate: int, seconds: float) -> None:
        if self._latency_templates is None:
            self._latency_templates = [
                payloads.event_template(i) for i in range(self.built.latency_keys)
            ]
        templates = self._latency_templates
        total = int(rate * seconds)
        started = time.monotonic()
        sent = 0
        while sent < total:
            due = min(total, int((time.monotonic() - started) * rate) + 1)
            if due > sent:
                stamp = payloads.format_sent_at(time.time())
                parts: list[bytes] = []
                for i in range(sent, due):
                    template = templates[i % len(templates)]
                    parts.extend(template.parts(payloads.format_rv(i + 2), stamp))
                await response.write(b"".join(parts))
                sent = due
            await asyncio.sleep(0.001)


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


async def _hold(request: web.BaseRequest) -> None:
    """Keep a watch open and silent until the client goes away, as an idle apiserver does."""
    # Polled: a low-level aiohttp request has no close notification to wait on.
    while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
        await asyncio.sleep(HOLD_POLL_SECONDS)


async def serve(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    built = build(args)
    token = os.environ.get("BENCH_TOKEN", "")
    if args.cluster_size and not token:
        raise SystemExit("--cluster-size needs the bearer token in $BENCH_TOKEN")
    handler = BenchServer(built, token=token, bookmark_interval=args.bookmark_interval)
    server = web.Server(handler.handle)
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=128)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.stop_on_stdin_eof:  # the driver's pipe: the server cannot outlive the driver
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    print(f"READY {port} built_in={time.perf_counter() - started:.1f}s", flush=True)
    await stop.wait()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(runner.cleanup(), 2.0)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--page-size", type=int, default=500)
    p.add_argument("--list-sizes", default="10000,50000", help="comma-separated pod counts")
    p.add_argument("--watch-events", type=int, default=100_000)
    p.add_argument("--hot-keys", type=int, default=500)
    p.add_argument("--hot-events", type=int, default=200_000)
    p.add_argument("--stall-events", type=int, default=1_000_000)
    p.add_argument("--stall-keys", type=int, default=10_000)
    p.add_argument("--latency-keys", type=int, default=5000)
    p.add_argument("--cluster-size", type=int, default=0, help="pods of the cluster<N> scenarios")
    p.add_argument("--shard-counts", default="", help="comma-separated: the sharded streams")
    p.add_argument("--bookmark-interval", type=float, default=10.0, help="cluster<N> watches")
    p.add_argument("--stop-on-stdin-eof", action="store_true")
    return p


def main() -> None:
    asyncio.run(serve(parser().parse_args()))


if __name__ == "__main__":
    main()
