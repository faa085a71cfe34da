"""``listwatch mirror --http`` into ``listwatch receiver --postgres``, both real processes.

The fake cluster churns and fails (watch streams cut mid-line, 410 after compaction, 429
and 5xx on LISTs, ERROR events, dropped connections); the receiver is killed with SIGKILL
while a snapshot streams into it, and nothing of that snapshot reaches PostgreSQL; it is
restarted on the same port, the mirror's next generation sends a fresh snapshot, and once
the faults stop PostgreSQL holds the cluster object by object. The receiver's own
``/metrics`` count what it applied.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from listwatch.httpsync import SyncServer
from listwatch.sinks.sqlite import SQLiteStore
from listwatch.testing import FakeApiServer, Fault, FaultRule
from tests.cli.helpers import eventually
from tests.objects import pod
from tests.processes import ListwatchProcess, running
from tests.serving import serving

TOKEN = "e2e-receiver-token"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PODS = "/api/v1/pods"
INITIAL_PODS = 1500
"""Three LIST pages of 500: with each page slowed, the first snapshot streams long enough
for the test to see it in flight at the receiver and kill the receiver then."""


async def start_receiver(dsn: str, token_file: Path, port: int) -> tuple[ListwatchProcess, str]:
    receiver = await ListwatchProcess.start(
        "receiver",
        "receiver",
        "--listen",
        f"127.0.0.1:{port}",
        "--postgres",
        dsn,
        "--token-file",
        str(token_file),
        "-v",
    )
    found = await receiver.wait_for_line(r"serving (http://127\.0\.0\.1:\d+)")
    return receiver, found.group(1)


async def metric(http: aiohttp.ClientSession, url: str, series: str) -> float:
    """One series of the receiver's /metrics (0 when absent); the receiver wants its token."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with http.get(f"{url}/metrics", headers=headers) as response:
        assert response.status == 200
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            total += float(value)
    return total


async def in_postgres(dsn: str) -> dict[str, str]:
    connection = await asyncpg.connect(dsn)
    try:
        if not await connection.fetchval("SELECT to_regclass('listwatch.objects') IS NOT NULL"):
            return {}
        rows = await connection.fetch(
            "SELECT key, resource_version FROM listwatch.objects WHERE resource = 'pods'"
        )
    finally:
        await connection.close()
    return {row["key"]: row["resource_version"] for row in rows}


def in_cluster(server: FakeApiServer) -> dict[str, str]:
    return {
        f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
        for o in server.objects("v1", "Pod")
    }


async def churn(server: FakeApiServer, rng: random.Random, stop: asyncio.Event) -> int:
    """Creates, updates and deletes pods until ``stop``; returns how many writes it made."""
    writes = 0
    while not stop.is_set():
        name = f"churn-{rng.randrange(200):03d}"
        current = server.get("v1", "Pod", name, "default")
        if current is None:
            await server.create(pod(name, step=str(writes)))
        elif rng.random() < 0.3:
            await server.delete(current)
        else:
            current["metadata"]["labels"] = {"step": str(writes)}
            await server.replace(current)
        writes += 1
        await asyncio.sleep(rng.uniform(0, 0.01))  # pacing the churn, not synchronisation
    return writes


FAULTS = ("watch-cut-mid-line", "connection-dropped", "watch-410-then-429")
"""In this order: the cheap ones first. Each fault that ends a generation doubles the
mirror's backoff (client-go's: 0.8 s doubling, reset after 2 min without failure), so the
faults that end one are few; the chaos suite covers every kind in depth."""


def inject_fault(server: FakeApiServer, name: str) -> list[FaultRule]:
    """One fault of the kinds a real API server and its load balancers produce; returns
    the rules that must fire (none for faults that act at once)."""
    rules: list[FaultRule] = []
    match name:
        case "watch-cut-mid-line":  # a load balancer drops the stream inside an event
            server.cut_watches(mid_line=True)
        case "connection-dropped":  # twice: aiohttp retries an idempotent request once
            rules.append(server.inject(Fault.close_connection(), path=PODS, watch=True, times=2))
            server.cut_watches()
        case "watch-410-then-429":  # the re-watch is told 410; the relist meets a 429 first
            rules.append(server.inject(Fault.gone(), path=PODS, watch=True))
            rules.append(server.inject(Fault.too_many_requests(0), path=PODS, watch=False))
            server.cut_watches()
        case _:
            raise ValueError(name)
    return rules


async def watching_again(server: FakeApiServer, rules: list[FaultRule], start: int) -> None:
    """Until the fault's rules have fired and the mirror watches again after them."""
    await server.wait_until(lambda s: all(rule.exhausted for rule in rules), timeout=30)
    await server.wait_for_request(
        lambda r: r.path == PODS and r.query.get("watch") in ("1", "true"),
        start=start,
        timeout=30,
    )
    await server.wait_for_watchers(1, timeout=30)


@pytest.fixture
async def tls_server() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(bookmark_interval=0.05, too_large_wait=0.2, tls=True) as fake:
        yield fake


@pytest.mark.timeout(120)
async def test_mirror_over_http_into_postgres_survives_sigkill_churn_and_faults(
    tls_server: FakeApiServer, postgres_dsn: str, tmp_path: Path
) -> None:
    server, rng = tls_server, random.Random(11)
    for i in range(INITIAL_PODS):
        await server.create(pod(f"p{i:04d}", app="web"))
    kubeconfig = tmp_path / "kubeconfig"
    server.write_kubeconfig(kubeconfig)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    # Every LIST page waits: the first snapshot streams for a second or more.
    server.inject(Fault.slow(0.4), path=PODS, watch=False, times=None)

    receivers: list[ListwatchProcess] = []

    async def receiver_on(port: int) -> str:
        receiver, url = await start_receiver(postgres_dsn, token_file, port)
        receivers.append(receiver)
        return url

    stop_churn = asyncio.Event()
    try:
        url = await receiver_on(0)
        mirror_args = (
            "mirror",
            "pods",
            "--kubeconfig",
            str(kubeconfig),
            "--http",
            url,
            "--http-token-file",
            str(token_file),
            "--list-strategy",
            "paged",
            "--merge-interval",
            "0.05",
            "-v",
        )
        async with (
            aiohttp.ClientSession() as http,
            running("mirror", *mirror_args) as mirror,
            asyncio.TaskGroup() as tasks,
        ):
            churning = tasks.create_task(churn(server, rng, stop_churn))
            try:
                # SIGKILL while the first snapshot is in flight: records read, none committed.
                await eventually(
                    lambda: _in_flight(http, url),
                    within=40,
                    what=f"a snapshot in flight at the receiver\n{mirror.tail()}",
                )
                assert await receivers[-1].stop(signal.SIGKILL) == -signal.SIGKILL
                assert await in_postgres(postgres_dsn) == {}, "a cut snapshot left rows behind"
                server.clear_faults()  # the slow pages end here

                url = await receiver_on(int(url.rsplit(":", 1)[1]))
                await eventually(
                    lambda: _snapshot_committed(http, url),
                    within=40,
                    what=f"a snapshot reaches the restarted receiver\n{mirror.tail()}",
                )
                for fault in FAULTS:
                    start = server.request_count
                    rules = inject_fault(server, fault)
                    try:
                        await watching_again(server, rules, start)
                    except TimeoutError:
                        raise AssertionError(f"{fault}: {rules}\n{mirror.tail()}") from None
            finally:
                stop_churn.set()
            writes = await churning
            server.clear_faults()
            want = in_cluster(server)

            async def converged() -> bool:
                return await in_postgres(postgres_dsn) == want

            await eventually(
                converged, within=40, what=f"PostgreSQL equals the cluster\n{mirror.tail()}"
            )
            assert writes > 100
            generations = [
                line for line in mirror.lines if re.search(r"generation \d+: listing", line)
            ]
            assert len(generations) >= 3, mirror.tail()  # the first, after the kill, the 410
            assert len(want) > INITIAL_PODS
            batches = 'listwatch_receiver_requests_total{cluster="default",code="200",kind="batch"}'
            assert await metric(http, url, batches) > 0
            assert await metric(http, url, "listwatch_receiver_records_in_flight") == 0
            assert await mirror.stop() == 0, mirror.tail()
        assert await receivers[-1].stop() == 0, receivers[-1].tail()
        assert TOKEN not in receivers[-1].text() + mirror.text()
    finally:
        stop_churn.set()
        for receiver in receivers:
            await receiver.stop(signal.SIGKILL)


async def _in_flight(http: aiohttp.ClientSession, url: str) -> bool:
    return await metric(http, url, "listwatch_receiver_records_in_flight") > 0


async def _snapshot_committed(http: aiohttp.ClientSession, url: str) -> bool:
    series = 'listwatch_receiver_requests_total{cluster="default",code="200",kind="snapshot"}'
    return await metric(http, url, series) >= 1


async def test_a_hanging_receiver_is_abandoned_after_sync_timeout(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    """The receiver takes the first snapshot's body and never answers: ``--sync-timeout``
    fails that call, the mirror lists again, and the next snapshot lands."""
    for i in range(5):
        await server.create(pod(f"p{i}"))
    hung = asyncio.Event()
    never = asyncio.Event()

    @web.middleware
    async def hang_once(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.endswith("/snapshot") and not hung.is_set():
            await request.read()
            hung.set()
            await never.wait()
        return await handler(request)

    store = SQLiteStore(tmp_path / "received.db")
    app = SyncServer(store, token=TOKEN).app()
    app.middlewares.insert(0, hang_once)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    try:
        async with serving(app, shutdown_timeout=1.0) as url:
            args = ("mirror", "pods", "--kubeconfig", str(kubeconfig), "--http", url)
            args += ("--http-token-file", str(token_file), "--sync-timeout", "1", "-v")
            async with running("mirror", *args) as mirror:
                await mirror.wait_for_line(r"pods: synced 5 objects", within=30)
                assert hung.is_set()
                assert any("took longer than sync_timeout=1.0 s" in line for line in mirror.lines)
                sink = await store.sink("pods")
                assert set(await sink.objects()) == {f"default/p{i}" for i in range(5)}
                assert await mirror.stop() == 0
                never.set()  # the hung handler may end now, so the server can shut down
    finally:
        await store.close()
