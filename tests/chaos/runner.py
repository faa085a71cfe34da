"""The seeded scenario runner: one profile, one seed, one run of churn and faults, checked
continuously, then convergence.

A run:

1. starts a :class:`FakeApiServer` with the profile's quirk (``stale_watch``) and history
   window, creates the initial objects, and starts a :class:`Syncer` whose receiver is a
   :class:`CheckingReceiver` (monitors 1-3, nothing lost, nothing stale);
2. runs the *chaos phase* for ``duration`` seconds: churn, faults drawn from the profile at
   random, receiver failures and stalls, and (in some profiles) a *blackout* where every
   request fails, during which the request count is held to what the backoff allows
   (monitor 5); a sampler checks the queue and pending bounds all along (monitor 4);
3. stops churn and faults (the quirk stays) and waits until the receiver equals the server:
   the same keys, resourceVersions and object contents, within ``converge_within`` seconds
   (a failure guard, not a speed assertion);
4. stops the Syncer and closes the client: no task and no connection may be left behind.

Any violation ends the run with :class:`ChaosFailure`, whose message names the profile and
seed and ends with the trace (the last events of a bounded ring buffer). Replay a failure
with ``python -m tests.chaos --profile NAME --seed N --runs 1``. The seed fixes every random
choice (workload, faults, receiver, jitter, the server's own RNG); the interleaving with the
event loop still varies a little from run to run, as real time is involved.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from listwatch import Backoff, ListWatch, Syncer, SyncerStatus
from listwatch.testing import FakeApiServer
from listwatch.testing.scenario import ConfigMapWorkload, FaultInjector, blackout

from .monitors import (
    ChaosFailure,
    CheckingReceiver,
    Trace,
    World,
    check_bounds,
    digest,
    mark_transformed,
    max_requests_under_backoff,
    rv_of,
)
from .profiles import PROFILES, Profile

CONVERGE_WITHIN = 30.0
BLACKOUT_SLACK = 2
"""Requests a blackout may see beyond the backoff bound: a watch stream opened before the
blackout may end and be re-opened at once (client-go's rule for a stream that delivered
events), and a LIST whose page 2+ meets a 410 restarts from page 1 without a backoff."""


def _object_key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


class WorldLog:
    """The workload's writes, into the world (for the monitors) and the trace (for a report)."""

    def __init__(self, world: World, trace: Trace) -> None:
        self.world = world
        self.trace = trace

    def written(self, kind: str, obj: Mapping[str, Any], *, big: bool) -> None:
        key, rv = self.world.record(obj, deleted=kind == "DELETED")
        self.trace.write(f"{kind} {key}@{rv}{' (big)' if big else ''}")


def other_tasks() -> set[asyncio.Task[Any]]:
    """The event loop's tasks, less the fake server's connection handlers."""
    return {task for task in asyncio.all_tasks() if "aiohttp/web_protocol" not in repr(task)}


@dataclass
class BlackoutResult:
    window: float
    requests: int
    bound: int


@dataclass
class RunResult:
    profile: str
    seed: int
    quirk: str
    history_limit: int | None
    max_batch: int
    queue_size: int
    strategy: str = "paged"
    convergence: float = 0.0
    faults_injected: dict[str, int] = field(default_factory=dict)
    faults_fired: dict[str, int] = field(default_factory=dict)
    receiver: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    writes: int = 0
    snapshots: int = 0
    batches: int = 0
    big_objects: int = 0
    peak_queued: int = 0
    peak_pending: int = 0
    blackout: BlackoutResult | None = None

    def summary(self) -> str:
        fired = sum(self.faults_fired.values())
        receiver = sum(v for k, v in self.receiver.items() if "raise" in k or "stall" in k)
        blackout = (
            f" blackout {self.blackout.requests}/{self.blackout.bound} req" if self.blackout else ""
        )
        return (
            f"{self.profile:<17} {self.strategy:<6} seed={self.seed:<5} quirk={self.quirk:<11} "
            f"writes={self.writes:<5} faults={fired:<3} receiver-faults={receiver:<3} "
            f"restarts={sum(self.restarts.values()):<3} lists={self.snapshots:<3} "
            f"batches={self.batches:<4} converged in {self.convergence:.2f} s{blackout}"
        )


class _Scenario:
    def __init__(
        self,
        profile: Profile,
        seed: int,
        *,
        duration: float,
        converge_within: float,
        wrap_source: Callable[[ListWatch], ListWatch] | None,
        backoff: Backoff | None,
        list_strategy: str,
        watch_timeout: float | None,
    ) -> None:
        self.backoff = backoff
        self.watch_timeout = watch_timeout
        self.list_strategy = list_strategy
        self.blackout_hits = 0
        self.profile = profile
        self.seed = seed
        self.duration = duration
        self.converge_within = converge_within
        self.wrap_source = wrap_source
        rng = random.Random(f"chaos:{profile.name}:{seed}")
        self.rng = rng
        self.quirk = profile.quirk(rng)
        self.history_limit = rng.choice(profile.history_limit)
        self.max_batch = rng.choice(profile.max_batch)
        self.queue_size = rng.choice(profile.queue_size)
        self.resync_period = rng.choice(profile.resync_period)
        self.transform = mark_transformed if profile.transform else None
        self.trace = Trace()
        self.world = World(self.transform)
        self.result = RunResult(
            profile.name,
            seed,
            self.quirk,
            self.history_limit,
            self.max_batch,
            self.queue_size,
            list_strategy,
        )
        self.header = (
            f"profile={profile.name} seed={seed} list_strategy={list_strategy} "
            f"(stale_watch={self.quirk}, "
            f"history_limit={self.history_limit}, max_batch={self.max_batch}, "
            f"queue_size={self.queue_size}, resync_period={self.resync_period}, "
            f"transform={profile.transform})"
        )

    def _random(self) -> random.Random:
        return random.Random(self.rng.getrandbits(64))

    def fail(self, reason: str) -> ChaosFailure:
        return ChaosFailure(
            f"{self.header}: {reason}\n"
            f"replay: python -m tests.chaos --profile {self.profile.name} --seed {self.seed} "
            f"--runs 1 --duration {self.duration}\n"
            f"trace (oldest first):\n{self.trace.dump()}"
        )

    # -- the run -------------------------------------------------------------------------

    async def run(self) -> RunResult:
        self.trace.add("run", self.header)
        baseline = other_tasks()
        try:
            await self._run_with_server(baseline)
        except ChaosFailure:
            raise
        except BaseExceptionGroup as group:
            raise self._from_group(group) from group
        except Exception as exc:
            raise self.fail(f"{type(exc).__name__}: {exc}") from exc
        return self.result

    def _from_group(self, group: BaseExceptionGroup[Any]) -> BaseException:
        failures = group.subgroup(ChaosFailure)
        if failures is not None:
            leaf: BaseException = failures
            while isinstance(leaf, BaseExceptionGroup):
                leaf = leaf.exceptions[0]
            return leaf
        leaf = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        if isinstance(leaf, asyncio.CancelledError):
            return leaf
        return self.fail(f"{type(leaf).__name__}: {leaf}")

    async def _run_with_server(self, baseline: set[asyncio.Task[Any]]) -> None:
        profile = self.profile
        server = FakeApiServer(
            seed=self.seed,
            bookmark_interval=0.1,
            history_limit=self.history_limit,
            stale_watch=self.quirk,
            too_large_wait=0.05,
        )
        async with server:
            workload = ConfigMapWorkload(
                server, WorldLog(self.world, self.trace), self._random(), profile.churn
            )
            await workload.populate()
            injector = FaultInjector(
                server, path=ConfigMapWorkload.PATH, rng=self._random(), workload=workload
            )
            receiver = CheckingReceiver(
                self.world, self.trace, self._random(), profile.receiver, max_batch=self.max_batch
            )
            api = server.api_client()
            try:
                source = ListWatch.from_client(api, "configmaps")
                if self.wrap_source is not None:
                    source = self.wrap_source(source)
                syncer = Syncer(
                    source,
                    on_list=receiver.on_list,
                    on_batch=receiver.on_batch,
                    merge_interval=profile.merge_interval,
                    max_batch=self.max_batch,
                    queue_size=self.queue_size,
                    sync_timeout=profile.sync_timeout,
                    backoff=self.backoff
                    or Backoff(
                        initial=profile.backoff_initial,
                        cap=profile.backoff_cap,
                        reset_after=60.0,
                        rng=self._random(),
                    ),
                    page_size=profile.page_size,
                    list_strategy=self.list_strategy,
                    watch_timeout=self.watch_timeout,
                    transform=self.transform,
                    resync_period=self.resync_period,
                    rng=self._random(),
                )
                try:
                    async with syncer:
                        await self._phases(server, syncer, workload, injector, receiver)
                finally:
                    self.result.faults_injected = injector.injected()
                    self.result.faults_fired = injector.fired()
                    if self.result.blackout is not None:
                        self.result.faults_injected["blackout"] = 1
                        self.result.faults_fired["blackout"] = self.blackout_hits
                    self.result.receiver = receiver.counts
                    self.result.writes = self.world.writes
                    self.result.snapshots = receiver.counts["on_list ok"]
                    self.result.batches = receiver.counts["on_batch ok"]
                    self.result.big_objects = workload.big_written
            finally:
                await api.close()
            if receiver.violations:  # seen while stopping
                raise self.fail(receiver.violations[0])
            try:
                await server.wait_until(
                    lambda s: s.open_connections == 0 and s.active_watches == 0, timeout=10
                )
            except TimeoutError:
                raise self.fail(
                    f"leak: {server.open_connections} connections and {server.active_watches} "
                    "watches still open after the Syncer stopped and the client closed"
                ) from None
            leaked = other_tasks() - baseline
            if leaked:
                raise self.fail(f"leak: tasks left behind: {sorted(map(repr, leaked))}")

    async def _phases(
        self,
        server: FakeApiServer,
        syncer: Syncer,
        workload: ConfigMapWorkload,
        injector: FaultInjector,
        receiver: CheckingReceiver,
    ) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as group:
            monitors = [
                group.create_task(self._fail_on_violation(receiver)),
                group.create_task(self._record_requests(server)),
                group.create_task(self._record_status(syncer)),
                group.create_task(self._sample_bounds(syncer)),
            ]
            try:
                try:
                    async with asyncio.timeout(self.converge_within):
                        await syncer.wait_synced()
                except TimeoutError:
                    raise self.fail("the first snapshot never arrived") from None
                stop = asyncio.Event()
                churn = group.create_task(workload.run(stop))
                faults = group.create_task(self._inject_faults(server, injector, workload, stop))
                await asyncio.sleep(self.duration)  # the length of the chaos phase
                stop.set()
                await churn
                await faults
                server.clear_faults()
                receiver.calm()
                self.trace.add("run", "faults over (quirks stay); waiting for convergence")
                target = {
                    _object_key(obj): (rv_of(obj), digest(self.world.expected(obj)))
                    for obj in server.objects("v1", "ConfigMap")
                }
                started = loop.time()
                try:
                    await receiver.wait_for(
                        lambda: receiver.objects == target, self.converge_within
                    )
                except TimeoutError:
                    raise self.fail(self._divergence(receiver.objects, target)) from None
                self.result.convergence = loop.time() - started
                self.trace.add("run", f"converged in {self.result.convergence:.3f} s")
                status = syncer.status
                if not (status.synced and status.has_synced):
                    raise self.fail(f"converged, but the status says synced={status.synced}")
                if status.resource_version != str(receiver.batch_rv):
                    raise self.fail(
                        f"status.resource_version={status.resource_version} but the receiver "
                        f"was last given RV {receiver.batch_rv}"
                    )
            finally:
                for task in monitors:
                    task.cancel()

    def _divergence(self, got: dict[str, Any], want: dict[str, Any]) -> str:
        missing = sorted(set(want) - set(got))[:5]
        extra = sorted(set(got) - set(want))[:5]
        wrong = sorted(k for k in set(got) & set(want) if got[k] != want[k])[:5]
        return (
            f"the receiver did not converge within {self.converge_within} s after the faults "
            f"stopped: missing {missing}, extra {extra}, different {wrong}"
        )

    # -- monitors ------------------------------------------------------------------------

    async def _fail_on_violation(self, receiver: CheckingReceiver) -> None:
        await receiver.failed.wait()
        raise self.fail(receiver.violations[0])

    async def _record_requests(self, server: FakeApiServer) -> None:
        seen = 0
        while True:
            await server.wait_until(lambda s, seen=seen: s.request_count > seen, timeout=3600)
            total = server.request_count
            log = server.requests
            for back in range(min(total - seen, len(log)), 0, -1):
                request = log[-back]
                query = request.query
                kind = "watch" if request.watch else "list"
                self.result.requests[kind] += 1
                text = f"{kind} rv={query.get('resourceVersion', '')!r}"
                if not request.watch:
                    text += f" limit={query.get('limit')} continue={'continue' in query}"
                if request.fault is not None:
                    text += f" -> fault {request.fault.kind} {request.fault.code or ''}".rstrip()
                self.trace.add("request", text)
            seen = total

    async def _record_status(self, syncer: Syncer) -> None:
        seen = 0
        phase = None

        def record(status: SyncerStatus) -> bool:
            nonlocal seen, phase
            if status.phase is not phase:
                phase = status.phase
                self.trace.add("phase", f"{phase} (generation {status.generation})")
            if status.restarts > seen:
                for restart in status.recent_restarts[-(status.restarts - seen) :]:
                    self.trace.add("restart", f"generation {restart.generation}: {restart.reason}")
                    self.result.restarts[restart.reason.split(":", 1)[0]] += 1
                seen = status.restarts
            return False

        try:
            await syncer.wait_until(record)
        except Exception as exc:
            raise self.fail(f"the Syncer stopped: {type(exc).__name__}: {exc}") from exc

    async def _sample_bounds(self, syncer: Syncer) -> None:
        while True:
            status = syncer.status
            problems = check_bounds(
                status,
                queue_size=self.queue_size,
                max_batch=self.max_batch,
                distinct_keys=self.world.distinct_keys,
            )
            if problems:
                raise self.fail("bounds: " + "; ".join(problems))
            self.result.peak_queued = max(self.result.peak_queued, status.queued_events)
            self.result.peak_pending = max(self.result.peak_pending, status.pending_keys)
            await asyncio.sleep(0.002)  # the sampling period of this monitor

    # -- faults --------------------------------------------------------------------------

    async def _inject_faults(
        self,
        server: FakeApiServer,
        injector: FaultInjector,
        workload: ConfigMapWorkload,
        stop: asyncio.Event,
    ) -> None:
        profile = self.profile
        rng = self._random()
        if not profile.faults:
            return
        names = list(profile.faults)
        weights = [profile.faults[name] for name in names]
        loop = asyncio.get_running_loop()
        started = loop.time()
        blackout_at = rng.uniform(0.3, 0.6) * self.duration if profile.blackout else None
        while True:
            pause = rng.expovariate(profile.fault_rate)
            try:
                async with asyncio.timeout(pause):  # pacing the faults; wakes on stop
                    await stop.wait()
            except TimeoutError:
                pass
            if stop.is_set():
                return
            if blackout_at is not None and loop.time() - started >= blackout_at:
                blackout_at = None
                await self._blackout(server, workload, rng)
                continue
            name = rng.choices(names, weights)[0]
            self.trace.add("fault", await injector.inject(name))

    async def _blackout(
        self, server: FakeApiServer, workload: ConfigMapWorkload, rng: random.Random
    ) -> None:
        """Monitor 5: while every request fails, the request count stays within what the
        backoff allows (counted, never timed tighter than the backoff guarantees)."""
        loop = asyncio.get_running_loop()
        window = rng.uniform(0.5, 1.0)
        server.clear_faults()  # pending one-shot faults: the blackout's rules decide now
        rules = blackout(server, rng, path=ConfigMapWorkload.PATH)
        first = server.request_count
        started = loop.time()
        self.trace.add("fault", f"blackout for {window:.2f} s: every request fails")
        # A storm and a compaction in one event-loop step: the open watch falls behind and
        # the server closes it, so the Syncer must come back into the blackout at once.
        await workload.storm(20)
        server.compact()
        await asyncio.sleep(window)  # the blackout's length
        elapsed = loop.time() - started
        requests = server.request_count - first
        server.clear_faults()
        bound = (
            max_requests_under_backoff(
                elapsed, initial=self.profile.backoff_initial, cap=self.profile.backoff_cap
            )
            + BLACKOUT_SLACK
        )
        hits = ", ".join(f"{name}: {rule.hits}" for name, rule in rules if rule.hits)
        self.trace.add("fault", f"blackout over: {requests} requests (bound {bound}) {hits}")
        self.result.blackout = BlackoutResult(elapsed, requests, bound)
        self.blackout_hits = sum(rule.hits for _, rule in rules)
        if requests > bound:
            raise self.fail(
                f"hot loop: {requests} requests in a {elapsed:.2f} s blackout where every "
                f"request failed; backoff(initial={self.profile.backoff_initial}, "
                f"cap={self.profile.backoff_cap}) allows at most {bound}"
            )


async def run_scenario(
    profile: Profile | str,
    seed: int,
    *,
    duration: float = 1.5,
    converge_within: float = CONVERGE_WITHIN,
    wrap_source: Callable[[ListWatch], ListWatch] | None = None,
    backoff: Backoff | None = None,
    list_strategy: str = "paged",
    watch_timeout: float | None = None,
) -> RunResult:
    """One checked run; raises :class:`ChaosFailure` (with seed and trace) on a violation.

    ``list_strategy`` is the Syncer's: paged LISTs, or streaming lists (a wrapped source
    that cannot stream pages). ``watch_timeout`` too (client-go's 300-600 s by default: the
    faults reach open streams with ``server.cut_watches()``). ``wrap_source`` and
    ``backoff`` replace parts of the system under test, to show that the monitors catch a
    broken one.
    """
    if isinstance(profile, str):
        profile = PROFILES[profile]
    scenario = _Scenario(
        profile,
        seed,
        duration=duration,
        converge_within=converge_within,
        wrap_source=wrap_source,
        backoff=backoff,
        list_strategy=list_strategy,
        watch_timeout=watch_timeout,
    )
    return await scenario.run()


def median_and_max(values: list[float]) -> tuple[float, float]:
    return (statistics.median(values), max(values)) if values else (0.0, 0.0)
