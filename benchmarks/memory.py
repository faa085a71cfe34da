"""The memory benchmark: ``listwatch mirror`` as its deployment runs it, one process.

``python -m benchmarks --only memory`` (or ``nox -s bench -- --only memory``) writes
``benchmarks/results/memory.{md,json}``; ``python -m benchmarks.memory --profile`` runs the
largest mirror under memray instead and writes ``results/profiles/memray-*``.

What a case is: the API server (``benchmarks.server``, scenario ``cluster<N>``: the real
list/watch protocol over pre-serialized pods) runs in its own process; the mirror is the real
CLI, ``python -m listwatch mirror pods --sqlite DB --kubeconfig K --list-strategy S``, in
another. The driver waits for the mirror's ``synced pods: N objects`` line, checks the SQLite
file (N rows, and the sync state at the server's RV), reads the mirror's ``VmHWM`` from
``/proc/<pid>/status`` (the resident set's high-water mark: what a memory limit of a pod
is about), optionally runs churn on the server and waits until the mirror has applied all
of it, reads ``VmHWM`` again, then sends SIGTERM and takes the child's ``ru_maxrss`` from
``wait4``. A sampler thread records the RSS every 50 ms, so the report can show the RSS
*during* the list, not only its peak.

The naive client is ``benchmarks.clients``' ``raw`` LIST client (aiohttp + orjson, paging,
keeping every item) against the same server, its ``ru_maxrss`` taken the same way.
Baselines: ``python -c pass``, ``python -c 'import listwatch.cli._mirror'`` and a mirror of an
empty cluster, so the table shows the fixed cost that every figure includes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import run as harness

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PROFILES = RESULTS / "profiles"
MIB = 1024 * 1024
SYNC_TIMEOUT = 900.0
CATCH_UP_TIMEOUT = 120.0
SAMPLE_SECONDS = 0.05
SYNCED = re.compile(r"listwatch mirror: (?:[\w.]+: )?synced(?: [^:]+)?:? (\d+) objects")
"""The mirror's line once a resource has synced: ``pods: synced N objects at ...`` (earlier
``synced pods: N objects``, or ``synced: N objects`` from the variants)."""
LIMIT_MIB = 256.0
"""The seed deployment's pod memory limit."""

NOTES = (
    "Where the memory goes, and what in the library would make it smaller: "
    "`profiles/memray-findings.md` (memray captures at 10k, 100k and 200k pods: "
    "`python -m benchmarks.memory --profile`).",
    "Why this server and not `listwatch.testing.FakeApiServer`: `server-cost.md` "
    "(`python -m benchmarks.server_cost`): the fake holds pods as dicts (~39 MiB and ~1.1 s "
    "per 1,000 pods to populate) and serializes every page per request, slower than the "
    "mirror consumes; it also does not serve PartialObjectMetadata.",
    "LISTs are identity-encoded except in the `(gzip LIST)` row: kube-apiserver gzips a LIST "
    "over 128 KiB (level 1) for a client that accepts it, and aiohttp asks for it; that row "
    "is the same cluster with that compression (watch streams are never compressed).",
    "`ru_maxrss` of a child counts the pages it shared with the driver that forked it (26 MiB "
    "for `python -c pass`), so the fixed-cost rows are VmHWM read by the process itself; for "
    "the mirror, VmHWM before SIGTERM and ru_maxrss agree (shutdown adds nothing).",
    "Peaks vary by a few MiB between runs of the same case (allocator placement); the paged "
    "100k mirror measured 103-111 MiB over the runs made while building this benchmark.",
)


@dataclass(frozen=True)
class MemoryPlan:
    """What to run. ``quick`` is a one-minute smoke run of the same code paths."""

    sizes: tuple[int, ...] = (10_000, 50_000, 100_000)
    strategies: tuple[str, ...] = ("paged", "stream")
    metadata_size: int = 100_000
    churn_size: int = 100_000
    churn_rate: float = 300.0
    churn_seconds: float = 30.0
    repeats: int = 1
    naive_sizes: tuple[int, ...] = (10_000, 50_000, 100_000)
    extra_sizes: tuple[int, ...] = (200_000,)
    """Mirror-only sizes beyond the targets' (the naive client would need ~8 GB): flat or not."""
    variants: tuple[str, ...] = ("bounded_reads", "lean_imports", "both")
    """``benchmarks.variants`` modules run at 0 pods and at the largest size, for the A/B."""

    @classmethod
    def quick(cls) -> MemoryPlan:
        return cls(
            sizes=(1_000, 5_000),
            metadata_size=5_000,
            churn_size=5_000,
            churn_rate=200.0,
            churn_seconds=5.0,
            naive_sizes=(5_000,),
            extra_sizes=(),
            variants=("both",),
        )


# -- /proc and rusage ---------------------------------------------------------------------


def proc_status_mib(pid: int, field_name: str) -> float | None:
    """A ``/proc/<pid>/status`` field (``VmRSS``, ``VmHWM``) in MiB; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def rss_by_mapping(pid: int) -> dict[str, float]:
    """The resident set split by what backs it (``/proc/<pid>/smaps``), in MiB.

    File-backed pages are code and read-only data (the interpreter, shared libraries, C
    extensions); ``[heap]`` is malloc's main arena (brk); anonymous mappings are pymalloc's
    arenas, large buffers malloc mapped on its own, and the arenas of other threads.
    """
    out: dict[str, float] = {}
    kind = "other"
    try:
        with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as smaps:
            for line in smaps:
                first = line.split(maxsplit=6)
                if len(first) >= 5 and "-" in first[0] and not first[0].endswith(":"):
                    path = first[5].strip() if len(first) > 5 else ""
                    if path == "[heap]":
                        kind = "[heap] (malloc main arena)"
                    elif path.startswith("[stack"):
                        kind = "stacks"
                    elif path.startswith("/") and ".so" in path:
                        kind = "shared libraries and C extensions (file-backed)"
                    elif path.startswith("/"):
                        kind = "other files (the interpreter binary, SQLite -shm, ...)"
                    elif path.startswith("["):
                        kind = "other"
                    else:
                        kind = "anonymous mmap (pymalloc arenas, big buffers, thread arenas)"
                elif line.startswith("Rss:"):
                    out[kind] = out.get(kind, 0.0) + int(line.split()[1]) / 1024
    except OSError:
        return {}
    return out


class RssSampler:
    """The child's RSS every ``SAMPLE_SECONDS``, on a thread (the driver's own memory is
    not the child's, so sampling costs the measurement nothing)."""

    def __init__(self, pid: int, started: float) -> None:
        self.pid = pid
        self.started = started
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            rss = proc_status_mib(self.pid, "VmRSS")
            if rss is None:
                return
            self.samples.append((time.monotonic() - self.started, rss))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> list[float]:
        return [rss for t, rss in self.samples if start <= t <= end]


def wait_child(process: subprocess.Popen[Any], timeout: float) -> tuple[int, float]:
    """``wait4`` the child: its exit status and ``ru_maxrss`` (MiB)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage.ru_maxrss / 1024
        if time.monotonic() > deadline:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            raise RuntimeError(f"pid {process.pid} did not exit within {timeout:g} s; killed")
        time.sleep(0.02)


def run_for_rusage(command: list[str], *, env: dict[str, str] | None = None) -> tuple[str, float]:
    """Run ``command`` to its end; its stdout and ``ru_maxrss`` in MiB.

    Not ``communicate()``: that reaps the child, and its rusage with it. stderr goes to a
    file so that reading stdout to the end cannot deadlock on a full stderr pipe.
    """
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            command, cwd=HERE.parent, stdout=subprocess.PIPE, stderr=errors, env=env
        )
        assert process.stdout is not None
        out = process.stdout.read()
        process.stdout.close()
        code, maxrss = wait_child(process, 900.0)
        if code != 0:
            errors.seek(0)
            raise RuntimeError(f"{command[:4]} failed ({code}): {errors.read().decode()[-2000:]}")
    return out.decode(), maxrss


# -- the server ---------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    token: str
    pid: int
    built_s: float

    def _request(self, path: str, method: str = "GET") -> dict[str, Any]:
        request = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body: dict[str, Any] = json.loads(response.read())
        return body

    def state(self, size: int) -> dict[str, Any]:
        return self._request(f"/cluster{size}/_bench/state")

    def churn(self, size: int, rate: float, seconds: float) -> dict[str, Any]:
        return self._request(f"/cluster{size}/_bench/churn?rate={rate}&seconds={seconds}", "POST")


@contextlib.contextmanager
def cluster_server(size: int) -> Iterator[Server]:
    """``benchmarks.server`` with ``cluster<N>`` for N up to ``size``, in its own process.

    The token goes through the environment, not the command line (``ps`` shows that).
    """
    token = secrets.token_urlsafe(24)
    started = time.perf_counter()
    with harness.bench_server(
        "--list-sizes=",
        "--watch-events=0",
        f"--cluster-size={size}",
        what="benchmark server",
        env={**os.environ, "BENCH_TOKEN": token},
    ) as (pid, port, _):
        built = time.perf_counter() - started
        harness.log(f"cluster server: pid {pid}, port {port}, ready in {built:.1f} s")
        yield Server(f"http://127.0.0.1:{port}", token, pid, built)


# -- one mirror run -----------------------------------------------------------------------


@dataclass
class MirrorCase:
    size: int
    strategy: str
    metadata_only: bool = False
    churn: bool = False
    variant: str = ""
    """A ``benchmarks.variants`` module to run instead of ``listwatch`` ("" for the CLI)."""
    gzip: bool = False
    """Against ``clustergz<N>``: LIST responses gzip-compressed, as kube-apiserver sends them."""

    @property
    def name(self) -> str:
        mode = " --metadata-only" if self.metadata_only else ""
        variant = f" [{self.variant}]" if self.variant else ""
        gzip = " (gzip LIST)" if self.gzip else ""
        return f"mirror {self.strategy}{mode}{gzip}{variant}"


@dataclass
class StderrWatcher:
    """The mirror's stderr lines with their times; signals the ``synced:`` line."""

    started: float
    lines: list[tuple[float, str]] = field(default_factory=list)
    synced: threading.Event = field(default_factory=threading.Event)
    mirroring_at: float | None = None
    synced_at: float | None = None
    synced_line: str = ""

    def follow(self, stream: Any) -> threading.Thread:
        def read() -> None:
            for line in stream:
                at = time.monotonic() - self.started
                self.lines.append((at, line.rstrip()))
                if "listwatch mirror: mirroring " in line and self.mirroring_at is None:
                    self.mirroring_at = at
                if SYNCED.search(line) and not self.synced.is_set():
                    self.synced_at = at
                    self.synced_line = line.strip()
                    self.synced.set()
            self.synced.set()  # EOF: the child is gone; the caller finds synced_at unset

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        return thread

    def tail(self, n: int = 15) -> str:
        return "\n".join(line for _, line in self.lines[-n:])


def _db_state(db: Path) -> tuple[int, str | None]:
    """Rows of ``pods`` and its sync-state RV, read-only (the mirror may be writing: WAL)."""
    connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        rows = connection.execute("SELECT count(*) FROM objects WHERE resource = 'pods'")
        count = int(rows.fetchone()[0])
        state = connection.execute(
            "SELECT resource_version FROM sync_state WHERE resource = 'pods'"
        ).fetchone()
    finally:
        connection.close()
    return count, (state[0] if state else None)


def mirror_command(case: MirrorCase, db: Path, kubeconfig: Path) -> list[str]:
    module = f"benchmarks.variants.{case.variant}" if case.variant else "listwatch"
    command = [
        "-m",
        module,
        "mirror",
        "pods",
        "--sqlite",
        str(db),
        "--kubeconfig",
        str(kubeconfig),
        "--list-strategy",
        case.strategy,
    ]
    return [*command, "--metadata-only"] if case.metadata_only else command


def run_mirror(
    server: Server,
    case: MirrorCase,
    plan: MemoryPlan,
    *,
    workdir: Path,
    memray_output: Path | None = None,
) -> dict[str, Any]:
    """One mirror process, from start to SIGTERM; everything measured on the way."""
    from listwatch.testing._kubeconfig import write_kubeconfig  # noqa: PLC0415

    db = workdir / f"mirror-{case.strategy}-{case.size}-{int(case.metadata_only)}.db"
    for leftover in workdir.glob(db.name + "*"):
        leftover.unlink()
    kubeconfig = workdir / "kubeconfig"
    prefix_path = f"/clustergz{case.size}" if case.gzip else f"/cluster{case.size}"
    write_kubeconfig(kubeconfig, server.url + prefix_path, server.token)
    expected_rv = server.state(case.size)["resourceVersion"]
    prefix = [sys.executable]
    if memray_output is not None:
        prefix += ["-m", "memray", "run", "--native", "--force", "-q", "-o", str(memray_output)]
    command = [*prefix, *mirror_command(case, db, kubeconfig)]
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=HERE.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    sampler = RssSampler(process.pid, started)
    watcher = StderrWatcher(started)
    assert process.stderr is not None
    reader = watcher.follow(process.stderr)
    result: dict[str, Any] = {
        "case": case.name,
        "strategy": case.strategy,
        "metadata_only": case.metadata_only,
        "variant": case.variant,
        "gzip": case.gzip,
        "pods": case.size,
        "command": " ".join(["python", *command[len(prefix) :]]),
        "load": os.getloadavg()[0],
    }
    try:
        watcher.synced.wait(SYNC_TIMEOUT)
        if watcher.synced_at is None:
            raise RuntimeError(f"{case.name} {case.size}: no 'synced' line:\n{watcher.tail()}")
        result["hwm_at_sync_mib"] = proc_status_mib(process.pid, "VmHWM")
        result["rss_at_sync_mib"] = proc_status_mib(process.pid, "VmRSS")
        result["synced_line"] = watcher.synced_line
        result["time_to_sync_s"] = watcher.synced_at
        mirroring = watcher.mirroring_at or 0.0
        result["startup_s"] = mirroring
        result["list_s"] = watcher.synced_at - mirroring
        result["list_rss_mib"] = _profile_of(sampler.between(mirroring, watcher.synced_at))
        count, rv = _db_state(db)
        result["rows"], result["db_resource_version"] = count, rv
        result["expected_resource_version"] = expected_rv
        result["rows_ok"] = count == case.size and rv == expected_rv
        found = SYNCED.search(watcher.synced_line)
        if found is None or int(found.group(1)) != case.size:
            result["rows_ok"] = False
        if case.churn:
            result["churn"] = _churn(
                server, case, plan=plan, db=db, pid=process.pid, sampler=sampler, started=started
            )
        result["rss_by_mapping_mib"] = rss_by_mapping(process.pid)
        result["hwm_before_sigterm_mib"] = proc_status_mib(process.pid, "VmHWM")
        result["rss_before_sigterm_mib"] = proc_status_mib(process.pid, "VmRSS")
        process.send_signal(signal.SIGTERM)
        code, maxrss = wait_child(process, 120.0 if memray_output is None else 900.0)
        reader.join(5)
        result["exit_code"] = code
        result["ru_maxrss_mib"] = maxrss
        result["stopped_cleanly"] = code == 0 and any(
            "listwatch mirror: stopped after" in line for _, line in watcher.lines
        )
        result["rows_after_stop"] = _db_state(db)[0]
    finally:
        sampler.stop()
        if process.returncode is None:
            process.kill()
            with contextlib.suppress(ChildProcessError):
                os.wait4(process.pid, 0)
        for leftover in workdir.glob(db.name + "*"):
            leftover.unlink()
    result["rss_timeline"] = _downsample(sampler.samples, 120)
    return result


def _profile_of(values: list[float]) -> dict[str, float]:
    """RSS at the quarters of a phase: flat within a run means nothing accumulates."""
    if not values:
        return {}
    n = len(values)
    at = {f"p{q}": values[min(n - 1, q * n // 100)] for q in (0, 25, 50, 75)}
    return {**at, "p100": values[-1], "max": max(values), "samples": n}


def _downsample(samples: list[tuple[float, float]], points: int) -> list[list[float]]:
    step = max(1, len(samples) // points)
    return [[round(t, 2), round(rss, 1)] for t, rss in samples[::step]]


def _churn(
    server: Server,
    case: MirrorCase,
    *,
    plan: MemoryPlan,
    db: Path,
    pid: int,
    sampler: RssSampler,
    started: float,
) -> dict[str, Any]:
    """``plan.churn_rate`` MODIFIED/s for ``plan.churn_seconds``; wait for the mirror to apply
    every one of them (its sync state reaches the server's final RV); VmHWM before/after."""
    before_hwm = proc_status_mib(pid, "VmHWM")
    before_rss = proc_status_mib(pid, "VmRSS")
    begin = time.monotonic() - started
    planned = server.churn(case.size, plan.churn_rate, plan.churn_seconds)["planned"]
    while server.state(case.size)["churnRunning"]:
        time.sleep(0.2)
    churned = time.monotonic() - started
    final = server.state(case.size)
    deadline = time.monotonic() + CATCH_UP_TIMEOUT
    while _db_state(db)[1] != final["resourceVersion"]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the mirror did not reach RV {final['resourceVersion']}")
        time.sleep(0.2)
    caught_up = time.monotonic() - started
    during = sampler.between(begin, caught_up)
    half = begin + (churned - begin) / 2
    first = sampler.between(begin, half)
    second = sampler.between(half, churned)
    return {
        "rate": plan.churn_rate,
        "seconds": plan.churn_seconds,
        "events": planned,
        "final_resource_version": final["resourceVersion"],
        "catch_up_s": caught_up - churned,
        "hwm_before_mib": before_hwm,
        "rss_before_mib": before_rss,
        "hwm_after_mib": proc_status_mib(pid, "VmHWM"),
        "rss_after_mib": proc_status_mib(pid, "VmRSS"),
        "rss_max_during_mib": max(during, default=0.0),
        "rss_max_first_half_mib": max(first, default=0.0),
        "rss_max_second_half_mib": max(second, default=0.0),
    }


# -- the naive client and the baselines ---------------------------------------------------


def run_naive(server: Server, size: int) -> dict[str, Any]:
    """``benchmarks.clients``' raw LIST client: aiohttp + orjson, every item kept."""
    spec = {
        "kind": "list",
        "client": "raw",
        "url": f"{server.url}/cluster{size}",
        "page_size": 500,
        "count": size,
    }
    started = time.monotonic()
    out, maxrss = run_for_rusage(
        [sys.executable, "-m", "benchmarks.clients", json.dumps(spec)],
        env={**os.environ, "BENCH_TOKEN": server.token},
    )
    wall = time.monotonic() - started
    line = next(line for line in reversed(out.splitlines()) if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    return {
        "case": "naive (aiohttp+orjson, keeps items)",
        "pods": size,
        "items": result["items"],
        "rows_ok": result["items"] == size,
        "ru_maxrss_mib": maxrss,
        # VmHWM at its end (reset after imports: clients.Meter), as the mirror's is read
        "hwm_before_sigterm_mib": result["peak_mb"] + result["baseline_mb"],
        "peak_over_imports_mib": result["peak_mb"],
        "imports_mib": result["baseline_mb"],
        "list_s": result["wall_s"],
        "time_to_sync_s": wall,
        "load": os.getloadavg()[0],
    }


_PRINT_HWM = (
    "\nfor line in open('/proc/self/status'):\n"
    "    if line.startswith('VmHWM:'): print(int(line.split()[1]) / 1024)"
)
BASELINES = {
    "python -c pass": "pass",
    "import aiohttp, orjson (the naive client)": "import aiohttp, orjson",
    "import aiohttp, orjson, msgspec, aiosqlite (listwatch's dependencies but one)": (
        "import aiohttp, orjson, msgspec, aiosqlite"
    ),
    "import kubernetes_asyncio.client": "import kubernetes_asyncio.client",
    "import listwatch.cli._mirror (what the mirror imports)": "import listwatch.cli._mirror",
}


def baselines() -> dict[str, float]:
    """The fixed cost: the interpreter, and the mirror's imports, as ``VmHWM`` read by the
    process itself (a tiny child's ``ru_maxrss`` counts the pages it shared with the driver
    that forked it: 26 MiB for ``python -c pass``, against 8.5 MiB measured in-process)."""
    out: dict[str, float] = {}
    for name, code in BASELINES.items():
        printed, _ = run_for_rusage([sys.executable, "-c", code + _PRINT_HWM])
        out[name] = float(printed.split()[-1])
    return out


# -- the whole benchmark ------------------------------------------------------------------


def run_memory(plan: MemoryPlan, *, quick: bool) -> dict[str, Any]:
    started = time.time()
    loads = [os.getloadavg()[0]]
    harness.log(f"memory: sizes {plan.sizes}, strategies {plan.strategies}")
    largest = max(
        (*plan.sizes, plan.metadata_size, plan.churn_size, *plan.naive_sizes, *plan.extra_sizes)
    )
    runs: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="listwatch-memory-") as tmp,
        cluster_server(largest) as server,
    ):
        workdir = Path(tmp)
        base = baselines()
        harness.log("  baselines: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in base.items()))
        cases: list[MirrorCase | int] = [MirrorCase(0, "paged")]
        for size in plan.sizes:
            cases += [MirrorCase(size, s, churn=size == plan.churn_size) for s in plan.strategies]
            if size in plan.naive_sizes:
                cases.append(size)
        cases += [MirrorCase(plan.metadata_size, s, metadata_only=True) for s in plan.strategies]
        cases += [MirrorCase(n, s) for n in plan.extra_sizes for s in plan.strategies]
        top = max(plan.sizes)
        cases.append(MirrorCase(top, "paged", gzip=True))
        for variant in plan.variants:
            cases.append(MirrorCase(0, "paged", variant=variant))
            cases += [MirrorCase(top, s, variant=variant) for s in plan.strategies]
        for repeat in range(plan.repeats):
            for case in cases:
                if isinstance(case, int):
                    result = run_naive(server, case)
                else:
                    result = run_mirror(server, case, plan, workdir=workdir)
                result["repeat"] = repeat
                runs.append(result)
                loads.append(result["load"])
                harness.log("  " + describe(result))
    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": time.time() - started,
        "command": "python -m benchmarks --only memory" + (" --quick" if quick else ""),
        "quick": quick,
        "machine": harness.machine(),
        "load": {"min": min(loads), "max": max(loads), "samples": loads},
        "plan": asdict(plan),
        "server_built_s": server.built_s,
        "baselines_mib": base,
        "runs": runs,
        "notes": list(NOTES),
    }
    report["targets"] = targets(report)
    return report


def describe(r: dict[str, Any]) -> str:
    peak = r.get("hwm_before_sigterm_mib") or r["ru_maxrss_mib"]
    text = (
        f"{r['case']:<28} {r['pods']:>7,} pods: peak {peak:6.0f} MiB, "
        f"sync {r['time_to_sync_s']:6.1f} s, rows {'ok' if r['rows_ok'] else 'WRONG'}"
    )
    if "churn" in r:
        c = r["churn"]
        text += (
            f"; churn {c['events']:,} events: HWM {c['hwm_before_mib']:.0f} -> "
            f"{c['hwm_after_mib']:.0f} MiB, RSS {c['rss_before_mib']:.0f} -> "
            f"{c['rss_after_mib']:.0f}"
        )
    return text


def _peak(r: dict[str, Any]) -> float:
    """The peak: VmHWM just before SIGTERM (the naive client: VmHWM when it is done)."""
    value = r.get("hwm_before_sigterm_mib")
    return float(value if value is not None else r["ru_maxrss_mib"])


def _find(runs: list[dict[str, Any]], **where: Any) -> list[dict[str, Any]]:
    return [r for r in runs if all(r.get(k) == v for k, v in where.items())]


def _median_peak(runs: list[dict[str, Any]]) -> float | None:
    peaks = sorted(_peak(r) for r in runs)
    return peaks[len(peaks) // 2] if peaks else None


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The memory targets (benchmarks/results/memory.md), per list strategy."""
    runs, plan = report["runs"], report["plan"]
    largest, smallest = max(plan["sizes"]), min(plan["sizes"])
    middle = 50_000 if 50_000 in plan["sizes"] else largest
    naive_mid = _median_peak(_find(runs, case="naive (aiohttp+orjson, keeps items)", pods=middle))
    out: list[dict[str, Any]] = []
    for strategy in plan["strategies"]:
        full = {"strategy": strategy, "metadata_only": False, "variant": "", "gzip": False}
        big = _median_peak(_find(runs, pods=largest, **full))
        small = _median_peak(_find(runs, pods=smallest, **full))
        mid = _median_peak(_find(runs, pods=middle, **full))
        if big is not None:
            out.append(
                _target(
                    f"{strategy}: {largest:,} pods within 256 MiB",
                    big,
                    "<= 256 MiB",
                    big <= LIMIT_MIB,
                    "MiB",
                )
            )
        if big is not None and small:
            ratio = big / small
            out.append(
                _target(
                    f"{strategy}: {largest:,} vs {smallest:,} pods (flat)",
                    ratio,
                    "<= 1.25x",
                    ratio <= 1.25,
                    "x",
                )
            )
        if mid is not None and naive_mid:
            ratio = mid / naive_mid
            out.append(
                _target(
                    f"{strategy}: {middle:,}-pod list vs the naive client",
                    ratio,
                    "<= 0.25x",
                    ratio <= 0.25,
                    "x",
                )
            )
        churned = [r["churn"] for r in _find(runs, **full) if "churn" in r]
        for churn in churned:
            growth = churn["hwm_after_mib"] - churn["hwm_before_mib"]
            out.append(
                _target(
                    f"{strategy}: WATCH, {churn['events']:,} changes at {churn['rate']:g}/s "
                    f"(VmHWM growth)",
                    growth,
                    "<= 5 MiB",
                    growth <= 5.0,
                    "MiB",
                )
            )
    return out


def _target(name: str, measured: float, goal: str, ok: bool, unit: str) -> dict[str, Any]:
    return {
        "target": name,
        "measured": measured,
        "unit": unit,
        "goal": goal,
        "result": "PASS" if ok else "FAIL",
    }


# -- report -------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    m, runs, plan = report["machine"], report["runs"], report["plan"]
    out = [
        f"# listwatch memory benchmark ({'quick' if report['quick'] else 'full'} run)",
        "",
        f"- date: {report['date']}, took {report['elapsed_s'] / 60:.1f} min; command: "
        f"`{report['command']}` (or `nox -s bench -- --only memory`)",
        f"- machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, {m['platform']}",
        f"- load average (1 min) during the run: {report['load']['min']:.2f} .. "
        f"{report['load']['max']:.2f}",
        f"- Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f"; commit {m['commit']}",
        f"- server: `benchmarks.server` scenario `cluster<N>` in its own process (pre-serialized "
        f"~7 KB pods of `benchmarks/payloads.py`, the list/watch protocol of `benchmarks/cluster"
        f".py`; ready in {report['server_built_s']:.1f} s); its memory is not counted",
        "- mirror: `python -m listwatch mirror pods --sqlite DB --kubeconfig K --list-strategy S` "
        "as a child process; **peak** = its `VmHWM` (`/proc/<pid>/status`) read just before "
        "SIGTERM, **ru_maxrss** = from `wait4` after it exited (includes shutdown); *time to "
        "first sync* = process start to its `synced pods: N objects` line (interpreter start and "
        "imports included), *list* = from its `mirroring ...` line to `synced`. Every run is "
        "checked: N rows in the SQLite file and its sync state at the server's RV",
        "- naive: `benchmarks.clients` `raw` (aiohttp + orjson, pages of 500, keeps every item), "
        "peak = its `VmHWM` when it has listed everything",
        "",
        "## Targets",
        "",
        "| target | measured | goal | result |",
        "|---|---:|---|---|",
    ]
    for t in report["targets"]:
        digits = 2 if t["unit"] == "x" else 0
        out.append(
            f"| {t['target']} | {_f(t['measured'], digits)} {t['unit']} | {t['goal']} | "
            f"{t['result']} |"
        )
    out += [
        "",
        "## Fixed cost (peak RSS of the process alone)",
        "",
        "| process | MiB |",
        "|---|---:|",
    ]
    for name, value in report["baselines_mib"].items():
        out.append(f"| `{name}` | {_f(value)} |")
    empty = _find(runs, pods=0, variant="")
    if empty:
        out.append(f"| mirror of an empty cluster (peak before SIGTERM) | {_f(_peak(empty[0]))} |")
    smallest = min(plan["sizes"])
    naive = {r["pods"]: _peak(r) for r in runs if r["case"].startswith("naive")}
    out += [
        "",
        "## Peak RSS and time to first sync",
        "",
        f"| client | pods | peak MiB | ru_maxrss MiB | RSS at sync MiB | vs {smallest:,} | "
        "vs naive | time to first sync s | list s | pods/s | rows |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(runs, key=lambda r: (r["pods"], r["case"], r.get("repeat", 0))):
        if r["pods"] == 0 or r.get("variant"):
            continue
        peak = _peak(r)
        small = _find(
            runs,
            pods=smallest,
            strategy=r.get("strategy"),
            metadata_only=r.get("metadata_only"),
            variant="",
            gzip=False,
        )
        vs_small = peak / _peak(small[0]) if small and "strategy" in r else None
        vs_naive = peak / naive[r["pods"]] if r["pods"] in naive else None
        rate = r["pods"] / r["list_s"] if r.get("list_s") else None
        out.append(
            f"| {r['case']} | {r['pods']:,} | **{_f(peak)}** | {_f(r.get('ru_maxrss_mib'))} | "
            f"{_f(r.get('rss_at_sync_mib'))} | {_f(vs_small, 2)} | {_f(vs_naive, 2)} | "
            f"{_f(r['time_to_sync_s'], 1)} | {_f(r.get('list_s'), 1)} | {_f(rate)} | "
            f"{'ok' if r['rows_ok'] else 'WRONG'} |"
        )
    out += [
        "",
        "## RSS during the list (MiB, sampled every 50 ms, at quarters of the list time)",
        "",
        "| client | pods | 0% | 25% | 50% | 75% | 100% | max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(runs, key=lambda r: (r["pods"], r["case"])):
        q = r.get("list_rss_mib")
        if not q or r.get("variant"):
            continue
        out.append(
            f"| {r['case']} | {r['pods']:,} | {_f(q['p0'])} | {_f(q['p25'])} | {_f(q['p50'])} | "
            f"{_f(q['p75'])} | {_f(q['p100'])} | {_f(q['max'])} |"
        )
    mapped = [
        r for r in runs if r.get("rss_by_mapping_mib") and r["pods"] in (0, max(plan["sizes"]))
    ]
    if mapped:
        kinds = sorted({k for r in mapped for k in r["rss_by_mapping_mib"]})
        kinds = [k for k in kinds if max(r["rss_by_mapping_mib"].get(k, 0) for r in mapped) >= 0.5]
        out += [
            "",
            "## Where the resident set is, just before SIGTERM (`/proc/<pid>/smaps`, MiB)",
            "",
            "| client | pods | " + " | ".join(kinds) + " | total |",
            "|---|---:|" + "---:|" * (len(kinds) + 1),
        ]
        for r in mapped:
            m = r["rss_by_mapping_mib"]
            out.append(
                f"| {r['case']} | {r['pods']:,} | "
                + " | ".join(_f(m.get(k, 0.0), 1) for k in kinds)
                + f" | {_f(sum(m.values()), 1)} |"
            )
    variants = [r for r in runs if r.get("variant")]
    if variants:
        out += [
            "",
            "## What two library changes would save (A/B in the same run)",
            "",
            "The unchanged CLI run through `benchmarks/variants/` (see its docstring): "
            "`bounded_reads` reads the response 256 KiB at a time instead of `readany()`; "
            "`lean_imports` skips kubernetes_asyncio's eager package imports (its model and "
            "API classes); `both` does both. Rows must still check out (N rows, RV).",
            "",
            "| variant | strategy | pods | peak MiB | as is MiB | saved MiB | start-up s "
            "(as is) | time to first sync s (as is) | rows |",
            "|---|---|---:|---:|---:|---:|---|---|---|",
        ]
        for r in variants:
            base = _find(
                runs, pods=r["pods"], strategy=r["strategy"], metadata_only=False, variant=""
            )
            b = base[0] if base else None
            base_peak = _peak(b) if b else None
            saved = base_peak - _peak(r) if base_peak is not None else None
            out.append(
                f"| {r['variant']} | {r['strategy']} | {r['pods']:,} | **{_f(_peak(r))}** | "
                f"{_f(base_peak)} | {_f(saved)} | {_f(r.get('startup_s'), 2)} "
                f"({_f(b.get('startup_s') if b else None, 2)}) | {_f(r['time_to_sync_s'], 1)} "
                f"({_f(b['time_to_sync_s'] if b else None, 1)}) | "
                f"{'ok' if r['rows_ok'] else 'WRONG'} |"
            )
    churned = [r for r in runs if "churn" in r]
    if churned:
        out += [
            "",
            "## WATCH after the first sync: churn on the server",
            "",
            "MODIFIED events over 5,000 keys; *caught up* = the mirror's sync state reached the "
            "server's final RV (every event applied).",
            "",
            "| client | pods | events | rate /s | caught up after s | VmHWM MiB at sync -> "
            "after | RSS MiB at sync -> after | RSS max 1st half / 2nd half of churn |",
            "|---|---:|---:|---:|---:|---|---|---|",
        ]
        for r in churned:
            c = r["churn"]
            out.append(
                f"| {r['case']} | {r['pods']:,} | {c['events']:,} | {c['rate']:g} | "
                f"{_f(c['catch_up_s'], 1)} | {_f(c['hwm_before_mib'])} -> {_f(c['hwm_after_mib'])}"
                f" | {_f(c['rss_before_mib'])} -> {_f(c['rss_after_mib'])} | "
                f"{_f(c['rss_max_first_half_mib'])} / {_f(c['rss_max_second_half_mib'])} |"
            )
    notes = report.get("notes")
    if notes:
        out += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(out) + "\n"


def write_report(report: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stem = "memory-quick" if report["quick"] else "memory"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{stem}.md").write_text(markdown(report))
    return out / f"{stem}.md"


# -- memray -------------------------------------------------------------------------------


def profile(plan: MemoryPlan, out: Path, *, keep: Path | None = None) -> None:
    """The smallest, the largest and the extra-size mirrors under ``memray run --native``.

    For each: ``memray-<strategy><N>.peak.txt`` (``benchmarks.memray_peak``: what is live at
    the heap's high-water mark, by bucket), ``.stats.txt`` and ``.summary.txt`` (memray's
    own reporters) and ``.flamegraph.html`` (the peak, interactive). ``memray tree`` is left
    out: on a ``--native`` capture it ran for over ten minutes without finishing. The
    captures themselves (tens of MB each) go to ``keep`` if given, else they are deleted.
    """
    from benchmarks import memray_peak  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    sizes = sorted({min(plan.sizes), max(plan.sizes), *plan.extra_sizes})
    with (
        tempfile.TemporaryDirectory(prefix="listwatch-memray-") as tmp,
        cluster_server(max(sizes)) as server,
    ):
        workdir = Path(tmp)
        for size in sizes:
            for strategy in plan.strategies:
                binary = workdir / f"memray-{strategy}-{size}.bin"
                case = MirrorCase(size, strategy)
                result = run_mirror(server, case, plan, workdir=workdir, memray_output=binary)
                harness.log(f"memray: {describe(result)}")
                stem = out / f"memray-{strategy}{size}"
                command = result["command"].removeprefix("python ")
                header = (
                    f"# memray run --native -o {binary.name} {command}\n"
                    f"# under memray: {describe(result)}\n\n"
                )
                Path(f"{stem}.peak.txt").write_text(header + memray_peak.analyse(binary))
                python = [sys.executable, "-m", "memray"]
                reports = {
                    "stats": [*python, "stats", "-n", "25", str(binary)],
                    "summary": [*python, "summary", "-r", "40", str(binary)],
                }
                for name, report in reports.items():
                    text = subprocess.run(
                        report, capture_output=True, text=True, check=False, env=_wide_terminal()
                    )
                    Path(f"{stem}.{name}.txt").write_text(header + text.stdout + text.stderr)
                subprocess.run(
                    [*python, "flamegraph", "-f", "-o", f"{stem}.flamegraph.html", str(binary)],
                    capture_output=True,
                    check=False,
                )
                harness.log(f"  wrote {stem}.{{peak,stats,summary}}.txt and .flamegraph.html")
                if keep is not None:
                    keep.mkdir(parents=True, exist_ok=True)
                    binary.rename(keep / binary.name)


def _wide_terminal() -> dict[str, str]:
    """rich (memray's table printer) truncates to the terminal: give it a wide one."""
    return {**os.environ, "COLUMNS": "220", "TERM": "dumb"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--profile", action="store_true", help="memray on the largest mirror")
    parser.add_argument("--keep-captures", type=Path, help="with --profile: keep memray's .bin")
    parser.add_argument("--sizes", help="comma-separated pod counts (default 10000,50000,100000)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--render", type=Path, help="re-render the markdown of a JSON result")
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads(args.render.read_text())
        args.render.with_suffix(".md").write_text(markdown(report))
        return
    plan = MemoryPlan.quick() if args.quick else MemoryPlan()
    if args.repeats:
        plan = MemoryPlan(**{**asdict(plan), "repeats": args.repeats})
    if args.sizes:
        sizes = tuple(int(n) for n in args.sizes.split(","))
        plan = MemoryPlan(
            **{
                **asdict(plan),
                "sizes": sizes,
                "naive_sizes": sizes,
                "churn_size": max(sizes),
                "metadata_size": max(sizes),
            }
        )
    if args.profile:
        profile(plan, args.out / "profiles", keep=args.keep_captures)
        return
    path = write_report(run_memory(plan, quick=args.quick), args.out)
    print(path.read_text())
    harness.log(f"wrote {path} and .json")


if __name__ == "__main__":
    main()
