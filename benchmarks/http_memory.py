"""The HTTP sync memory budget: a snapshot through ``--http``, each side within 256 MiB.

``python -m benchmarks.http_memory`` (``--sizes 50000``, the default) writes
``benchmarks/results/http-memory.{md,json}``. Per store (SQLite, PostgreSQL) and list
strategy, three processes and the driver:

* the API server (``benchmarks.server``, scenario ``cluster<N>``, the same as
  ``benchmarks.memory``: pods of about 7 KB);
* ``python -m listwatch receiver --listen 127.0.0.1:0 (--sqlite DB | --postgres DSN)
  --token-file F`` (PostgreSQL: the tests' throwaway server, ``tests.postgres_server``);
* ``python -m listwatch mirror pods --http URL --http-token-file F --list-strategy S``.

The driver waits for the mirror's ``synced pods: N objects`` line (printed once the receiver
answered the snapshot request, that is once it committed), checks the receiver's store (N
rows), reads both processes' ``VmHWM`` (the resident high-water mark, what a pod's memory
limit is about), sends SIGTERM to both and takes their ``ru_maxrss`` from ``wait4``. The
snapshot rate is N over the time from the mirror's ``mirroring`` line to its ``synced``
line: listing, sending, and committing into the store, end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
from tests.postgres_server import LocalPostgres  # the tests' throwaway server

from benchmarks import run as harness
from benchmarks.memory import (
    LIMIT_MIB,
    SYNC_TIMEOUT,
    Server,
    StderrWatcher,
    _db_state,
    cluster_server,
    proc_status_mib,
    wait_child,
)
from benchmarks.run import RESULTS, machine

HERE = Path(__file__).resolve().parent
SERVING = re.compile(r"listwatch receiver: serving (http://127\.0\.0\.1:\d+)")


class Receiver:
    """``listwatch receiver`` as a child process; its URL from its first stderr line."""

    def __init__(self, store: list[str], token_file: Path) -> None:
        command = [
            sys.executable,
            "-m",
            "listwatch",
            "receiver",
            "--listen",
            "127.0.0.1:0",
            *store,
            "--token-file",
            str(token_file),
        ]
        self.process = subprocess.Popen(
            command, cwd=HERE.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self.url = ""
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip())
            found = SERVING.search(line)
            if found and not self.url:
                self.url = found.group(1)
                self._ready.set()
        self._ready.set()

    def wait_ready(self) -> str:
        self._ready.wait(60)
        if not self.url:
            raise RuntimeError("the receiver did not start:\n" + "\n".join(self.lines[-20:]))
        return self.url

    def stop(self) -> tuple[int, float]:
        self.process.send_signal(signal.SIGTERM)
        result = wait_child(self.process, 60.0)
        self._reader.join(5)
        return result

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            with contextlib.suppress(ChildProcessError):
                os.wait4(self.process.pid, 0)


def _postgres_rows(dsn: str) -> int:
    async def count() -> int:
        connection = await asyncpg.connect(dsn)
        try:
            value = await connection.fetchval(
                "SELECT count(*) FROM listwatch.objects WHERE resource = 'pods'"
            )
        finally:
            await connection.close()
        return int(value)

    return asyncio.run(count())


def run_case(
    server: Server, size: int, *, store: str, strategy: str, workdir: Path, dsn: str
) -> dict[str, Any]:
    from listwatch.testing._kubeconfig import write_kubeconfig  # noqa: PLC0415

    token_file = workdir / "token"
    token_file.write_text("bench-receiver-token\n")
    kubeconfig = workdir / "kubeconfig"
    write_kubeconfig(kubeconfig, f"{server.url}/cluster{size}", server.token)
    db = workdir / f"received-{strategy}-{size}.db"
    for leftover in workdir.glob(db.name + "*"):
        leftover.unlink()
    receiver = Receiver(
        ["--sqlite", str(db)] if store == "sqlite" else ["--postgres", dsn], token_file
    )
    mirror: subprocess.Popen[str] | None = None
    result: dict[str, Any] = {
        "store": store,
        "strategy": strategy,
        "pods": size,
        "load": os.getloadavg()[0],
    }
    try:
        url = receiver.wait_ready()
        command = [
            sys.executable,
            "-m",
            "listwatch",
            "mirror",
            "pods",
            "--kubeconfig",
            str(kubeconfig),
            "--http",
            url,
            "--http-token-file",
            str(token_file),
            "--list-strategy",
            strategy,
        ]
        result["command"] = " ".join(["python", *command[1:]])
        started = time.monotonic()
        mirror = subprocess.Popen(
            command, cwd=HERE.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        watcher = StderrWatcher(started)
        assert mirror.stderr is not None
        reader = watcher.follow(mirror.stderr)
        watcher.synced.wait(SYNC_TIMEOUT)
        if watcher.synced_at is None:
            raise RuntimeError(f"{store} {strategy} {size}: no 'synced' line:\n{watcher.tail()}")
        result["sender_hwm_at_sync_mib"] = proc_status_mib(mirror.pid, "VmHWM")
        result["receiver_hwm_at_sync_mib"] = proc_status_mib(receiver.process.pid, "VmHWM")
        snapshot_s = watcher.synced_at - (watcher.mirroring_at or 0.0)
        result["snapshot_s"] = snapshot_s
        result["objects_per_s"] = size / snapshot_s
        rows = _db_state(db)[0] if store == "sqlite" else _postgres_rows(dsn)
        result["rows"] = rows
        result["rows_ok"] = rows == size
        mirror.send_signal(signal.SIGTERM)
        result["sender_exit"], result["sender_maxrss_mib"] = wait_child(mirror, 120.0)
        reader.join(5)
        result["receiver_exit"], result["receiver_maxrss_mib"] = receiver.stop()
    finally:
        if mirror is not None and mirror.returncode is None:
            mirror.kill()
            with contextlib.suppress(ChildProcessError):
                os.wait4(mirror.pid, 0)
        receiver.kill()
        for leftover in workdir.glob(db.name + "*"):
            leftover.unlink()
    result["sender_peak_mib"] = max(result["sender_hwm_at_sync_mib"], result["sender_maxrss_mib"])
    result["receiver_peak_mib"] = max(
        result["receiver_hwm_at_sync_mib"], result["receiver_maxrss_mib"]
    )
    result["within_budget"] = (
        result["sender_peak_mib"] <= LIMIT_MIB and result["receiver_peak_mib"] <= LIMIT_MIB
    )
    return result


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    with LocalPostgres() as local:
        yield local.dsn("postgres")


def _empty_postgres(dsn: str) -> None:
    async def drop() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute("DROP SCHEMA IF EXISTS listwatch CASCADE")
        finally:
            await connection.close()

    asyncio.run(drop())


def run(sizes: tuple[int, ...], strategies: tuple[str, ...]) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="lw-http-memory-") as tmp,
        postgres() as dsn,
        cluster_server(max(sizes)) as server,
    ):
        for size in sizes:
            for store in ("sqlite", "postgres"):
                for strategy in strategies:
                    if store == "postgres":
                        _empty_postgres(dsn)  # every case starts from an empty database
                    harness.log(f"http memory: {store} {strategy} {size}")
                    result = run_case(
                        server, size, store=store, strategy=strategy, workdir=Path(tmp), dsn=dsn
                    )
                    harness.log(
                        f"  sender {result['sender_peak_mib']:.0f} MiB, receiver "
                        f"{result['receiver_peak_mib']:.0f} MiB, "
                        f"{result['objects_per_s']:,.0f} obj/s"
                    )
                    runs.append(result)
    return {
        "machine": machine(),
        "command": "python -m benchmarks.http_memory --sizes " + ",".join(map(str, sizes)),
        "limit_mib": LIMIT_MIB,
        "runs": runs,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# A snapshot through the HTTP sync protocol: sender and receiver memory",
        "",
        f"`{report['command']}`; machine: {json.dumps(report['machine'])}",
        "",
        "Peak = the larger of VmHWM when the mirror printed `synced` and ru_maxrss after "
        "SIGTERM. Rate = pods / (the mirror's `mirroring` line to its `synced` line): listed, "
        "sent, committed by the receiver. Budget: each process within "
        f"{report['limit_mib']:.0f} MiB.",
        "",
        "| store | strategy | pods | sender peak MiB | receiver peak MiB | snapshot s "
        "| objects/s | rows ok | within budget | load |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['store']} | {r['strategy']} | {r['pods']:,} | {r['sender_peak_mib']:.0f} "
            f"| {r['receiver_peak_mib']:.0f} | {r['snapshot_s']:.1f} "
            f"| {r['objects_per_s']:,.0f} | {r['rows_ok']} | {r['within_budget']} "
            f"| {r['load']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_memory", description=__doc__)
    parser.add_argument("--sizes", default="50000", help="comma-separated pod counts")
    parser.add_argument("--strategies", default="paged,stream")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sizes = tuple(int(n) for n in args.sizes.split(","))
    report = run(sizes, tuple(args.strategies.split(",")))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "http-memory.json").write_text(json.dumps(report, indent=2))
    (args.out / "http-memory.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
