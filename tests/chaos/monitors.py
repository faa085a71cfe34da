"""The monitors of the chaos suite: what must hold at every moment of a run, checked as it runs.

* :class:`Trace`: a bounded ring buffer of what happened (requests, faults, receiver calls,
  restarts, writes); its tail goes into every failure report.
* :class:`World`: every write the workload made, as the server answered it, so a receiver's
  state can be compared with *the server's state at any resourceVersion*.
* :class:`CheckingReceiver`: ``on_list``/``on_batch`` that mirror ``{key: object}`` and check,
  on every call, monitors 1-3 (RVs never go back, events newer than the snapshot, no overlap)
  plus "nothing lost, nothing stale": after a snapshot at S the mirror equals the server at S,
  after a batch at B it equals the server at B, and every object is byte-for-byte one the
  server wrote at that RV. It also fails and stalls on purpose (:class:`ReceiverFaults`).
* :func:`check_bounds`: monitor 4 on a ``SyncerStatus``.
* :func:`max_requests_under_backoff`: monitor 5's bound, derived from the backoff parameters.

A violation is recorded and sets :attr:`CheckingReceiver.failed`; it is never raised into the
Syncer, which would hide it by starting a new generation.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from listwatch import Batch, EventType, ListWatchError, Snapshot, SyncerStatus, object_key
from listwatch.testing.scenario import ReceiverDown

Digest = bytes


def digest(obj: Mapping[str, Any]) -> Digest:
    """A content hash of a JSON object, independent of key order (LIST items and watch
    objects of the same version serialise their keys in different orders)."""
    return hashlib.blake2b(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


def rv_of(obj: Mapping[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


class ChaosFailure(AssertionError):
    """A monitor saw a broken promise; the message carries profile, seed and trace."""


# ----------------------------------------------------------------------------- trace


@dataclass(frozen=True, slots=True)
class TraceEntry:
    at: float
    kind: str
    text: str


class Trace:
    """The last events of a run, bounded: ``maxlen`` entries, plus the last ``writes`` writes
    of the workload in a ring of their own (writes are many and would drown the rest)."""

    def __init__(self, maxlen: int = 400, writes: int = 60) -> None:
        self._start = time.monotonic()
        self._entries: deque[TraceEntry] = deque(maxlen=maxlen)
        self._writes: deque[TraceEntry] = deque(maxlen=writes)

    def add(self, kind: str, text: str) -> None:
        self._entries.append(TraceEntry(time.monotonic() - self._start, kind, text))

    def write(self, text: str) -> None:
        self._writes.append(TraceEntry(time.monotonic() - self._start, "write", text))

    def dump(self, limit: int = 200) -> str:
        entries = sorted([*self._entries, *self._writes], key=lambda e: e.at)[-limit:]
        return "\n".join(f"  {e.at:9.4f} {e.kind:<9} {e.text}" for e in entries)


# ----------------------------------------------------------------------------- world


class World:
    """The server's history as the workload wrote it: per key, ``(rv, digest or None)``.

    Every write goes through :meth:`record` right after the server's Python API returned it,
    in the same event-loop step (the fake's ``create``/``replace``/``delete`` never suspend),
    so no receiver can see a write that is not recorded yet.
    """

    def __init__(self, transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self._transform = transform
        self._history: dict[str, list[tuple[int, Digest | None]]] = {}
        self._digests: dict[tuple[str, int], Digest] = {}
        self.writes = 0
        self.last_rv = 0

    @property
    def distinct_keys(self) -> int:
        return len(self._history)

    def record(self, obj: Mapping[str, Any], *, deleted: bool = False) -> tuple[str, int]:
        key, rv = object_key(obj), rv_of(obj)
        # What the receiver must see: the object as written, through the Syncer's transform.
        self._digests[(key, rv)] = digest(self.expected(obj))
        history = self._history.setdefault(key, [])
        if history and history[-1][0] >= rv:
            return key, rv  # a no-op update: the server wrote nothing
        history.append((rv, None if deleted else self._digests[(key, rv)]))
        self.writes += 1
        self.last_rv = max(self.last_rv, rv)
        return key, rv

    def expected(self, obj: Mapping[str, Any]) -> Mapping[str, Any]:
        return self._transform(dict(obj)) if self._transform is not None else obj

    def digest_at(self, key: str, rv: int) -> Digest | None:
        """The content the server wrote for ``key`` at ``rv`` (a DELETED event's final state
        for a deletion); ``None`` if the server never wrote ``key`` at ``rv``."""
        return self._digests.get((key, rv))

    def state_at(self, rv: int) -> dict[str, int]:
        """``{key: resourceVersion}`` of the objects that existed at ``rv``."""
        state: dict[str, int] = {}
        for key, history in self._history.items():
            index = bisect.bisect_right(history, rv, key=lambda entry: entry[0])
            if index and history[index - 1][1] is not None:
                state[key] = history[index - 1][0]
        return state


# ----------------------------------------------------------------------------- receiver


@dataclass(frozen=True)
class ReceiverFaults:
    """How often the receiver misbehaves, per call.

    ``raise_*``: the call raises (a database refusing the write). ``partial``: ``on_batch``
    applies half the batch and then raises (a non-transactional receiver). ``stall``: the
    call blocks for ``stall_seconds`` (drawn uniformly); stalls longer than the Syncer's
    ``sync_timeout`` are cut by it.
    """

    raise_list: float = 0.0
    raise_batch: float = 0.0
    partial: float = 0.0
    stall: float = 0.0
    stall_seconds: tuple[float, float] = (0.0, 0.0)

    @property
    def any(self) -> bool:
        return any((self.raise_list, self.raise_batch, self.partial, self.stall))


@dataclass
class CheckingReceiver:
    """A mirror ``{key: (rv, digest)}`` whose calls check the Syncer's promises (see module)."""

    world: World
    trace: Trace
    rng: random.Random = field(default_factory=random.Random)
    faults: ReceiverFaults = field(default_factory=ReceiverFaults)
    max_batch: int | None = None
    objects: dict[str, tuple[int, Digest]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    failed: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    generation: int | None = None
    snapshot_rv: int | None = None
    batch_rv: int | None = None
    _applied: dict[str, int] = field(default_factory=dict)  # monitor 1, across generations
    _busy: str | None = None
    _last_generation_seen: int = 0

    # -- control -------------------------------------------------------------------------

    def calm(self) -> None:
        """No more injected failures or stalls (the faults are over)."""
        self.faults = ReceiverFaults()

    def state(self) -> dict[str, tuple[int, Digest]]:
        return dict(self.objects)

    async def wait_for(self, predicate: Callable[[], bool], limit: float) -> None:
        """Until ``predicate()`` holds after some receiver call; TimeoutError after ``limit``."""
        async with asyncio.timeout(limit):
            while True:
                changed = self.changed
                if predicate():
                    return
                await changed.wait()

    # -- the receiver's calls ------------------------------------------------------------

    async def on_list(self, snapshot: Snapshot) -> None:
        self._enter("on_list", snapshot.generation)
        try:
            await self._misbehave("on_list", self.faults.raise_list)
            # Read as a streaming receiver does; a list error comes out of this loop, and
            # the half-read snapshot is dropped (a database would roll it back).
            partial = self.faults.partial and self.rng.random() < self.faults.partial
            items: list[dict[str, Any]] = []
            try:
                async for item in snapshot:
                    items.append(item.object)
                    if partial and len(items) > 1:
                        self.counts["on_list partial"] += 1
                        self.trace.add("receiver", f"read {len(items)} items then failed")
                        raise ReceiverDown("the receiver failed in the middle of a snapshot")
            except ListWatchError as exc:
                self.counts["on_list list error"] += 1
                self.trace.add("on_list", f"gen={snapshot.generation} list error: {exc}")
                raise
            self.trace.add(
                "on_list",
                f"gen={snapshot.generation} rv={snapshot.resource_version} items={len(items)}",
            )
            self._check_snapshot(snapshot, items)
            self.objects = {object_key(item): (rv_of(item), digest(item)) for item in items}
            for key, (rv, _) in self.objects.items():
                self._applied[key] = rv
            self.generation = snapshot.generation
            self.snapshot_rv = self.batch_rv = int(snapshot.resource_version)
            self.counts["on_list ok"] += 1
        finally:
            self._exit()

    async def on_batch(self, batch: Batch) -> None:
        self._enter("on_batch", batch.generation)
        try:
            self.trace.add(
                "on_batch",
                f"gen={batch.generation} rv={batch.resource_version} keys={len(batch)} "
                f"received={batch.received}",
            )
            await self._misbehave("on_batch", self.faults.raise_batch)
            self._check_batch_header(batch)
            partial = self.faults.partial and self.rng.random() < self.faults.partial
            events = list(batch.events.items())
            for index, (key, event) in enumerate(events):
                if partial and index >= len(events) // 2:
                    self.counts["on_batch partial"] += 1
                    self.trace.add("receiver", f"applied {index}/{len(events)} then failed")
                    raise ReceiverDown("the receiver failed in the middle of a batch")
                self._apply(key, event.type, event.object, event.resource_version)
            self.batch_rv = int(batch.resource_version)
            self._expect_state_at(self.batch_rv, "batch")
            self.counts["on_batch ok"] += 1
        finally:
            self._exit()

    # -- checks --------------------------------------------------------------------------

    def violate(self, text: str) -> None:
        self.violations.append(text)
        self.trace.add("VIOLATION", text)
        self.failed.set()

    def _enter(self, what: str, generation: int) -> None:
        # Monitor 3: on_list and on_batch never run concurrently.
        if self._busy is not None:
            self.violate(f"{what} (generation {generation}) started while {self._busy} runs")
        self._busy = f"{what} of generation {generation}"
        self.counts[what] += 1

    def _exit(self) -> None:
        self._busy = None
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    async def _misbehave(self, what: str, raise_probability: float) -> None:
        faults = self.faults
        if faults.stall and self.rng.random() < faults.stall:
            seconds = self.rng.uniform(*faults.stall_seconds)
            self.counts[f"{what} stall"] += 1
            self.trace.add("receiver", f"{what} stalls for {seconds:.3f} s")
            try:
                await asyncio.sleep(seconds)  # the stall itself, not synchronisation
            except asyncio.CancelledError:
                self.counts[f"{what} stall cut"] += 1
                self.trace.add("receiver", f"{what} stall cut by the Syncer")
                raise
        if raise_probability and self.rng.random() < raise_probability:
            self.counts[f"{what} raise"] += 1
            self.trace.add("receiver", f"{what} raises")
            raise ReceiverDown(f"injected {what} failure")

    def _check_snapshot(self, snapshot: Snapshot, items: list[dict[str, Any]]) -> None:
        s = int(snapshot.resource_version)
        if snapshot.generation <= self._last_generation_seen:
            self.violate(
                f"snapshot of generation {snapshot.generation} after generation "
                f"{self._last_generation_seen}"
            )
        self._last_generation_seen = snapshot.generation
        if self.batch_rv is not None and s < self.batch_rv:
            self.violate(f"snapshot at RV {s} is older than RV {self.batch_rv} already delivered")
        seen: set[str] = set()
        for item in items:
            key, rv = object_key(item), rv_of(item)
            if key in seen:
                self.violate(f"snapshot at {s} lists {key} twice")
            seen.add(key)
            if rv > s:
                self.violate(f"snapshot at {s} holds {key} at newer RV {rv}")
            self._check_content(key, rv, item, "snapshot")
            self._check_monotonic(key, rv, "snapshot", allow_equal=True)
        got = {object_key(item): rv_of(item) for item in items}
        self._compare(got, self.world.state_at(s), f"snapshot at RV {s}")

    def _check_batch_header(self, batch: Batch) -> None:
        if self.generation is None or self.snapshot_rv is None:
            self.violate(f"batch of generation {batch.generation} before any snapshot")
            return
        if batch.generation != self.generation:
            self.violate(
                f"batch of generation {batch.generation} reached the receiver whose last "
                f"snapshot is of generation {self.generation}"
            )
        if self.max_batch is not None and len(batch) > self.max_batch:
            self.violate(f"batch of {len(batch)} keys exceeds max_batch={self.max_batch}")
        b = int(batch.resource_version)
        if self.batch_rv is not None and b < self.batch_rv:
            self.violate(f"batch RV {b} is older than RV {self.batch_rv} already delivered")
        for key, event in batch.events.items():
            rv = int(event.resource_version)
            # Monitor 2: after a snapshot at S, every event is newer than S.
            if rv <= self.snapshot_rv:
                self.violate(
                    f"{key}: {event.type} at RV {rv} delivered after the snapshot at "
                    f"RV {self.snapshot_rv} (generation {self.generation})"
                )
            if rv > b:
                self.violate(f"{key}: event RV {rv} is newer than its batch's RV {b}")
            if event.key != key:
                self.violate(f"batch key {key} holds an event for {event.key}")

    def _apply(self, key: str, type_: EventType, obj: Mapping[str, Any], rv_text: str) -> None:
        rv = int(rv_text)
        self._check_content(key, rv, obj, str(type_))
        self._check_monotonic(key, rv, str(type_), allow_equal=False)
        self._applied[key] = rv
        if type_ is EventType.DELETED:
            self.objects.pop(key, None)
        else:
            self.objects[key] = (rv, digest(obj))

    def _check_monotonic(self, key: str, rv: int, what: str, *, allow_equal: bool) -> None:
        # Monitor 1: no key's applied resourceVersion ever decreases (a delete-recreate
        # under the same name is a newer write, so it has a newer RV too).
        previous = self._applied.get(key)
        if previous is None:
            return
        if rv < previous or (rv == previous and not allow_equal):
            verb = "went back" if rv < previous else "was delivered again"
            self.violate(f"{key}: applied RV {verb}: {previous} -> {rv} ({what})")

    def _check_content(self, key: str, rv: int, obj: Mapping[str, Any], what: str) -> None:
        expected = self.world.digest_at(key, rv)
        if expected is None:
            self.violate(f"{key}: {what} at RV {rv}, but the server never wrote it at that RV")
        elif digest(obj) != expected:
            self.violate(f"{key}: {what} at RV {rv} differs from what the server wrote")

    def _expect_state_at(self, rv: int, what: str) -> None:
        got = {key: value[0] for key, value in self.objects.items()}
        self._compare(got, self.world.state_at(rv), f"mirror after {what} at RV {rv}")

    def _compare(self, got: Mapping[str, int], want: Mapping[str, int], what: str) -> None:
        if got == want:
            return
        missing = sorted(set(want) - set(got))[:5]
        extra = sorted(set(got) - set(want))[:5]
        wrong = sorted(k for k in set(got) & set(want) if got[k] != want[k])[:5]
        details = [
            *(f"missing {k}@{want[k]}" for k in missing),
            *(f"extra {k}@{got[k]}" for k in extra),
            *(f"{k}@{got[k]} should be @{want[k]}" for k in wrong),
        ]
        self.violate(f"{what} differs from the server's state: {', '.join(details)}")


# ----------------------------------------------------------------------------- bounds


def check_bounds(
    status: SyncerStatus, *, queue_size: int, max_batch: int, distinct_keys: int
) -> list[str]:
    """Monitor 4: what the Syncer holds is bounded by its queue, its batch and the keys."""
    problems = []
    if status.queued_events > queue_size:
        problems.append(f"queued_events={status.queued_events} > queue_size={queue_size}")
    if status.pending_keys > max_batch:
        problems.append(f"pending_keys={status.pending_keys} > max_batch={max_batch}")
    if status.pending_keys > distinct_keys:
        problems.append(
            f"pending_keys={status.pending_keys} > {distinct_keys} distinct keys ever written"
        )
    return problems


# ----------------------------------------------------------------------------- rate


def max_requests_under_backoff(
    window: float, *, initial: float, cap: float, factor: float = 2.0, per_attempt: int = 1
) -> int:
    """The most requests a client that backs off after every failure can send in ``window``.

    Between two failed attempts there is one full backoff delay. A streak's delays are at
    least ``initial``, ``initial*factor``, ... up to ``cap`` (jitter only lengthens them, and
    a streak cannot reset while failures keep coming faster than ``reset_after``). So ``n``
    attempts need ``sum(delays[:n-1]) <= window``. Each attempt is at most ``per_attempt``
    requests (e.g. LIST pages plus a watch).
    """
    attempts, spent, step = 1, 0.0, 0
    while True:
        delay = min(initial * factor**step, cap)
        if spent + delay > window:
            return attempts * per_attempt
        spent += delay
        attempts += 1
        step += 1


def requests_summary(requests: Iterable[Any]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for request in requests:
        counts["watch" if request.watch else "list"] += 1
    return counts


def mark_transformed(obj: dict[str, Any]) -> dict[str, Any]:
    """A Syncer ``transform`` that shows how often it ran: applied twice, it leaves "tt"."""
    return {**obj, "chaos-transform": obj.get("chaos-transform", "") + "t"}
