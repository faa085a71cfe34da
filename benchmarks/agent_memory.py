"""An agent within 256 MiB: peak RSS of ``mirror --sqlite``, ``mirror --http`` and
``receiver``, with objects as big as the API server allows and with many ordinary ones.

``python -m benchmarks.agent_memory`` writes ``benchmarks/results/agent-memory.{md,json}``.
Two workloads, each listed both ways (``--list-strategy stream`` and ``paged``):

* **big objects**: 300 ConfigMaps of 1.4 MiB each (``--configmaps``, ``--configmap-mib``),
  just under etcd's 1.5 MiB request limit: the largest objects a cluster can hold. Their data
  is random base64, as certificates and binary data are, so a gzip LIST shrinks it little.
  The API server is ``listwatch.testing.FakeApiServer`` in a child process of this module
  (``serve-configmaps``: plain HTTP; it gzips a LIST over 128 KiB, as kube-apiserver does).
* **ordinary objects**: 50,000 pods of about 7 KB (``--pods``) from ``benchmarks.server``'s
  ``cluster<N>`` scenario (``benchmarks.memory``), in its own process too.

Per workload and strategy, two runs, each process a real ``python -m listwatch``:

* ``listwatch mirror RESOURCE --sqlite DB --kubeconfig K --list-strategy S``;
* ``listwatch receiver --listen 127.0.0.1:0 --sqlite DB --token-file F`` and
  ``listwatch mirror RESOURCE --http URL --http-token-file F --kubeconfig K
  --list-strategy S`` (the sender).

The driver waits for the mirror's ``RESOURCE: synced N objects`` line (for ``--http``
printed once the receiver committed the snapshot), checks the rows of the SQLite file,
reads each process's ``VmHWM`` (``/proc/<pid>/status``: the resident high-water mark, what
a pod's memory limit is about), sends SIGTERM and takes ``ru_maxrss`` from ``wait4``. A
process's **peak** is the larger of the two. The servers' memory is not counted. Budget:
every process within 256 MiB (``LIMIT_MIB``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import run as harness
from benchmarks.memory import LIMIT_MIB, cluster_server, proc_status_mib, wait_child
from benchmarks.run import RESULTS, machine

HERE = Path(__file__).resolve().parent
MIB = 1024 * 1024
SYNC_TIMEOUT = 900.0
SYNCED = re.compile(r"listwatch mirror: ([\w.]+): synced (\d+) objects")
SERVING = re.compile(r"listwatch receiver: serving (http://127\.0\.0\.1:\d+)")
READY = "READY"


# -- the big-object server ---------------------------------------------------------------


def configmap(index: int, size: int, rng: random.Random) -> dict[str, Any]:
    """A ConfigMap whose JSON is about ``size`` bytes: random base64, as binary data is."""
    raw = rng.randbytes(size * 3 // 4)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"big-{index:04d}", "namespace": "default"},
        "data": {"blob": base64.b64encode(raw).decode()},
    }


async def serve_configmaps(count: int, size: int, kubeconfig: Path) -> None:
    """A FakeApiServer holding ``count`` ConfigMaps of ``size`` bytes until stdin closes."""
    from listwatch.testing import FakeApiServer  # noqa: PLC0415

    rng = random.Random(0)
    async with FakeApiServer(tls=False) as server:
        for index in range(count):
            await server.create(configmap(index, size, rng))
        server.write_kubeconfig(kubeconfig)
        print(f"{READY} {server.resource_version}", flush=True)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_stdin() -> None:  # the driver's pipe: the server cannot outlive the driver
            if not sys.stdin.read(1):
                loop.remove_reader(sys.stdin.fileno())
                stop.set()

        loop.add_reader(sys.stdin.fileno(), on_stdin)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


@contextlib.contextmanager
def configmap_server(count: int, size: int, workdir: Path) -> Iterator[Path]:
    """``serve-configmaps`` as a child process; its kubeconfig once it is populated."""
    kubeconfig = workdir / "configmaps-kubeconfig"
    command = [
        sys.executable,
        "-m",
        "benchmarks.agent_memory",
        "serve-configmaps",
        "--count",
        str(count),
        "--bytes",
        str(size),
        "--kubeconfig",
        str(kubeconfig),
    ]
    started = time.perf_counter()
    server = subprocess.Popen(
        command, cwd=HERE.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline()
        if not ready.startswith(READY):
            raise RuntimeError(f"the ConfigMap server did not start: {ready!r}")
        harness.log(
            f"configmap server: pid {server.pid}, {count} x {size / MIB:.2f} MiB, "
            f"ready in {time.perf_counter() - started:.1f} s"
        )
        yield kubeconfig
    finally:
        harness.stop_server(server)


# -- the processes measured ---------------------------------------------------------------


@dataclass
class Child:
    """A ``python -m listwatch`` child: its stderr lines, and the first line matching."""

    name: str
    command: list[str]
    watch_for: re.Pattern[str]
    lines: list[str] = field(default_factory=list)
    found: re.Match[str] | None = None

    def __post_init__(self) -> None:
        self._seen = threading.Event()
        self.process = subprocess.Popen(
            self.command,
            cwd=HERE.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip())
            if self.found is None and (found := self.watch_for.search(line)):
                self.found = found
                self._seen.set()
        self._seen.set()  # EOF: the child is gone

    def wait_for_line(self, timeout: float) -> re.Match[str]:
        self._seen.wait(timeout)
        if self.found is None:
            tail = "\n".join(self.lines[-20:])
            raise RuntimeError(f"{self.name}: no line /{self.watch_for.pattern}/:\n{tail}")
        return self.found

    def hwm_mib(self) -> float:
        return proc_status_mib(self.process.pid, "VmHWM") or 0.0

    def stop(self) -> float:
        """SIGTERM, wait; the peak RSS in MiB (the larger of VmHWM now and ru_maxrss)."""
        hwm = self.hwm_mib()
        self.process.send_signal(signal.SIGTERM)
        code, maxrss = wait_child(self.process, 120.0)
        self._reader.join(5)
        self._close()
        if code != 0:
            tail = "\n".join(self.lines[-20:])
            raise RuntimeError(f"{self.name} exited {code}:\n{tail}")
        return max(hwm, maxrss)

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            with contextlib.suppress(ChildProcessError):
                os.wait4(self.process.pid, 0)
            self._reader.join(5)
        self._close()

    def _close(self) -> None:
        if self.process.stderr is not None and not self._reader.is_alive():
            self.process.stderr.close()


def _rows(db: Path, resource: str) -> int:
    connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        row = connection.execute(
            "SELECT count(*) FROM objects WHERE resource = ?", (resource,)
        ).fetchone()
    finally:
        connection.close()
    return int(row[0])


def _mirror(resource: str, kubeconfig: Path, strategy: str, *target: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "listwatch",
        "mirror",
        resource,
        "--kubeconfig",
        str(kubeconfig),
        "--list-strategy",
        strategy,
        *target,
    ]


def _synced(mirror: Child, expected: int) -> float:
    """Seconds to the mirror's ``synced`` line, checked against the expected count."""
    started = time.monotonic()
    found = mirror.wait_for_line(SYNC_TIMEOUT)
    if int(found.group(2)) != expected:
        raise RuntimeError(f"{mirror.name}: synced {found.group(2)} objects, not {expected}")
    return time.monotonic() - started


def run_sqlite(
    resource: str, kubeconfig: Path, expected: int, strategy: str, workdir: Path
) -> dict[str, Any]:
    db = workdir / f"mirror-{resource}-{strategy}.db"
    command = _mirror(resource, kubeconfig, strategy, "--sqlite", str(db))
    mirror = Child("mirror --sqlite", command, SYNCED)
    try:
        _synced(mirror, expected)
        rows = _rows(db, resource)
        peak = mirror.stop()
    finally:
        mirror.kill()
        for leftover in workdir.glob(db.name + "*"):
            leftover.unlink()
    return {"mirror --sqlite": peak, "rows_ok": rows == expected}


def run_http(
    resource: str, kubeconfig: Path, expected: int, strategy: str, workdir: Path
) -> dict[str, Any]:
    db = workdir / f"received-{resource}-{strategy}.db"
    token = workdir / "token"
    token.write_text("bench-receiver-token\n")
    receiver = Child(
        "receiver",
        [
            sys.executable,
            "-m",
            "listwatch",
            "receiver",
            "--listen",
            "127.0.0.1:0",
            "--sqlite",
            str(db),
            "--token-file",
            str(token),
        ],
        SERVING,
    )
    mirror: Child | None = None
    try:
        url = receiver.wait_for_line(60).group(1)
        command = _mirror(
            resource, kubeconfig, strategy, "--http", url, "--http-token-file", str(token)
        )
        mirror = Child("mirror --http", command, SYNCED)
        _synced(mirror, expected)
        rows = _rows(db, resource)
        sender = mirror.stop()
        received = receiver.stop()
    finally:
        if mirror is not None:
            mirror.kill()
        receiver.kill()
        for leftover in workdir.glob(db.name + "*"):
            leftover.unlink()
    return {"mirror --http": sender, "receiver": received, "rows_ok": rows == expected}


PROCESSES = ("mirror --sqlite", "mirror --http", "receiver")


def run_workload(
    workload: str, resource: str, kubeconfig: Path, expected: int, strategies: tuple[str, ...]
) -> list[dict[str, Any]]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="lw-agent-memory-") as tmp:
        for strategy in strategies:
            harness.log(f"agent memory: {workload}, {strategy}")
            result: dict[str, Any] = {
                "workload": workload,
                "strategy": strategy,
                "load": os.getloadavg()[0],
            }
            sqlite = run_sqlite(resource, kubeconfig, expected, strategy, Path(tmp))
            http = run_http(resource, kubeconfig, expected, strategy, Path(tmp))
            result.update(sqlite)
            result.update(http)
            result["rows_ok"] = sqlite["rows_ok"] and http["rows_ok"]
            result["within_budget"] = all(result[p] <= LIMIT_MIB for p in PROCESSES)
            harness.log(
                "  "
                + ", ".join(f"{p} {result[p]:.0f} MiB" for p in PROCESSES)
                + f", rows ok: {result['rows_ok']}"
            )
            runs.append(result)
    return runs


def run(args: argparse.Namespace) -> dict[str, Any]:
    strategies = tuple(args.strategies.split(","))
    size = int(args.configmap_mib * MIB)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lw-agent-memory-server-") as tmp:
        if args.configmaps:
            with configmap_server(args.configmaps, size, Path(tmp)) as kubeconfig:
                workload = f"{args.configmaps} ConfigMaps of {args.configmap_mib:g} MiB"
                runs += run_workload(
                    workload, "configmaps", kubeconfig, args.configmaps, strategies
                )
        if args.pods:
            from listwatch.testing._kubeconfig import write_kubeconfig  # noqa: PLC0415

            with cluster_server(args.pods) as server:
                kubeconfig = Path(tmp) / "pods-kubeconfig"
                write_kubeconfig(kubeconfig, f"{server.url}/cluster{args.pods}", server.token)
                workload = f"{args.pods:,} pods of ~7 KB"
                runs += run_workload(workload, "pods", kubeconfig, args.pods, strategies)
    return {
        "machine": machine(),
        "command": "python -m benchmarks.agent_memory " + " ".join(args.argv),
        "limit_mib": LIMIT_MIB,
        "runs": runs,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# An agent within 256 MiB: peak RSS per process",
        "",
        f"`{report['command']}`; machine: {json.dumps(report['machine'])}",
        "",
        "Peak = the larger of VmHWM when the mirror printed `synced` (for `--http`: once the "
        "receiver committed the snapshot) and ru_maxrss after SIGTERM, in MiB. The receiver "
        "writes SQLite. Budget: each process within "
        f"{report['limit_mib']:.0f} MiB.",
        "",
        "| workload | strategy | mirror --sqlite | mirror --http | receiver | rows ok "
        "| within budget | load |",
        "|---|---|---:|---:|---:|---|---|---:|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['workload']} | {r['strategy']} | {r['mirror --sqlite']:.0f} "
            f"| {r['mirror --http']:.0f} | {r['receiver']:.0f} | {r['rows_ok']} "
            f"| {r['within_budget']} | {r['load']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve-configmaps"]:
        serving = argparse.ArgumentParser(prog="python -m benchmarks.agent_memory serve-configmaps")
        serving.add_argument("--count", type=int, required=True)
        serving.add_argument("--bytes", type=int, required=True)
        serving.add_argument("--kubeconfig", type=Path, required=True)
        options = serving.parse_args(argv[1:])
        asyncio.run(serve_configmaps(options.count, options.bytes, options.kubeconfig))
        return
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.agent_memory", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--configmaps", type=int, default=300, help="big objects (0: none)")
    parser.add_argument("--configmap-mib", type=float, default=1.4, help="each one's size")
    parser.add_argument("--pods", type=int, default=50_000, help="ordinary objects (0: none)")
    parser.add_argument("--strategies", default="stream,paged")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="agent-memory", help="the report's file name")
    args = parser.parse_args(argv)
    args.argv = argv
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
