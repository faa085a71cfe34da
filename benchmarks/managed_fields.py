"""What ``strip_managed_fields`` costs and saves: ``python -m benchmarks.managed_fields``.

A 50,000-pod LIST (``benchmarks.payloads``' pinned pods, ~7.5 KB each, in PodList bodies of
500 as kube-apiserver writes them) goes through the client's real path: each body decoded
by ``page_from_list_body`` (key and RV read, every item kept as bytes), each item handed
to a reader as the Syncer hands it (``Item.with_transform`` when there is a transform).
The reader takes ``Item.json`` (what the sinks write) or ``Item.parse()`` (a receiver that
reads fields, and lets each object go). Rows:

* **none**: the objects as the server sent them;
* **strip_managed_fields**: the library's transform (bytes cut for ``.json``);
* **dict transform**: the same member dropped by a transform written as client-go users
  write it (parse, ``pop``, serialise again), for comparison.

Then the same snapshot into ``SQLiteSink`` (first sync of an empty file), with and without
the transform, and the file's size. Rates are objects per second of this process's CPU
time (SQLite's work runs in a thread of it), which other processes on a shared machine
disturb less than wall time; medians of ``--rounds`` runs, the variants interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from benchmarks import payloads
from listwatch import Item, Page, Snapshot, strip_managed_fields
from listwatch._kube.resource import page_from_list_body
from listwatch.sinks.sqlite import SQLiteSink

Transform = Callable[[dict[str, Any]], dict[str, Any]] | None


def dict_transform(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].pop("managedFields", None)
    return obj


VARIANTS: dict[str, Transform] = {
    "none": None,
    "strip_managed_fields": strip_managed_fields,
    "dict transform": dict_transform,
}


def bodies(count: int, page_size: int) -> list[bytes]:
    """The LIST response bodies (made once, outside the timing)."""
    out = []
    for start in range(0, count, page_size):
        items = [payloads.list_item(i) for i in range(start, min(start + page_size, count))]
        out.append(payloads.pod_list_page(items, continue_token=None, remaining=None))
    return out


def items(pages: list[bytes], transform: Transform) -> Iterator[Item]:
    for body in pages:
        for item in page_from_list_body(body).items:
            yield item if transform is None else item.with_transform(transform)


def read_all(pages: list[bytes], transform: Transform, read: str) -> tuple[float, int]:
    """Seconds to read every item, and the bytes of JSON the reader got."""
    total = 0
    started = time.process_time()
    if read == "json":
        for item in items(pages, transform):
            total += len(item.json)
    else:
        for item in items(pages, transform):
            total += len(item.parse()["metadata"])
    return time.process_time() - started, total


def snapshot(pages: list[bytes], transform: Transform) -> Snapshot:
    async def stream() -> AsyncIterator[Page]:
        for body in pages:
            page = page_from_list_body(body)
            if transform is not None:
                page = Page(
                    [i.with_transform(transform) for i in page.items], page.resource_version
                )
            yield page

    return Snapshot(stream(), resource_version=payloads.LIST_RESOURCE_VERSION, generation=1)


async def into_sqlite(pages: list[bytes], transform: Transform, path: Path) -> float:
    async with SQLiteSink(path, resource="pods") as sink:
        started = time.process_time()
        await sink.on_list(snapshot(pages, transform))
        return time.process_time() - started


def file_size(path: Path) -> int:
    """The database and its WAL, then removed."""
    files = list(path.parent.glob(path.name + "*"))
    size = sum(f.stat().st_size for f in files)
    for f in files:
        f.unlink()
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=50_000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    pages = bodies(args.pods, args.page_size)
    pod = orjson.loads(payloads.list_item(0))
    managed = len(orjson.dumps({"managedFields": pod["metadata"]["managedFields"]}))

    times: dict[tuple[str, str], list[float]] = {}
    sizes: dict[tuple[str, str], int] = {}
    for _ in range(args.rounds):
        for read in ("json", "parse()"):
            for name, transform in VARIANTS.items():
                seconds, size = read_all(pages, transform, read)
                times.setdefault((name, read), []).append(seconds)
                sizes[(name, read)] = size
    print(f"{args.pods} pods, pages of {args.page_size}, median of {args.rounds} rounds")
    print("| transform | reader takes | objects/CPU-s | CPU s | JSON bytes/pod |")
    print("|---|---|---|---|---|")
    for (name, read), runs in times.items():
        median = statistics.median(runs)
        per_pod = sizes[(name, read)] / args.pods if read == "json" else float("nan")
        print(
            f"| {name} | .{read} | {args.pods / median:,.0f} | {median:.2f} | "
            + (f"{per_pod:,.0f} |" if read == "json" else "- |")
        )
    saved = (sizes[("none", "json")] - sizes[("strip_managed_fields", "json")]) / args.pods
    print(
        f"\nbytes saved per pod: {saved:,.0f} of {sizes[('none', 'json')] / args.pods:,.0f} "
        f"({saved / (sizes[('none', 'json')] / args.pods):.0%}); the managedFields member "
        f"alone: {managed} bytes"
    )
    if args.no_sqlite:
        return
    with tempfile.TemporaryDirectory() as tmp:
        runs: dict[str, list[float]] = {}
        files: dict[str, int] = {}
        for _ in range(args.rounds):
            for name in ("none", "strip_managed_fields"):
                path = Path(tmp) / f"{name}.db"
                runs.setdefault(name, []).append(
                    asyncio.run(into_sqlite(pages, VARIANTS[name], path))
                )
                files[name] = file_size(path)
    print("\n| SQLiteSink first sync | objects/CPU-s | CPU s | file MB |")
    print("|---|---|---|---|")
    for name, values in runs.items():
        median = statistics.median(values)
        print(f"| {name} | {args.pods / median:,.0f} | {median:.2f} | {files[name] / 1e6:.0f} |")


if __name__ == "__main__":
    main()
