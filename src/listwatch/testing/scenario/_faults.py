"""The fault catalogue: every transient fault a mirror meets in production, by class name.

Each class is one real failure mode, produced through the fake server's own machinery
(``inject``, ``compact``, ``cut_watches``) or by the receiver, never by reaching into the
Syncer. A class injects one-shot rules (they hit the *next* matching request), or acts at
once (compaction, cutting the open watches), or arms a :class:`FlakyReceiver`. A watch
fault is followed by ``server.cut_watches()``: the streams open now end cleanly, the Syncer
re-watches at once, and the re-watch meets the fault, instead of waiting minutes for the
stream to time out. :class:`FaultInjector` counts, by class, what it injected and what fired.

Its users differ in how they draw from it, not in what a fault is:

* the chaos suite injects single classes at random, weighted by its profiles (the groups
  :data:`LIST_FAULTS`, :data:`WATCH_ERRORS`, :data:`CUTS`, :data:`COMPACTION`), and
  :func:`blackout` makes every request fail for a while;
* the demo's ``--faults`` (:func:`demo_faults`) runs :data:`DEMO_EPISODES` on a timer
  (:class:`FaultSchedule`), each episode a few classes together, with :data:`DEMO_SETTINGS`:

  - **stream cut**: the watches open now are dropped in the middle of an event line, and
    the next ones after a few events, once mid-line (half a JSON line, then EOF) and once
    between lines. The Syncer must resume from the last RV without a relist (a streaming
    list cut before its end bookmark is a failed list, and lists again).
  - **410 storm**: a burst of writes, then etcd-style compaction in the same event-loop
    turn, so the server's watcher falls behind the compaction point and is closed; the
    re-watch meets "too old resource version" (410) and the Syncer relists. The watch after
    that relist gets an ERROR 410 too: two relists in a row, and paged LISTs that overlap a
    compaction see their continue token expire.
  - **429 with Retry-After**: the next listing request (a LIST page, or a streaming list's
    watch) and watch are refused by priority-and-fairness (plain text, as APF sends it, and
    as a Status); the Syncer waits and retries the same request.
  - **receiver failure**: the sink's ``on_batch`` raises once (its database "is down"); the
    generation ends and the next one starts from a fresh LIST.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import NoReturn, Protocol, TypeVar

from listwatch._models import Batch
from listwatch.testing import FakeApiServer, Fault, FaultRule
from listwatch.testing.scenario._workload import PodWorkload

_T = TypeVar("_T")


class ReceiverDown(RuntimeError):
    """The injected receiver failure (the downstream database refusing a write)."""


class FlakyReceiver:
    """Wraps an ``on_batch`` so that it fails when armed: a receiver having a bad moment.

    It fails *before* calling the real receiver, as a refused connection would; the real
    sink is transactional anyway, so a failure mid-write would leave it just as intact.
    """

    def __init__(self, on_batch: Callable[[Batch], Awaitable[None]]) -> None:
        self._on_batch = on_batch
        self.armed = 0
        self.failures = 0

    async def on_batch(self, batch: Batch) -> None:
        if self.armed > 0:
            self.armed -= 1
            self.failures += 1
            raise ReceiverDown("injected receiver failure: the downstream database is down")
        await self._on_batch(batch)

    def disarm(self) -> None:
        self.armed = 0


class Storm(Protocol):
    """What a compaction storm needs of a workload."""

    async def storm(self, writes: int) -> None:
        """``writes`` writes with no pause."""


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """The numbers a fault class draws from its ``rng``: how its users' needs differ."""

    after: tuple[int, int] = (0, 6)
    """Events a cut or broken watch stream delivers before its fault."""
    error_after: tuple[int, int] | None = None
    """Events before a watch ERROR event; ``None``: the draw of ``after``."""
    retry_after: tuple[int, ...] = (0, 0, 1)
    """Retry-After seconds of a listing request's 429 (one drawn)."""
    watch_retry_after: int = 0
    """Retry-After seconds of a watch's 429."""
    storm: tuple[int, int] = (20, 60)
    """Writes of the burst before a storm's compaction."""


@dataclass(eq=False)
class FaultInjector:
    """Injects faults by class name on one path and counts, by class, what it injected and
    what fired.

    ``workload`` is needed by ``compaction-storm``, ``receiver`` by ``receiver-failure``.
    """

    server: FakeApiServer
    _: KW_ONLY
    path: str
    rng: random.Random
    workload: Storm | None = None
    receiver: FlakyReceiver | None = None
    settings: FaultSettings = field(default_factory=FaultSettings)
    _rules: list[tuple[str, FaultRule]] = field(default_factory=list, init=False)
    _cut: Counter[str] = field(default_factory=Counter, init=False)
    """Open watches cut, by class."""
    _acted: Counter[str] = field(default_factory=Counter, init=False)
    """Compactions, by class (they hit no request)."""
    _armed: Counter[str] = field(default_factory=Counter, init=False)
    """Receiver failures armed."""

    def injected(self) -> Counter[str]:
        """Faults injected, by class (for a cut of the open watches: the watches cut)."""
        counts: Counter[str] = Counter()
        for name, _ in self._rules:
            counts[name] += 1
        counts.update(self._cut)
        counts.update(self._acted)
        counts.update(self._armed)
        return counts

    def hits(self) -> Counter[str]:
        """Faults that hit a request or the receiver, by class (a rule injected late in a
        run may never fire: its request never came)."""
        counts: Counter[str] = Counter()
        for name, rule in self._rules:
            counts[name] += rule.hits
        counts.update(self._cut)
        if self.receiver is not None:
            counts["receiver-failure"] += self.receiver.failures
        return counts

    def fired(self) -> Counter[str]:
        """:meth:`hits`, and the compactions done."""
        counts = self.hits()
        counts.update(self._acted)
        return counts

    def stop(self) -> None:
        """No more faults: pending rules are dropped and the receiver is healthy again."""
        self.server.clear_faults()
        if self.receiver is not None:
            self.receiver.disarm()

    def _rule(self, name: str, fault: Fault, *, watch: bool | None, times: int = 1) -> None:
        rule = self.server.inject(fault, path=self.path, watch=watch, times=times)
        self._rules.append((name, rule))

    async def inject(self, name: str) -> str:
        """Inject one fault of class ``name``; returns a description for a trace."""
        rng, settings, server = self.rng, self.settings, self.server
        after = rng.randint(*settings.after)
        fault: Fault
        watch: bool | None
        match name:
            case "list-5xx-json":
                fault, watch = Fault.status(rng.choice([500, 502, 503, 504])), False
            case "5xx-retry-after":
                fault, watch = Fault.status(503, retry_after=1), rng.choice([True, False])
            case "list-429-json":
                fault, watch = Fault.too_many_requests(rng.choice(settings.retry_after)), False
            case "list-429-plain" | "429-plain":
                # "429-plain": the next request, whichever it is (a streaming list is a watch).
                retry_after = rng.choice(settings.retry_after)
                fault = Fault.too_many_requests(retry_after, plain_text=True)
                watch = False if name == "list-429-plain" else None
            case "list-410":
                fault, watch = Fault.gone(), False
            case "list-504-too-large":
                fault, watch = Fault.too_large_resource_version(), False
            case "list-cut":
                fault, watch = Fault.cut_stream(), False
            case "list-empty":
                fault, watch = Fault.empty_response(), False
            case "list-slow":
                fault, watch = Fault.slow(rng.uniform(0.02, 0.2)), False
            case "watch-5xx":
                fault, watch = Fault.status(rng.choice([500, 502, 503])), True
            case "watch-429-json":
                fault, watch = Fault.too_many_requests(settings.watch_retry_after), True
            case "watch-429-plain":
                fault = Fault.too_many_requests(settings.watch_retry_after, plain_text=True)
                watch = True
            case "watch-410-http":
                fault, watch = Fault.gone(), True
            case "watch-504-too-large":
                fault, watch = Fault.too_large_resource_version(), True
            case "watch-cut":
                fault, watch = Fault.cut_stream(after), True
            case "watch-cut-mid-line":
                fault, watch = Fault.cut_stream(after, mid_line=True), True
            case "watch-error-410" | "watch-error-500":
                if settings.error_after is not None:
                    after = rng.randint(*settings.error_after)
                code = 410 if name == "watch-error-410" else 500
                fault, watch = Fault.error_event(after, code), True
            case "watch-malformed":
                fault, watch = Fault.malformed_line(after), True
            case "watch-empty":
                fault, watch = Fault.empty_response(), True
            case "watch-slow":
                fault, watch = Fault.slow(rng.uniform(0.0005, 0.003)), True
            case "watch-cut-open" | "watch-cut-open-mid-line":
                # The streams open now: a load balancer dropping its connections.
                cut = server.cut_watches(mid_line=name.endswith("mid-line"))
                self._cut[name] += cut
                return f"{name}: {cut} open watches"
            case "close-connection":
                # Twice: aiohttp silently retries an idempotent request once.
                self._rule(name, Fault.close_connection(), watch=rng.choice([True, False]), times=2)
                return f"{name} x2"
            case "compaction" | "compaction-storm":
                if name == "compaction-storm":
                    # Writes and compaction in one turn of the loop: the watchers cannot have
                    # sent the burst yet, so their cursors are behind the compaction point.
                    await self._needs(self.workload, name).storm(rng.randint(*settings.storm))
                server.compact()
                self._acted[name] += 1
                return f"{name} at RV {server.resource_version}"
            case "receiver-failure":
                self._needs(self.receiver, name).armed += 1
                self._armed[name] += 1
                return name
            case _:
                raise ValueError(f"unknown fault class {name!r}")
        self._rule(name, fault, watch=watch)
        if watch is not False:
            server.cut_watches()  # the re-watch of the open stream meets the fault now
        return f"{name} {fault.kind}{f' after {fault.after_events}' if fault.after_events else ''}"

    @staticmethod
    def _needs(part: _T | None, name: str) -> _T:
        if part is None:
            raise ValueError(f"fault class {name!r} needs what it acts on (workload, receiver)")
        return part


LIST_FAULTS = (
    "list-5xx-json",
    "list-429-json",
    "list-429-plain",
    "list-410",
    "list-504-too-large",
    "list-cut",
    "list-empty",
    "list-slow",
)
WATCH_ERRORS = (
    "watch-5xx",
    "watch-429-json",
    "watch-429-plain",
    "watch-410-http",
    "watch-504-too-large",
    "watch-error-410",
    "watch-error-500",
    "watch-malformed",
    "watch-empty",
)
CUTS = (
    "watch-cut",
    "watch-cut-mid-line",
    "watch-cut-open",
    "watch-cut-open-mid-line",
    "close-connection",
    "list-cut",
    "watch-slow",
)
COMPACTION = ("compaction", "compaction-storm")
ALL_FAULTS = tuple(
    dict.fromkeys((*LIST_FAULTS, *WATCH_ERRORS, *CUTS, *COMPACTION, "5xx-retry-after"))
)
"""The classes the chaos suite draws from: all but ``429-plain`` and ``receiver-failure``
(its own receiver fails by itself)."""


# -- a blackout ------------------------------------------------------------------------------

# The faults of a blackout: every request fails, each in a way that must lead to a backoff.
_BLACKOUT_FAULTS: tuple[tuple[str, Callable[[], Fault], bool | None], ...] = (
    ("list 500", lambda: Fault.status(500), False),
    ("list 503", lambda: Fault.status(503), False),
    ("list 429 json", lambda: Fault.too_many_requests(0), False),
    ("list 429 plain", lambda: Fault.too_many_requests(0, plain_text=True), False),
    ("list 410", Fault.gone, False),
    ("list 504 too large", Fault.too_large_resource_version, False),
    ("list empty 200", Fault.empty_response, False),
    ("watch 500", lambda: Fault.status(500), True),
    ("watch 429", lambda: Fault.too_many_requests(0), True),
    ("watch 410", Fault.gone, True),
    ("watch ERROR 410", lambda: Fault.error_event(0, 410), True),
    ("watch ERROR 500", lambda: Fault.error_event(0, 500), True),
    ("watch empty 200", Fault.empty_response, True),
)


def blackout(
    server: FakeApiServer, rng: random.Random, *, path: str
) -> list[tuple[str, FaultRule]]:
    """Make every request on ``path`` fail until ``server.clear_faults()``: a random mix of
    the faults above (each with a probability) and a catch-all 500, list and watch alike."""
    rules = []
    for name, make, watch in rng.sample(_BLACKOUT_FAULTS, len(_BLACKOUT_FAULTS)):
        rule = server.inject(make(), path=path, watch=watch, times=None, probability=rng.random())
        rules.append((name, rule))
    rules.append(("500", server.inject(Fault.status(500), path=path, watch=None, times=None)))
    server.cut_watches()  # the open watch, too, must meet the blackout now
    return rules


# -- episodes on a timer (the demo's --faults) ------------------------------------------------

DEMO_EPISODES: Mapping[str, tuple[str, ...]] = {
    "stream cut": ("watch-cut-open-mid-line", "watch-cut-mid-line", "watch-cut"),
    "receiver failure": ("receiver-failure",),
    "429 Retry-After": ("429-plain", "watch-429-json"),
    "410 storm": ("compaction-storm", "watch-error-410"),
}
"""The demo's episodes, in the order it runs them: each a few fault classes at once."""

DEMO_SETTINGS = FaultSettings(
    after=(1, 30), error_after=(0, 10), retry_after=(1,), watch_retry_after=1, storm=(5, 20)
)
"""The demo's draws: a cut after 1-30 events, an ERROR 410 after 0-10, a Retry-After of 1 s
on every 429, storms of 5-20 writes."""


def demo_faults(
    workload: PodWorkload, receiver: FlakyReceiver, *, rng: random.Random
) -> FaultSchedule:
    """The demo's ``--faults``: :data:`DEMO_EPISODES` with :data:`DEMO_SETTINGS`, on the
    workload's server and path."""
    injector = FaultInjector(
        workload.server,
        path=workload.PATH,
        rng=rng,
        workload=workload,
        receiver=receiver,
        settings=DEMO_SETTINGS,
    )
    return FaultSchedule(injector, DEMO_EPISODES, rng=rng)


class FaultSchedule:
    """Injects one episode every ``interval`` seconds (jittered), cycling through them all.

    ``injected`` counts episodes by name; :meth:`fired` counts the faults of each that hit a
    request or the receiver.
    """

    def __init__(
        self,
        injector: FaultInjector,
        episodes: Mapping[str, tuple[str, ...]],
        *,
        rng: random.Random,
    ) -> None:
        self.injector = injector
        self.episodes = episodes
        self._rng = rng
        self.injected: Counter[str] = Counter()

    def fired(self) -> Counter[str]:
        """Faults that hit a request (or the receiver), by episode."""
        hits = self.injector.hits()
        counts = Counter(
            {episode: sum(hits[name] for name in names) for episode, names in self.episodes.items()}
        )
        return +counts

    async def run(self, interval: float) -> NoReturn:
        """Episodes until cancelled; the first comes after one interval."""
        order = list(self.episodes)
        index = 0
        while True:
            await asyncio.sleep(interval * self._rng.uniform(0.7, 1.3))
            await self.episode(order[index % len(order)])
            index += 1

    async def episode(self, name: str) -> None:
        """Inject episode ``name`` now."""
        if name not in self.episodes:
            raise ValueError(f"unknown fault episode {name!r}")
        self.injected[name] += 1
        for fault in self.episodes[name]:
            await self.injector.inject(fault)

    def stop(self) -> None:
        """No more faults: pending rules are dropped and the receiver is healthy again."""
        self.injector.stop()
