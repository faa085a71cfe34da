"""How long a snapshot keeps other writers out: ``python -m benchmarks.staging``.

For a snapshot of 50,000 realistic pods (``benchmarks.sink_rates.PodStream``, pages of 500)
written by ``SQLiteSink`` and by ``PostgresSink``, first into an empty mirror and then again
unchanged (a relist of a quiet cluster), it reports:

* **on_list s**: the whole call, from the first page to the commit;
* **writers blocked s**: the longest stretch during the call in which *another writer* could
  not get in, as a probe in another process sees it. For SQLite the probe tries
  ``BEGIN IMMEDIATE`` without waiting (the write lock every writer of the file needs); for
  PostgreSQL it tries to take the fence row ``FOR UPDATE NOWAIT`` (what a new leader's first
  write takes to record its epoch, which waits for every write holding the fence). The probe
  retries every 2 ms, so the figure is exact to a few milliseconds.

The pages are made as the sink asks for them, without any network wait: the figures are the
sink's own work, and a real LIST only adds waits between pages (which, with staging, no
other writer waits for). Measure another checkout with this harness by putting its sources
first: ``PYTHONPATH=/path/to/other/src python -m benchmarks.staging``.

PostgreSQL: ``--dsn``, or a throwaway server from the tests' ``LocalPostgres`` with its
default settings (fsync on). Needs the ``test`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import asyncpg

from benchmarks.run import machine
from benchmarks.sink_rates import FIRST, RELIST, RESOURCE, PodStream, _fresh_sqlite, postgres
from listwatch import Snapshot
from listwatch.sinks.postgres import PostgresSink
from listwatch.sinks.sqlite import SQLiteSink

PROBE_PERIOD = 0.002


@dataclass(frozen=True)
class Figure:
    on_list_s: float
    blocked_s: float


class _Streaks:
    """The longest run of failed attempts of a probe, from its first failure to the next
    success (or the end)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._since: float | None = None

    def failed(self) -> None:
        if self._since is None:
            self._since = time.perf_counter()

    def succeeded(self) -> None:
        if self._since is not None:
            self.longest = max(self.longest, time.perf_counter() - self._since)
            self._since = None


def _sqlite_probe(path: str, stop: EventType, streaks: _Streaks) -> None:
    connection = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        while not stop.is_set():
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                streaks.failed()
            else:
                connection.execute("ROLLBACK")
                streaks.succeeded()
            time.sleep(PROBE_PERIOD)
        streaks.succeeded()
    finally:
        connection.close()


async def _postgres_probe(dsn: str, schema: str, stop: EventType, streaks: _Streaks) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            try:
                async with connection.transaction():
                    await connection.execute(
                        f'SELECT epoch FROM "{schema}".fence FOR UPDATE NOWAIT'
                    )
            except asyncpg.LockNotAvailableError:
                streaks.failed()
            else:
                streaks.succeeded()
            await asyncio.sleep(PROBE_PERIOD)
        streaks.succeeded()
    finally:
        await connection.close()


def _probe(
    target: tuple[str, ...], ready: EventType, stop: EventType, result: Queue[float]
) -> None:
    """The probe, in a process of its own: the sink's process (its event loop, the GIL its
    SQLite thread holds) cannot delay it."""
    streaks = _Streaks()
    ready.set()
    if target[0] == "sqlite":
        _sqlite_probe(target[1], stop, streaks)
    else:
        asyncio.run(_postgres_probe(target[1], target[2], stop, streaks))
    result.put(streaks.longest)


async def _measured(
    write: Callable[[Snapshot], Awaitable[None]], snapshot: Snapshot, target: tuple[str, ...]
) -> Figure:
    context = multiprocessing.get_context("spawn")
    ready, stop, result = context.Event(), context.Event(), context.Queue()
    probe = context.Process(target=_probe, args=(target, ready, stop, result))
    probe.start()
    try:
        await asyncio.to_thread(ready.wait)
        await asyncio.sleep(0.2)  # the probe's first attempts, before the write begins
        started = time.perf_counter()
        await write(snapshot)
        wall = time.perf_counter() - started
    finally:
        stop.set()
    blocked = await asyncio.to_thread(result.get)
    await asyncio.to_thread(probe.join)
    return Figure(wall, blocked)


async def sqlite_round(stream: PodStream, directory: Path) -> dict[str, Figure]:
    path = _fresh_sqlite(directory)
    figures = {}
    async with SQLiteSink(path, resource=RESOURCE, busy_timeout=60) as sink:
        for phase, generation in ((FIRST, 1), (RELIST, 2)):
            target = ("sqlite", str(path))
            figures[phase] = await _measured(sink.on_list, stream.snapshot(generation), target)
        assert await sink.count() == stream.count
    return figures


async def postgres_round(stream: PodStream, dsn: str, schema: str) -> dict[str, Figure]:
    figures = {}
    try:
        async with PostgresSink(dsn, resource=RESOURCE, schema=schema) as sink:
            for phase, generation in ((FIRST, 1), (RELIST, 2)):
                target = ("postgres", dsn, schema)
                figures[phase] = await _measured(sink.on_list, stream.snapshot(generation), target)
            assert await sink.count() == stream.count
    finally:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()
    return figures


async def run(args: argparse.Namespace, dsn: str) -> str:
    stream = PodStream(args.pods, args.page_size)
    results: dict[tuple[str, str], list[Figure]] = {}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="lw-staging-bench-") as tmp:
        for number in range(1, args.rounds + 1):
            for phase, figure in (await sqlite_round(stream, Path(tmp))).items():
                results.setdefault(("SQLiteSink", phase), []).append(figure)
            schema = f"lw_staging_bench_{os.getpid()}_{number}"
            for phase, figure in (await postgres_round(stream, dsn, schema)).items():
                results.setdefault(("PostgresSink", phase), []).append(figure)
            loads.append(os.getloadavg()[0])
            print(f"round {number}/{args.rounds} done; load {loads[-1]:.2f}", flush=True)
    info = machine()
    lines = [
        f"- {stream.count:,} pods ({stream.bytes / 1e6:,.0f} MB of JSON), pages of "
        f"{stream.page_size}; {args.rounds} round(s), medians; listwatch {info['commit']}; "
        f"load (1 min) {min(loads):.2f} .. {max(loads):.2f}",
        "",
        "| sink | phase | on_list s | writers blocked s |",
        "|---|---|---:|---:|",
    ]
    for (sink, phase), figures in results.items():
        wall = statistics.median(f.on_list_s for f in figures)
        blocked = statistics.median(f.blocked_s for f in figures)
        lines.append(f"| {sink} | {phase} | {wall:.2f} | {blocked:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50_000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--dsn", help="an existing PostgreSQL server (default: start one)")
    args = parser.parse_args()
    with postgres(args.dsn) as (dsn, _):
        print(asyncio.run(run(args, dsn)))


if __name__ == "__main__":
    main()
