"""Two versions of listwatch side by side: ``python -m benchmarks.ab --base OLD/src``.

Each round runs the ceiling once (WATCH: aiohttp ``readline`` + ``orjson.loads`` per line;
``--stream listN``, a LIST of N pods: aiohttp reads each page and orjson parses it), then
every listwatch receiver (``--reads``) under the base source tree and under this
checkout's, interleaved, each in a fresh process (``PYTHONPATH`` picks the tree), and
prints events/s, the ratio to that round's ceiling,
CPU and GC seconds, and the peak RSS above the client's baseline (what it allocated and kept
at once). CPU seconds are the steadier figure on a loaded machine. A base tree:
``git archive <commit> src | tar -x -C /tmp/base``, then ``--base /tmp/base/src``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from benchmarks import run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="the older src/ directory")
    parser.add_argument("--reads", default="object,parse,json")
    parser.add_argument(
        "--stream", default="unique", help="unique, hot (WATCH), or listN (a LIST of N pods)"
    )
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    plan = run.Plan()
    trees = {"base": str(args.base.resolve()), "this": str(run.HERE.parent / "src")}
    listing = args.stream.startswith("list")
    with run.payload_server(plan) as url:
        if listing:  # the LIST ceiling: aiohttp reads each page, orjson parses it
            size = int(args.stream.removeprefix("list"))
            spec = {"kind": "list", "url": f"{url}/{args.stream}", "page_size": plan.page_size}
            spec["count"], unit, raw = size, "items", "raw"
        else:
            count = plan.watch_events if args.stream == "unique" else plan.hot_events
            spec = {
                "kind": "watch",
                "url": f"{url}/{args.stream}",
                "count": count,
                "last_rv": count + 1,
                "merge_interval": plan.merge_interval,
            }
            unit, raw = "events", "raw-readline"
        for round_no in range(args.rounds):
            os.environ["PYTHONPATH"] = trees["this"]
            ceiling = run.run_client({**spec, "client": raw})
            rate = spec["count"] / ceiling["wall_s"]
            print(
                f"round {round_no + 1}: ceiling {rate:,.0f} {unit}/s, CPU {ceiling['cpu_s']:.2f} s"
            )
            for read in args.reads.split(","):
                for name, tree in trees.items():
                    os.environ["PYTHONPATH"] = tree
                    result = run.run_client({**spec, "client": "listwatch", "read": read})
                    events = spec["count"] / result["wall_s"]
                    print(
                        f"  {read:<6} {name:<4} {events:>9,.0f} {unit}/s  {events / rate:.2f}x  "
                        f"CPU {result['cpu_s']:.2f} s  GC {result['gc_s']:.2f} s  "
                        f"peak +{result['peak_mb']:.0f} MB",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
