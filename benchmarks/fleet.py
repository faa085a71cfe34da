"""The fleet: C clusters x P pods through R receivers into one PostgreSQL, for R = 1 and 2.

``python -m benchmarks.fleet --clusters 100 --pods 2000`` writes
``benchmarks/results/fleet.{md,json}`` (``--report NAME``: ``NAME.{md,json}``); the
defaults (4 x 500, 10 s of churn) are a quick run. Per R, on a fresh database of one
PostgreSQL server (the tests' throwaway server with PostgreSQL's default settings, fsync
on, or ``--postgres-dsn`` of a server where databases may be created):

* **the clusters**: one process (``serve``) holds C fake API servers, each at its own path
  prefix (``/c007/api/v1/pods``), each with P pods of ~7 KB (``benchmarks.cluster``: paged
  and streaming lists, watches, bookmarks, kube-apiserver's answers), its own RV and its own
  churn; the pods' bytes are built once and shared, so C x P pods cost P pods of memory.
  Churn is one ticking task for every cluster (C tasks waking every 5 ms would spend more
  CPU than the clusters);
* **the receivers**: R real ``listwatch receiver --postgres DSN --clients FILE`` processes;
  the clients file names each cluster with the SHA-256 of its own token. A receiver
  without ``--clients`` (before the fleet's receiver) serves one cluster: then there is one
  receiver per cluster, each with ``--token-file`` and a database of its own, and one run;
* **the agents**: not C ``listwatch mirror`` processes (C interpreters would not fit two
  cores), but ``--senders`` processes (``send``) each running a share of the clusters'
  Syncers, each Syncer with its own API client and its own ``HttpSink``, exactly what a
  mirror runs per resource (paged lists, ``strip_managed_fields``, the mirror's merge
  interval of 3 s), with its cluster's token and every receiver's URL, cluster i starting on
  receiver i mod R (the README's advice to spread a fleet: each agent its own order).

What is measured, from the senders' own clocks (``time.monotonic()``, one clock for every
process of the machine):

* **initial sync**: C x P over the time from the first Syncer's start to the last cluster's
  first snapshot committed (``on_list`` returned: the receiver answered 200 after COMMIT);
* **steady churn**: every cluster changes ``--churn-rate`` pods/s for ``--churn-seconds``;
  events/s is every churn event over the time from the churn's start until every cluster's
  committed RV has reached its last event (the tier keeps up when it is the offered rate
  times ``seconds / (seconds + lag)``);
* **batch commit latency**: each batch request with events during the churn, from the
  sender's POST to the receiver's 200 (after its COMMIT): p50, p99, max;
* **receiver RSS**: each receiver's ``VmHWM`` (peak resident set) and ``VmRSS`` at the end;
* **rows**: at the end every cluster holds exactly P rows of pods.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiohttp import web

from benchmarks import run as harness
from benchmarks.cluster import Cluster, ClusterApi, PodBytes, StatusError
from benchmarks.memory import proc_status_mib
from benchmarks.run import RESULTS, machine

HERE = Path(__file__).resolve().parent
SERVING = re.compile(r"listwatch receiver: serving (http://127\.0\.0\.1:\d+)")
PREFIX = re.compile(r"/c(\d+)(/.*)")
CHURN_TICK = 0.1
"""Seconds between churn ticks: each tick makes every cluster's due events at once."""
BOOKMARK_INTERVAL = 60.0
"""kube-apiserver's watch cache sends a bookmark about every minute."""
MERGE_INTERVAL = 3.0
"""``listwatch mirror``'s default ``--merge-interval``."""
SYNC_TIMEOUT = 1800.0
"""A safety net for each wait of the driver, never a measurement."""


def cluster_name(index: int) -> str:
    return f"c{index:03d}"


# -- the clusters (``serve``) ---------------------------------------------------------------


class FleetApi(ClusterApi):
    """``benchmarks.cluster``'s API server for C clusters of the same size: the number
    ``handle`` is given (a size, for ``cluster<N>``) is here the cluster's index."""

    def __init__(self, clusters: int, pods: PodBytes, token: str) -> None:
        super().__init__(pods, token, bookmark_interval=BOOKMARK_INTERVAL)
        self.fleet = [
            Cluster(
                size=len(pods.full),
                pods=pods,
                resource_version=10_000 + len(pods.full),
                bookmark_interval=BOOKMARK_INTERVAL,
            )
            for _ in range(clusters)
        ]
        shared: dict[int, Any] = {}
        for cluster in self.fleet:  # a pod's churn template depends on its bytes alone
            cluster._templates = shared
        self._churn: asyncio.Task[None] | None = None

    def cluster(self, size: int) -> Cluster:
        if not 0 <= size < len(self.fleet):
            raise StatusError(404, "NotFound", f"no cluster {size}")
        return self.fleet[size]

    async def route(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/_fleet/churn" and request.method == "POST":
            rate = float(request.query["rate"])
            seconds = float(request.query["seconds"])
            if self._churn is not None and not self._churn.done():
                return web.json_response({"error": "churn is running"}, status=409)
            self._churn = asyncio.create_task(self._churn_all(rate, seconds))
            return web.json_response({"planned": int(rate * seconds) * len(self.fleet)})
        if request.path == "/_fleet/state":
            running = self._churn is not None and not self._churn.done()
            states = [c.state() for c in self.fleet]
            return web.json_response({"churnRunning": running, "clusters": states})
        match = PREFIX.fullmatch(request.path)
        if match is None:
            return web.Response(status=404, text="not a fleet path")
        rest = [part for part in match.group(2).split("/") if part]
        return await self.handle(request, int(match.group(1)), rest)

    async def _churn_all(self, rate: float, seconds: float) -> None:
        """``rate`` MODIFIED events per second in every cluster, for ``seconds``."""
        total = int(rate * seconds)
        keys = min(len(self._pods.full), 5000)
        step = len(self._pods.full) / keys
        started = time.monotonic()
        sent = 0
        while sent < total:
            due = min(total, int((time.monotonic() - started) * rate) + 1)
            for cluster in self.fleet:
                for n in range(sent, due):
                    cluster._modify(int((n % keys) * step), n)
                cluster._notify()
            sent = due
            await asyncio.sleep(CHURN_TICK)


async def serve(args: argparse.Namespace) -> None:
    token = os.environ.get("BENCH_TOKEN", "")
    if not token:
        raise SystemExit("serve needs the API servers' bearer token in $BENCH_TOKEN")
    api = FleetApi(args.clusters, PodBytes.build(args.pods), token)
    runner = web.ServerRunner(web.Server(api.route))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await _until_stdin_closes(f"READY {port}")
    with contextlib.suppress(Exception):
        await asyncio.wait_for(runner.cleanup(), 2.0)


async def _until_stdin_closes(ready: str) -> None:
    """Say ``ready``, then wait for the driver's pipe to close (or SIGTERM/SIGINT): a child
    never outlives the driver."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    print(ready, flush=True)
    await stop.wait()


# -- the agents (``send``) ------------------------------------------------------------------


async def send(args: argparse.Namespace) -> None:
    """Run the Syncers of clusters ``--first`` to ``--last`` (excluded); one line on stdout
    per snapshot and per batch committed."""
    from kubernetes_asyncio.client import ApiClient, Configuration  # noqa: PLC0415

    from listwatch import Batch, ListWatch, Snapshot, Syncer, strip_managed_fields  # noqa: PLC0415
    from listwatch.httpsync import HttpSink  # noqa: PLC0415

    token = os.environ["BENCH_TOKEN"]
    receivers: list[list[str]] = json.loads(args.receivers)

    def say(*fields: object) -> None:
        sys.stdout.write(" ".join(map(str, fields)) + "\n")
        sys.stdout.flush()

    async with contextlib.AsyncExitStack() as stack:
        for index in range(args.first, args.last):
            configuration = Configuration(
                host=f"{args.api}/c{index}",
                api_key={"BearerToken": token},
                api_key_prefix={"BearerToken": "Bearer"},
            )
            api = await stack.enter_async_context(ApiClient(configuration=configuration))
            urls = receivers[index] if len(receivers) > 1 else receivers[0]
            start = index % len(urls)
            sink = HttpSink(
                urls[start:] + urls[:start],
                token_file=Path(args.tokens) / cluster_name(index),
                resource="pods",
            )
            await stack.enter_async_context(sink)

            async def on_list(snapshot: Snapshot, i: int = index, s: HttpSink = sink) -> None:
                await s.on_list(snapshot)
                say("synced", i, time.monotonic(), snapshot.resource_version)

            async def on_batch(batch: Batch, i: int = index, s: HttpSink = sink) -> None:
                began = time.monotonic()
                await s.on_batch(batch)
                done = time.monotonic()
                say("batch", i, len(batch.events), batch.resource_version, began, done - began)

            syncer = Syncer(
                ListWatch.from_client(api, "pods", version="v1"),
                on_list=on_list,
                on_batch=on_batch,
                merge_interval=args.merge_interval,
                list_strategy=args.list_strategy,
                transform=strip_managed_fields,
            )
            if index == args.first:
                say("started", time.monotonic())
            await stack.enter_async_context(syncer)
        await _until_stdin_closes("READY")


# -- the driver ------------------------------------------------------------------------------


class Child:
    """A child process with its stderr kept (the last lines) and stdout read by a thread."""

    def __init__(
        self, name: str, command: list[str], env: dict[str, str], on_line: Any = None
    ) -> None:
        self.name = name
        self.process = subprocess.Popen(
            command,
            cwd=HERE.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.errors: list[str] = []
        self.url = ""
        self.ready = threading.Event()
        self._on_line = on_line
        self._threads = [
            threading.Thread(target=self._out, daemon=True),
            threading.Thread(target=self._err, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _out(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("READY"):
                self.url = line.split()[1] if len(line.split()) > 1 else ""
                self.ready.set()
            elif self._on_line is not None:
                self._on_line(line.split())
        self.ready.set()

    def _err(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.errors = [*self.errors[-40:], line.rstrip()]
            found = SERVING.search(line)
            if found and not self.url:
                self.url = found.group(1)
                self.ready.set()
        self.ready.set()

    def wait_ready(self) -> str:
        self.ready.wait(SYNC_TIMEOUT)
        if self.process.poll() is not None or not self.ready.is_set():
            raise RuntimeError(f"{self.name} did not start:\n" + "\n".join(self.errors[-20:]))
        return self.url

    def stop(self) -> None:
        if self.process.poll() is None:
            if self.process.stdin is not None:
                with contextlib.suppress(OSError):
                    self.process.stdin.close()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for thread in self._threads:
            thread.join(5)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


@dataclass
class Progress:
    """What the senders said, under a lock (their reader threads add to it)."""

    clusters: int
    started: list[float] = field(default_factory=list)
    synced: dict[int, float] = field(default_factory=dict)
    committed_rv: dict[int, int] = field(default_factory=dict)
    reached: dict[int, float] = field(default_factory=dict)
    """When each cluster's committed RV first reached ``target[cluster]``."""
    target: dict[int, int] = field(default_factory=dict)
    batches: list[tuple[float, int, float]] = field(default_factory=list)
    """(began, events, seconds) of every batch."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def line(self, words: list[str]) -> None:
        with self.lock:
            match words:
                case ["started", at]:
                    self.started.append(float(at))
                case ["synced", index, at, rv]:
                    self.synced.setdefault(int(index), float(at))
                    self._committed(int(index), rv, float(at))
                case ["batch", index, events, rv, began, seconds]:
                    self.batches.append((float(began), int(events), float(seconds)))
                    self._committed(int(index), rv, float(began) + float(seconds))
            self.changed.notify_all()

    def _committed(self, index: int, rv: str, at: float) -> None:
        if rv.isdigit():
            self.committed_rv[index] = max(self.committed_rv.get(index, 0), int(rv))
        target = self.target.get(index)
        reached = self.committed_rv.get(index, 0) >= (target or 0)
        if target is not None and index not in self.reached and reached:
            self.reached[index] = at

    def expect(self, targets: dict[int, int]) -> None:
        """Each cluster's last RV: ``reached`` fills as the senders commit them."""
        with self.lock:
            now = time.monotonic()
            self.target = targets
            self.reached = {
                i: now for i, rv in targets.items() if self.committed_rv.get(i, 0) >= rv
            }

    def wait(self, what: str, done: Any) -> None:
        deadline = time.monotonic() + SYNC_TIMEOUT
        with self.lock:
            while not done():
                if not self.changed.wait(max(0.0, deadline - time.monotonic())):
                    raise RuntimeError(f"not within {SYNC_TIMEOUT:g} s: {what}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process (``/proc/<pid>/stat``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds(parent: int) -> float:
    """CPU time of ``parent``'s live children: PostgreSQL's backends and workers."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def receiver_has_clients() -> bool:
    """Whether this checkout's ``listwatch receiver`` serves a fleet (``--clients``)."""
    out = subprocess.run(
        [sys.executable, "-m", "listwatch", "receiver", "--help"],
        cwd=HERE.parent,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return "--clients" in out


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


async def _sql(dsn: str, *statements: str) -> list[list[Any]]:
    connection = await asyncpg.connect(dsn)
    try:
        return [list(await connection.fetch(statement)) for statement in statements]
    finally:
        await connection.close()


def fresh_database(admin: str, name: str) -> str:
    asyncio.run(
        _sql(
            admin,
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
            f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' "
            "LC_COLLATE 'C' LC_CTYPE 'C'",
        )
    )
    return with_database(admin, name)


def rows_per_cluster(dsns: list[str], fleet: bool) -> dict[str, int]:
    if fleet:
        query = (
            "SELECT cluster, count(*) FROM listwatch.objects WHERE resource = 'pods' "
            "GROUP BY cluster"
        )
        [rows] = asyncio.run(_sql(dsns[0], query))
        return {row[0]: row[1] for row in rows}
    counts = {}
    for index, dsn in enumerate(dsns):
        query = "SELECT count(*) FROM listwatch.objects WHERE resource = 'pods'"
        [rows] = asyncio.run(_sql(dsn, query))
        counts[cluster_name(index)] = rows[0][0]
    return counts


def _env(token: str) -> dict[str, str]:
    src = str(HERE.parent / "src")
    path = os.pathsep.join(filter(None, [src, str(HERE.parent), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "BENCH_TOKEN": token, "PYTHONPATH": path}


def run_case(
    args: argparse.Namespace,
    receivers: int | None,
    admin: str,
    workdir: Path,
    postgres_pid: int | None = None,
) -> dict[str, Any]:
    """One run: ``receivers`` receivers of the fleet (None: one per cluster, each with its
    own database, for a receiver that serves one cluster)."""
    clusters, pods = args.clusters, args.pods
    fleet = receivers is not None
    label = f"R={receivers}" if fleet else f"one receiver per cluster ({clusters})"
    harness.log(f"fleet {clusters} x {pods}: {label}")
    api_token = secrets.token_urlsafe(24)
    tokens = workdir / "tokens"
    tokens.mkdir(exist_ok=True)
    digests = []
    for index in range(clusters):
        token = secrets.token_hex(32)
        (tokens / cluster_name(index)).write_text(token + "\n")
        digests.append(hashlib.sha256(token.encode()).hexdigest())
    children: list[Child] = []
    dsns: list[str] = []
    postgres_before = children_cpu_seconds(postgres_pid) if postgres_pid is not None else 0.0
    progress = Progress(clusters)
    result: dict[str, Any] = {
        "receivers": receivers if fleet else clusters,
        "mode": "--clients" if fleet else "--token-file, a database per cluster",
        "clusters": clusters,
        "pods": pods,
    }
    try:
        command = [sys.executable, "-m", "benchmarks.fleet", "serve"]
        command += ["--clusters", str(clusters), "--pods", str(pods)]
        server = Child("the clusters", command, _env(api_token))
        children.append(server)
        api = f"http://127.0.0.1:{server.wait_ready()}"
        store_args: list[list[str]] = []
        if fleet:
            dsns.append(fresh_database(admin, f"fleet_r{receivers}"))
            clients = workdir / "clients.toml"
            clients.write_text(
                "".join(
                    f'[[cluster]]\nname = "{cluster_name(i)}"\ntoken_sha256 = "{digest}"\n\n'
                    for i, digest in enumerate(digests)
                )
            )
            store_args = [["--postgres", dsns[0], "--clients", str(clients)]] * receivers
        else:
            dsns += [fresh_database(admin, f"fleet_{cluster_name(i)}") for i in range(clusters)]
            store_args = [
                ["--postgres", dsns[i], "--token-file", str(tokens / cluster_name(i))]
                for i in range(clusters)
            ]
        tier = []
        for n, extra in enumerate(store_args):
            command = [sys.executable, "-m", "listwatch", "receiver", "--listen", "127.0.0.1:0"]
            tier.append(Child(f"receiver {n}", command + extra, _env(api_token)))
        children += tier
        urls = [child.wait_ready() for child in tier]
        # Every cluster gets every receiver of the tier; one per cluster: its own alone.
        routes = [urls] if fleet else [[url] for url in urls]
        senders = []
        share = -(-clusters // args.senders)
        for first in range(0, clusters, share):
            command = [sys.executable, "-m", "benchmarks.fleet", "send", "--api", api]
            command += ["--first", str(first), "--last", str(min(clusters, first + share))]
            command += ["--receivers", json.dumps(routes), "--tokens", str(tokens)]
            command += ["--merge-interval", str(args.merge_interval)]
            command += ["--list-strategy", args.list_strategy]
            senders.append(Child(f"sender {first}", command, _env(api_token), progress.line))
        children += senders

        progress.wait("every cluster synced", lambda: len(progress.synced) == clusters)
        began = min(progress.started)
        synced = max(progress.synced.values())
        result["initial_sync_s"] = synced - began
        result["initial_objects_per_s"] = clusters * pods / (synced - began)
        harness.log(f"  initial sync: {result['initial_objects_per_s']:,.0f} objects/s")

        for sender in senders:
            sender.wait_ready()
        churn_began = time.monotonic()
        _post(api, f"/_fleet/churn?rate={args.churn_rate}&seconds={args.churn_seconds}")
        state = _wait_churn(api, api_token)
        churn_ended = time.monotonic()
        targets = {i: int(c["resourceVersion"]) for i, c in enumerate(state["clusters"])}
        events = sum(c["churnEvents"] for c in state["clusters"])
        progress.expect(targets)
        progress.wait("every cluster caught up", lambda: len(progress.reached) == clusters)
        caught_up = max(progress.reached.values())
        result["churn_offered_per_s"] = args.churn_rate * clusters
        result["churn_events"] = events
        result["churn_events_per_s"] = events / (caught_up - churn_began)
        result["churn_lag_s"] = max(0.0, caught_up - churn_ended)
        with progress.lock:
            latencies = [s for at, n, s in progress.batches if n and at >= churn_began]
        result["batches"] = len(latencies)
        result["batch_p50_ms"] = 1000 * percentile(latencies, 0.50)
        result["batch_p99_ms"] = 1000 * percentile(latencies, 0.99)
        result["batch_max_ms"] = 1000 * max(latencies, default=0.0)
        harness.log(
            f"  churn: {result['churn_events_per_s']:,.0f} events/s "
            f"(offered {result['churn_offered_per_s']:,.0f}), batch p99 "
            f"{result['batch_p99_ms']:.0f} ms"
        )
        result["receiver_hwm_mib"] = [proc_status_mib(c.process.pid, "VmHWM") for c in tier]
        result["receiver_rss_mib"] = [proc_status_mib(c.process.pid, "VmRSS") for c in tier]
        result["cpu_s"] = {
            "clusters": cpu_seconds(server.process.pid),
            "receivers": sum(cpu_seconds(c.process.pid) for c in tier),
            "senders": sum(cpu_seconds(c.process.pid) for c in senders),
        }
        if postgres_pid is not None:
            result["cpu_s"]["postgres"] = children_cpu_seconds(postgres_pid) - postgres_before
        rows = rows_per_cluster(dsns, fleet)
        result["rows_ok"] = rows == {cluster_name(i): pods for i in range(clusters)}
        result["load"] = os.getloadavg()[0]
    finally:
        for child in reversed(children):
            child.stop()
        for dsn in dsns:
            database = urlsplit(dsn).path.lstrip("/")
            asyncio.run(_sql(admin, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    if not result.get("rows_ok"):
        raise RuntimeError(f"{label}: the rows are not the clusters' pods: {result}")
    return result


def _post(api: str, path: str) -> None:
    import urllib.request  # noqa: PLC0415

    request = urllib.request.Request(api + path, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def _wait_churn(api: str, token: str) -> dict[str, Any]:
    """Until the churn has made its last event; the state then (each cluster's RV)."""
    import urllib.request  # noqa: PLC0415

    deadline = time.monotonic() + SYNC_TIMEOUT
    while time.monotonic() < deadline:
        with urllib.request.urlopen(api + "/_fleet/state", timeout=30) as response:
            state: dict[str, Any] = json.loads(response.read())
        if not state["churnRunning"]:
            return state
        time.sleep(CHURN_TICK)  # polling the fake clusters' state, not a measurement
    raise RuntimeError("the churn did not end")


@contextlib.contextmanager
def postgres(dsn: str | None) -> Iterator[tuple[str, int | None]]:
    """The admin DSN of the server to use, and its postmaster's pid when it is ours."""
    if dsn is not None:
        yield dsn, None
        return
    from tests.postgres_server import LocalPostgres  # noqa: PLC0415 - the tests' server

    with LocalPostgres(settings={"max_connections": "400"}) as local:  # fsync on
        yield local.dsn("postgres"), local.pid


def run(args: argparse.Namespace) -> dict[str, Any]:
    fleet = receiver_has_clients()
    tiers: list[int | None] = [int(n) for n in args.receivers.split(",")] if fleet else [None]
    runs = []
    with (
        tempfile.TemporaryDirectory(prefix="lw-fleet-") as tmp,
        postgres(args.postgres_dsn) as (dsn, pid),
    ):
        for receivers in tiers:
            workdir = Path(tmp) / f"r{receivers}"
            workdir.mkdir()
            runs.append(run_case(args, receivers, dsn, workdir, pid))
    return {
        "machine": machine(),
        "command": " ".join(["python -m benchmarks.fleet", *args.argv]),
        "settings": {
            "clusters": args.clusters,
            "pods": args.pods,
            "churn_rate": args.churn_rate,
            "churn_seconds": args.churn_seconds,
            "merge_interval": args.merge_interval,
            "list_strategy": args.list_strategy,
            "senders": args.senders,
        },
        "runs": runs,
    }


def markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    lines = [
        "# The fleet: clusters through a receiver tier into one PostgreSQL",
        "",
        f"`{report['command']}`; machine: {json.dumps(report['machine'])}",
        "",
        f"{settings['clusters']} clusters x {settings['pods']:,} pods of ~7 KB; churn "
        f"{settings['churn_rate']:g} pods/s per cluster for {settings['churn_seconds']:g} s; "
        f"merge interval {settings['merge_interval']:g} s; {settings['list_strategy']} lists; "
        f"{settings['senders']} sender process(es). Initial sync: every pod over the time to "
        "the last cluster's first committed snapshot. Churn: every event over the time until "
        "every cluster's committed RV reached its last (lag: after the churn ended). Batch "
        "commit: a batch request with events during the churn, POST to 200. Receiver RSS: "
        "peak (VmHWM) of each receiver, MiB. CPU: seconds used over the whole run by the "
        "receivers, the senders, the clusters' process and PostgreSQL's backends (when the "
        "harness started the server).",
        "",
        "| receivers | initial sync objects/s | initial sync s | churn events/s (offered) "
        "| lag s | batch commit p50 / p99 / max ms | receiver peak RSS MiB "
        "| CPU s receivers / senders / clusters / PostgreSQL | rows ok | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in report["runs"]:
        peaks = " / ".join(f"{m:.0f}" for m in r["receiver_hwm_mib"] if m is not None)
        cpu = {"postgres": float("nan"), **r["cpu_s"]}
        if len(r["receiver_hwm_mib"]) > 3:
            peaks = f"max {max(m for m in r['receiver_hwm_mib'] if m is not None):.0f}"
        lines.append(
            f"| {r['receivers']} ({r['mode']}) | {r['initial_objects_per_s']:,.0f} "
            f"| {r['initial_sync_s']:.1f} "
            f"| {r['churn_events_per_s']:,.0f} ({r['churn_offered_per_s']:,.0f}) "
            f"| {r['churn_lag_s']:.1f} "
            f"| {r['batch_p50_ms']:.0f} / {r['batch_p99_ms']:.0f} / {r['batch_max_ms']:.0f} "
            f"| {peaks} | {cpu['receivers']:.0f} / {cpu['senders']:.0f} / {cpu['clusters']:.0f} "
            f"/ {cpu['postgres']:.0f} "
            f"| {r['rows_ok']} | {r['load']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.fleet", description=__doc__.split("\n", 1)[0]
    )
    commands = p.add_subparsers(dest="command")
    server = commands.add_parser("serve", help="(a child) the clusters' API servers")
    server.add_argument("--clusters", type=int, required=True)
    server.add_argument("--pods", type=int, required=True)
    sender = commands.add_parser("send", help="(a child) the agents of some clusters")
    sender.add_argument("--api", required=True)
    sender.add_argument("--first", type=int, required=True)
    sender.add_argument("--last", type=int, required=True)
    sender.add_argument("--receivers", required=True, help="JSON: the URLs, per cluster")
    sender.add_argument("--tokens", required=True, help="a directory: a token file a cluster")
    sender.add_argument("--merge-interval", type=float, default=MERGE_INTERVAL)
    sender.add_argument("--list-strategy", default="paged")
    p.add_argument("--clusters", type=int, default=4)
    p.add_argument("--pods", type=int, default=500, help="per cluster")
    p.add_argument("--receivers", default="1,2", help="the tier sizes to run, in order")
    p.add_argument("--churn-rate", type=float, default=20.0, help="pods/s per cluster")
    p.add_argument("--churn-seconds", type=float, default=10.0)
    p.add_argument("--merge-interval", type=float, default=MERGE_INTERVAL)
    p.add_argument("--list-strategy", default="paged", choices=("paged", "stream"))
    p.add_argument("--senders", type=int, default=1, help="sender processes")
    p.add_argument("--postgres-dsn", default=None, help="a server where databases may be made")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--report", default="fleet", help="the results' name: NAME.md, NAME.json")
    return p


def _without_dsn(argv: list[str]) -> list[str]:
    """The command line as the report shows it: without ``--postgres-dsn`` (a server of the
    caller's, with its credentials)."""
    shown: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--postgres-dsn":
            skip = True
        elif not arg.startswith("--postgres-dsn="):
            shown.append(arg)
    return shown


def main(argv: list[str] | None = None) -> None:
    given = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(given)
    if args.command == "serve":
        asyncio.run(serve(args))
        return
    if args.command == "send":
        asyncio.run(send(args))
        return
    args.argv = _without_dsn(given)
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.report}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"{args.report}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
