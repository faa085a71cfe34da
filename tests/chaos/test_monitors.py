"""The monitors can fail: each one is shown a broken promise and must report it.

Unit-level checks feed the ``CheckingReceiver`` hand-made snapshots and batches; end-to-end
checks run a scenario against a deliberately broken source or backoff and expect a
``ChaosFailure`` that names the seed and carries a trace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import pytest

from listwatch import Backoff, Batch, Event, EventType, ListWatch, Snapshot, Syncer, SyncerStatus
from listwatch.testing.scenario import configmap

from .monitors import (
    ChaosFailure,
    CheckingReceiver,
    ReceiverFaults,
    Trace,
    World,
    check_bounds,
    max_requests_under_backoff,
)
from .runner import run_scenario


def written(name: str, rv: int, step: int = 0) -> dict[str, Any]:
    obj = configmap(name, "default", step)
    obj["metadata"]["resourceVersion"] = str(rv)
    return obj


@pytest.fixture
def world() -> World:
    """a@1, b@2, a@3, b deleted at 4, c@5."""
    world = World()
    for obj, deleted in [
        (written("a", 1, 1), False),
        (written("b", 2, 2), False),
        (written("a", 3, 3), False),
        (written("b", 4, 2), True),
        (written("c", 5, 5), False),
    ]:
        world.record(obj, deleted=deleted)
    return world


def event(type_: EventType, obj: dict[str, Any]) -> Event:
    return Event.from_object(type_, obj)


def batch(generation: int, rv: int, *events: Event) -> Batch:
    return Batch({e.key: e for e in events}, str(rv), generation, len(events))


def receiver_for(world: World) -> CheckingReceiver:
    return CheckingReceiver(world, Trace())


async def test_a_correct_history_passes(world: World) -> None:
    receiver = receiver_for(world)
    await receiver.on_list(Snapshot.of([written("a", 3, 3), written("b", 2, 2)], "3", generation=1))
    await receiver.on_batch(
        batch(
            1,
            5,
            event(EventType.DELETED, written("b", 4, 2)),
            event(EventType.ADDED, written("c", 5, 5)),
        )
    )
    assert receiver.violations == []
    assert set(receiver.objects) == {"default/a", "default/c"}


async def test_an_event_not_newer_than_the_snapshot_is_reported(world: World) -> None:
    receiver = receiver_for(world)
    await receiver.on_list(Snapshot.of([written("a", 3, 3), written("b", 2, 2)], "3", generation=1))
    await receiver.on_batch(batch(1, 3, event(EventType.MODIFIED, written("a", 3, 3))))
    assert any("delivered after the snapshot at RV 3" in v for v in receiver.violations)
    assert receiver.failed.is_set()


async def test_a_resource_version_going_back_is_reported(world: World) -> None:
    receiver = receiver_for(world)
    await receiver.on_list(Snapshot.of([written("a", 1, 1)], "1", generation=1))
    await receiver.on_batch(batch(1, 3, event(EventType.MODIFIED, written("a", 3, 3))))
    await receiver.on_batch(batch(1, 3, event(EventType.MODIFIED, written("a", 1, 1))))
    assert any("default/a: applied RV went back: 3 -> 1" in v for v in receiver.violations)


async def test_a_snapshot_older_than_what_was_delivered_is_reported(world: World) -> None:
    receiver = receiver_for(world)
    await receiver.on_list(Snapshot.of([written("a", 3, 3), written("b", 2, 2)], "3", generation=1))
    await receiver.on_list(Snapshot.of([written("a", 1, 1), written("b", 2, 2)], "2", generation=2))
    assert any("older than RV 3 already delivered" in v for v in receiver.violations)
    assert any("default/a: applied RV went back: 3 -> 1" in v for v in receiver.violations)


async def test_a_lost_event_is_reported(world: World) -> None:
    receiver = receiver_for(world)
    await receiver.on_list(Snapshot.of([written("a", 3, 3), written("b", 2, 2)], "3", generation=1))
    # b's deletion at 4 never arrived: at RV 5 the mirror still holds b.
    await receiver.on_batch(batch(1, 5, event(EventType.ADDED, written("c", 5, 5))))
    assert any("extra default/b@2" in v for v in receiver.violations)


async def test_an_inconsistent_snapshot_is_reported(world: World) -> None:
    receiver = receiver_for(world)
    await receiver.on_list(Snapshot.of([written("a", 3, 3)], "3", generation=1))  # b is missing
    assert any("missing default/b@2" in v for v in receiver.violations)


async def test_corrupted_content_is_reported(world: World) -> None:
    receiver = receiver_for(world)
    corrupted = written("a", 3, 3)
    corrupted["data"]["step"] = "garbage"
    await receiver.on_list(Snapshot.of([corrupted, written("b", 2, 2)], "3", generation=1))
    assert any("differs from what the server wrote" in v for v in receiver.violations)


async def test_a_batch_of_an_older_generation_is_reported(world: World) -> None:
    receiver = receiver_for(world)
    await receiver.on_list(Snapshot.of([written("a", 3, 3), written("b", 2, 2)], "3", generation=2))
    await receiver.on_batch(batch(1, 5, event(EventType.ADDED, written("c", 5, 5))))
    assert any("batch of generation 1 reached the receiver" in v for v in receiver.violations)


async def test_overlapping_calls_are_reported(world: World) -> None:
    receiver = CheckingReceiver(
        world,
        Trace(),
        random.Random(0),
        ReceiverFaults(stall=1.0, stall_seconds=(0.05, 0.05)),
    )

    def snapshot() -> Snapshot:
        return Snapshot.of([written("a", 3, 3), written("b", 2, 2)], "3", generation=1)

    await asyncio.gather(receiver.on_list(snapshot()), receiver.on_list(snapshot()))
    assert any("started while on_list of generation 1 runs" in v for v in receiver.violations)


def status(queued: int, pending: int) -> SyncerStatus:
    return dataclasses.replace(
        Syncer(ListWatch(list_func=None, watch_func=None), on_list=None, on_batch=None).status,  # type: ignore[arg-type]
        queued_events=queued,
        pending_keys=pending,
    )


def test_bounds_are_checked() -> None:
    assert check_bounds(status(10, 5), queue_size=10, max_batch=5, distinct_keys=5) == []
    problems = check_bounds(status(11, 6), queue_size=10, max_batch=5, distinct_keys=3)
    assert len(problems) == 3


def test_the_request_bound_follows_the_backoff() -> None:
    # Delays of at least 0.1, 0.2, 0.4, 0.4: 4 attempts fit in 1 s (0.7 s of waits), 5 don't.
    assert max_requests_under_backoff(1.0, initial=0.1, cap=0.4) == 4
    assert max_requests_under_backoff(1.0, initial=0.1, cap=0.4, per_attempt=3) == 12
    assert max_requests_under_backoff(0.05, initial=0.1, cap=0.4) == 1


# ------------------------------------------------------------------ end to end


def dropping(key: str, keep: int):
    """A source that loses every event of ``key`` after the first ``keep``."""

    def wrap(source: ListWatch) -> ListWatch:
        seen = 0

        async def watch(options: Any) -> AsyncGenerator[Event, None]:
            nonlocal seen
            async with aclosing(source.watch(options)) as events:
                async for item in events:
                    if item.key == key:
                        seen += 1
                        if seen > keep:
                            continue
                    yield item

        return ListWatch(list_func=source.list, watch_func=watch, description="lossy")

    return wrap


def replaying(source: ListWatch) -> ListWatch:
    """A source that replays its very first event at the start of every later stream."""
    first: Event | None = None
    streams = 0

    async def watch(options: Any) -> AsyncGenerator[Event, None]:
        nonlocal first, streams
        streams += 1
        if streams > 1 and first is not None:
            yield first
        async with aclosing(source.watch(options)) as events:
            async for item in events:
                if first is None and item.type is not EventType.BOOKMARK:
                    first = item
                yield item

    return ListWatch(list_func=source.list, watch_func=watch, description="replaying")


async def test_a_lossy_source_fails_the_run_with_seed_and_trace() -> None:
    with pytest.raises(ChaosFailure) as failure:
        await run_scenario("calm", 7, duration=1.5, wrap_source=dropping("default/cm-000", 3))
    message = str(failure.value)
    assert "profile=calm seed=7" in message
    assert "differs from the server's state" in message
    assert "--seed 7" in message
    assert "on_batch" in message
    assert "request" in message


async def test_a_stale_replay_fails_the_run() -> None:
    with pytest.raises(ChaosFailure) as failure:
        # One-second watches: every re-watch replays the first event.
        await run_scenario("calm", 8, duration=2.5, wrap_source=replaying, watch_timeout=1)
    message = str(failure.value)
    # The replayed event is older than a newer snapshot, or older than the key's newest
    # applied version, or that very version again: which one depends on the interleaving.
    assert any(
        text in message
        for text in ("delivered after the snapshot", "applied RV went back", "was delivered again")
    ), message.splitlines()[0]


async def test_a_client_without_backoff_fails_the_blackout() -> None:
    with pytest.raises(ChaosFailure) as failure:
        await run_scenario("errors", 1, duration=2.0, backoff=Backoff(initial=0.0, cap=0.0))
    assert "hot loop" in str(failure.value)
