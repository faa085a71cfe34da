"""The sharding benchmark: ``python -m benchmarks.shards [--quick] [--events N] [--repeats R]``.

One stream of ``--events`` MODIFIED events (unique keys, ~7 KB pods: the ``unique`` stream
of ``benchmarks.server``) is watched by N replicas at once, each its own process mirroring
shard I of N (``ListWatch.from_client(shard="I/N")``, a Syncer whose receiver takes every
object's JSON bytes, as the sinks do), for N = 1, 2 and 4, in two ways:

* **server-side**: the payload server filters as kube-apiserver with ``ShardedListAndWatch``
  does (scenario ``sharded``): each replica is sent its shard's events alone, then a
  bookmark at the stream's end, and its LIST echoes the selector;
* **client-side**: the payload server ignores the selector (scenario ``unique``), as a
  server without the gate does: every replica reads the whole stream and drops the events
  of the other shards by the uid's hash.

An unsharded Syncer over the same stream is the baseline. Per replica: CPU seconds (user +
system, its own process, from its first request to the last event), wall seconds, the
shard's objects delivered, and the stream's events per second of wall time (the stream's
events over the replica's wall, whether it was sent them all or not). The N replicas of a
configuration run at the same time, on the same machine as the payload server, so wall
times include their contention for its cores; CPU seconds do not. Configurations are
interleaved round by round (``benchmarks.run.rounds``'s reason: a burst of load from other
processes hits all of them alike), each figure the median over rounds and replicas.

Results: ``benchmarks/results/shards.{md,json}`` (``shards-quick.*`` for ``--quick``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks.run import CLIENT_TIMEOUT, HERE, RESULTS, bench_server, log, machine

SHARD_COUNTS = (1, 2, 4)
MODES = ("server-side", "client-side")


@contextmanager
def payload_server(events: int) -> Iterator[str]:
    """``benchmarks.server`` with the ``unique`` stream and its shards' streams only."""
    with bench_server(
        "--list-sizes=",
        f"--watch-events={events}",
        "--hot-events=0",
        "--stall-events=0",
        f"--shard-counts={','.join(map(str, SHARD_COUNTS))}",
    ) as (pid, port, ready):
        log(f"payload server: pid {pid}, {ready.strip()}")
        yield f"http://127.0.0.1:{port}"


def spec(url: str, events: int, *, scenario: str, shard: str | None, read: str) -> dict[str, Any]:
    """A ``benchmarks.clients`` watch run of listwatch over ``scenario``."""
    return {
        "kind": "watch",
        "client": "listwatch",
        "url": f"{url}/{scenario}",
        "count": events,
        "last_rv": events + 1,
        "merge_interval": 0.5,
        "read": read,
        "shard": shard,
        "timeout": CLIENT_TIMEOUT,
    }


def run_replicas(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run one client process per spec, all at once; their results, in order."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.clients", json.dumps(s)],
            cwd=HERE.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in specs
    ]
    results = []
    for process, replica in zip(processes, specs, strict=True):
        out, err = process.communicate(timeout=CLIENT_TIMEOUT)
        line = next((x for x in reversed(out.splitlines()) if x.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"replica {replica['shard']} failed:\n{err[-3000:]}")
        result: dict[str, Any] = json.loads(line[len("RESULT ") :])
        result.pop("batches", None)  # per-batch timings: not needed here, and large
        result["shard"] = replica["shard"]
        results.append(result)
    return results


def configurations(url: str, events: int, read: str) -> dict[str, list[dict[str, Any]]]:
    """``{name: [spec per replica]}``: the baseline, then each mode and shard count."""
    configs = {"unsharded": [spec(url, events, scenario="unique", shard=None, read=read)]}
    for mode in MODES:
        scenario = "sharded" if mode == "server-side" else "unique"
        for count in SHARD_COUNTS:
            configs[f"{mode} {count}"] = [
                spec(url, events, scenario=scenario, shard=f"{i}/{count}", read=read)
                for i in range(count)
            ]
    return configs


def summarize(runs: list[list[dict[str, Any]]], events: int) -> dict[str, Any]:
    """Medians over rounds and replicas; totals over the replicas of a round."""
    replicas = [r for round_runs in runs for r in round_runs]
    return {
        "replicas": len(runs[0]),
        "cpu_s_per_replica": statistics.median(r["cpu_s"] for r in replicas),
        "cpu_s_max_replica": statistics.median(max(r["cpu_s"] for r in rr) for rr in runs),
        "cpu_s_all_replicas": statistics.median(sum(r["cpu_s"] for r in rr) for rr in runs),
        "wall_s_per_replica": statistics.median(r["wall_s"] for r in replicas),
        "objects_per_replica": statistics.median(r["objects"] for r in replicas),
        "stream_events_per_s": statistics.median(events / r["wall_s"] for r in replicas),
        "shard_objects_per_s": statistics.median(r["objects"] / r["wall_s"] for r in replicas),
        "stream_events_per_cpu_s": statistics.median(events / r["cpu_s"] for r in replicas),
        "peak_mb_per_replica": statistics.median(r["peak_mb"] for r in replicas),
        "objects_all_replicas": [sum(r["objects"] for r in rr) for rr in runs],
    }


def markdown(report: dict[str, Any]) -> str:
    events = report["events"]
    out = [
        "# Sharding: watch throughput and CPU per replica",
        "",
        f"Command: `{report['command']}` ({report['date']}, {report['elapsed_s']:.0f} s; "
        f"load average {report['load']['min']:.1f} to {report['load']['max']:.1f} on "
        f"{report['machine']['cpus']} CPUs, {report['machine']['cpu_model']}; "
        f"commit {report['machine']['commit']}).",
        "",
        f"One stream of {events:,} MODIFIED events (unique keys, ~7 KB pods), watched by N "
        "replicas at once, each mirroring shard I of N into a receiver that takes each "
        f"object's JSON bytes (`read={report['read']}`); medians of {report['repeats']} "
        "rounds over the replicas. *Server-side*: the payload server filters as "
        "kube-apiserver with `ShardedListAndWatch` does (each replica gets its shard's "
        "events alone). *Client-side*: it ignores the selector, as a server without the "
        "gate does (each replica reads the whole stream and drops the other shards' "
        "events by uid hash). The replicas and the payload server share the machine's "
        "cores: wall times include that contention, CPU seconds do not.",
        "",
        "| configuration | replicas | CPU s / replica | CPU s, all replicas | wall s / replica "
        "| shard objects / replica | stream events/s / replica | shard objects/s / replica "
        "| peak MB / replica |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, data in report["results"].items():
        s = data["summary"]
        out.append(
            f"| {name} | {s['replicas']} | {s['cpu_s_per_replica']:.2f} "
            f"| {s['cpu_s_all_replicas']:.2f} | {s['wall_s_per_replica']:.2f} "
            f"| {s['objects_per_replica']:,.0f} | {s['stream_events_per_s']:,.0f} "
            f"| {s['shard_objects_per_s']:,.0f} | {s['peak_mb_per_replica']:.0f} |"
        )
    base = report["results"]["unsharded"]["summary"]["cpu_s_per_replica"]
    out += ["", "CPU per replica against the unsharded Syncer:", ""]
    for mode in MODES:
        parts = []
        for count in SHARD_COUNTS:
            s = report["results"][f"{mode} {count}"]["summary"]
            parts.append(f"{count} shards {s['cpu_s_per_replica'] / base:.2f}x")
        out.append(f"- {mode}: " + ", ".join(parts))
    out += [
        "",
        "Every round's replicas together delivered every event exactly once "
        f"(objects over all replicas: {report['delivered_check']}).",
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="5,000 events, one round")
    p.add_argument("--events", type=int, default=None, help="events in the stream (20,000)")
    p.add_argument("--repeats", type=int, default=None, help="rounds (3)")
    p.add_argument("--read", default="json", choices=("json", "object", "parse"))
    args = p.parse_args(argv)
    events = args.events or (5_000 if args.quick else 20_000)
    repeats = args.repeats or (1 if args.quick else 3)
    started = time.time()
    loads = [os.getloadavg()[0]]
    with payload_server(events) as url:
        configs = configurations(url, events, args.read)
        runs: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in configs}
        for round_no in range(repeats):
            for name, specs in configs.items():
                results = run_replicas(specs)
                runs[name].append(results)
                loads.append(os.getloadavg()[0])
                cpu = ", ".join(f"{r['cpu_s']:.2f}" for r in results)
                log(f"round {round_no + 1} {name:<16} CPU s per replica: {cpu}")
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "elapsed_s": time.time() - started,
        "command": "python -m benchmarks.shards" + "".join(f" {a}" for a in argv),
        "events": events,
        "repeats": repeats,
        "read": args.read,
        "machine": machine(),
        "load": {"min": min(loads), "max": max(loads)},
        "results": {
            name: {"summary": summarize(rounds, events), "runs": rounds}
            for name, rounds in runs.items()
        },
    }
    delivered = {
        o for d in report["results"].values() for o in d["summary"]["objects_all_replicas"]
    }
    report["delivered_check"] = ", ".join(f"{n:,}" for n in sorted(delivered))
    if delivered != {events}:
        raise SystemExit(f"replicas delivered {sorted(delivered)} objects, not {events}")
    stem = "shards-quick" if args.quick else "shards"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(report))
    log(f"wrote {RESULTS / stem}.md")


if __name__ == "__main__":
    main()
