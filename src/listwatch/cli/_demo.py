"""``listwatch demo``: listwatch mirroring a busy fake cluster into SQLite, then proving it.

One command, no cluster: a ``FakeApiServer`` in this process gets a realistic workload and
continuous churn, a ``Syncer`` mirrors its pods into an SQLite file through ``SQLiteSink``,
and with ``--faults`` the troubles of production are injected on a schedule (workload,
faults and verdict come from ``listwatch.testing.scenario``). At the end the churn and the
faults stop, the demo waits until the mirror has caught up with the server's
resourceVersion, and compares the file with the cluster object by object: the exit code is
0 only if they are equal. That last step is the point: a demo that only shows numbers moving
proves nothing.

Everything runs under one task group (the syncer, the restart tracker, the progress
reporter, and a nested group for churn and faults), so Ctrl-C, a failure or the end of the
run cancels all of it in order, and the sink is closed only after the syncer has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from kubernetes_asyncio.client import ApiClient

from listwatch._aio import first_error
from listwatch._backoff import Backoff
from listwatch._models import JsonObject, object_key
from listwatch._source import ListWatch
from listwatch._syncer import Syncer
from listwatch.cli._fake_cluster import pod_server
from listwatch.cli._progress import ProgressView, RateMeter, RestartCounter, Sample, format_counts
from listwatch.cli._runtime import CliError, one_line
from listwatch.cli._storage import open_sink, removed_if_unwritten
from listwatch.errors import FatalError
from listwatch.observe import _events as observe
from listwatch.observe._status import SyncerStatus
from listwatch.sinks.sqlite import SQLiteSink, read_mirror
from listwatch.testing import FakeApiServer
from listwatch.testing.scenario import (
    ChurnCounts,
    Comparison,
    FlakyReceiver,
    PodWorkload,
    compare,
    demo_faults,
)

RESOURCE = "pods"


def demo_backoff() -> Backoff:
    """client-go's backoff (0.8 s doubling to 30 s) is right for a real cluster, where a
    fault is rare; the demo packs a bad day into seconds, so its waits are scaled to match."""
    return Backoff(initial=0.1, cap=1.0)


#: How long the first snapshot may take before the demo gives up (a LIST of thousands of
#: pods takes well under a second here; this only guards against a hang).
FIRST_SYNC_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """The demo's knobs; the CLI's flags map one to one."""

    pods: int = 2000
    namespaces: int = 20
    seconds: float = 20.0
    rate: float = 250.0
    merge_interval: float = 0.5
    db: Path | None = None
    seed: int = 0
    faults: bool = False
    converge_timeout: float = 30.0
    progress_interval: float = 1.0
    overwrite: bool = False
    """Whether ``db`` may be a file that is not empty (its pods are replaced)."""

    def __post_init__(self) -> None:
        if self.pods < 1 or self.namespaces < 1:
            raise ValueError("--pods and --namespaces must be at least 1")
        if self.seconds < 0 or self.rate <= 0 or self.merge_interval <= 0:
            raise ValueError("--seconds must be >= 0, --rate and --merge-interval positive")
        if self.converge_timeout <= 0:
            raise ValueError("--converge-timeout must be positive")


@dataclass(slots=True)
class DemoReport:
    """What happened, and the verdict."""

    comparison: Comparison
    cluster: dict[str, JsonObject]
    db: Path
    db_kept: bool
    churn_seconds: float
    churn: ChurnCounts
    status: SyncerStatus
    restarts: Counter[str]
    converged_in: float | None
    converge_timeout: float
    interrupted: bool
    faults_injected: Counter[str] = field(default_factory=Counter)
    faults_fired: Counter[str] = field(default_factory=Counter)
    snapshots: Counter[str] = field(default_factory=Counter)
    """Snapshots the receiver took, by how they were listed (streamed, paged)."""

    @property
    def passed(self) -> bool:
        return self.converged_in is not None and self.comparison.equal


def fault_interval(seconds: float) -> float:
    """About eight fault episodes per run, not more often than every 0.4 s and at least
    every 3 s: between episodes the watch must get time to show it works, too."""
    return min(max(seconds / 8.0, 0.4), 3.0)


@contextlib.contextmanager
def _database(path: Path | None, *, overwrite: bool) -> Iterator[tuple[Path, bool]]:
    """The mirror's file: the one asked for (kept), or one in a temporary directory.

    The demo replaces the pods of the file it is given: a file that is not empty (a mirror
    of a real cluster, say) is refused unless ``overwrite`` says that is what is wanted.
    """
    if path is not None:
        if not overwrite and _not_empty(path):
            raise CliError(
                f"--db {path} already exists and is not empty: the demo would replace the pods "
                "it holds (--overwrite if that is what you want, or give a new path)"
            )
        yield path, True
        return
    with tempfile.TemporaryDirectory(prefix="listwatch-demo-") as directory:
        yield Path(directory) / "mirror.db", False


def _not_empty(path: Path) -> bool:
    """A file with bytes in it, or in its write-ahead log (where a WAL database keeps its
    last commits until a checkpoint)."""
    return any(
        file.is_file() and file.stat().st_size > 0
        for file in (path, path.with_name(path.name + "-wal"))
    )


@contextlib.asynccontextmanager
async def _move_on_after(seconds: float) -> AsyncIterator[asyncio.Timeout]:
    """The body, stopped after ``seconds`` if still running (``expired()`` says whether):
    a phase of the demo that runs out of time ends, and the demo goes on to the next."""
    limit = asyncio.timeout(seconds)
    try:
        async with limit:
            yield limit
    except TimeoutError:
        if not limit.expired():
            raise


class _Run:
    """One run's moving parts, and the phases they go through: first sync, churn, converge."""

    def __init__(
        self,
        *,
        options: DemoOptions,
        view: ProgressView,
        server: FakeApiServer,
        workload: PodWorkload,
        api: ApiClient,
        sink: SQLiteSink,
        rng: random.Random,
    ) -> None:
        self.options = options
        self.view = view
        self.server = server
        self.workload = workload
        self.sink = sink
        receiver = FlakyReceiver(sink.on_batch)
        self.syncer = Syncer(
            ListWatch.from_client(api, RESOURCE),
            on_list=sink.on_list,
            on_batch=receiver.on_batch,
            merge_interval=options.merge_interval,
            backoff=demo_backoff(),
        )
        self.faults = demo_faults(workload, receiver, rng=rng) if options.faults else None
        self.stage = "listing"
        self.started = time.monotonic()
        self.restarts = RestartCounter()
        self.snapshots = SnapshotCounter()
        self.syncer.add_observer(self.snapshots)
        self._writes = RateMeter()
        self._events = RateMeter()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        self.view.message(f"[{self.elapsed():6.1f}s] {text}")

    async def main(self, stop: asyncio.Event) -> tuple[float, float | None]:
        """All phases under one task group; ``(seconds churned, seconds to converge)``."""
        try:
            async with asyncio.TaskGroup() as group:
                background = [
                    group.create_task(self.syncer.run()),
                    group.create_task(self.track_restarts()),
                    group.create_task(self.report(self.options.progress_interval)),
                ]
                await self.first_sync()
                churned = await self.churn(stop)
                converged_in = await self.converge()
                for task in background:
                    task.cancel()
        except* CliError as errors:
            raise first_error(errors) from None
        except* FatalError as errors:
            raise CliError(f"the syncer gave up: {one_line(first_error(errors))}") from None
        return churned, converged_in

    async def first_sync(self) -> None:
        async with _move_on_after(FIRST_SYNC_TIMEOUT) as limit:
            await self.syncer.wait_synced()
        if limit.expired():
            status = self.syncer.status
            raise CliError(
                f"the first snapshot did not arrive within {FIRST_SYNC_TIMEOUT:.0f} s "
                f"(syncer {status.phase}, last error: {status.last_error or 'none'})"
            )
        options = self.options
        self.say(
            f"initial snapshot mirrored: {await self.sink.count()} pods "
            f"{self.snapshots.last_how} into {self.sink.path} in "
            f"{self.snapshots.last_seconds:.2f} s; "
            f"churning at {options.rate:g} changes/s for {options.seconds:g} s"
            + (" with faults" if self.faults is not None else "")
        )

    async def churn(self, stop: asyncio.Event) -> float:
        """Churn (and faults) until ``--seconds`` pass or ``stop`` is set; then no more
        faults. Returns how long it churned."""
        self.stage = "churning"
        started = time.monotonic()
        async with asyncio.TaskGroup() as load:
            loading = [load.create_task(self.workload.churn(self.options.rate))]
            if self.faults is not None:
                loading.append(
                    load.create_task(self.faults.run(fault_interval(self.options.seconds)))
                )
            async with _move_on_after(self.options.seconds):
                await stop.wait()
            for task in loading:
                task.cancel()
        if self.faults is not None:
            self.faults.stop()
        self.say(
            f"{'interrupted' if stop.is_set() else 'time is up'}: churn and faults stopped at "
            f"resourceVersion {self.server.resource_version}; waiting for the mirror to converge"
        )
        return time.monotonic() - started

    async def converge(self) -> float | None:
        """Seconds until the mirror holds the server's last write, or None (timed out)."""
        self.stage = "converging"
        target = self.server.resource_version
        started = time.monotonic()
        converged_in: float | None = None
        async with _move_on_after(self.options.converge_timeout):
            await self.syncer.wait_until(functools.partial(_caught_up, target))
            converged_in = time.monotonic() - started
        self.stage = "converged" if converged_in is not None else "not converged"
        self.view.update(await self.sample())
        return converged_in

    async def sample(self) -> Sample:
        status = self.syncer.status
        now = time.monotonic()
        writes = self.workload.counts.writes
        return Sample(
            elapsed=now - self.started,
            stage=self.stage,
            phase=str(status.phase),
            generation=status.generation,
            writes=writes,
            writes_per_second=self._writes.rate(writes, now),
            events=status.events,
            events_per_second=self._events.rate(status.events, now),
            batches=status.batches,
            cluster_objects=self.workload.size,
            mirror_objects=await self.sink.count(),
            server_rv=self.server.resource_version,
            mirror_rv=None if status.resource_version is None else int(status.resource_version),
            restarts=dict(self.restarts.by_kind),
            faults={} if self.faults is None else dict(self.faults.fired()),
        )

    async def report(self, interval: float) -> NoReturn:
        while True:
            self.view.update(await self.sample())
            await asyncio.sleep(interval)

    async def track_restarts(self) -> NoReturn:
        """Every restart, with its reason, as it happens (not sampled: none is missed unless
        more than the status keeps happen between two wake-ups)."""
        seen = 0
        while True:
            status = await self.syncer.wait_until(functools.partial(_restarted_since, seen))
            new = status.restarts - seen
            recent = status.recent_restarts[-new:]
            for restart in recent:
                kind = self.restarts.add(restart.reason)
                self.say(
                    f"restart ({kind}): generation {restart.generation} ended: {restart.reason}"
                )
            for _ in range(new - len(recent)):
                self.restarts.add("not recorded")
            seen = status.restarts


async def run_demo(options: DemoOptions, view: ProgressView, stop: asyncio.Event) -> DemoReport:
    """Run the demo; ``stop`` (Ctrl-C) ends the churn early, the verdict still follows."""
    rng = random.Random(options.seed)
    with _database(options.db, overwrite=options.overwrite) as (db, kept), removed_if_unwritten(db):
        sink = await open_sink(db, resource=RESOURCE)  # first: a bad --db fails at once
        try:
            async with pod_server(
                pods=options.pods, namespaces=options.namespaces, seed=options.seed
            ) as server:
                workload = PodWorkload(
                    server, rng, pods=options.pods, namespaces=options.namespaces
                )
                view.message(
                    f"listwatch demo: a fake API server at {server.url}; creating "
                    f"{options.pods} pods in {options.namespaces} namespaces (seed {options.seed})"
                )
                await workload.populate()
                async with server.api_client() as api:
                    run = _Run(
                        options=options,
                        view=view,
                        server=server,
                        workload=workload,
                        api=api,
                        sink=sink,
                        rng=rng,
                    )
                    churned, converged_in = await run.main(stop)
                # The syncer has stopped: the file holds its last committed state.
                mirror = await asyncio.to_thread(read_mirror, db, resource=RESOURCE)
                cluster = {object_key(obj): obj for obj in server.objects("v1", "Pod")}
                return DemoReport(
                    comparison=compare(cluster, str(server.resource_version), mirror),
                    cluster=cluster,
                    db=db,
                    db_kept=kept,
                    churn_seconds=churned,
                    churn=workload.counts,
                    status=run.syncer.status,
                    restarts=run.restarts.by_kind,
                    converged_in=converged_in,
                    converge_timeout=options.converge_timeout,
                    interrupted=stop.is_set(),
                    faults_injected=Counter() if run.faults is None else run.faults.injected,
                    faults_fired=Counter() if run.faults is None else run.faults.fired(),
                    snapshots=run.snapshots.by_how,
                )
        finally:
            await sink.close()


def _restarted_since(seen: int, status: SyncerStatus) -> bool:
    return status.restarts > seen


def _caught_up(target: int, status: SyncerStatus) -> bool:
    return (
        status.synced
        and status.resource_version is not None
        and int(status.resource_version) >= target
    )


class SnapshotCounter:
    """An observer of the Syncer: how each snapshot was listed, and how long it took.

    The snapshot is a stream the receiver reads while it is listed: as a streaming list
    (one watch, WatchList) where the server serves one, else as paged LISTs.
    """

    def __init__(self) -> None:
        self.by_how: Counter[str] = Counter()
        self.last_how = ""
        self.last_seconds = 0.0
        self._streamed = False

    def __call__(self, event: observe.SyncEvent) -> None:
        if isinstance(event, observe.SnapshotOpened):
            self._streamed = event.streamed
        elif isinstance(event, observe.SnapshotDelivered):
            self.last_how = "streamed (WatchList)" if self._streamed else "paged (LIST)"
            self.last_seconds = event.seconds
            self.by_how["streamed" if self._streamed else "paged"] += 1


def format_report(report: DemoReport) -> list[str]:
    """The verdict line, then the figures, for the terminal."""
    comparison, status, churn = report.comparison, report.status, report.churn
    lines: list[str] = []
    if report.passed:
        lines.append(
            f"PASS: the SQLite mirror equals the cluster: {comparison.cluster_objects} pods, "
            f"same keys, resourceVersions and objects, in sync at resourceVersion "
            f"{comparison.cluster_rv}"
        )
    else:
        if report.converged_in is None:
            lines.append(
                f"FAIL: the mirror did not converge within {report.converge_timeout:g} s "
                f"(syncer {status.phase}, at resourceVersion {status.resource_version}, server "
                f"at {comparison.cluster_rv}; last error: {status.last_error or 'none'})"
            )
        else:
            lines.append("FAIL: the SQLite mirror differs from the cluster")
        lines.extend(f"  - {problem}" for problem in comparison.problems())
    rate = churn.writes / report.churn_seconds if report.churn_seconds > 0 else 0.0
    converged = "-" if report.converged_in is None else f"{report.converged_in:.2f} s"
    lines += [
        f"  objects      {comparison.cluster_objects} pods in the cluster, "
        f"{comparison.mirror_objects} in the mirror",
        f"  churn        {churn.writes} writes in {report.churn_seconds:.1f} s ({rate:.0f}/s): "
        f"{churn.updates} updates, {churn.creates} creates, {churn.deletes} deletes, "
        f"{churn.recreates} recreates under the same name"
        + (" (interrupted)" if report.interrupted else ""),
        f"  delivered    {status.events} events in {status.batches} batches",
        f"  generations  {status.generation}; snapshots {format_counts(report.snapshots)}",
        f"  restarts     {sum(report.restarts.values())} ({format_counts(report.restarts)})",
    ]
    if report.faults_injected:
        lines.append(
            f"  faults       episodes: {format_counts(report.faults_injected)}; faults that hit: "
            f"{format_counts(report.faults_fired)}"
        )
    lines.append(f"  convergence  {converged} after the churn stopped")
    where = str(report.db) if report.db_kept else "a temporary file, removed (--db PATH keeps it)"
    lines.append(f"  mirror       {where}")
    return lines
