"""The benchmark driver: ``python -m benchmarks [--quick]`` (or ``nox -s bench [-- --quick]``).

It starts the payload server (``benchmarks.server``) in its own process, then runs every
client of every scenario in a fresh subprocess (``benchmarks.clients``), round-robin: round 1
runs each client once, round 2 again, and so on. Interleaving means a burst of load from
other processes on the machine hits all clients of a scenario alike, so the *ratios* (what
the issue's targets are about) stay meaningful on a shared machine even when absolute times
drift. Each figure is the median of its runs; the spread ((max - min) / median) and the
load average are recorded to show how noisy the run was.

Results: ``benchmarks/results/latest-<major.minor>.{md,json}`` for the interpreter that runs
it (``quick-…`` for ``--quick``, so a smoke run never overwrites the real numbers); then the
sink benchmark (``benchmarks.sinks_ceiling``, when it exists) under the same interpreter; then
``latest.{md,json}``: one table of every Python measured so far (``benchmarks.combined``).
``nox -s bench`` does this under Python 3.11 and 3.13.

``--profile`` skips the benchmark and profiles listwatch's LIST and WATCH clients instead
(py-spy and/or pyinstrument, whichever is installed) into ``benchmarks/results/profiles/``.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import combined

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CLIENT_TIMEOUT = 900.0


@dataclass(frozen=True)
class Plan:
    """Sizes and repeat counts. The stock client is slow, so it runs fewer times; LIST runs
    twice (its ratios are far from their targets), so that both Pythons fit ~15 minutes."""

    list_sizes: tuple[int, ...] = (10_000, 50_000)
    list_repeats: int = 2
    stock_list_repeats: dict[int, int] = field(default_factory=lambda: {10_000: 2, 50_000: 1})
    page_size: int = 500
    watch_events: int = 100_000
    watch_repeats: int = 3
    hot_keys: int = 500
    hot_events: int = 200_000
    """The hot-keys stream: 200k MODIFIED events over 500 keys."""
    listwatch_reads: tuple[str, ...] = ("object", "parse", "json")
    """How the listwatch WATCH receivers read objects (``--reads``; ``parse`` needs Item.parse)."""
    stock_watch_events: int = 5_000
    stock_watch_repeats: int = 2
    merge_interval: float = 0.5
    latency_rate: int = 1000
    latency_seconds: float = 10.0
    latency_interval: float = 0.1
    latency_repeats: int = 2
    latency_keys: int = 5000
    stall_events: int = 1_000_000
    stall_keys: int = 10_000
    stall_seconds: float = 10.0
    release_seconds: float = 5.0

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            list_sizes=(2_000,),
            list_repeats=1,
            stock_list_repeats={2_000: 1},
            watch_events=10_000,
            hot_events=20_000,
            watch_repeats=1,
            stock_watch_events=1_000,
            stock_watch_repeats=1,
            latency_seconds=3.0,
            latency_repeats=1,
            stall_events=100_000,
            stall_seconds=4.0,
            release_seconds=2.0,
        )


# -- processes ----------------------------------------------------------------------------


@contextmanager
def payload_server(plan: Plan) -> Iterator[str]:
    """The server process; yields its base URL. It also stops when our stdin pipe closes."""
    with bench_server(
        f"--page-size={plan.page_size}",
        f"--list-sizes={','.join(map(str, plan.list_sizes))}",
        f"--watch-events={plan.watch_events}",
        f"--hot-keys={plan.hot_keys}",
        f"--hot-events={plan.hot_events}",
        f"--stall-events={plan.stall_events}",
        f"--stall-keys={plan.stall_keys}",
        f"--latency-keys={plan.latency_keys}",
    ) as (pid, port, ready):
        log(f"payload server: pid {pid}, port {port}, {ready.split()[2]}")
        yield f"http://127.0.0.1:{port}"


@contextmanager
def bench_server(
    *args: str, what: str = "payload server", env: dict[str, str] | None = None
) -> Iterator[tuple[int, int, str]]:
    """``python -m benchmarks.server --stop-on-stdin-eof ARGS`` in its own process until the
    block ends; yields its pid, its port and its ``READY`` line (the benchmarks that start
    one log what they need of it)."""
    command = [sys.executable, "-m", "benchmarks.server", "--stop-on-stdin-eof", *args]
    server = subprocess.Popen(
        command, cwd=HERE.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline()
        if not ready.startswith("READY "):
            raise RuntimeError(f"the {what} did not start: {ready!r}")
        yield server.pid, int(ready.split()[1]), ready
    finally:
        stop_server(server)


def stop_server(server: subprocess.Popen[Any]) -> None:
    """End a server process the benchmark started: its stdin closed (its cue to stop),
    SIGTERM, SIGKILL after 10 s; its stdout pipe closed."""
    if server.stdin is not None:
        server.stdin.close()
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    if server.stdout is not None:
        server.stdout.close()


def run_client(spec: dict[str, Any], *, wrapper: list[str] | None = None) -> dict[str, Any]:
    """One client run in a fresh interpreter; its ``RESULT`` line, parsed."""
    command = [*(wrapper or []), sys.executable, "-m", "benchmarks.clients", json.dumps(spec)]
    done = subprocess.run(
        command,
        cwd=HERE.parent,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        check=False,
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    raise RuntimeError(
        f"client {spec['kind']}/{spec['client']} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    )


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- scenarios ----------------------------------------------------------------------------

Runs = dict[str, list[dict[str, Any]]]


def rounds(specs: dict[str, tuple[dict[str, Any], int]], describe: Callable[..., str]) -> Runs:
    """Run each client ``repeats`` times, interleaved round by round."""
    runs: Runs = {name: [] for name in specs}
    for round_no in range(max(repeats for _, repeats in specs.values())):
        for name, (spec, repeats) in specs.items():
            if round_no < repeats:
                result = run_client(spec)
                result["round"] = round_no
                result["load"] = os.getloadavg()[0]
                runs[name].append(result)
                log(f"  {name:<18} round {round_no + 1}: {describe(result)}")
    return runs


def list_scenario(url: str, plan: Plan, size: int) -> Runs:
    log(f"LIST {size} pods, limit={plan.page_size}")
    base = {"kind": "list", "url": f"{url}/list{size}", "page_size": plan.page_size, "count": size}
    specs = {
        "raw-read": ({**base, "client": "raw-read"}, plan.list_repeats),
        "raw (aiohttp+orjson)": ({**base, "client": "raw"}, plan.list_repeats),
        "listwatch": ({**base, "client": "listwatch"}, plan.list_repeats),
        "stock (models)": ({**base, "client": "stock"}, plan.stock_list_repeats.get(size, 1)),
    }

    def describe(r: dict[str, Any]) -> str:
        return f"{r['wall_s']:.2f} s, peak +{r['peak_mb']:.0f} MB, {r['items']} items"

    return rounds(specs, describe)


RAW = "raw (aiohttp+orjson)"
"""The raw WATCH client: ``readany()``, one ``split`` per chunk, ``orjson.loads`` per line."""
CEILING = "raw readline (ceiling)"
"""The WATCH ceiling: aiohttp ``readline()`` + ``orjson.loads`` per line."""
LISTWATCH_READS = {"listwatch": "object", "listwatch .parse()": "parse", "listwatch .json": "json"}
"""The listwatch WATCH receivers: each reads every object, as a dict the batch keeps while
it is the current one (``Item``), as a dict it lets go, or as the raw JSON bytes."""


def watch_scenario(url: str, plan: Plan, stream: str) -> Runs:
    n = plan.hot_events if stream == "hot" else plan.watch_events
    log(f"WATCH {n} MODIFIED events, {stream} keys")
    base = {
        "kind": "watch",
        "url": f"{url}/{stream}",
        "count": n,
        "last_rv": n + 1,
        "merge_interval": plan.merge_interval,
    }
    repeats = plan.watch_repeats
    specs = {
        "raw-read": ({**base, "client": "raw-read"}, repeats),
        RAW: ({**base, "client": "raw"}, repeats),
        CEILING: ({**base, "client": "raw-readline"}, repeats),
    }
    # Hot keys: a batch holds at most 500 objects and a receiver reads them as dicts.
    reads = (
        LISTWATCH_READS
        if stream == "unique"
        else {"listwatch": "object", "listwatch .parse()": "parse"}
    )
    reads = {name: read for name, read in reads.items() if read in plan.listwatch_reads}
    for name, read in reads.items():
        specs[name] = ({**base, "client": "listwatch", "read": read}, repeats)
    if stream == "unique":
        stock = {**base, "client": "stock", "count": plan.stock_watch_events}
        specs["stock (models)"] = (stock, plan.stock_watch_repeats)

    def describe(r: dict[str, Any]) -> str:
        return f"{r['events'] / r['wall_s']:,.0f} events/s, peak +{r['peak_mb']:.0f} MB"

    return rounds(specs, describe)


def latency_scenario(url: str, plan: Plan) -> Runs:
    rate, seconds = plan.latency_rate, plan.latency_seconds
    log(f"LATENCY {rate} events/s for {seconds:g} s, merge_interval {plan.latency_interval}")
    total = int(rate * seconds)
    base = {
        "kind": "latency",
        "url": f"{url}/latency{rate}x{seconds:g}",
        "count": total,
        "last_rv": total + 1,
        "merge_interval": plan.latency_interval,
    }
    specs = {
        "raw (aiohttp+orjson)": ({**base, "client": "raw"}, plan.latency_repeats),
        "listwatch": ({**base, "client": "listwatch"}, plan.latency_repeats),
    }

    def describe(r: dict[str, Any]) -> str:
        p = percentiles(r["latencies"])
        return f"p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms, {r['events']} events"

    return rounds(specs, describe)


def stall_scenario(url: str, plan: Plan) -> Runs:
    log(
        f"STALL: receiver blocked {plan.stall_seconds:g} s while {plan.stall_events:,} events "
        f"for {plan.stall_keys:,} keys are offered, then released for {plan.release_seconds:g} s"
    )
    spec = {
        "kind": "stall",
        "client": "listwatch",
        "url": f"{url}/stall",
        "count": plan.stall_events,
        "last_rv": plan.stall_events + 1,
        "merge_interval": plan.merge_interval,
        "stall_seconds": plan.stall_seconds,
        "release_seconds": plan.release_seconds,
    }

    def describe(r: dict[str, Any]) -> str:
        s = stall_summary(r)
        return (
            f"RSS during stall +{s['stall_min_mb']:.0f}..+{s['stall_max_mb']:.0f} MB, "
            f"taken {s['taken_during_stall']:,} events while stalled"
        )

    return rounds({"listwatch": (spec, 1)}, describe)


# -- summaries ----------------------------------------------------------------------------


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    if not ordered:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "max_ms": ordered[-1] * 1000,
    }


def spread(values: list[float]) -> float:
    """(max - min) / median: how far apart the runs were."""
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle and len(values) > 1 else 0.0


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    summary: dict[str, Any] = {
        "runs": len(runs),
        "wall_s": statistics.median(walls),
        "wall_min_s": min(walls),
        "wall_max_s": max(walls),
        "spread": spread(walls),
        "cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "gc_s": statistics.median(r["gc_s"] for r in runs),
        "peak_mb": statistics.median(r["peak_mb"] for r in runs),
    }
    if "events" in runs[0]:
        summary["events"] = runs[0]["events"]
        summary["events_per_s"] = statistics.median(r["events"] / r["wall_s"] for r in runs)
    if "items" in runs[0]:
        summary["items"] = runs[0]["items"]
    if "bytes" in runs[0]:
        summary["mb_per_s"] = statistics.median(r["bytes"] / r["wall_s"] / 1e6 for r in runs)
    if "batches" in runs[0]:
        summary.update(batch_summary(runs))
    if "stop_s" in runs[0]:
        stops = [r["stop_s"] for r in runs]
        summary["stop_s"] = stops  # None: not stopped within clients.STOP_TIMEOUT
    return summary


def batch_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Objects per batch, and the rate without the final merge wait.

    The last batch of a finite stream waits up to ``merge_interval`` for more events (the
    merge contract, measured by the latency scenario); the *steady* rate counts the events of
    all batches but the last, up to the moment that last-but-one batch was handed over.
    """
    objects = [b[1] for r in runs for b in r["batches"]]
    received = [b[2] for r in runs for b in r["batches"]]
    steady: list[float] = []
    for r in runs:
        batches = r["batches"]
        if len(batches) >= 2:
            steady.append(sum(b[2] for b in batches[:-1]) / batches[-2][0])
    result: dict[str, Any] = {
        "batches": statistics.median(len(r["batches"]) for r in runs),
        "objects_per_batch": statistics.mean(objects),
        "events_per_batch": statistics.mean(received),
        "objects_parsed": runs[0]["objects"],
    }
    if steady:
        result["steady_events_per_s"] = statistics.median(steady)
    return result


def stall_summary(result: dict[str, Any]) -> dict[str, Any]:
    """RSS while the receiver was blocked: flat means the bounded queue held the line."""
    marks = result["marks"]
    start, end, released = marks["stall_start"], marks["stall_end"], marks["release_end"]
    during = [s for s in result["samples"] if start + 1.0 <= s[0] <= end]
    after = [s for s in result["samples"] if end < s[0] <= released]
    half = start + (end - start) / 2
    first = [s[1] for s in during if s[0] <= half] or [0.0]
    second = [s[1] for s in during if s[0] > half] or [0.0]
    taken = [s[2] for s in result["samples"] if s[0] <= end]
    return {
        "stall_s": end - start,
        "stall_min_mb": min((s[1] for s in during), default=0.0),
        "stall_max_mb": max((s[1] for s in during), default=0.0),
        "growth_second_half_mb": max(second) - max(first),
        "taken_during_stall": max(taken, default=0),
        "queued_at_stall_end": during[-1][4] if during else -1,
        "after_max_mb": max((s[1] for s in after), default=0.0),
        "delivered_after": marks["delivered_at_end"],
        "release_s": released - end,
    }


def paired_ratios(
    runs_a: list[dict[str, Any]], runs_b: list[dict[str, Any]], key: str
) -> list[float]:
    """``a[key] / b[key]`` for runs of the same round: the noise of a round cancels out."""
    by_round = {r["round"]: r[key] for r in runs_b}
    return [r[key] / by_round[r["round"]] for r in runs_a if r["round"] in by_round]


# -- report -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("listwatch", "kubernetes_asyncio", "aiohttp", "orjson", "msgspec", "anyio"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "absent"
    # The library measured: this checkout's, or another one put first on PYTHONPATH (to
    # measure an older commit with this harness, e.g. ``PYTHONPATH=../base/src``).
    spec = importlib.util.find_spec("listwatch")
    library = Path(spec.origin).parent if spec and spec.origin else HERE.parent
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=library,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit,
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def build_targets(results: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
    """The issue's target ratios, each with the measured value and PASS/FAIL."""
    targets: list[dict[str, Any]] = []

    def add(
        name: str,
        value: float,
        target: str,
        ok: bool,
        paired: list[float] | None = None,
        *,
        vs_raw: float | None = None,
    ) -> None:
        row: dict[str, Any] = {
            "target": name,
            "measured": value,
            "goal": target,
            "result": verdict(ok),
        }
        if paired:
            row["per_round"] = [round(p, 2) for p in paired]
        if vs_raw is not None:
            row["vs_raw_split"] = vs_raw
        targets.append(row)

    size = max(plan.list_sizes)
    lists = results.get(f"list{size}")
    if lists:
        s, runs = lists["summary"], lists["runs"]
        lw, raw, stock = s["listwatch"], s["raw (aiohttp+orjson)"], s["stock (models)"]
        t = lw["wall_s"] / raw["wall_s"]
        add(
            f"LIST {size}: time vs raw",
            t,
            "<= 1.0x",
            t <= 1.0,
            paired_ratios(runs["listwatch"], runs["raw (aiohttp+orjson)"], "wall_s"),
        )
        m = lw["peak_mb"] / raw["peak_mb"]
        add(
            f"LIST {size}: peak RSS vs raw",
            m,
            "<= 0.5x",
            m <= 0.5,
            paired_ratios(runs["listwatch"], runs["raw (aiohttp+orjson)"], "peak_mb"),
        )
        f = stock["wall_s"] / lw["wall_s"]
        add(f"LIST {size}: speed-up over stock", f, ">= 10x", f >= 10)
        m = lw["peak_mb"] / stock["peak_mb"]
        add(f"LIST {size}: peak RSS vs stock", m, "<= 0.25x", m <= 0.25)
    watch_goals = (
        ("unique", "listwatch .parse()", "reads each object as a dict (.parse())", 1.0),
        ("unique", "listwatch", "reads each object as a dict (.object)", 0.8),
        ("unique", "listwatch .json", "takes the raw JSON (.json)", 2.0),
        ("hot", "listwatch", "reads each object (.object), end to end", 3.0),
        ("hot", "listwatch .parse()", "reads each object (.parse()), end to end", 3.0),
    )
    for stream, client, what, goal in watch_goals:
        watch = results.get(f"watch-{stream}")
        if not watch or client not in watch["summary"]:
            continue
        s, runs = watch["summary"], watch["runs"]
        lw = s[client]
        ceiling = CEILING if CEILING in s else RAW
        rate = lw["events_per_s"] / s[ceiling]["events_per_s"]
        paired = [1 / p for p in paired_ratios(runs[client], runs[ceiling], "wall_s")]
        also = lw["events_per_s"] / s[RAW]["events_per_s"]
        add(
            f"WATCH {stream} keys, a receiver that {what}: events/s vs the ceiling",
            rate,
            f">= {goal:g}x",
            rate >= goal,
            paired,
            vs_raw=also,
        )
        if stream == "hot" and client == "listwatch" and "steady_events_per_s" in lw:
            steady = lw["steady_events_per_s"] / s[ceiling]["events_per_s"]
            add(
                f"WATCH {stream} keys: steady events/s vs the ceiling (info: before the last "
                "batch's wait)",
                steady,
                "(info)",
                True,
                vs_raw=lw["steady_events_per_s"] / s[RAW]["events_per_s"],
            )
    latency = results.get("latency")
    if latency:
        lw = latency["summary"]["listwatch"]
        beyond = lw["p99_ms"] - plan.latency_interval * 1000
        add("LATENCY: p99 - merge_interval", beyond, "<= 10 ms", beyond <= 10)
    stall = results.get("stall")
    if stall:
        growth = stall["summary"]["listwatch"]["growth_second_half_mb"]
        add("STALL: RSS growth, 2nd half of stall", growth, "<= 10 MB (flat)", growth <= 10)
    return targets


def _f(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    m, plan, results = report["machine"], report["plan"], report["results"]
    out = [
        f"# listwatch benchmarks ({'quick' if report['quick'] else 'full'} run)",
        "",
        f"- date: {report['date']}, took {report['elapsed_s'] / 60:.1f} min; command: "
        f"`{report['command']}`",
        f"- machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, {m['platform']}",
        f"- load average (1 min) during the run: {report['load']['min']:.2f} .. "
        f"{report['load']['max']:.2f} (other work on the machine makes absolute times noisy; "
        "clients run interleaved round by round, so ratios are side by side)",
        f"- Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f"; commit {m['commit']}",
        "- each run is a fresh process; peak RSS is the high-water mark over the RSS after "
        "imports; figures are medians, spread = (max - min) / median of wall time; GC s is "
        "the time inside the cyclic garbage collector (a `gc.callbacks` hook)",
        "",
        "## Targets (issues 6, 13 and 22)",
        "",
        "WATCH ratios are against the ceiling (aiohttp `readline()` + "
        "`orjson.loads` per line); *vs raw split* is against the raw client "
        "(`readany()` + one `split` per chunk), the faster of the two.",
        "",
        "| target | measured | goal | result | per round | vs raw split |",
        "|---|---:|---|---|---|---:|",
    ]
    for t in report["targets"]:
        per_round = ", ".join(f"{p:g}" for p in t.get("per_round", []))
        split = _f(t["vs_raw_split"]) if "vs_raw_split" in t else ""
        out.append(
            f"| {t['target']} | {_f(t['measured'])} | {t['goal']} | {t['result']} | {per_round} "
            f"| {split} |"
        )
    for size in plan["list_sizes"]:
        data = results.get(f"list{size}")
        if not data:
            continue
        out += [
            "",
            f"## LIST {size:,} pods, paged limit={plan['page_size']}",
            "",
            "| client | runs | wall s (min..max) | spread | CPU s | GC s | peak RSS MB | "
            "vs raw time | vs raw RSS |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        raw = data["summary"]["raw (aiohttp+orjson)"]
        for name, s in data["summary"].items():
            extra = f" ({_f(s['mb_per_s'], 0)} MB/s)" if "mb_per_s" in s else ""
            out.append(
                f"| {name} | {s['runs']} | {_f(s['wall_s'])} ({_f(s['wall_min_s'])}.."
                f"{_f(s['wall_max_s'])}){extra} | {s['spread']:.0%} | {_f(s['cpu_s'])} | "
                f"{_f(s['gc_s'])} | {_f(s['peak_mb'], 0)} | {_f(s['wall_s'] / raw['wall_s'])}x | "
                f"{_f(s['peak_mb'] / raw['peak_mb'])}x |"
            )
    for stream, title in (("unique", "unique keys"), ("hot", f"hot keys ({plan['hot_keys']})")):
        data = results.get(f"watch-{stream}")
        if not data:
            continue
        count = plan.get("hot_events", plan["watch_events"]) if stream == "hot" else None
        out += [
            "",
            f"## WATCH {count or plan['watch_events']:,} MODIFIED events, {title}, "
            f"merge_interval {plan['merge_interval']} s",
            "",
            "| client | runs | events | events/s (median) | spread | CPU s | GC s | peak RSS MB | "
            "vs ceiling | vs raw | batches | objects/batch | steady events/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        raw = data["summary"][RAW]
        ceiling = data["summary"].get(CEILING, raw)
        for name, s in data["summary"].items():
            extra = f" ({_f(s['mb_per_s'], 0)} MB/s)" if "mb_per_s" in s else ""
            batches = (
                f"{s['batches']:g} | {_f(s['objects_per_batch'], 0)} | "
                f"{_f(s.get('steady_events_per_s', float('nan')), 0)}"
                if "batches" in s
                else "| |"
            )
            out.append(
                f"| {name} | {s['runs']} | {s['events']:,} | {_f(s['events_per_s'], 0)}{extra} | "
                f"{s['spread']:.0%} | {_f(s['cpu_s'])} | {_f(s['gc_s'])} | {_f(s['peak_mb'], 0)} | "
                f"{_f(s['events_per_s'] / ceiling['events_per_s'])}x | "
                f"{_f(s['events_per_s'] / raw['events_per_s'])}x | {batches} |"
            )
    data = results.get("latency")
    if data:
        out += [
            "",
            f"## LATENCY: server write -> receiver, {plan['latency_rate']} events/s for "
            f"{plan['latency_seconds']:g} s, merge_interval {plan['latency_interval']} s",
            "",
            "| client | runs | events | p50 ms | p90 ms | p99 ms | max ms | p99 - interval ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, s in data["summary"].items():
            interval = plan["latency_interval"] * 1000 if name == "listwatch" else 0.0
            out.append(
                f"| {name} | {s['runs']} | {s['events']:,} | {_f(s['p50_ms'], 1)} | "
                f"{_f(s['p90_ms'], 1)} | {_f(s['p99_ms'], 1)} | {_f(s['max_ms'], 1)} | "
                f"{_f(s['p99_ms'] - interval, 1)} |"
            )
        out.append("")
        out.append("raw: the line parsed as it arrives (the transport's floor, no merging).")
    data = results.get("stall")
    if data:
        s = data["summary"]["listwatch"]
        out += [
            "",
            f"## STALL: on_batch blocked {_f(s['stall_s'], 1)} s while "
            f"{plan['stall_events']:,} events for {plan['stall_keys']:,} keys are offered",
            "",
            "| RSS MB during stall (min..max) | growth in 2nd half MB | events taken while "
            "stalled | queued at stall end | RSS MB max after release | events delivered "
            "(incl. the stalled batch) |",
            "|---|---:|---:|---:|---:|---:|",
            f"| +{_f(s['stall_min_mb'], 0)} .. +{_f(s['stall_max_mb'], 0)} | "
            f"{_f(s['growth_second_half_mb'], 1)} | {s['taken_during_stall']:,} | "
            f"{s['queued_at_stall_end']:,} | +{_f(s['after_max_mb'], 0)} | "
            f"{s['delivered_after']:,} in {_f(s['release_s'], 1)} s after release |",
            "",
            "RSS over time (s since start: MB over baseline, events taken off the wire):",
            "",
            "```",
        ]
        run = data["runs"]["listwatch"][0]
        line: list[str] = []
        for sample in run["samples"]:
            line.append(f"{sample[0]:5.1f}s {sample[1]:6.0f} MB {int(sample[2]):>8}")
            if len(line) == 4:
                out.append("   ".join(line))
                line = []
        if line:
            out.append("   ".join(line))
        marks = run["marks"]
        out += [
            "```",
            "",
            f"Stalled from {marks['stall_start']:.1f} s to {marks['stall_end']:.1f} s, released "
            f"until {marks['release_end']:.1f} s (later samples: while the Syncer stops). While "
            "stalled, the client holds the batch in on_batch plus a full queue (queue_size "
            "10,000) of undecoded events; the rest of the offered events wait in the server, "
            "held back by TCP flow control. The peaks after the release are on_batch holding a "
            "whole batch of decoded objects.",
        ]
    out += ["", "## Notes", ""]
    stops = [
        (f"{key}/{name}", stop)
        for key, data in results.items()
        for name, s in data["summary"].items()
        for stop in s.get("stop_s", [])
    ]
    if stops:
        slow = [(where, stop) for where, stop in stops if stop is None or stop > 1.0]
        out.append(
            f"- Syncer stop (leaving `async with syncer`, i.e. cancelling it) in {len(stops)} "
            f"runs: {len(slow)} took over 1 s"
            + (
                ": " + ", ".join(f"{w} {'> 3 s' if s is None else f'{s:.1f} s'}" for w, s in slow)
                if slow
                else ""
            )
            + " (measured after the last event, never part of a throughput figure)."
        )
    out.append(
        "- raw-read: reading the response bytes only; its rate over the raw client's shows "
        "how far the server is from being the bottleneck."
    )
    return "\n".join(out) + "\n"


# -- main ---------------------------------------------------------------------------------


def run_benchmarks(plan: Plan, args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    started = time.time()
    loads: list[float] = [os.getloadavg()[0]]
    results: dict[str, Any] = {}
    only = set(args.only.split(",")) if args.only else None

    def wanted(name: str) -> bool:
        return only is None or name in only

    with payload_server(plan) as url:
        if wanted("list"):
            for size in plan.list_sizes:
                runs = list_scenario(url, plan, size)
                results[f"list{size}"] = {"runs": runs}
        for stream in ("unique", "hot"):
            if wanted("watch") or wanted(stream):
                results[f"watch-{stream}"] = {"runs": watch_scenario(url, plan, stream)}
        if wanted("latency"):
            results["latency"] = {"runs": latency_scenario(url, plan)}
        if wanted("stall"):
            results["stall"] = {"runs": stall_scenario(url, plan)}
    for data in results.values():
        data["summary"] = {}
        for name, runs in data["runs"].items():
            loads.extend(r["load"] for r in runs)
            summary = summarize(runs)
            if "latencies" in runs[0]:
                all_latencies = [x for r in runs for x in r["latencies"]]
                summary.update(percentiles(all_latencies))
                for r in runs:  # keep the JSON small: the percentiles of each run instead
                    r["percentiles"] = percentiles(r.pop("latencies"))
            if "samples" in runs[0]:
                summary.update(stall_summary(runs[0]))
            data["summary"][name] = summary
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "elapsed_s": time.time() - started,
        "command": (
            ("nox -s bench" + (" --" if argv else ""))
            if os.environ.get("NOX_CURRENT_SESSION")
            else "python -m benchmarks"
        )
        + "".join(f" {arg}" for arg in argv),
        "python": sys.executable,
        "quick": args.quick,
        "machine": machine(),
        "load": {"min": min(loads), "max": max(loads), "samples": loads},
        "plan": asdict(plan),
        "results": results,
        "targets": build_targets(results, plan),
    }


def profile(plan: Plan, out: Path, *, only: set[str] | None = None, tag: str = "") -> None:
    """listwatch's LIST and WATCH clients under py-spy and pyinstrument (whichever exists).

    ``only`` picks cases by name (``list<N>``, ``watch-unique``, ``watch-unique-parse``,
    ``watch-unique-json``, ``watch-hot``); ``tag`` goes into the file names
    (``watch-hot.before.…``).
    """
    out.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy")
    try:
        import pyinstrument  # noqa: F401, PLC0415

        have_pyinstrument = True
    except ImportError:
        have_pyinstrument = False
    if not py_spy and not have_pyinstrument:
        raise SystemExit("--profile needs py-spy or pyinstrument: pip install py-spy pyinstrument")
    size = max(plan.list_sizes)
    with payload_server(plan) as url:
        n = plan.watch_events
        watch = {
            "kind": "watch",
            "count": n,
            "last_rv": n + 1,
            "merge_interval": plan.merge_interval,
        }
        cases = {
            f"list{size}": {
                "kind": "list",
                "url": f"{url}/list{size}",
                "page_size": plan.page_size,
                "count": size,
            },
            "watch-unique": {**watch, "url": f"{url}/unique"},
            "watch-unique-parse": {**watch, "url": f"{url}/unique", "read": "parse"},
            "watch-unique-json": {**watch, "url": f"{url}/unique", "read": "json"},
            "watch-hot": {
                **watch,
                "url": f"{url}/hot",
                "count": plan.hot_events,
                "last_rv": plan.hot_events + 1,
            },
        }
        for case, base in cases.items():
            if only is not None and case not in only:
                continue
            spec = {**base, "client": "listwatch"}
            name = f"{case}.{tag}" if tag else case
            if py_spy:
                raw = out / f"{name}.py-spy.txt"
                wrapper = [
                    py_spy,
                    "record",
                    "--rate",
                    "250",
                    # C frames too: shows the collector (gc_collect_main) and the parsers
                    *(["--native"] if sys.platform == "linux" else []),
                    "--format",
                    "raw",
                    "-o",
                    str(raw),
                    "--",
                ]
                result = run_client(spec, wrapper=wrapper)
                (out / f"{name}.py-spy-top.txt").write_text(top_frames(raw))
                log(f"py-spy {name}: {result['wall_s']:.2f} s -> {raw}")
            if have_pyinstrument:
                target = out / f"{name}.pyinstrument"
                result = run_client({**spec, "pyinstrument": str(target)})
                log(f"pyinstrument {name}: {result['wall_s']:.2f} s -> {target}.txt/.html")


def _frame_name(frame: str) -> str:
    """``function (file)`` without the line; unnamed native code as its library."""
    name, _, where = frame.partition(" (")
    where = where.split(":")[0].rstrip(")")
    if name.startswith("0x"):
        return f"[native] ({Path(where).name})"
    return f"{name} ({where})" if where else name


def top_frames(collapsed: Path, limit: int = 25) -> str:
    """Self and inclusive sample shares per function, from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        frames = [_frame_name(f) for f in stack.split(";")]
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"{total} samples", "", "self%  function"]
    lines += [f"{100 * c / total:5.1f}  {f}" for f, c in own.most_common(limit)]
    lines += ["", "total%  function"]
    lines += [f"{100 * c / total:5.1f}  {f}" for f, c in inclusive.most_common(limit)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one run: ~1 minute")
    parser.add_argument(
        "--only", help="comma-separated: list,watch,unique,hot,latency,stall,memory"
    )
    parser.add_argument("--repeats", type=int, help="runs per client (stock excepted)")
    parser.add_argument("--profile", action="store_true", help="profile listwatch instead")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--tag", help="with --profile: a word in the profiles' file names")
    parser.add_argument(
        "--reads", help="WATCH receivers, comma-separated: object,parse,json (the default)"
    )
    parser.add_argument("--render", type=Path, help="only re-render the markdown of a JSON result")
    parser.add_argument(
        "--no-sinks", action="store_true", help="skip benchmarks.sinks_ceiling after the run"
    )
    parser.add_argument(
        "--combine", action="store_true", help="only fold the per-Python results into one table"
    )
    args = parser.parse_args(argv)
    if args.render:
        text = markdown(json.loads(args.render.read_text()))
        args.render.with_suffix(".md").write_text(text)
        print(text)
        return
    if args.combine:
        print(combined.combine(args.out, "quick" if args.quick else "latest").read_text())
        return
    plan = Plan.quick() if args.quick else Plan()
    if args.repeats:
        plan = Plan(**{**asdict(plan), "list_repeats": args.repeats, "watch_repeats": args.repeats})
    if args.reads:
        plan = Plan(**{**asdict(plan), "listwatch_reads": tuple(args.reads.split(","))})
    only = set(args.only.split(",")) if args.only else set()
    if "memory" in only:
        # The memory benchmark: its own server and its own results file (memory.{md,json}).
        from benchmarks import memory  # noqa: PLC0415 - it imports this module

        memory_plan = memory.MemoryPlan.quick() if args.quick else memory.MemoryPlan()
        if args.profile:
            memory.profile(memory_plan, args.out / "profiles")
        else:
            path = memory.write_report(memory.run_memory(memory_plan, quick=args.quick), args.out)
            print(path.read_text())
            log(f"wrote {path} and .json")
        args.only = ",".join(sorted(only - {"memory"}))
        if not args.only:
            return
    if args.profile:
        only = set(args.only.split(",")) if args.only else None
        profile(plan, args.out / "profiles", only=only, tag=args.tag or "")
        return
    report = run_benchmarks(plan, args, sys.argv[1:] if argv is None else argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "quick" if args.quick else "latest"
    python = f"{stem}-{sys.version_info.major}.{sys.version_info.minor}"
    (args.out / f"{python}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / f"{python}.md").write_text(markdown(report))
    log(f"wrote {args.out / python}.md and .json")
    if not args.only and not args.no_sinks:
        run_sinks(quick=args.quick)
    path = combined.combine(args.out, stem)
    print(path.read_text())
    log(f"wrote {path} and .json (every Python measured so far)")


def run_sinks(*, quick: bool) -> None:
    """The sink benchmark (``benchmarks.sinks_ceiling``: it writes ``sinks-X.Y.json``) under
    this interpreter, when the module exists; its failure is logged, not fatal."""
    if importlib.util.find_spec("benchmarks.sinks_ceiling") is None:
        log("no benchmarks.sinks_ceiling: the table has no sink figures")
        return
    log("sinks: python -m benchmarks.sinks_ceiling")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.sinks_ceiling", *(["--quick"] if quick else [])],
        cwd=HERE.parent,
        check=False,
    )
    if done.returncode:
        log(f"benchmarks.sinks_ceiling failed ({done.returncode}): no sink figures this run")
