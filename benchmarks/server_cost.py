"""What each candidate API server costs to hold N pods: ``python -m benchmarks.server_cost``.

The memory benchmark needs an API server for up to 200,000 realistic pods in another process.
Two candidates: ``listwatch.testing.FakeApiServer`` (the tests' strict fake: objects kept as
dicts, every write through its store, every response serialized per request) and the
benchmark's own ``benchmarks.server`` scenario ``cluster<N>`` (pre-serialized bytes). This
measures, for each: the time to populate N pods, the server process's RSS, and the time one
paged LIST (limit 500) of all of them takes to read, which bounds the mirror's time to
first sync from below. Writes ``results/server-cost.{md,json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks import clients, memory, payloads

RESULTS = Path(__file__).resolve().parent / "results"


def _rss_mib(pid: int) -> float:
    return memory.proc_status_mib(pid, "VmRSS") or 0.0


async def _paged_read(url: str, token: str, pods: int) -> tuple[float, int]:
    """One paged LIST of everything: bodies read as bytes (not parsed: the server's rate,
    not the client's), continue tokens taken from the list's head."""
    started = time.perf_counter()
    pages = 0
    token_param: str | None = None
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            params = {"limit": "500", **({"continue": token_param} if token_param else {})}
            async with session.get(url + "/api/v1/pods", params=params) as response:
                body = await response.read()
            pages += 1
            token_param = clients._continue_in_head(body)
            if not token_param:
                if pages != -(-pods // 500):
                    raise RuntimeError(f"{pages} pages for {pods} pods")
                return time.perf_counter() - started, pods


async def fake_server(pods: int) -> dict[str, Any]:
    from listwatch.testing import FakeApiServer  # noqa: PLC0415
    from listwatch.testing.scenario import NUMBERED_POD_NAMESPACES  # noqa: PLC0415

    async with FakeApiServer(namespaces=NUMBERED_POD_NAMESPACES) as server:
        before = _rss_mib(os.getpid())
        started = time.perf_counter()
        for index in range(pods):
            obj = orjson.loads(payloads.list_item(index))
            obj["metadata"].pop("resourceVersion", None)
            await server.create({"apiVersion": "v1", "kind": "Pod", **obj})
        populate = time.perf_counter() - started
        rss = _rss_mib(os.getpid()) - before
        read_s, items = await _paged_read(server.url, server.token, pods)
    return {
        "server": "listwatch.testing.FakeApiServer (fresh process)",
        "pods": pods,
        "populate_s": populate,
        "rss_mib": rss,
        "paged_list_s": read_s,
        "items": items,
    }


def bench_server(pods: int) -> dict[str, Any]:
    started = time.perf_counter()
    with memory.cluster_server(pods) as server:
        ready = time.perf_counter() - started
        rss = _rss_mib(server.pid)
        read_s, items = asyncio.run(_paged_read(f"{server.url}/cluster{pods}", server.token, pods))
    return {
        "server": "benchmarks.server cluster<N> (own process)",
        "pods": pods,
        "populate_s": ready,
        "rss_mib": rss,
        "paged_list_s": read_s,
        "items": items,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    out = [
        "# API server for the memory benchmark: cost of holding N pods",
        "",
        "`python -m benchmarks.server_cost`. *populate*: FakeApiServer.create per pod, or the "
        "benchmark server's start until READY (it builds every pod's bytes); *RSS*: the "
        "server's growth (FakeApiServer) or its whole RSS (benchmark server); *paged LIST*: "
        "one client reading all pages of 500 as bytes (aiohttp, no parsing), in the server's "
        "process for FakeApiServer, from the driver for the benchmark server.",
        "",
        "| server | pods | populate s | RSS MiB | paged LIST s | pods/s served |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['server']} | {r['pods']:,} | {r['populate_s']:.1f} | {r['rss_mib']:,.0f} | "
            f"{r['paged_list_s']:.1f} | {r['items'] / r['paged_list_s']:,.0f} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--fake-sizes", default="10000,20000")
    parser.add_argument("--bench-sizes", default="100000")
    parser.add_argument("--fake-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fake_one:  # one size in a fresh process: its RSS is its own
        print("ROW " + json.dumps(asyncio.run(fake_server(args.fake_one))))
        return
    rows = []
    for n in (int(n) for n in args.fake_sizes.split(",") if n):
        out, _ = memory.run_for_rusage(
            [sys.executable, "-m", "benchmarks.server_cost", f"--fake-one={n}"]
        )
        rows.append(json.loads(out.split("ROW ", 1)[1]))
    rows += [bench_server(int(n)) for n in args.bench_sizes.split(",") if n]
    report = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "load": os.getloadavg(), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "server-cost.json").write_text(json.dumps(report, indent=1) + "\n")
    text = markdown(rows) + f"\nLoad average (1/5/15 min) at the end: {report['load']}\n"
    (RESULTS / "server-cost.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
