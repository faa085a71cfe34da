"""The sinks against the database's own limit: ``python -m benchmarks.sinks_ceiling``.

Issue 22's targets, measured side by side in one run: how fast ``listwatch mirror
--list-strategy paged`` (the CLI, as a user runs it, against ``benchmarks.server``'s fake
API server in its own process) writes a first sync and an unchanged relist of N pods
(default 50,000, ~7 KB each), next to the *ceiling*: the fastest bare write of the very same
rows the database can take.

* PostgreSQL ceiling: asyncpg's binary ``COPY`` (``copy_records_to_table``) of the rows into
  an unindexed table of one ``jsonb`` column (LZ4-compressed where the server has LZ4, as
  the sink's own table is), one transaction.
* SQLite ceiling: ``executemany`` of the rows (key, resourceVersion, JSON text) into an
  unindexed table, in one transaction, in the sink's WAL mode, page size and
  ``synchronous=NORMAL``, on the same disk as the mirror's file.

The rows are what the mirror writes (managed fields stripped, as the CLI does by default):
read back from a warm-up mirror's SQLite file before the rounds, byte for byte.

The mirror's rate is its own timing: the ``listwatch_on_list_duration_seconds`` histogram
(``--metrics-address``), scraped once the process logs ``synced``; an ``on_list`` call
reads the LIST as it writes it, so its time holds the LIST's (paged, ~100k objects/s
alone: not what limits it). The relist is a second mirror process on the same database:
its first snapshot finds every row stored and unchanged. Each round runs the six
measurements one after another (PostgreSQL ceiling, first sync, relist, then SQLite's), so
a burst of load from other processes hits both sides of a ratio alike; figures are medians
over the rounds (>= 3), and each ratio is the median mirror rate over the median ceiling.

PostgreSQL: ``--dsn`` (the mirror writes into a fresh database per round, created and
dropped here: the role needs CREATEDB), or a throwaway server from the tests'
``LocalPostgres`` with PostgreSQL's default settings (fsync on), over its Unix socket.

Output: ``benchmarks/results/sinks-<major.minor>.json`` (``{"python", "rows": [{"name",
"listwatch_per_s", "ceiling_per_s", "ratio", "target"}]}``: the shape ``nox -s bench``'s
combined report reads) and ``.md``; ``--quick`` (5,000 pods, one round) writes
``sinks-<major.minor>-quick.*``. Needs the ``test`` and ``cli`` extras.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks import memory
from benchmarks.run import RESULTS, machine
from benchmarks.sink_rates import postgres, server_facts
from listwatch.sinks.sqlite import _PAGE_SIZE as _SQLITE_PAGE_SIZE

TARGET_FIRST = 0.8
TARGET_RELIST = 1.0
SYNC_TIMEOUT = 900.0
_METRICS_AT = re.compile(r"metrics and health on (http://[^/\s]+)/metrics")
_ON_LIST_SUM = re.compile(
    r'^listwatch_on_list_duration_seconds_sum\{[^}]*resource="pods"[^}]*\} ([0-9.e+-]+)$', re.M
)

Row = tuple[str, str, str]
"""key, resourceVersion, the object's JSON text: what the mirror stores."""


@dataclass(frozen=True)
class MirrorRun:
    on_list_s: float
    """The sink's own timing: the ``on_list`` call, LIST included."""
    to_sync_s: float
    """From the ``mirroring`` line to the ``synced`` line, as the process logged them."""


# -- the mirror, as a process -------------------------------------------------------------


def mirror_once(
    target: list[str],
    kubeconfig: Path,
    pods: int,
    page_size: int,
    *,
    wrapper: Sequence[str] = (),
) -> MirrorRun:
    """One ``listwatch mirror`` process: start it, wait for ``synced``, read its timing
    from its metrics, SIGTERM it. ``wrapper`` runs it under a profiler (``py-spy record
    -o … --``)."""
    command = [
        *wrapper,
        sys.executable,
        "-m",
        "listwatch",
        "mirror",
        "pods",
        *target,
        "--kubeconfig",
        str(kubeconfig),
        "--list-strategy",
        "paged",
        "--page-size",
        str(page_size),
        "--metrics-address",
        "127.0.0.1:0",
    ]
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=memory.HERE.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    watcher = memory.StderrWatcher(started)
    assert process.stderr is not None
    reader = watcher.follow(process.stderr)
    try:
        watcher.synced.wait(SYNC_TIMEOUT)
        if watcher.synced_at is None:
            raise RuntimeError(f"the mirror did not sync:\n{watcher.tail()}")
        found = memory.SYNCED.search(watcher.synced_line)
        if found is None or int(found.group(1)) != pods:
            raise RuntimeError(f"the mirror synced the wrong count: {watcher.synced_line}")
        address = next(
            (m.group(1) for _, line in watcher.lines if (m := _METRICS_AT.search(line))), None
        )
        if address is None:
            raise RuntimeError(f"the mirror logged no metrics address:\n{watcher.tail()}")
        with urllib.request.urlopen(f"{address}/metrics", timeout=30) as response:
            text = response.read().decode()
        on_list = _ON_LIST_SUM.search(text)
        if on_list is None:
            raise RuntimeError("the mirror's metrics have no on_list duration for pods")
        if wrapper:  # the mirror is the profiler's child: stop it, and the profiler writes
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
            os.kill(int(children.split()[0]), signal.SIGTERM)
        else:
            process.send_signal(signal.SIGTERM)
        code, _ = memory.wait_child(process, 120.0)
        reader.join(5)
        if code != 0:
            raise RuntimeError(f"the mirror exited with {code}:\n{watcher.tail()}")
        return MirrorRun(float(on_list.group(1)), watcher.synced_at - (watcher.mirroring_at or 0))
    finally:
        if process.returncode is None:
            process.kill()
            process.wait()


# -- the ceilings --------------------------------------------------------------------------


def read_rows(db: Path) -> list[Row]:
    """The rows a mirror wrote, from its SQLite file: the bytes the ceilings write."""
    connection = sqlite3.connect(db)
    try:
        return list(
            connection.execute(
                "SELECT key, resource_version, object FROM objects WHERE resource = 'pods'"
            )
        )
    finally:
        connection.close()


async def postgres_ceiling(dsn: str, rows: list[Row], compression: str) -> float:
    """Seconds for a bare binary COPY of the rows' JSON into a fresh one-jsonb-column table."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("DROP TABLE IF EXISTS ceiling")
        await connection.execute(f"CREATE TABLE ceiling (object jsonb {compression})")
        records = [(text,) for _, _, text in rows]
        started = time.perf_counter()
        await connection.copy_records_to_table("ceiling", records=records, columns=["object"])
        elapsed = time.perf_counter() - started
        count = await connection.fetchval("SELECT count(*) FROM ceiling")
        await connection.execute("DROP TABLE ceiling")
    finally:
        await connection.close()
    if count != len(rows):
        raise RuntimeError("the COPY ceiling did not write every row")
    return elapsed


def sqlite_ceiling(path: Path, rows: list[Row]) -> float:
    """Seconds for a bare executemany of the rows into a fresh unindexed table, one
    transaction, in the sink's journal mode and synchronous setting."""
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute(f"PRAGMA page_size={_SQLITE_PAGE_SIZE}")  # the sink's
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("CREATE TABLE ceiling (key TEXT, resource_version TEXT, object TEXT)")
        started = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany("INSERT INTO ceiling VALUES (?, ?, ?)", rows)
        connection.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        connection.close()
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()


async def _lz4(dsn: str) -> str:
    """The sink's column compression on this server (``_postgres_schema``'s rule)."""
    from listwatch.sinks._postgres_schema import _compression  # noqa: PLC0415

    connection = await asyncpg.connect(dsn)
    try:
        return await _compression(connection)
    finally:
        await connection.close()


async def _database(dsn: str, name: str, *, create: bool) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return _with_database(dsn, name)


def _with_database(dsn: str, name: str) -> str:
    """``dsn`` pointing at the database ``name`` (the path of a URL DSN)."""
    head, sep, query = dsn.partition("?")
    scheme, _, rest = head.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{name}{sep}{query}"


# -- the run -------------------------------------------------------------------------------


@dataclass
class Results:
    pg_copy: list[float]
    pg_first: list[MirrorRun]
    pg_relist: list[MirrorRun]
    sqlite_many: list[float]
    sqlite_first: list[MirrorRun]
    sqlite_relist: list[MirrorRun]


def run_rounds(args: argparse.Namespace, dsn: str, workdir: Path, server: memory.Server) -> Results:
    from listwatch.testing._kubeconfig import write_kubeconfig  # noqa: PLC0415

    kubeconfig = workdir / "kubeconfig"
    write_kubeconfig(kubeconfig, f"{server.url}/cluster{args.pods}", server.token)
    pods, page = args.pods, args.page_size
    warmup = workdir / "warmup.db"
    mirror_once(["--sqlite", str(warmup)], kubeconfig, pods, page)
    rows = read_rows(warmup)
    for leftover in workdir.glob("warmup.db*"):
        leftover.unlink()
    if len(rows) != pods:
        raise RuntimeError(f"the warm-up mirror holds {len(rows)} rows, not {pods}")
    compression = asyncio.run(_lz4(dsn))
    args.mb = sum(len(text.encode()) for _, _, text in rows) / 1e6
    results = Results([], [], [], [], [], [])
    for number in range(1, args.rounds + 1):
        results.pg_copy.append(asyncio.run(postgres_ceiling(dsn, rows, compression)))
        target = asyncio.run(_database(dsn, f"lw_ceiling_{os.getpid()}", create=True))
        try:
            results.pg_first.append(mirror_once(["--postgres", target], kubeconfig, pods, page))
            results.pg_relist.append(mirror_once(["--postgres", target], kubeconfig, pods, page))
        finally:
            asyncio.run(_database(dsn, f"lw_ceiling_{os.getpid()}", create=False))
        results.sqlite_many.append(sqlite_ceiling(workdir / "ceiling.db", rows))
        db = workdir / "mirror.db"
        for leftover in workdir.glob("mirror.db*"):
            leftover.unlink()
        results.sqlite_first.append(mirror_once(["--sqlite", str(db)], kubeconfig, pods, page))
        results.sqlite_relist.append(mirror_once(["--sqlite", str(db)], kubeconfig, pods, page))
        for leftover in workdir.glob("mirror.db*"):
            leftover.unlink()
        print(
            f"round {number}/{args.rounds}: PG copy {results.pg_copy[-1]:.2f} s, first "
            f"{results.pg_first[-1].on_list_s:.2f} s, relist {results.pg_relist[-1].on_list_s:.2f}"
            f" s; SQLite executemany {results.sqlite_many[-1]:.2f} s, first "
            f"{results.sqlite_first[-1].on_list_s:.2f} s, relist "
            f"{results.sqlite_relist[-1].on_list_s:.2f} s; load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    return results


def report_rows(pods: int, results: Results) -> list[dict[str, Any]]:
    """The JSON rows: each mirror phase's median rate against its ceiling's median rate."""

    def rate(seconds: list[float]) -> float:
        return pods / statistics.median(seconds)

    rows = []
    for db, ceiling, phases in (
        ("PostgreSQL", results.pg_copy, (results.pg_first, results.pg_relist)),
        ("SQLite", results.sqlite_many, (results.sqlite_first, results.sqlite_relist)),
    ):
        for phase, runs, target in zip(
            ("first sync", "unchanged relist"), phases, (TARGET_FIRST, TARGET_RELIST), strict=True
        ):
            mine, limit = rate([run.on_list_s for run in runs]), rate(ceiling)
            rows.append(
                {
                    "name": f"{db} {phase}",
                    "listwatch_per_s": round(mine, 1),
                    "ceiling_per_s": round(limit, 1),
                    "ratio": round(mine / limit, 3),
                    "target": target,
                }
            )
    return rows


def markdown(report: dict[str, Any], results: Results, command: str) -> str:
    info = report["machine"]
    facts = report["postgres"]
    lines = [
        "# The sinks against the database's limit (issue 22)",
        "",
        f"- date: {report['date']}, took {report['took_min']:.1f} min; command: `{command}`",
        f"- machine: {info['cpus']} CPUs ({info['cpu_model']}), {info['memory_gb']} GB, "
        f"{info['platform']}; load average (1 min) {report['load'][0]:.2f} .. "
        f"{report['load'][1]:.2f}",
        f"- Python {report['python']}; SQLite {sqlite3.sqlite_version}; PostgreSQL "
        f"{facts['server_version']} (shared_buffers {facts['shared_buffers']}, fsync "
        f"{facts['fsync']}, synchronous_commit {facts['synchronous_commit']}); commit "
        f"{info['commit']}",
        f"- {report['pods']:,} pods ({report['mb']:,.0f} MB of JSON as stored), "
        f"`listwatch mirror --list-strategy paged --page-size {report['page_size']}`; "
        f"{report['rounds']} round(s), medians; rate = pods / on_list seconds (the sink's "
        "own histogram, the LIST included)",
        "",
        "| row | listwatch /s | ceiling /s | ratio | target | met |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in report["rows"]:
        met = "yes" if row["ratio"] >= row["target"] else "no"
        lines.append(
            f"| {row['name']} | {row['listwatch_per_s']:,.0f} | {row['ceiling_per_s']:,.0f} "
            f"| {row['ratio']:.2f} | {row['target']:.1f} | {met} |"
        )
    lines += ["", "Every round, seconds (on_list; process start to synced in brackets):", ""]
    lines.append("| round | PG COPY | PG first | PG relist | SQLite many | SQLite first | relist |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|")

    def m(run: MirrorRun) -> str:
        return f"{run.on_list_s:.2f} ({run.to_sync_s:.2f})"

    for i in range(len(results.pg_copy)):
        lines.append(
            f"| {i + 1} | {results.pg_copy[i]:.2f} | {m(results.pg_first[i])} "
            f"| {m(results.pg_relist[i])} | {results.sqlite_many[i]:.2f} "
            f"| {m(results.sqlite_first[i])} | {m(results.sqlite_relist[i])} |"
        )
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="lw-sinks-ceiling-", dir="/var/tmp") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50_000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dsn", help="an existing PostgreSQL server (default: start one)")
    parser.add_argument("--quick", action="store_true", help="5,000 pods, one round")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the report goes")
    args = parser.parse_args(argv)
    if args.quick:
        args.pods, args.rounds = min(args.pods, 5_000), 1
    started = time.monotonic()
    loads = [os.getloadavg()[0]]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stem = f"sinks-{version}" + ("-quick" if args.quick else "")
    with (
        postgres(args.dsn) as (dsn, _),
        memory.cluster_server(args.pods) as server,
        _workdir() as workdir,
    ):
        facts = asyncio.run(server_facts(dsn))
        results = run_rounds(args, dsn, workdir, server)
    loads.append(os.getloadavg()[0])
    command = "python -m benchmarks.sinks_ceiling" + (" --quick" if args.quick else "")
    if args.pods != (5_000 if args.quick else 50_000):
        command += f" --pods {args.pods}"
    rows = report_rows(args.pods, results)
    report = {
        "python": sys.version.split()[0],
        "rows": rows,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "took_min": (time.monotonic() - started) / 60,
        "machine": machine(),
        "postgres": facts,
        "load": [min(loads), max(loads)],
        "pods": args.pods,
        "page_size": args.page_size,
        "rounds": args.rounds,
        "mb": args.mb,
    }
    text = markdown(report, results, command)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(
        json.dumps({"python": report["python"], "rows": rows}, indent=2) + "\n"
    )
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    print(f"written to {args.out / stem}.{{json,md}}")


if __name__ == "__main__":
    main()
