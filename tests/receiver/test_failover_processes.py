"""``listwatch mirror --http URL1 --http URL2 --http URL3`` against real ``listwatch receiver``
processes: the mirror fails over when the receiver in use is SIGKILLed (mid-snapshot, and
between batches) or answers 503, goes back round the list, says so in a WARNING naming
both URLs, and the target converges; a receiver answering 409 is not failed over."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import signal
from pathlib import Path

import aiohttp
import pytest

from listwatch import GroupVersionResource, Snapshot
from listwatch.sinks.sqlite import SQLiteStore
from listwatch.testing import FakeApiServer, Fault
from tests.cli.helpers import eventually, mirrored
from tests.objects import pod
from tests.processes import ListwatchProcess, running
from tests.receiver.test_processes import (
    PODS,
    TOKEN,
    churn,
    in_cluster,
    in_postgres,
    metric,
    start_receiver,
)

SNAPSHOTS_COMMITTED = (
    'listwatch_receiver_requests_total{cluster="default",code="200",kind="snapshot"}'
)
BATCHES_COMMITTED = 'listwatch_receiver_requests_total{cluster="default",code="200",kind="batch"}'


def failing_over(old: str, new: str) -> str:
    """The mirror's WARNING when it leaves ``old`` for ``new``."""
    return rf"WARNING .*; failing over from {re.escape(old)} to {re.escape(new)}$"


def generations(mirror: ListwatchProcess) -> int:
    return sum(1 for line in mirror.lines if re.search(r"generation \d+: listing", line))


@pytest.mark.timeout(180)
async def test_the_mirror_fails_over_round_its_receivers_as_each_is_killed(
    server: FakeApiServer, kubeconfig: Path, postgres_dsn: str, tmp_path: Path
) -> None:
    """Three receivers over one PostgreSQL. The first is SIGKILLed while the first snapshot
    streams into it: the next generation's snapshot goes to the second. The second is
    SIGKILLed while batches flow: the batch goes to the third at once (no new generation).
    The first comes back; the third is SIGKILLed: the mirror goes round to the first. Under
    churn throughout; PostgreSQL ends equal to the cluster, key by key and RV by RV."""
    rng = random.Random(21)
    for i in range(1500):
        await server.create(pod(f"p{i:04d}", app="web"))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    server.inject(Fault.slow(0.4), path=PODS, watch=False, times=None)  # pages of 500 wait

    receivers = [await start_receiver(postgres_dsn, token_file, 0) for _ in range(3)]
    (first, url1), (second, url2), (third, url3) = receivers
    stop_churn = asyncio.Event()
    args = ["mirror", "pods", "--kubeconfig", str(kubeconfig), "--http-token-file"]
    args += [str(token_file), "--http", url1, "--http", url2, "--http", url3]
    args += ["--list-strategy", "paged", "--merge-interval", "0.05", "-v"]
    try:
        async with (
            aiohttp.ClientSession() as http,
            running("mirror", *args) as mirror,
            asyncio.TaskGroup() as tasks,
        ):
            churning = tasks.create_task(churn(server, rng, stop_churn))

            async def in_flight() -> bool:
                return await metric(http, url1, "listwatch_receiver_records_in_flight") > 0

            await eventually(in_flight, within=40, what=f"a snapshot at {url1}\n{mirror.tail()}")
            assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
            server.clear_faults()
            await mirror.wait_for_line(failing_over(url1, url2))

            async def committed_at(url: str, series: str) -> bool:
                return await metric(http, url, series) >= 1

            await eventually(
                lambda: committed_at(url2, SNAPSHOTS_COMMITTED),
                within=40,
                what=f"the next snapshot committed by {url2}\n{mirror.tail()}",
            )
            await eventually(
                lambda: committed_at(url2, BATCHES_COMMITTED),
                within=20,
                what=f"batches to {url2}\n{mirror.tail()}",
            )

            listed = generations(mirror)
            assert await second.stop(signal.SIGKILL) == -signal.SIGKILL
            await mirror.wait_for_line(failing_over(url2, url3))
            await eventually(
                lambda: committed_at(url3, BATCHES_COMMITTED),
                within=20,
                what=f"a batch committed by {url3}\n{mirror.tail()}",
            )
            assert generations(mirror) == listed, "a batch failed over restarted its generation"
            assert await metric(http, url3, SNAPSHOTS_COMMITTED) == 0

            first, _ = await start_receiver(postgres_dsn, token_file, int(url1.rsplit(":", 1)[1]))
            receivers.append((first, url1))
            assert await third.stop(signal.SIGKILL) == -signal.SIGKILL
            await mirror.wait_for_line(failing_over(url3, url1))
            await eventually(
                lambda: committed_at(url1, BATCHES_COMMITTED),
                within=20,
                what=f"a batch committed by {url1} again\n{mirror.tail()}",
            )
            stop_churn.set()
            writes = await churning
            want = in_cluster(server)

            async def converged() -> bool:
                return await in_postgres(postgres_dsn) == want

            await eventually(
                converged, within=40, what=f"PostgreSQL equals the cluster\n{mirror.tail()}"
            )
            assert writes > 100
            warnings = [line for line in mirror.lines if "failing over" in line]
            assert len(warnings) == 3, warnings  # once per receiver killed, never twice
            assert await mirror.stop() == 0, mirror.tail()
        assert TOKEN not in mirror.text()
    finally:
        stop_churn.set()
        for process, _ in receivers:
            await process.stop(signal.SIGKILL)


async def sqlite_receiver(db: Path, token_file: Path) -> tuple[ListwatchProcess, str]:
    receiver = await ListwatchProcess.start(
        "receiver",
        "receiver",
        *("--listen", "127.0.0.1:0", "--sqlite", str(db), "--token-file", str(token_file)),
    )
    found = await receiver.wait_for_line(r"serving (http://127\.0\.0\.1:\d+)")
    return receiver, found.group(1)


def sync_requests(receiver: ListwatchProcess, status: int) -> int:
    """The sync requests the receiver's request log says it answered ``status``."""
    pattern = rf"POST /sync/pods/(snapshot|batch) {status}\b"
    return sum(1 for line in receiver.lines if re.search(pattern, line))


async def test_a_receiver_answering_503_is_failed_over(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    """The first receiver's store cannot be opened (its directory is gone: a lost disk), so
    it answers 503: the mirror moves to the second, whose file then mirrors the cluster."""
    for i in range(20):
        await server.create(pod(f"p{i}"))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    (tmp_path / "lost").mkdir()
    (tmp_path / "kept").mkdir()
    broken, url1 = await sqlite_receiver(tmp_path / "lost" / "r.db", token_file)
    good, url2 = await sqlite_receiver(tmp_path / "kept" / "r.db", token_file)
    shutil.rmtree(tmp_path / "lost")
    args = ["mirror", "pods", "--kubeconfig", str(kubeconfig), "--http", url1, "--http", url2]
    try:
        async with running("mirror", *args, "--http-token-file", str(token_file)) as mirror:
            line = await mirror.wait_for_line(failing_over(url1, url2))
            assert "HTTP 503 ServiceUnavailable" in line.string
            await mirrored(tmp_path / "kept" / "r.db", "pods", server, "v1", "Pod")
            assert await mirror.stop() == 0, mirror.tail()
        assert sync_requests(broken, 503) == 1
        assert sync_requests(good, 200) >= 1
    finally:
        await broken.stop(signal.SIGKILL)
        await good.stop(signal.SIGKILL)


async def test_a_receiver_answering_409_is_not_failed_over(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    """The first receiver's store has recorded a newer leader's epoch, so it refuses the
    mirror's writes (409 StaleEpoch) again and again: that is the fence's answer, which
    every receiver of that store would give, so the mirror never moves to the second."""
    await server.create(pod("p0"))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    fenced = tmp_path / "fenced.db"
    store = SQLiteStore(fenced)
    try:  # a newer leader wrote here: its epoch is recorded
        sink = await store.sink("pods")
        gvr = GroupVersionResource("", "v1", "pods")
        await sink.on_list(Snapshot.of([], "1", epoch=10**9, resource=gvr, session="leader"))
    finally:
        await store.close()
    refusing, url1 = await sqlite_receiver(fenced, token_file)
    other, url2 = await sqlite_receiver(tmp_path / "other.db", token_file)
    args = ["mirror", "pods", "--kubeconfig", str(kubeconfig), "--http", url1, "--http", url2]
    try:
        async with running("mirror", *args, "--http-token-file", str(token_file)) as mirror:
            await eventually(
                lambda: sync_requests(refusing, 409) >= 3,
                within=30,
                what=f"three refusals by {url1}\n{mirror.tail()}",
            )
            assert not [line for line in mirror.lines if "failing over" in line]
            assert any("StaleEpoch" in line for line in mirror.lines), mirror.tail()
            assert await mirror.stop() == 0, mirror.tail()
        assert not [line for line in other.lines if "POST /sync/" in line], other.tail()
    finally:
        await refusing.stop(signal.SIGKILL)
        await other.stop(signal.SIGKILL)
