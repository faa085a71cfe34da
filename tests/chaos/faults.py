"""Every transient fault the fake API server can produce, by class name.

Each class injects one-shot rules (they hit the *next* matching request) or acts on the
server directly (compaction, cutting the open watches). A watch fault is followed by
``server.cut_watches()``: the streams open now end cleanly, the Syncer re-watches at once,
and the re-watch meets the fault, instead of waiting minutes for the stream to time out.
The names are what the soak report counts.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from listwatch.testing import FakeApiServer, Fault, FaultRule

from .workload import Workload

PATH = "/api/v1/configmaps"


class Injector:
    """Injects faults by class name and remembers the rules, to count which ones fired."""

    def __init__(self, server: FakeApiServer, workload: Workload, rng: random.Random) -> None:
        self.server = server
        self.workload = workload
        self.rng = rng
        self.rules: list[tuple[str, FaultRule]] = []
        self.actions: dict[str, int] = {}  # classes that act at once (compaction)

    def _rule(self, name: str, fault: Fault, *, watch: bool | None, times: int = 1) -> None:
        rule = self.server.inject(fault, path=PATH, watch=watch, times=times)
        self.rules.append((name, rule))

    def fired(self) -> dict[str, int]:
        counts = dict(self.actions)
        for name, rule in self.rules:
            counts[name] = counts.get(name, 0) + rule.hits
        return counts

    def injected(self) -> dict[str, int]:
        counts = dict(self.actions)
        for name, _ in self.rules:
            counts[name] = counts.get(name, 0) + 1
        return counts

    async def inject(self, name: str) -> str:
        """Inject one fault of class ``name``; returns a description for the trace."""
        rng = self.rng
        after = rng.randint(0, 6)
        fault: Fault
        watch: bool | None
        match name:
            case "list-5xx-json":
                fault, watch = Fault.status(rng.choice([500, 502, 503, 504])), False
            case "5xx-retry-after":
                fault, watch = Fault.status(503, retry_after=1), rng.choice([True, False])
            case "list-429-json":
                fault, watch = Fault.too_many_requests(rng.choice([0, 0, 1])), False
            case "list-429-plain":
                fault = Fault.too_many_requests(rng.choice([0, 0, 1]), plain_text=True)
                watch = False
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
                fault, watch = Fault.too_many_requests(0), True
            case "watch-429-plain":
                fault, watch = Fault.too_many_requests(0, plain_text=True), True
            case "watch-410-http":
                fault, watch = Fault.gone(), True
            case "watch-504-too-large":
                fault, watch = Fault.too_large_resource_version(), True
            case "watch-cut":
                fault, watch = Fault.cut_stream(after), True
            case "watch-cut-mid-line":
                fault, watch = Fault.cut_stream(after, mid_line=True), True
            case "watch-error-410":
                fault, watch = Fault.error_event(after, 410), True
            case "watch-error-500":
                fault, watch = Fault.error_event(after, 500), True
            case "watch-malformed":
                fault, watch = Fault.malformed_line(after), True
            case "watch-empty":
                fault, watch = Fault.empty_response(), True
            case "watch-slow":
                fault, watch = Fault.slow(rng.uniform(0.0005, 0.003)), True
            case "watch-cut-open" | "watch-cut-open-mid-line":
                # The streams open now: a load balancer dropping its connections.
                cut = self.server.cut_watches(mid_line=name.endswith("mid-line"))
                self.actions[name] = self.actions.get(name, 0) + cut
                return f"{name}: {cut} open watches"
            case "close-connection":
                # Twice: aiohttp silently retries an idempotent request once.
                self._rule(name, Fault.close_connection(), watch=rng.choice([True, False]), times=2)
                return f"{name} x2"
            case "compaction":
                self.server.compact()
                self.actions[name] = self.actions.get(name, 0) + 1
                return f"{name} at RV {self.server.resource_version}"
            case "compaction-storm":
                await self.workload.storm(rng.randint(20, 60))
                self.server.compact()
                self.actions[name] = self.actions.get(name, 0) + 1
                return f"{name} at RV {self.server.resource_version}"
            case _:
                raise ValueError(f"unknown fault class {name!r}")
        self._rule(name, fault, watch=watch)
        if watch is not False:
            self.server.cut_watches()  # the re-watch of the open stream meets the fault now
        return f"{name} {fault.kind}{f' after {after}' if fault.after_events else ''}"


# The faults of a blackout: every request fails, each in a way that must lead to a backoff.
BLACKOUT_FAULTS: tuple[tuple[str, Callable[[], Fault], bool | None], ...] = (
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


def blackout(server: FakeApiServer, rng: random.Random) -> list[tuple[str, FaultRule]]:
    """Make every request fail until ``server.clear_faults()``: a random mix of the faults
    above (each with a probability) and a catch-all 500, list and watch alike."""
    rules = []
    for name, make, watch in rng.sample(BLACKOUT_FAULTS, len(BLACKOUT_FAULTS)):
        rule = server.inject(make(), path=PATH, watch=watch, times=None, probability=rng.random())
        rules.append((name, rule))
    rules.append(("500", server.inject(Fault.status(500), path=PATH, watch=None, times=None)))
    server.cut_watches()  # the open watch, too, must meet the blackout now
    return rules


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
