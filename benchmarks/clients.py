"""One measured client run, in a fresh process: ``python -m benchmarks.clients '<json spec>'``.

Each run gets its own interpreter so that its peak RSS is its own (a heap that an earlier
run grew is never given back to the OS) and so that no run warms caches for the next. The
process imports every client's modules (the same heap for all: the size of the heap is what
a full GC pass walks), notes its RSS (the baseline), resets the kernel's high-water mark,
runs, and prints one ``RESULT {json}`` line: wall, CPU and GC seconds, peak RSS over the
baseline, and what the scenario counts.

Clients (``spec["client"]``):

* ``raw-read``: the response bytes only, no parsing: the server's and the transport's ceiling.
* ``raw``: plain aiohttp and ``orjson.loads``, the fastest a hand-written client gets (for
  WATCH: ``readany()`` and one ``split`` per chunk).
* ``raw-readline`` (WATCH): aiohttp's ``readline()`` and ``orjson.loads`` per line, the
  ceiling the WATCH targets are set against.
* ``listwatch``: ``ListWatch.from_client`` over a ``kubernetes_asyncio`` ApiClient;
  ``open_paged_list`` for LIST (the snapshot stream ``on_list`` reads), a ``Syncer`` whose
  ``on_batch`` reads every object it gets for WATCH (``spec["read"]``: as ``Event.object``,
  ``Event.parse()`` or ``Event.json``).
* ``stock``: ``CoreV1Api.list_pod_for_all_namespaces`` and ``watch.Watch().stream``, models.

Every client touches each object it got (a name or a resourceVersion), as a receiver would;
for listwatch's lazily decoded watch objects that is what triggers the parse.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import sys
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks import payloads

Spec = dict[str, Any]
Result = dict[str, Any]

_TOKEN = "bench"
_CONTINUE = b'"continue":"'


# -- memory -------------------------------------------------------------------------------


def _proc_status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` field in MB (Linux); None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def rss_mb() -> float:
    """The current resident set size."""
    current = _proc_status_mb("VmRSS")
    if current is not None:
        return current
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: the peak


def peak_mb() -> float:
    """The resident set's high-water mark (since the last :func:`reset_peak`)."""
    peak = _proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS, so import-time peaks do not count (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class GcTimer:
    """Time spent in the cyclic garbage collector, per generation (a ``gc.callbacks`` hook).

    The collector's passes over freshly parsed, still-referenced dicts are the single
    largest cost the profiles show, so every run reports them.
    """

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            generation = info["generation"]
            self.seconds[generation] += time.perf_counter() - self._started
            self.collections[generation] += 1

    def stop(self) -> dict[str, Any]:
        gc.callbacks.remove(self._callback)
        return {"gc_s": sum(self.seconds), "gc_s_by_gen": self.seconds, "gc_runs": self.collections}


class Meter:
    """Wall time, CPU time, GC time and RSS over one measured operation."""

    def __init__(self) -> None:
        gc.collect()
        self.baseline_mb = rss_mb()
        self.peak_reset = reset_peak()
        self.gc = GcTimer()
        self.cpu0 = cpu_seconds()
        self.t0 = time.perf_counter()

    def finish(self, result: Result, *, end: float | None = None) -> Result:
        """Fill in the measurements; ``end`` (a ``perf_counter``) if the work ended earlier."""
        result["wall_s"] = (end if end is not None else time.perf_counter()) - self.t0
        result["cpu_s"] = cpu_seconds() - self.cpu0
        result["baseline_mb"] = self.baseline_mb
        result["peak_mb"] = max(0.0, peak_mb() - self.baseline_mb)
        result["end_mb"] = rss_mb() - self.baseline_mb
        result["peak_reset"] = self.peak_reset
        result.update(self.gc.stop())
        return result


# -- clients of the API -------------------------------------------------------------------


def _api_client(url: str) -> Any:
    from kubernetes_asyncio.client import ApiClient, Configuration  # noqa: PLC0415

    configuration = Configuration(
        host=url,
        api_key={"BearerToken": _TOKEN},
        api_key_prefix={"BearerToken": "Bearer"},
    )
    return ApiClient(configuration=configuration)


def _session() -> aiohttp.ClientSession:
    """A plain aiohttp session; with ``$BENCH_TOKEN`` set it authenticates as a bearer
    (the ``cluster<N>`` scenarios require it; the token never goes on a command line)."""
    token = os.environ.get("BENCH_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_read=120), headers=headers
    )


def _continue_in_head(body: bytes) -> str | None:
    """The continue token, found in the list's metadata without parsing the body."""
    at = body.find(_CONTINUE, 0, 512)
    if at < 0:
        return None
    start = at + len(_CONTINUE)
    return body[start : body.index(b'"', start)].decode()


# -- LIST ---------------------------------------------------------------------------------


async def list_raw_read(spec: Spec) -> Result:
    url, limit = spec["url"] + "/api/v1/pods", spec["page_size"]
    meter = Meter()
    total = pages = 0
    token: str | None = None
    async with _session() as session:
        while True:
            params = {"limit": str(limit), **({"continue": token} if token else {})}
            async with session.get(url, params=params) as response:
                body = await response.read()
            total += len(body)
            pages += 1
            token = _continue_in_head(body)
            if token is None:
                break
    return meter.finish({"bytes": total, "pages": pages, "items": spec["count"]})


async def list_raw(spec: Spec) -> Result:
    url, limit = spec["url"] + "/api/v1/pods", spec["page_size"]
    meter = Meter()
    items: list[dict[str, Any]] = []
    token: str | None = None
    async with _session() as session:
        while True:
            params = {"limit": str(limit), **({"continue": token} if token else {})}
            async with session.get(url, params=params) as response:
                body = orjson.loads(await response.read())
            items.extend(body["items"])
            token = body["metadata"].get("continue")
            if not token:
                break
    names = {item["metadata"]["name"] for item in items}
    return meter.finish({"items": len(names)})


async def list_listwatch(spec: Spec) -> Result:
    from listwatch import ListWatch  # noqa: PLC0415
    from listwatch._backoff import Backoff  # noqa: PLC0415
    from listwatch._models import Snapshot  # noqa: PLC0415
    from listwatch._reflector import open_paged_list  # noqa: PLC0415

    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    if spec.get("transform"):

        def transform(obj: dict[str, Any]) -> dict[str, Any]:
            obj["metadata"].pop("managedFields", None)
            return obj

    meter = Meter()
    names: set[str] = set()
    async with _api_client(spec["url"]) as api:
        # version=: the payload server serves no discovery (nothing to resolve "pods" by).
        source = ListWatch.from_client(api, "pods", version="v1", shard=spec.get("shard"))
        listing = await open_paged_list(source, page_size=spec["page_size"], backoff=Backoff())
        async with listing:
            snapshot = Snapshot(listing.pages, resource_version=listing.resource_version)
            # A receiver that reads every object (parsed once, not kept), as the raw client;
            # read "object": through Item.object, as a receiver that keeps nothing would.
            by_object = spec.get("read", "parse") == "object"
            async for item in snapshot:
                obj = item.object if by_object else item.parse()
                obj = obj if transform is None else transform(obj)
                names.add(obj["metadata"]["name"])
    return meter.finish({"items": len(names)})


async def list_stock(spec: Spec) -> Result:
    from kubernetes_asyncio.client import CoreV1Api  # noqa: PLC0415

    meter = Meter()
    items: list[Any] = []
    async with _api_client(spec["url"]) as api:
        v1 = CoreV1Api(api)
        token: str | None = None
        while True:
            options: dict[str, Any] = {"_continue": token} if token else {}
            page = await v1.list_pod_for_all_namespaces(limit=spec["page_size"], **options)
            items.extend(page.items)
            token = page.metadata._continue
            if not token:
                break
    names = {item.metadata.name for item in items}
    return meter.finish({"items": len(names)})


# -- WATCH throughput ---------------------------------------------------------------------


def _watch_url(spec: Spec) -> str:
    url: str = spec["url"]
    return url + "/api/v1/pods?watch=true&resourceVersion=1&allowWatchBookmarks=true"


async def watch_raw_read(spec: Spec) -> Result:
    count = spec["count"]
    meter = Meter()
    lines = total = 0
    async with _session() as session, session.get(_watch_url(spec)) as response:
        content = response.content
        while lines < count:
            chunk = await content.readany()
            if not chunk:
                break
            total += len(chunk)
            lines += chunk.count(b"\n")
    return meter.finish({"events": min(lines, count), "bytes": total})


async def watch_raw(spec: Spec) -> Result:
    count = spec["count"]
    meter = Meter()
    events = 0
    rv = ""
    async with _session() as session, session.get(_watch_url(spec)) as response:
        content = response.content
        partial = b""
        while events < count:
            chunk = await content.readany()
            if not chunk:
                break
            lines = (partial + chunk if partial else chunk).split(b"\n")
            partial = lines.pop()
            for line in lines:
                rv = orjson.loads(line)["object"]["metadata"]["resourceVersion"]
                events += 1
    return meter.finish({"events": events, "last_rv": rv})


async def watch_raw_readline(spec: Spec) -> Result:
    """The WATCH ceiling: aiohttp's ``readline()`` and ``orjson.loads`` per line."""
    count = spec["count"]
    meter = Meter()
    events = 0
    rv = ""
    async with _session() as session, session.get(_watch_url(spec)) as response:
        content = response.content
        while events < count:
            line = await content.readline()
            if not line:
                break
            rv = orjson.loads(line)["object"]["metadata"]["resourceVersion"]
            events += 1
    return meter.finish({"events": events, "last_rv": rv})


async def watch_stock(spec: Spec) -> Result:
    from kubernetes_asyncio import watch  # noqa: PLC0415
    from kubernetes_asyncio.client import CoreV1Api  # noqa: PLC0415

    count = spec["count"]
    meter = Meter()
    events = 0
    rv = ""
    async with _api_client(spec["url"]) as api:
        v1 = CoreV1Api(api)
        watcher = watch.Watch()
        async with watcher.stream(
            v1.list_pod_for_all_namespaces,
            resource_version=payloads.LIST_RESOURCE_VERSION,
            allow_watch_bookmarks=True,
            timeout_seconds=3600,
        ) as stream:
            async for event in stream:
                rv = event["object"].metadata.resource_version
                events += 1
                if events >= count:
                    watcher.stop()
                    break
    return meter.finish({"events": events, "last_rv": rv})


STOP_TIMEOUT = 3.0
"""How long leaving ``async with syncer`` may take before the run gives up waiting."""


async def _run_syncer(
    spec: Spec,
    on_batch: Callable[[Any], Awaitable[None]],
    done: asyncio.Event,
    *,
    wrap: Callable[[Any], Any] | None = None,
    on_start: Callable[[Any], None] | None = None,
) -> float | None:
    """A Syncer over the scenario until ``done`` is set; returns how long it took to stop.

    The stop is timed, not trusted: stopping is cancellation, and a Syncer whose pipeline is
    busy has been seen to keep delivering batches for seconds after its task was cancelled
    (None: it had not stopped after ``STOP_TIMEOUT``; ``main`` then exits the process
    without waiting for it).
    """
    from listwatch import ListWatch, Snapshot, Syncer  # noqa: PLC0415

    async def on_list(snapshot: Snapshot) -> None:
        async for _ in snapshot:
            raise RuntimeError("the watch scenarios list an empty PodList")

    async with _api_client(spec["url"]) as api:
        # version=: the payload server serves no discovery (nothing to resolve "pods" by).
        source = ListWatch.from_client(api, "pods", version="v1", shard=spec.get("shard"))
        if wrap is not None:
            source = wrap(source)
        options = {"max_batch": spec["max_batch"]} if "max_batch" in spec else {}
        syncer = Syncer(
            source,
            on_list=on_list,
            on_batch=on_batch,
            merge_interval=spec["merge_interval"],
            # The payload server serves paged LISTs only (a streaming list would wait out
            # INITIAL_EVENTS_QUIET_SECONDS on its silent stream before falling back).
            list_strategy="paged",
            **options,
        )
        if on_start is not None:
            on_start(syncer)
        await syncer.__aenter__()
        try:
            await asyncio.wait_for(done.wait(), spec.get("timeout", 600))
        finally:
            stopping = time.perf_counter()
            stop = asyncio.ensure_future(syncer.__aexit__(None, None, None))
            await asyncio.wait([stop], timeout=STOP_TIMEOUT)
        if not stop.done():
            return None
        stop.result()
        return time.perf_counter() - stopping


def _reader(how: str) -> Callable[[Any], object]:
    """How the receiver reads each event's object (``spec["read"]``).

    ``object``: ``Event.object``, parsed and kept while it is the batch's current object
    (until the batch was dropped, before issue 22's one-slot rule); ``parse``:
    ``Event.parse()``, parsed and let go at once; ``json``: the raw bytes (``Event.json``),
    as a receiver that forwards JSON takes them, never parsed.
    """
    if how == "object":
        return lambda event: event.object["metadata"]["resourceVersion"]
    if how == "parse":
        return lambda event: event.parse()["metadata"]["resourceVersion"]
    if how == "json":
        return lambda event: len(event.json)
    raise ValueError(f"unknown read {how!r}")


async def watch_listwatch(spec: Spec) -> Result:
    last_rv = payloads.format_rv(spec["last_rv"]).decode()
    done = asyncio.Event()
    batches: list[tuple[float, int, int]] = []
    read = _reader(spec.get("read", "object"))
    meter = Meter()

    ended: list[float] = []

    async def on_batch(batch: Any) -> None:
        entered = time.perf_counter() - meter.t0
        for event in batch.events.values():
            read(event)
        batches.append((entered, len(batch), batch.received))
        if batch.resource_version == last_rv:
            ended.append(time.perf_counter())
            done.set()

    stop_s = await _run_syncer(spec, on_batch, done)
    result = meter.finish({"stop_s": stop_s}, end=ended[0])
    result["events"] = sum(received for _, _, received in batches)
    result["objects"] = sum(size for _, size, _ in batches)
    result["batches"] = [list(b) for b in batches]
    return result


# -- latency ------------------------------------------------------------------------------


def _sent_at(obj: dict[str, Any]) -> float:
    return float(obj["metadata"]["annotations"][payloads.SENT_AT_ANNOTATION])


async def latency_listwatch(spec: Spec) -> Result:
    last_rv = payloads.format_rv(spec["last_rv"]).decode()
    done = asyncio.Event()
    latencies: list[float] = []
    received = 0
    meter = Meter()

    async def on_batch(batch: Any) -> None:
        nonlocal received
        now = time.time()
        latencies.extend(now - _sent_at(event.object) for event in batch.events.values())
        received += batch.received
        if batch.resource_version == last_rv:
            done.set()

    stop_s = await _run_syncer(spec, on_batch, done)
    return meter.finish({"latencies": latencies, "events": received, "stop_s": stop_s})


async def latency_raw(spec: Spec) -> Result:
    count = spec["count"]
    latencies: list[float] = []
    meter = Meter()
    async with _session() as session, session.get(_watch_url(spec)) as response:
        content = response.content
        partial = b""
        while len(latencies) < count:
            chunk = await content.readany()
            if not chunk:
                break
            lines = (partial + chunk if partial else chunk).split(b"\n")
            partial = lines.pop()
            for line in lines:
                obj = orjson.loads(line)["object"]
                latencies.append(time.time() - _sent_at(obj))
    return meter.finish({"latencies": latencies, "events": len(latencies)})


# -- stalled receiver ---------------------------------------------------------------------


async def stall_listwatch(spec: Spec) -> Result:
    """The receiver blocks in its first ``on_batch`` while the server pushes; RSS is sampled.

    A counting wrapper around the watch tells how many events the client took off the wire
    (only here: it costs a generator hop per network chunk).
    """
    from listwatch import ListWatch  # noqa: PLC0415

    try:
        from listwatch._kube.resource import WatchStream  # noqa: PLC0415
    except ImportError:  # measuring a listwatch without Item.parse()
        WatchStream = None

    stall_s, release_s = spec["stall_seconds"], spec["release_seconds"]
    last_rv = payloads.format_rv(spec["last_rv"]).decode()
    taken = [0]
    delivered = [0]
    marks: dict[str, float] = {}
    samples: list[list[float]] = []
    done = asyncio.Event()
    syncers: list[Any] = []
    meter = Meter()

    def wrap(inner: ListWatch) -> ListWatch:
        # Counted by the chunk, so that the Syncer still reads the stream as it would
        # unwrapped: one list of events per network chunk.
        def watch(options: Any) -> Any:
            stream = inner.watch(options)
            if WatchStream is None or not isinstance(stream, WatchStream):
                return one_by_one(stream)  # an older listwatch: events one by one

            async def counted() -> AsyncGenerator[list[Any], None]:
                try:
                    async with aclosing(stream.event_lists()) as lists:
                        async for events in lists:
                            taken[0] += len(events)
                            yield events
                finally:
                    await stream.aclose()

            return WatchStream(counted())

        async def one_by_one(stream: Any) -> AsyncGenerator[Any, None]:
            async with aclosing(stream):
                async for event in stream:
                    taken[0] += 1
                    yield event

        return ListWatch(list_func=inner.list, watch_func=watch, description=inner.description)

    def finish() -> None:
        marks["release_end"] = time.perf_counter() - meter.t0
        marks["delivered_at_end"] = delivered[0]
        done.set()

    async def on_batch(batch: Any) -> None:
        if "stall_start" not in marks:
            marks["stall_start"] = time.perf_counter() - meter.t0
            await asyncio.sleep(stall_s)
            marks["stall_end"] = time.perf_counter() - meter.t0
            asyncio.get_running_loop().call_later(release_s, finish)
        for event in batch.events.values():
            event.object["metadata"]["resourceVersion"]
        delivered[0] += batch.received
        if batch.resource_version == last_rv:
            finish()

    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.wait(spec.get("sample_interval", 0.5)):
            queued = pending = -1
            if syncers:
                try:
                    status = syncers[0].status
                    queued, pending = status.queued_events, status.pending_keys
                except RuntimeError:  # a structure changed under us; skip this one
                    pass
            elapsed = time.perf_counter() - meter.t0
            samples.append(
                [elapsed, rss_mb() - meter.baseline_mb, taken[0], delivered[0], queued, pending]
            )

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stop_s = await _run_syncer(spec, on_batch, done, wrap=wrap, on_start=syncers.append)
    finally:
        stop_sampling.set()
        sampler.join()
    return meter.finish(
        {
            "samples": samples,
            "marks": marks,
            "taken": taken[0],
            "delivered": delivered[0],
            "stop_s": stop_s,
        }
    )


CLIENTS: dict[tuple[str, str], Callable[[Spec], Awaitable[Result]]] = {
    ("list", "raw-read"): list_raw_read,
    ("list", "raw"): list_raw,
    ("list", "listwatch"): list_listwatch,
    ("list", "stock"): list_stock,
    ("watch", "raw-read"): watch_raw_read,
    ("watch", "raw"): watch_raw,
    ("watch", "raw-readline"): watch_raw_readline,
    ("watch", "listwatch"): watch_listwatch,
    ("watch", "stock"): watch_stock,
    ("latency", "raw"): latency_raw,
    ("latency", "listwatch"): latency_listwatch,
    ("stall", "listwatch"): stall_listwatch,
}


async def _profiled(run: Awaitable[Result], path: str) -> Result:
    """Under pyinstrument (``spec["pyinstrument"]``): a text and an HTML report at ``path``."""
    from pyinstrument import Profiler  # noqa: PLC0415

    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        return await run
    finally:
        profiler.stop()
        _write_profile(profiler, path)


def _write_profile(profiler: Any, path: str) -> None:
    Path(path + ".txt").write_text(profiler.output_text(unicode=True, show_all=False))
    Path(path + ".html").write_text(profiler.output_html())


def _import_everything() -> None:
    """Import what any client uses before the baseline is taken: imports are not the cost."""

    import listwatch._kube.resource  # noqa: PLC0415
    import listwatch._reflector  # noqa: F401, PLC0415


def main() -> None:
    spec: Spec = json.loads(sys.argv[1])
    _import_everything()
    run = CLIENTS[spec["kind"], spec["client"]](spec)
    if spec.get("pyinstrument"):
        run = _profiled(run, spec["pyinstrument"])
    loop = asyncio.new_event_loop()
    result = loop.run_until_complete(run)
    print("RESULT " + json.dumps(result), flush=True)
    # Not asyncio.run's cleanup: a Syncer that did not stop in time would be waited for.
    os._exit(0)


if __name__ == "__main__":
    main()
