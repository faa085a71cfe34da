"""The demo's ``--faults``: the troubles a mirror meets in production, injected on a schedule.

Each episode is one real failure mode, produced through the fake server's own machinery
(``inject`` and ``compact``) or by the receiver, never by reaching into the Syncer:

* **stream cut**: the watches open now are dropped in the middle of an event line
  (``server.cut_watches``), and the next ones after a few events, once mid-line (half a
  JSON line, then EOF) and once between lines. The Syncer must resume from the last RV
  without a relist (a streaming list cut before its end bookmark is a failed list, and
  lists again).
* **410 storm**: a burst of writes, then etcd-style compaction in the same event-loop turn,
  so the server's watcher falls behind the compaction point and is closed; the re-watch
  meets "too old resource version" (410) and the Syncer relists. The watch after that relist
  gets an ERROR 410 too: two relists in a row, and paged LISTs that overlap a compaction
  see their continue token expire.
* **429 with Retry-After**: the next listing request (a LIST page, or a streaming list's
  watch) and watch are refused by priority-and-fairness (plain text, as APF sends it, and
  as a Status); the Syncer waits and retries the same request.
* **receiver failure**: the sink's ``on_batch`` raises once (its database "is down"); the
  generation ends and the next one starts from a fresh LIST.

Watch faults hit the *next* watch request (the server picks a fault when a request
arrives); an episode that injects them ends the open watches cleanly too
(``server.cut_watches``), so the Syncer's re-watch meets them at once.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import NoReturn

from listwatch._models import Batch
from listwatch.testing import FakeApiServer, Fault, FaultRule

STREAM_CUT = "stream cut"
GONE_STORM = "410 storm"
TOO_MANY_REQUESTS = "429 Retry-After"
RECEIVER_FAILURE = "receiver failure"
EPISODES = (STREAM_CUT, RECEIVER_FAILURE, TOO_MANY_REQUESTS, GONE_STORM)


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


Burst = Callable[[int], Awaitable[None]]


class Chaos:
    """Injects one episode every ``interval`` seconds (jittered), cycling through them all.

    ``injected`` counts episodes by kind; :meth:`fired` counts the server faults that hit a
    request (a rule injected late in the run may never fire: its request never came).
    """

    def __init__(
        self,
        server: FakeApiServer,
        receiver: FlakyReceiver,
        burst: Burst,
        *,
        path: str,
        rng: random.Random,
    ) -> None:
        self._server = server
        self._receiver = receiver
        self._burst = burst
        self._path = path
        self._rng = rng
        self.injected: Counter[str] = Counter()
        self.cut = 0  # open watches the stream-cut episodes dropped
        self._rules: list[tuple[str, FaultRule]] = []

    def fired(self) -> Counter[str]:
        """Faults that hit a request (or the receiver), by episode kind."""
        counts: Counter[str] = Counter()
        for kind, rule in self._rules:
            counts[kind] += rule.hits
        counts[RECEIVER_FAILURE] += self._receiver.failures
        counts[STREAM_CUT] += self.cut
        return +counts

    async def run(self, interval: float) -> NoReturn:
        """Episodes until cancelled; the first comes after one interval."""
        index = 0
        while True:
            await asyncio.sleep(interval * self._rng.uniform(0.7, 1.3))
            await self.episode(EPISODES[index % len(EPISODES)])
            index += 1

    async def episode(self, kind: str) -> None:
        """Inject one episode of ``kind`` now."""
        rng = self._rng
        self.injected[kind] += 1
        if kind == STREAM_CUT:
            self.cut += self._server.cut_watches(mid_line=True)
            self._add(kind, Fault.cut_stream(rng.randint(1, 30), mid_line=True), watch=True)
            self._add(kind, Fault.cut_stream(rng.randint(1, 30)), watch=True)
        elif kind == GONE_STORM:
            # Writes and compaction in one turn of the loop: the watcher cannot have sent
            # the burst yet, so its cursor is behind the compaction point.
            await self._burst(rng.randint(5, 20))
            self._server.compact()
            self._add(kind, Fault.error_event(rng.randint(0, 10), code=410), watch=True)
            self._server.cut_watches()
        elif kind == TOO_MANY_REQUESTS:
            self._add(kind, Fault.too_many_requests(1, plain_text=True), watch=None)
            self._add(kind, Fault.too_many_requests(1), watch=True)
            self._server.cut_watches()
        elif kind == RECEIVER_FAILURE:
            self._receiver.armed += 1
        else:
            raise ValueError(f"unknown fault episode {kind!r}")

    def _add(self, kind: str, fault: Fault, *, watch: bool | None) -> None:
        self._rules.append((kind, self._server.inject(fault, path=self._path, watch=watch)))

    def stop(self) -> None:
        """No more faults: pending rules are dropped and the receiver is healthy again."""
        self._server.clear_faults()
        self._receiver.disarm()
