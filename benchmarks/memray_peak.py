"""Where a memray capture's peak goes: the live allocations at the heap's high-water mark,
sorted into named buckets (imports, TLS contexts, SQLite, LIST bodies, ...).

``python -m benchmarks.memray_peak CAPTURE.bin`` prints the report. memray's own reporters
answer other questions (``stats``: everything allocated over the run; ``summary``/``tree``:
the peak by call site, but with every C frame of the interpreter in the way when the capture
is ``--native``); this one answers "what is resident at the peak, and is any of it the
cluster's size", which is what a memory limit is about.

A record goes to the first bucket (in ``BUCKETS`` order) whose rule matches any frame of
its stack, so that, for example, an SSL context created while a module is being imported
counts as "TLS", not "imports", and a page of SQLite's cache as "page cache", not just
"SQLite". Without ``--trace-python-allocators``,
pymalloc's arenas (1 MiB) are charged to whichever allocation made the arena; long-lived
arenas are then mostly the imports' objects, which the totals here confirm against
``python -c 'import listwatch.cli._mirror'``.
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Frame = tuple[str, str, int]
"""(function, file, line), as memray gives them."""

MIB = 1024 * 1024
IMPORTS = "imports (modules, their code objects and tables)"


@dataclass(frozen=True)
class Bucket:
    name: str
    matches: Callable[[Frame], bool]


def _fn(*names: str) -> Callable[[Frame], bool]:
    return lambda frame: frame[0] in names


def _file(*parts: str) -> Callable[[Frame], bool]:
    return lambda frame: any(part in frame[1] for part in parts)


def _fn_in(path_part: str, *names: str) -> Callable[[Frame], bool]:
    return lambda frame: path_part in frame[1] and frame[0] in names


def _sqlite(frame: Frame) -> bool:
    function, file, _ = frame
    return function.startswith(("sqlite3", "pcache1", "pager", "btree", "wal")) or (
        "libsqlite3" in file or "_sqlite" in file
    )


def _sqlite_cache(frame: Frame) -> bool:
    return frame[0].startswith(("pcache1", "sqlite3PageMalloc", "sqlite3PcacheFetch"))


BUCKETS: Sequence[Bucket] = (
    Bucket(
        "TLS contexts (CA certificates loaded by aiohttp/kubernetes_asyncio)",
        _fn(
            "load_default_certs",
            "load_verify_locations",
            "set_default_verify_paths",
            "_make_ssl_context",
            "create_default_context",
        ),
    ),
    Bucket("SQLite page cache (pcache1)", _sqlite_cache),
    Bucket("SQLite (statements, B-trees, WAL index, temp tables)", _sqlite),
    Bucket("LIST response body (apiclient._read_capped)", _fn("_read_capped")),
    Bucket(
        "aiohttp readany(): its whole buffer joined into one chunk (apiclient._chunks)",
        _fn("_read_nowait"),
    ),
    Bucket(
        "socket reads buffered by aiohttp (StreamReader, up to 2 x read_bufsize)",
        _fn("_read_ready__data_received", "data_received", "feed_data"),
    ),
    Bucket("watch line framing (framing.LineFramer)", _fn_in("listwatch/framing.py", "feed")),
    Bucket(
        "one object's JSON copies (Item._server_json, sinks._json_text)",
        _fn("_server_json", "_json_text"),
    ),
    Bucket(
        "LIST / event decoding (msgspec, Item objects)",
        _fn("page_from_list_body", "decode_event", "_event", "_decode_general"),
    ),
    Bucket(
        "SQLite rows in flight (sinks._Rows, aiosqlite)", _file("aiosqlite/", "sinks/sqlite.py")
    ),
    Bucket(
        IMPORTS,
        _fn("_find_and_load", "_load_unlocked", "exec_module", "get_code", "_compile_bytecode"),
    ),
    Bucket("asyncio / aiohttp runtime", _file("/asyncio/", "/aiohttp/")),
    Bucket("listwatch runtime (Syncer, merger, loop)", _file("listwatch/")),
)
OTHER = "other (interpreter start-up, threads, unattributed)"


def _stack(record: Any) -> list[Frame]:
    try:
        frames = record.hybrid_stack_trace()
    except (NotImplementedError, ValueError):
        frames = record.stack_trace()
    return [(str(f), str(p), int(n)) for f, p, n in frames]


def _python_site(stack: list[Frame]) -> str:
    """The innermost Python frame (a ``.py`` file): where the allocation is, for a reader."""
    for function, file, line in stack:
        if file.endswith(".py") or file.startswith("<frozen"):
            short = file.split("site-packages/")[-1].split("wt-bench/")[-1]
            return f"{function} ({short}:{line})"
    return f"{stack[0][0]} ({stack[0][1]})" if stack else "(no stack)"


def _imported_package(stack: list[Frame]) -> str:
    """For an import-time allocation: the outermost third-party package being imported
    (``kubernetes_asyncio`` for a model class made because ``listwatch`` imported it)."""
    for function, file, _ in reversed(stack):
        if function == "<module>" and "site-packages/" in file:
            package = file.split("site-packages/")[1].split("/")[0]
            if package != "memray":
                return package.removesuffix(".py")
    for function, file, _ in stack:
        if function == "<module>" and file.endswith(".py"):
            return "stdlib or listwatch: " + file.rsplit("/", 2)[-2] + "/" + file.rsplit("/")[-1]
    return "(module code not in the stack)"


def _sqlite_function(stack: list[Frame]) -> str:
    """The innermost SQLite C function, under the Python call that reached it."""
    native = [f[0] for f in stack if _sqlite(f) and not f[1].endswith(".py")][:4]
    where = _python_site(stack)
    return f"{' <- '.join(native)} <- {where}" if native else where


def site_of(bucket: str, stack: list[Frame]) -> str:
    if bucket == IMPORTS:
        return _imported_package(stack)
    if bucket.startswith("SQLite") and "rows" not in bucket:
        return _sqlite_function(stack)
    return _python_site(stack)


def classify(stack: list[Frame]) -> str:
    """The first bucket (in ``BUCKETS`` order) with a rule that matches any frame."""
    for bucket in BUCKETS:
        if any(bucket.matches(frame) for frame in stack):
            return bucket.name
    return OTHER


def analyse(capture: Path, *, top: int = 12) -> str:
    from memray import FileReader  # noqa: PLC0415 - only the profile run has memray

    reader = FileReader(str(capture))
    try:
        records = list(reader.get_high_watermark_allocation_records(merge_threads=False))
        snapshots = list(reader.get_memory_snapshots())
        meta = reader.metadata
    finally:
        reader.close()
    buckets: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    sites: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for record in records:
        stack = _stack(record)
        name = classify(stack)
        buckets[name][0] += record.size
        buckets[name][1] += record.n_allocations
        sites[name][site_of(name, stack)] += record.size
        threads[record.thread_name or str(record.tid)] += record.size
        total += record.size
    peak_rss = max((s.rss for s in snapshots), default=0)
    lines = [
        f"capture: {capture.name}",
        f"heap at its high-water mark: {total / MIB:.1f} MiB in {len(records)} call sites "
        f"(memray's peak: {meta.peak_memory / MIB:.1f} MiB); peak RSS sampled by memray: "
        f"{peak_rss / MIB:.1f} MiB (RSS - heap = code, shared libraries, thread stacks, "
        "allocator slack)",
        "",
        "MiB at peak  allocations  bucket",
    ]
    for name, (size, count) in sorted(buckets.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"{size / MIB:11.1f}  {count:11,}  {name}")
    lines += ["", "by thread:"]
    lines += [f"{size / MIB:11.1f}  {name}" for name, size in threads.most_common()]
    for name, (size, _) in sorted(buckets.items(), key=lambda kv: -kv[1][0]):
        how = {IMPORTS: "by package imported"}.get(name, "top sites (innermost Python frame)")
        lines += ["", f"== {name}: {size / MIB:.1f} MiB; {how}"]
        lines += [
            f"{site_size / MIB:11.2f}  {site}" for site, site_size in sites[name].most_common(top)
        ]
    if snapshots:
        lines += ["", "RSS and heap over time (memray's snapshots, MiB):"]
        step = max(1, len(snapshots) // 30)
        start = snapshots[0].time
        for snap in snapshots[::step]:
            seconds = (snap.time - start) / 1000  # milliseconds since the epoch
            lines.append(
                f"  {seconds:6.1f} s  RSS {snap.rss / MIB:6.1f}  heap {snap.heap / MIB:6.1f}"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("capture", type=Path)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    print(analyse(args.capture, top=args.top), end="")


if __name__ == "__main__":
    main()
