"""Snapshot write rates of the ready-made receivers: ``python -m benchmarks.sink_rates``.

How fast ``on_list`` takes a snapshot of 50,000 realistic pods (~7.5 KB of JSON each, built
by ``benchmarks.payloads``) into ``SQLiteSink`` and into ``PostgresSink``, in the same run:

* **first sync**: an empty mirror takes the whole snapshot (every row inserted);
* **unchanged relist**: the same snapshot again, as a resync of a quiet cluster (every row
  compared, none rewritten).

The snapshot is a real ``Snapshot`` stream of ``Item(key, rv, raw=...)`` pages of 500, made
as the sink asks for them (as a LIST would arrive), so the sink holds one page at a time;
the ``stream only`` row is the cost of making the stream itself (included in the others).
Each round makes fresh mirrors and runs both sinks one after the other, so a burst of load
from other processes on the machine hits both alike; figures are medians over the rounds.

PostgreSQL: with ``--dsn`` an existing server (the sink's tables go into a schema of their
own, dropped afterwards); otherwise a throwaway server is started from the installed
binaries (``tests/postgres_server.py``) with its *default* settings, fsync on, through its
Unix socket. SQLite: a file in a temporary directory, in the sink's WAL mode with
``synchronous=NORMAL``. Both are durable at commit against a process crash.

Output: a Markdown table on stdout and in ``benchmarks/results/sink_rates.md`` (``--quick``,
5,000 pods and one round, writes ``sink_rates-quick.md`` instead), with the machine, the
versions and the load average. Needs the ``test`` extra (aiosqlite, asyncpg, pytest).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import importlib.metadata
import os
import resource
import sqlite3
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from tests.postgres_server import LocalPostgres  # the tests' throwaway server

from benchmarks import payloads
from benchmarks.run import RESULTS, machine
from listwatch import Item, Page, Snapshot
from listwatch.sinks.postgres import PostgresSink
from listwatch.sinks.sqlite import SQLiteSink

RESOURCE = "pods"
FIRST, RELIST = "first sync", "unchanged relist"


@dataclass(frozen=True)
class _Base:
    namespace: str
    name_prefix: str
    resource_version: str


class PodStream:
    """The benchmark's LIST: ``count`` pods as pages of raw-JSON items, made on demand."""

    def __init__(self, count: int, page_size: int) -> None:
        self.count = count
        self.page_size = page_size
        bases = min(count, payloads.POOL_SIZE)
        self._bases = []
        for index in range(bases):
            meta = payloads.pod(index)["metadata"]
            self._bases.append(_Base(meta["namespace"], meta["name"][:-7], meta["resourceVersion"]))
        self.bytes = sum(len(payloads.list_item(i)) for i in range(count))

    def item(self, index: int) -> Item:
        base = self._bases[index % payloads.POOL_SIZE]
        key = f"{base.namespace}/{base.name_prefix}{index:07d}"
        return Item(key, base.resource_version, raw=payloads.list_item(index))

    def snapshot(self, generation: int) -> Snapshot:
        async def pages() -> AsyncIterator[Page]:
            for start in range(0, self.count, self.page_size):
                stop = min(start + self.page_size, self.count)
                yield Page(
                    [self.item(i) for i in range(start, stop)], payloads.LIST_RESOURCE_VERSION
                )

        return Snapshot(
            pages(), resource_version=payloads.LIST_RESOURCE_VERSION, generation=generation
        )


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float
    """This process's CPU time (the client side; all of SQLite's work)."""
    server_cpu_s: float | None
    """The PostgreSQL server's CPU time during the write (a local server only)."""
    wal_mb: float | None = None
    """WAL the PostgreSQL server wrote during the write (``pg_stat_wal``, PostgreSQL 14+)."""


def _server_cpu(postmaster: int | None) -> float | None:
    """CPU seconds of the postmaster and its children so far (Linux /proc)."""
    if postmaster is None:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if postmaster in (pid, ppid):
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / ticks


async def measure(
    write: Callable[[Snapshot], Awaitable[None]], snapshot: Snapshot, postmaster: int | None
) -> Run:
    server_before = _server_cpu(postmaster)
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    await write(snapshot)
    wall, cpu = time.perf_counter() - wall_before, time.process_time() - cpu_before
    server_after = _server_cpu(postmaster)
    server = None if server_before is None or server_after is None else server_after - server_before
    if not snapshot.complete:
        raise RuntimeError("the sink did not read the whole snapshot")
    return Run(wall, cpu, server)


async def stream_only(stream: PodStream) -> Run:
    """Reading the stream and every item's JSON bytes, writing nothing: the baseline."""

    async def consume(snapshot: Snapshot) -> None:
        async for page in snapshot.pages():
            for item in page:
                item.json  # noqa: B018 - what every sink does with each item

    return await measure(consume, stream.snapshot(1), None)


def _fresh_sqlite(directory: Path) -> Path:
    """The mirror's path, with no file of an earlier round left there."""
    for leftover in directory.glob("mirror.db*"):
        leftover.unlink()
    return directory / "mirror.db"


def _sqlite_size(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.glob("mirror.db*"))


async def sqlite_round(stream: PodStream, directory: Path) -> dict[str, Run]:
    path = _fresh_sqlite(directory)
    async with SQLiteSink(path, resource=RESOURCE) as sink:
        first = await measure(sink.on_list, stream.snapshot(1), None)
        relist = await measure(sink.on_list, stream.snapshot(2), None)
        if await sink.count() != stream.count:
            raise RuntimeError("the SQLite mirror does not hold every pod")
    return {FIRST: first, RELIST: relist}


async def _wal_bytes(dsn: str) -> int | None:
    connection = await asyncpg.connect(dsn)
    try:
        if await connection.fetchval("SELECT to_regclass('pg_catalog.pg_stat_wal')") is None:
            return None
        return int(await connection.fetchval("SELECT wal_bytes FROM pg_stat_wal"))
    finally:
        await connection.close()


async def postgres_round(
    stream: PodStream, dsn: str, schema: str, postmaster: int | None
) -> dict[str, Run]:
    runs: dict[str, Run] = {}
    async with PostgresSink(dsn, resource=RESOURCE, schema=schema) as sink:
        for phase, generation in ((FIRST, 1), (RELIST, 2)):
            wal_before = await _wal_bytes(dsn)
            measured = await measure(sink.on_list, stream.snapshot(generation), postmaster)
            wal_after = await _wal_bytes(dsn)
            if wal_before is not None and wal_after is not None:
                measured = dataclasses.replace(measured, wal_mb=(wal_after - wal_before) / 1e6)
            runs[phase] = measured
        if await sink.count() != stream.count:
            raise RuntimeError("the PostgreSQL mirror does not hold every pod")
    return runs


async def drop_schema(dsn: str, schema: str) -> int:
    """Drop the benchmark's schema; the bytes its tables took (heap, TOAST and indexes)."""
    connection = await asyncpg.connect(dsn)
    try:
        size = await connection.fetchval(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 "
            "AND c.relkind = 'r'",
            schema,
        )
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()
    return int(size)


async def server_facts(dsn: str) -> dict[str, str]:
    connection = await asyncpg.connect(dsn)
    try:
        names = ("server_version", "shared_buffers", "fsync", "synchronous_commit", "max_wal_size")
        return {name: str(await connection.fetchval(f"SHOW {name}")) for name in names}
    finally:
        await connection.close()


@contextlib.contextmanager
def postgres(dsn: str | None) -> Iterator[tuple[str, int | None]]:
    """A DSN, and the postmaster's PID when the server is ours."""
    if dsn is not None:
        yield dsn, None
        return
    with LocalPostgres(settings={}) as server:  # PostgreSQL's defaults: fsync on
        yield server.dsn("postgres"), server.pid


def _median(runs: list[Run], field: str) -> float:
    values = [getattr(run, field) for run in runs]
    return statistics.median(values)


def _spread(runs: list[Run]) -> float:
    walls = [run.wall_s for run in runs]
    return (max(walls) - min(walls)) / statistics.median(walls) if len(walls) > 1 else 0.0


def report(
    stream: PodStream,
    results: dict[str, dict[str, list[Run]]],
    baseline: list[Run],
    *,
    facts: dict[str, str],
    sizes: dict[str, int],
    loads: list[float],
    started: float,
    command: str,
) -> str:
    info = machine()
    versions = dict(info["versions"])
    for package in ("asyncpg", "aiosqlite"):
        versions[package] = importlib.metadata.version(package)
    mb = stream.bytes / 1e6
    lines = [
        "# Snapshot write rates of the receivers",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}, "
        f"took {(time.monotonic() - started) / 60:.1f} min; command: `{command}`",
        f"- machine: {info['cpus']} CPUs ({info['cpu_model']}), {info['memory_gb']} GB, "
        f"{info['platform']}",
        f"- load average (1 min) during the run: {min(loads):.2f} .. {max(loads):.2f}",
        f"- Python {info['python']}; "
        + ", ".join(f"{name} {version}" for name, version in versions.items())
        + f"; SQLite {sqlite3.sqlite_version}; commit {info['commit']}",
        f"- PostgreSQL {facts['server_version']} (shared_buffers {facts['shared_buffers']}, "
        f"fsync {facts['fsync']}, synchronous_commit {facts['synchronous_commit']}, "
        f"max_wal_size {facts['max_wal_size']}), over its Unix socket",
        f"- snapshot: {stream.count:,} pods, {mb:,.0f} MB of JSON "
        f"({stream.bytes / stream.count / 1000:.1f} KB each), pages of {stream.page_size}; "
        f"{len(baseline)} round(s); figures are medians, spread = (max - min) / median",
        "",
        "| sink | phase | wall s | objects/s | MB/s | spread | client CPU s | server CPU s "
        "| WAL MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    wall = _median(baseline, "wall_s")
    lines.append(
        f"| (stream only) | read every item's JSON | {wall:.2f} | {stream.count / wall:,.0f} "
        f"| {mb / wall:,.0f} | {_spread(baseline):.0%} | {_median(baseline, 'cpu_s'):.2f} | | |"
    )
    for sink, phases in results.items():
        for phase, runs in phases.items():
            wall = _median(runs, "wall_s")
            server = [run.server_cpu_s for run in runs if run.server_cpu_s is not None]
            server_text = f"{statistics.median(server):.2f}" if server else ""
            wal = [run.wal_mb for run in runs if run.wal_mb is not None]
            wal_text = f"{statistics.median(wal):,.0f}" if wal else ""
            lines.append(
                f"| {sink} | {phase} | {wall:.2f} | {stream.count / wall:,.0f} | {mb / wall:,.0f} "
                f"| {_spread(runs):.0%} | {_median(runs, 'cpu_s'):.2f} | {server_text} "
                f"| {wal_text} |"
            )
    lines += [
        "",
        f"Stored size: SQLite file {sizes['sqlite'] / 1e6:,.0f} MB; PostgreSQL tables "
        f"(heap, TOAST, indexes) {sizes['postgres'] / 1e6:,.0f} MB. Peak RSS of this process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB.",
        "",
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace, dsn: str, postmaster: int | None) -> str:
    started = time.monotonic()
    stream = PodStream(args.pods, args.page_size)
    results: dict[str, dict[str, list[Run]]] = {
        "SQLiteSink": {FIRST: [], RELIST: []},
        "PostgresSink": {FIRST: [], RELIST: []},
    }
    baseline: list[Run] = []
    loads = [os.getloadavg()[0]]
    sizes = {"sqlite": 0, "postgres": 0}
    facts = await server_facts(dsn)
    with tempfile.TemporaryDirectory(prefix="lw-sink-bench-") as tmp:
        for number in range(1, args.rounds + 1):
            baseline.append(await stream_only(stream))
            for phase, measured in (await sqlite_round(stream, Path(tmp))).items():
                results["SQLiteSink"][phase].append(measured)
            sizes["sqlite"] = _sqlite_size(Path(tmp))
            schema = f"lw_bench_{os.getpid()}_{number}"
            try:
                rounds = await postgres_round(stream, dsn, schema, postmaster)
            finally:
                sizes["postgres"] = await drop_schema(dsn, schema)
            for phase, measured in rounds.items():
                results["PostgresSink"][phase].append(measured)
            loads.append(os.getloadavg()[0])
            print(f"round {number}/{args.rounds} done; load {loads[-1]:.2f}", flush=True)
    command = "python -m benchmarks.sink_rates" + (" --quick" if args.quick else "")
    return report(
        stream,
        results,
        baseline,
        facts=facts,
        sizes=sizes,
        loads=loads,
        started=started,
        command=command,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50_000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dsn", help="an existing PostgreSQL server (default: start one)")
    parser.add_argument("--quick", action="store_true", help="5,000 pods, one round")
    parser.add_argument("--output", type=Path, help="where the Markdown goes")
    args = parser.parse_args()
    if args.quick:
        args.pods, args.rounds = 5_000, 1
    output = args.output or RESULTS / ("sink_rates-quick.md" if args.quick else "sink_rates.md")
    print(f"load average (1 min) at the start: {os.getloadavg()[0]:.2f}", flush=True)
    with postgres(args.dsn) as (dsn, postmaster):
        text = asyncio.run(run(args, dsn, postmaster))
    output.write_text(text)
    print(text)
    print(f"written to {output}")


if __name__ == "__main__":
    main()
