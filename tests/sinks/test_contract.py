"""The sink contract (``listwatch.sinks._base``), once, for every backend: the ``sink``,
``store`` and ``sink_factory`` fixtures run each test against SQLite and PostgreSQL.

Lifecycle; ``on_list`` as the snapshot boundary; ``on_batch``; every write all or nothing
(a bad object, a key function, a list error, a cancellation) while readers see the last
committed state; the epoch fence and the ordering rules of ``listwatch.fencing``; a store
of sinks; and a property test: the mirror equals a dict model after any sequence of writes.
What only one backend does (WAL, COPY, schemas, crashes of a writer) is tested in its own
files. Pauses in the middle of a write come from the backend's gate (``SinkFactory.gate``),
never from sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncGenerator
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import listwatch
from listwatch import Batch, Event, EventType, Item, Page, Snapshot, StaleEpoch
from listwatch.errors import StaleWrite
from listwatch.sinks._base import Sink, SinkStore, SyncState

from .helpers import (
    LOCK_WAIT,
    NEXT,
    PREVIOUS,
    SinkFactory,
    batch,
    by_key,
    configmap,
    event,
    nested,
    raw_event,
    raw_item,
    snapshot,
    write_previous,
)

ADDED, MODIFIED, DELETED = EventType.ADDED, EventType.MODIFIED, EventType.DELETED
OLD = [configmap("old-1", 1), configmap("shared", 2, by="old")]
NEW = [configmap("new-1", 3), configmap("shared", 4, by="new")]


async def assert_previous(factory: SinkFactory, sink: Sink[Any], previous: SyncState) -> None:
    """The sink's readers, and another process, see the state ``write_previous`` left."""
    assert await sink.objects() == by_key(*PREVIOUS)
    assert await sink.sync_state() == previous
    assert await factory.read("configmaps") == (by_key(*PREVIOUS), previous)


def stamped_snapshot(
    *objs: dict[str, Any], rv: str, epoch: int, session: str, generation: int = 1
) -> Snapshot:
    return Snapshot.of(objs, rv, generation=generation, epoch=epoch, session=session)


def stamped_batch(
    *events: Event, rv: str, epoch: int, session: str, sequence: int, generation: int = 1
) -> Batch:
    return Batch(
        {e.key: e for e in events},
        rv,
        generation,
        epoch=epoch,
        session=session,
        sequence=sequence,
    )


# -- lifecycle -------------------------------------------------------------------------------


async def test_open_and_close_without_context_manager(sink_factory: SinkFactory) -> None:
    sink = sink_factory.sink("pods")
    await sink.open()
    try:
        await sink.on_list(snapshot(configmap("a")))
        assert await sink.count() == 1
    finally:
        await sink.close()
    await sink.close()  # closing twice is fine
    await sink.open()  # and a closed sink opens again, onto the same data
    try:
        assert await sink.count() == 1
    finally:
        await sink.close()


async def test_use_before_open_says_so(sink_factory: SinkFactory) -> None:
    sink = sink_factory.sink("pods")
    with pytest.raises(RuntimeError, match="not open"):
        await sink.on_list(snapshot(configmap("a")))
    with pytest.raises(RuntimeError, match="not open"):
        await sink.on_batch(batch(rv="1"))
    with pytest.raises(RuntimeError, match="not open"):
        await sink.objects()
    with pytest.raises(RuntimeError, match="not open"):
        await sink.get("default/a")
    with pytest.raises(RuntimeError, match="not open"):
        await sink.count()
    with pytest.raises(RuntimeError, match="not open"):
        await sink.sync_state()


async def test_use_after_close_says_so(sink_factory: SinkFactory) -> None:
    async with sink_factory.sink("pods") as sink:
        pass
    with pytest.raises(RuntimeError, match="not open"):
        await sink.count()


async def test_opening_twice_is_an_error(sink: Sink[Any]) -> None:
    with pytest.raises(RuntimeError, match="already open"):
        await sink.open()


def test_the_resource_must_be_named(sink_factory: SinkFactory) -> None:
    with pytest.raises(ValueError, match="resource"):
        sink_factory.sink("")


# -- on_list ---------------------------------------------------------------------------------


async def test_on_list_stores_objects_and_sync_state(
    sink_factory: SinkFactory, sink: Sink[Any]
) -> None:
    a, b = configmap("a", 10, x="1"), configmap("b", 11, namespace="kube-system")
    before = time.time()
    await sink.on_list(snapshot(a, b, rv="42", generation=3))
    after = time.time()

    assert await sink.objects() == by_key(a, b)
    assert await sink.get("default/a") == a
    assert await sink.get("kube-system/b") == b
    assert await sink.get("default/missing") is None
    assert await sink.count() == 2
    state = await sink.sync_state()
    assert state is not None
    assert (state.resource, state.resource_version, state.generation, state.epoch) == (
        "configmaps",
        "42",
        3,
        0,
    )
    slack = sink_factory.clock_slack
    assert before - slack <= state.synced_at <= after + slack
    assert state.listed_at == state.synced_at

    stored = await sink_factory.stored("configmaps")
    assert stored["default/a"].resource_version == "10"
    assert stored["kube-system/b"].resource_version == "11"


async def test_on_list_replaces_and_deletes_vanished_objects(
    sink_factory: SinkFactory, sink: Sink[Any]
) -> None:
    a, b, c = configmap("a", 1), configmap("b", 2), configmap("c", 3)
    await sink.on_list(snapshot(a, b, c, rv="10"))
    b2, d = configmap("b", 20, changed="yes"), configmap("d", 21)
    await sink.on_list(snapshot(b2, d, rv="30", generation=2))

    assert await sink.objects() == by_key(b2, d)
    state = await sink.sync_state()
    assert state is not None
    assert (state.resource_version, state.generation) == ("30", 2)
    assert await sink_factory.read("configmaps") == (by_key(b2, d), state)


async def test_a_snapshot_of_many_pages_replaces_across_pages(sink: Sink[Any]) -> None:
    first = [configmap(f"cm-{i:04d}", i) for i in range(1200)]
    await sink.on_list(Snapshot.of(first, "2000", generation=1, page_size=250))
    second = [configmap(f"cm-{i:04d}", i) for i in range(600, 1800)]
    await sink.on_list(Snapshot.of(second, "3000", generation=2, page_size=250))
    assert await sink.objects() == by_key(*second)
    assert await sink.count() == 1200


async def test_an_empty_snapshot_empties_the_resource(sink: Sink[Any]) -> None:
    """An empty snapshot is the news that everything is gone (skipping it would keep every
    deleted object)."""
    await sink.on_list(snapshot(configmap("a"), configmap("b"), rv="10"))
    await sink.on_list(snapshot(rv="11", generation=2))
    assert await sink.objects() == {}
    assert await sink.count() == 0
    state = await sink.sync_state()
    assert state is not None
    assert (state.resource_version, state.generation) == ("11", 2)


async def test_on_list_leaves_other_resources_alone(sink_factory: SinkFactory) -> None:
    pod = {"kind": "Pod", "metadata": {"name": "a", "namespace": "default", "uid": "p"}}
    async with sink_factory.sink("configmaps") as configmaps, sink_factory.sink("pods") as pods:
        await pods.on_list(snapshot(pod, rv="7"))
        await configmaps.on_list(snapshot(configmap("a"), configmap("b"), rv="10"))
        # Same key "default/a" in both resources; replacing one must not touch the other.
        await configmaps.on_list(snapshot(configmap("b"), rv="11", generation=2))
        await configmaps.on_batch(batch(event(DELETED, configmap("b")), rv="12", generation=2))

        assert await pods.objects() == {"default/a": pod}
        assert await configmaps.objects() == {}
        pods_state = await pods.sync_state()
        assert pods_state is not None
        assert (pods_state.resource_version, pods_state.generation) == ("7", 1)


async def test_unchanged_objects_are_not_rewritten(
    sink_factory: SinkFactory, sink: Sink[Any]
) -> None:
    a, b = configmap("a", 1), configmap("b", 2)
    await sink.on_list(snapshot(a, b, rv="10"))
    first_state, first = await sink.sync_state(), await sink_factory.stored("configmaps")
    b2 = configmap("b", 3, changed="yes")
    await sink.on_list(snapshot(a, b2, rv="11", generation=2))
    second_state, second = await sink.sync_state(), await sink_factory.stored("configmaps")
    assert first_state is not None
    assert second_state is not None

    # a: the same RV and JSON: not written again.
    assert second["default/a"].updated_at == first["default/a"].updated_at
    assert second["default/a"].updated_at == pytest.approx(first_state.synced_at, abs=1e-5)
    # b changed: rewritten, and stamped with the write's time.
    assert second["default/b"].updated_at == pytest.approx(second_state.synced_at, abs=1e-5)
    assert second["default/b"].resource_version == "3"

    # The same RV with other JSON (a transform changed) is a change too.
    a_same_rv_new_json = configmap("a", 1, transformed="differently")
    await sink.on_list(snapshot(a_same_rv_new_json, b2, rv="12", generation=3))
    third_state, third = await sink.sync_state(), await sink_factory.stored("configmaps")
    assert third_state is not None
    assert third["default/a"].object == a_same_rv_new_json
    assert third["default/a"].updated_at == pytest.approx(third_state.synced_at, abs=1e-5)
    assert third["default/b"].updated_at == second["default/b"].updated_at


async def test_a_custom_key_function(sink_factory: SinkFactory) -> None:
    def by_uid(obj: dict[str, Any]) -> str:
        return str(obj["metadata"]["uid"])

    a = {"metadata": {"name": "a", "uid": "u-1", "resourceVersion": "5"}}
    async with sink_factory.sink("things", key=by_uid) as sink:
        await sink.on_list(snapshot(a, rv="5"))
        assert await sink.objects() == {"u-1": a}
        await sink.on_batch(
            batch(event(MODIFIED, {**a, "spec": {"x": 1}}), rv="6")
        )  # the batch's key is "a"; the sink keys the object by its uid, as on_list does
        assert await sink.objects() == {"u-1": {**a, "spec": {"x": 1}}}


async def test_duplicate_keys_keep_the_last(sink: Sink[Any]) -> None:
    # Within a page, and across pages.
    await sink.on_list(snapshot(configmap("a", 1, v="old"), configmap("a", 2, v="new")))
    assert await sink.objects() == by_key(configmap("a", 2, v="new"))
    pages = [configmap("a", 3, v="page1"), configmap("b", 1), configmap("a", 4, v="page2")]
    await sink.on_list(Snapshot.of(pages, "5", generation=2, page_size=2))
    assert await sink.objects() == by_key(configmap("a", 4, v="page2"), configmap("b", 1))


async def test_an_unserialisable_transformed_object_is_named(sink: Sink[Any]) -> None:
    bad = Item.of(configmap("bad", 2)).with_transform(lambda obj: {**obj, "x": object()})
    with pytest.raises(TypeError, match="default/bad"):
        await sink.on_list(Snapshot.of([Item.of(configmap("a", 1)), bad], "3"))
    assert await sink.count() == 0
    assert await sink.sync_state() is None


# -- quarantine: an object no reader could read as JSON ---------------------------------------

UNREADABLE = {
    "not-utf8": b'{"metadata":{"name":"bad","namespace":"default","resourceVersion":"5"},'
    b'"data":{"v":"\xff\xfe"}}',
    "2000-deep": nested(2000, "bad", "5"),
    "600-deep": nested(600, "bad", "5"),
}
UNREADABLE_WHY = {
    "not-utf8": r"^its JSON is not valid UTF-8 \(byte \d+\)$",
    "2000-deep": r"^it nests deeper than 512 levels$",
    "600-deep": r"^it nests deeper than 512 levels$",
}


@pytest.mark.parametrize("kind", list(UNREADABLE))
async def test_an_object_no_reader_could_read_as_json_is_quarantined_and_the_rest_written(
    sink_factory: SinkFactory, sink: Sink[Any], kind: str
) -> None:
    """Kept byte for byte with why, beside the JSON rows, through a snapshot, a relist and
    a batch; out of quarantine once it is JSON again, gone once deleted."""
    raw, good = UNREADABLE[kind], [configmap("a", 1), configmap("b", 2)]
    listed = Snapshot.of([*map(Item.of, good), raw_item("default/bad", "5", raw)], "10")
    await sink.on_list(listed)
    kept = await sink.quarantined()
    assert list(kept) == ["default/bad"]
    assert (kept["default/bad"].raw, kept["default/bad"].resource_version) == (raw, "5")
    assert re.search(UNREADABLE_WHY[kind], kept["default/bad"].reason)
    assert listed.quarantined == {"default/bad": kept["default/bad"].reason}
    assert await sink.objects() == by_key(*good)
    assert await sink.get("default/bad") is None
    assert await sink.count() == 3
    assert (await sink_factory.read("configmaps"))[0] == by_key(*good)

    relisted_items = [Item.of(good[0]), raw_item("default/bad", "5", raw)]
    relisted = Snapshot.of(relisted_items, "11", generation=2)
    await sink.on_list(relisted)
    assert relisted.quarantined == listed.quarantined
    assert await sink.quarantined() == kept
    assert await sink.objects() == by_key(good[0])

    again = raw_event(MODIFIED, "default/bad", "12", raw[:-1] + b" }")
    changes = Batch({"default/bad": again}, "12", 2)
    await sink.on_batch(changes)
    assert changes.quarantined == listed.quarantined
    assert (await sink.quarantined())["default/bad"].raw == raw[:-1] + b" }"

    fixed = Batch({"default/bad": event(MODIFIED, configmap("bad", 13))}, "13", 2)
    await sink.on_batch(fixed)
    assert fixed.quarantined == {}
    assert await sink.quarantined() == {}
    assert await sink.get("default/bad") == configmap("bad", 13)

    await sink.on_batch(Batch({"default/bad": raw_event(ADDED, "default/bad", "14", raw)}, "14", 2))
    await sink.on_list(Snapshot.of([Item.of(good[0])], "15", generation=3))
    assert await sink.quarantined() == {}
    assert await sink.count() == 1


# -- on_batch --------------------------------------------------------------------------------


async def test_on_batch_applies_upserts_and_deletes(
    sink_factory: SinkFactory, sink: Sink[Any]
) -> None:
    a, b, c = configmap("a", 1), configmap("b", 2), configmap("c", 3)
    await sink.on_list(snapshot(a, b, c, rv="10"))
    listed = await sink.sync_state()

    new, b2 = configmap("new", 11), configmap("b", 12, x="changed")
    await sink.on_batch(
        batch(
            event(ADDED, new),
            event(MODIFIED, b2),
            event(DELETED, configmap("c", 13)),
            event(DELETED, configmap("never-seen", 14)),  # deleting an unknown key is fine
            rv="14",
        )
    )

    assert await sink.objects() == by_key(a, b2, new)
    assert (await sink_factory.stored("configmaps"))["default/b"].resource_version == "12"
    state = await sink.sync_state()
    assert state is not None
    assert listed is not None
    assert (state.resource_version, state.generation) == ("14", 1)
    assert state.synced_at >= listed.synced_at
    assert state.listed_at == listed.listed_at  # a batch is not a snapshot


async def test_batches_apply_in_order(sink: Sink[Any]) -> None:
    await sink.on_list(snapshot(configmap("a", 1), rv="1"))
    await sink.on_batch(batch(event(DELETED, configmap("a", 2)), rv="2"))
    assert await sink.get("default/a") is None
    await sink.on_batch(batch(event(ADDED, configmap("a", 3, again="yes")), rv="3"))
    await sink.on_batch(batch(event(MODIFIED, configmap("b", 4)), rv="4"))
    await sink.on_batch(batch(event(DELETED, configmap("b", 5)), rv="5"))
    assert await sink.objects() == by_key(configmap("a", 3, again="yes"))
    state = await sink.sync_state()
    assert state is not None
    assert state.resource_version == "5"


async def test_an_empty_batch_advances_the_resource_version(sink: Sink[Any]) -> None:
    a = configmap("a", 1)
    await sink.on_list(snapshot(a, rv="10"))
    await sink.on_batch(batch(rv="99"))
    assert await sink.objects() == by_key(a)
    state = await sink.sync_state()
    assert state is not None
    assert state.resource_version == "99"


async def test_a_batch_without_resource_version_keeps_the_resume_point(sink: Sink[Any]) -> None:
    await sink.on_list(snapshot(rv="10"))
    await sink.on_batch(batch(event(ADDED, configmap("a")), rv=""))
    state = await sink.sync_state()
    assert state is not None
    assert state.resource_version == "10"
    assert await sink.count() == 1


async def test_a_batch_before_any_snapshot_creates_the_sync_state(sink: Sink[Any]) -> None:
    await sink.on_batch(batch(event(ADDED, configmap("a")), rv="5", generation=2))
    state = await sink.sync_state()
    assert state is not None
    assert (state.resource_version, state.generation, state.listed_at) == ("5", 2, None)


@pytest.mark.parametrize("kind", [EventType.BOOKMARK, EventType.ERROR])
async def test_a_batch_cannot_hold_bookmarks_or_errors(sink: Sink[Any], kind: EventType) -> None:
    await sink.on_list(snapshot(configmap("a"), rv="10"))
    bad = Batch({"default/b": Event(kind, configmap("b"), "default/b", "11")}, "11", 1)
    with pytest.raises(ValueError, match=str(kind)):
        await sink.on_batch(bad)
    state = await sink.sync_state()
    assert state is not None
    assert state.resource_version == "10"


# -- readers ---------------------------------------------------------------------------------


async def test_sync_state_is_a_frozen_value(sink_factory: SinkFactory, sink: Sink[Any]) -> None:
    await sink.on_list(snapshot(rv="10", generation=4, epoch=2))
    state = await sink.sync_state()
    assert isinstance(state, SyncState)
    assert (state.resource_version, state.generation, state.epoch) == ("10", 4, 2)
    assert isinstance(state.synced_at, float)
    with pytest.raises(AttributeError):
        state.generation = 3  # type: ignore[misc]
    assert (await sink_factory.read("configmaps"))[1] == state


async def test_sinks_of_several_resources_write_concurrently(sink_factory: SinkFactory) -> None:
    async with (
        sink_factory.sink("configmaps") as configmaps,
        sink_factory.sink("secrets") as secrets,
    ):

        async def churn(sink: Sink[Any], prefix: str) -> None:
            await sink.on_list(snapshot(*(configmap(f"{prefix}{i}") for i in range(50))))
            for round_ in range(20):
                await sink.on_batch(
                    batch(
                        event(MODIFIED, configmap(f"{prefix}{round_}", round_, r=str(round_))),
                        event(DELETED, configmap(f"{prefix}{round_ + 25}")),
                        rv=str(round_),
                    )
                )

        await asyncio.gather(churn(configmaps, "c"), churn(secrets, "s"))
        assert await configmaps.count() == 30
        assert await secrets.count() == 30
        assert await configmaps.get("default/c3") == configmap("c3", 3, r="3")
        assert await secrets.get("default/s30") is None


# -- every write is all or nothing -----------------------------------------------------------


async def test_a_batch_that_fails_half_way_changes_nothing(
    sink_factory: SinkFactory, sink: Sink[Any]
) -> None:
    previous = await write_previous(sink)
    unserialisable = configmap("bad", 13)
    unserialisable["data"] = {"payload": object()}  # orjson cannot serialise this
    failing = batch(
        event(ADDED, configmap("new", 11)),
        event(MODIFIED, configmap("a", 12, v="changed")),
        event(DELETED, configmap("c", 12)),
        event(ADDED, unserialisable),
        event(ADDED, configmap("after", 14)),
        rv="14",
    )
    with pytest.raises(TypeError, match="default/bad"):
        await sink.on_batch(failing)

    await assert_previous(sink_factory, sink, previous)
    assert not await sink_factory.writing()
    # The sink is usable again: no transaction was left open.
    await sink.on_batch(batch(event(DELETED, configmap("a", 15)), rv="15"))
    assert await sink.objects() == by_key(*PREVIOUS[1:])


@pytest.mark.parametrize("page_size", [500, 5], ids=["one-page", "a-later-page"])
async def test_a_snapshot_that_fails_half_way_changes_nothing(
    sink_factory: SinkFactory, sink: Sink[Any], page_size: int
) -> None:
    previous = await write_previous(sink)
    unserialisable = configmap("bad", 99)
    unserialisable["data"] = {"payload": {1, 2}}
    # Would delete a and c (vanished) and rewrite b before reaching the bad object.
    failing = [*NEXT, unserialisable, configmap("z")]
    with pytest.raises(TypeError, match="default/bad"):
        await sink.on_list(Snapshot.of(failing, "20", generation=2, page_size=page_size))
    await assert_previous(sink_factory, sink, previous)
    assert not await sink_factory.writing()


@pytest.mark.parametrize("page_size", [500, 3], ids=["one-page", "a-later-page"])
async def test_a_key_function_that_fails_half_way_changes_nothing(
    sink_factory: SinkFactory, page_size: int
) -> None:
    def key(obj: dict[str, Any]) -> str:
        if obj["metadata"]["name"] == "n7":
            raise ValueError("no key for n7")
        return str(obj["metadata"]["name"])

    async with sink_factory.sink(key=key) as sink:
        await sink.on_list(snapshot(*PREVIOUS, rv="10"))
        previous = await sink.sync_state()
        with pytest.raises(ValueError, match="no key for n7"):
            await sink.on_list(Snapshot.of(NEXT, "21", generation=3, page_size=page_size))
        assert set(await sink.objects()) == {"a", "b", "c"}
        assert await sink.sync_state() == previous
    assert not await sink_factory.writing()


async def test_a_list_error_raised_out_of_the_iteration_changes_nothing(
    sink_factory: SinkFactory, sink: Sink[Any]
) -> None:
    """A continue token that expires while the sink writes: the error comes out of the
    sink's iteration of the snapshot, after a page was written, and it is all rolled back."""
    previous = await write_previous(sink)

    async def pages() -> AsyncGenerator[Page, None]:
        yield Page([Item.of(obj) for obj in NEXT[:5]], "20", "token")
        raise listwatch.ResourceExpired(
            410, "Expired", "The provided continue parameter is too old"
        )

    with pytest.raises(listwatch.ResourceExpired):
        await sink.on_list(Snapshot(pages(), resource_version="20", generation=2))
    await assert_previous(sink_factory, sink, previous)
    assert not await sink_factory.writing()


async def test_a_cancelled_write_rolls_back(sink_factory: SinkFactory, sink: Sink[Any]) -> None:
    previous = await write_previous(sink)
    gate = sink_factory.gate(NEXT)
    task = asyncio.create_task(sink.on_list(gate.snapshot))
    try:
        await gate.wait_reached()
        assert not await sink_factory.writing()  # staging: no write transaction is open
        task.cancel()
    finally:
        gate.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task

    await assert_previous(sink_factory, sink, previous)
    assert not await sink_factory.writing()  # rolled back before the cancellation surfaced
    await sink.on_list(snapshot(*NEXT, rv="21", generation=3))
    assert await sink.objects() == by_key(*NEXT)


async def test_a_write_cut_by_a_cancel_scope_rolls_back(
    sink_factory: SinkFactory, sink: Sink[Any]
) -> None:
    """The Syncer bounds receiver calls with a cancel scope (``sync_timeout``), which keeps
    cancelling while the call cleans up (its rollback is cancelled too); the rollback must
    happen all the same."""
    previous = await write_previous(sink)
    gate = sink_factory.gate(NEXT)
    with anyio.CancelScope() as scope:

        async def cancel_when_reached() -> None:
            await gate.wait_reached()
            scope.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(cancel_when_reached)
            await sink.on_list(gate.snapshot)
    assert scope.cancelled_caught
    gate.release.set()

    await assert_previous(sink_factory, sink, previous)
    # The next write waits for the rollback that the cancellation may have left running.
    async with asyncio.timeout(LOCK_WAIT):
        await sink.on_batch(batch(event(ADDED, configmap("d", 30)), rv="30", generation=2))
    assert await sink.objects() == by_key(*PREVIOUS, configmap("d", 30))
    assert not await sink_factory.writing()


async def test_readers_see_the_previous_state_while_a_snapshot_stages(
    sink_factory: SinkFactory, sink: Sink[Any]
) -> None:
    previous = await write_previous(sink)
    gate = sink_factory.gate(NEXT)
    task = asyncio.create_task(sink.on_list(gate.snapshot))
    try:
        await gate.wait_reached()
        assert not await sink_factory.writing()  # half staged, and no write transaction
        # Another connection, as another process would have it, reads the committed state...
        assert await sink_factory.read("configmaps") == (by_key(*PREVIOUS), previous)
        # ...and so do the sink's own readers, which do not queue behind its write.
        assert await sink.objects() == by_key(*PREVIOUS)
        assert await sink.get("default/n0") is None
        assert await sink.count() == len(PREVIOUS)
        assert await sink.sync_state() == previous
        assert not task.done()
    finally:
        gate.release.set()
    await task

    state = await sink.sync_state()
    assert state is not None
    assert (state.resource_version, state.generation) == ("20", 2)
    assert await sink_factory.read("configmaps") == (by_key(*NEXT), state)
    assert await sink.objects() == by_key(*NEXT)


async def test_close_waits_for_a_transaction_in_progress(sink_factory: SinkFactory) -> None:
    """A batch waits for a lock another process holds; close(), called meanwhile, queues
    behind it, and the batch commits before the sink closes."""
    sink = sink_factory.sink()
    await sink.open()
    await write_previous(sink)
    async with sink_factory.held():
        # Tasks run in the order they were made: the batch takes the sink's turn first.
        write = asyncio.create_task(
            sink.on_batch(batch(event(ADDED, configmap("d", 30)), rv="30", generation=1))
        )
        close = asyncio.create_task(sink.close())
        await asyncio.sleep(0)
        assert not write.done()
        assert not close.done()
    async with asyncio.timeout(LOCK_WAIT):
        await write
        await close
    assert (await sink_factory.read("configmaps"))[0] == by_key(*PREVIOUS, configmap("d", 30))
    with pytest.raises(RuntimeError, match="not open"):
        await sink.count()


async def test_close_does_not_wait_for_a_snapshot_still_staging(
    sink_factory: SinkFactory,
) -> None:
    """A snapshot that is staging holds nothing close() needs: the sink closes at once, and
    the snapshot, released later, fails and changes nothing."""
    sink = sink_factory.sink()
    await sink.open()
    previous = await write_previous(sink)
    gate = sink_factory.gate(NEXT)
    write = asyncio.create_task(sink.on_list(gate.snapshot))
    try:
        await gate.wait_reached()
        async with asyncio.timeout(LOCK_WAIT):
            await sink.close()
    finally:
        gate.release.set()
    with pytest.raises(RuntimeError, match="not open"):
        await write
    assert await sink_factory.read("configmaps") == (by_key(*PREVIOUS), previous)


# -- no writer waits for a snapshot being staged ---------------------------------------------


async def test_a_snapshot_being_staged_holds_up_no_other_writer(
    sink_factory: SinkFactory,
) -> None:
    """The old leader (epoch 1) is in the middle of a snapshot, its stream stopped. Meanwhile
    another resource's batch and snapshot land, and so does the new leader's (epoch 2)
    snapshot of the same resource; the old leader's snapshot, when its stream goes on, is
    refused at its swap and changes nothing."""
    async with (
        sink_factory.sink("configmaps") as old,
        sink_factory.sink("configmaps") as new,
        sink_factory.sink("secrets") as secrets,
    ):
        await old.on_list(snapshot(*PREVIOUS, rv="10", epoch=1))
        await secrets.on_list(snapshot(configmap("s", 1), rv="11", epoch=1))
        gate = sink_factory.gate(OLD, epoch=1)
        stalled = asyncio.create_task(old.on_list(gate.snapshot))
        try:
            await gate.wait_reached()
            async with asyncio.timeout(LOCK_WAIT):
                await secrets.on_batch(
                    batch(event(ADDED, configmap("t", 12)), rv="12", generation=1, epoch=1)
                )
                await secrets.on_list(snapshot(configmap("u", 13), rv="13", epoch=1))
                await new.on_list(snapshot(*NEW, rv="14", generation=3, epoch=2))
            assert await sink_factory.highest_epoch() == 2
            assert (await sink_factory.read("configmaps"))[0] == by_key(*NEW)
            assert (await sink_factory.read("secrets"))[0] == by_key(configmap("u", 13))
            assert not stalled.done()
        finally:
            gate.release.set()
        with pytest.raises(StaleEpoch):
            await stalled
        assert (await sink_factory.read("configmaps"))[0] == by_key(*NEW)
        assert not await sink_factory.writing()


async def test_two_snapshots_of_one_sink_stage_at_once(sink_factory: SinkFactory) -> None:
    """Two senders of one resource (through one receiver's sink): the second snapshot does
    not wait for the first, stopped mid-stream; each is swapped in as it ends."""
    async with sink_factory.sink() as sink:
        await write_previous(sink)
        gate = sink_factory.gate(OLD)
        first = asyncio.create_task(sink.on_list(gate.snapshot))
        try:
            await gate.wait_reached()
            async with asyncio.timeout(LOCK_WAIT):
                await sink.on_list(snapshot(*NEW, rv="30", generation=3))
            assert await sink.objects() == by_key(*NEW)
        finally:
            gate.release.set()
        await first
        assert await sink.objects() == by_key(*OLD)
        state = await sink.sync_state()
        assert state is not None
        assert state.resource_version == "20"


async def test_rows_changed_while_a_snapshot_was_staged_refuse_it(
    sink_factory: SinkFactory, sink: Sink[Any]
) -> None:
    """The snapshot stages b unchanged, then pauses; another write changes b before the
    swap: the swap is refused (the snapshot compared b with a row that is gone), and b keeps
    that write."""
    await write_previous(sink)
    gate = sink_factory.gate([PREVIOUS[1], configmap("n", 30)])
    staged = asyncio.create_task(sink.on_list(gate.snapshot))
    try:
        await gate.wait_reached()
        changed_b = configmap("b", 31, v="changed")
        async with asyncio.timeout(LOCK_WAIT):
            await sink.on_batch(batch(event(MODIFIED, changed_b), rv="31"))
    finally:
        gate.release.set()
    with pytest.raises(StaleWrite, match="changed the rows while it was staged"):
        await staged
    assert (await sink_factory.read("configmaps"))[0] == by_key(PREVIOUS[0], changed_b, PREVIOUS[2])


async def test_a_snapshot_whose_unchanged_rows_were_deleted_meanwhile_is_refused(
    sink_factory: SinkFactory, sink: Sink[Any]
) -> None:
    """As above, but another write deletes every row before the swap, so the swap writes
    into an empty resource (SQLite's plain INSERT, not its upsert): b, staged unchanged, is
    still refused, and the resource stays as that write left it."""
    await write_previous(sink)
    gate = sink_factory.gate([PREVIOUS[1], configmap("n", 30)])
    staged = asyncio.create_task(sink.on_list(gate.snapshot))
    try:
        await gate.wait_reached()
        async with asyncio.timeout(LOCK_WAIT):
            await sink.on_batch(batch(*(event(DELETED, obj) for obj in PREVIOUS), rv="31"))
    finally:
        gate.release.set()
    with pytest.raises(StaleWrite, match="changed the rows while it was staged"):
        await staged
    assert (await sink_factory.read("configmaps"))[0] == {}
    assert await sink.count() == 0


# -- the fence: epochs, generations, sequences -----------------------------------------------


async def test_a_lower_epoch_is_refused_and_changes_nothing(
    sink_factory: SinkFactory, sink: Sink[Any]
) -> None:
    await sink.on_list(stamped_snapshot(*NEW, rv="10", epoch=7, session="new-leader"))
    state = await sink.sync_state()
    assert state is not None
    assert state.epoch == 7
    assert await sink_factory.highest_epoch() == 7
    before = await sink_factory.read("configmaps")

    with pytest.raises(StaleEpoch, match="epoch 6: the receiver has recorded epoch 7") as refused:
        await sink.on_list(
            stamped_snapshot(*OLD, rv="11", epoch=6, session="old-leader", generation=2)
        )
    assert (refused.value.resource, refused.value.epoch, refused.value.recorded) == (
        "configmaps",
        6,
        7,
    )
    with pytest.raises(StaleEpoch):
        await sink.on_batch(
            stamped_batch(event(DELETED, NEW[0]), rv="12", epoch=6, session="old", sequence=1)
        )
    assert await sink_factory.read("configmaps") == before
    assert await sink.sync_state() == state
    assert await sink_factory.highest_epoch() == 7
    assert not await sink_factory.writing()


async def test_a_higher_epoch_takes_over_and_the_same_epoch_goes_on(
    sink_factory: SinkFactory, sink: Sink[Any]
) -> None:
    await sink.on_list(snapshot(*OLD, rv="10", epoch=1))
    await sink.on_list(snapshot(*NEW, rv="11", generation=2, epoch=2))
    assert await sink_factory.highest_epoch() == 2
    await sink.on_batch(batch(event(ADDED, configmap("more", 5)), rv="12", generation=2, epoch=2))
    assert await sink.objects() == by_key(*NEW, configmap("more", 5))
    state = await sink.sync_state()
    assert state is not None
    assert state.epoch == 2


async def test_the_fence_covers_every_resource_of_the_database(sink_factory: SinkFactory) -> None:
    """One agent's resources share one leader: the new leader has written pods, so the old
    one must not write nodes either."""
    async with sink_factory.sink("pods") as pods, sink_factory.sink("nodes") as nodes:
        await nodes.on_list(stamped_snapshot(configmap("n", 1), rv="1", epoch=3, session="old"))
        await pods.on_list(stamped_snapshot(configmap("p", 2), rv="2", epoch=4, session="new"))
        with pytest.raises(StaleEpoch):
            await nodes.on_batch(
                stamped_batch(
                    event(ADDED, configmap("m", 3)), rv="3", epoch=3, session="old", sequence=1
                )
            )
        with pytest.raises(StaleEpoch):
            await nodes.on_list(stamped_snapshot(*NEW, rv="4", epoch=3, session="old"))
        assert set(await nodes.objects()) == {"default/n"}


async def test_a_new_sink_on_the_same_database_sees_the_recorded_epoch(
    sink_factory: SinkFactory,
) -> None:
    async with sink_factory.sink() as first:
        await first.on_list(snapshot(*NEW, rv="10", epoch=7))
    async with sink_factory.sink() as restarted:
        with pytest.raises(StaleEpoch):
            await restarted.on_list(snapshot(*OLD, rv="11", epoch=6))
        assert await restarted.objects() == by_key(*NEW)


async def test_a_batch_of_an_older_generation_is_refused(sink: Sink[Any]) -> None:
    await sink.on_list(Snapshot.of([configmap("a", 1)], "10", generation=3, session="s"))
    old = Batch({"default/a": event(DELETED, configmap("a", 11))}, "11", 2, session="s", sequence=1)
    with pytest.raises(StaleWrite, match="holds generation 3"):
        await sink.on_batch(old)
    assert await sink.objects() == by_key(configmap("a", 1))
    assert await sink.count() == 1


async def test_a_replayed_batch_changes_nothing(sink: Sink[Any]) -> None:
    """At-least-once delivery: a retried request, even after a newer batch, has no effect."""
    await sink.on_list(stamped_snapshot(configmap("a", 1), rv="1", epoch=1, session="s"))
    first = stamped_batch(
        event(MODIFIED, configmap("a", 2, v="2")), rv="2", epoch=1, session="s", sequence=1
    )
    second = stamped_batch(
        event(MODIFIED, configmap("a", 3, v="3")), rv="3", epoch=1, session="s", sequence=2
    )
    await sink.on_batch(first)
    await sink.on_batch(second)
    await sink.on_batch(first)
    assert await sink.objects() == by_key(configmap("a", 3, v="3"))
    state = await sink.sync_state()
    assert state is not None
    assert (state.resource_version, state.sequence, state.session) == ("3", 2, "s")


async def test_a_batch_after_a_missing_one_is_refused(sink: Sink[Any]) -> None:
    await sink.on_list(stamped_snapshot(configmap("a", 1), rv="1", epoch=1, session="s"))
    with pytest.raises(StaleWrite, match="one went missing"):
        await sink.on_batch(
            stamped_batch(
                event(MODIFIED, configmap("a", 3)), rv="3", epoch=1, session="s", sequence=2
            )
        )
    assert await sink.objects() == by_key(configmap("a", 1))


async def test_an_older_snapshot_of_the_same_epoch_is_refused(
    sink_factory: SinkFactory, sink: Sink[Any]
) -> None:
    """A snapshot replayed from an earlier sync of the same leader (another session's
    request, retried late) would take the mirror back from RV 301 to 200: refused by the
    sink's own fence, nothing changes. A newer leader's snapshot is the truth whatever its
    RV."""
    await sink.on_list(stamped_snapshot(*OLD, rv="200", epoch=3, session="first"))
    await sink.on_list(stamped_snapshot(*NEW, rv="301", epoch=3, session="second"))
    before = await sink_factory.read("configmaps")
    with pytest.raises(StaleWrite, match="holds resourceVersion 301 of the same epoch"):
        await sink.on_list(stamped_snapshot(*OLD, rv="200", epoch=3, session="first"))
    assert await sink_factory.read("configmaps") == before
    await sink.on_list(stamped_snapshot(*OLD, rv="250", epoch=4, session="third"))
    assert await sink.objects() == by_key(*OLD)


# -- a store: a sink per resource ------------------------------------------------------------


async def test_a_store_opens_one_sink_per_resource_and_closes_them(store: SinkStore[Any]) -> None:
    pods = await store.sink("pods")
    assert await store.sink("pods") is pods
    configmaps = await store.sink("configmaps")
    assert configmaps is not pods
    await pods.on_list(snapshot(configmap("a"), rv="1"))
    await configmaps.on_list(snapshot(configmap("a"), configmap("b"), rv="2"))
    assert await pods.count() == 1
    assert await configmaps.count() == 2
    await store.close()
    for closed in (pods, configmaps):
        with pytest.raises(RuntimeError, match="not open"):
            await closed.count()


# -- the sink equals a dict model after any sequence of writes ------------------------------

_names = st.sampled_from(["a", "b", "c", "d", "e"])
# Values every backend stores: text that is valid UTF-8 (no lone surrogates) without U+0000,
# which PostgreSQL's jsonb refuses (test_postgres_sink.py).
_values = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=3)
_snapshot_op = st.tuples(st.just("list"), st.dictionaries(_names, _values, max_size=5))
_batch_op = st.tuples(
    st.just("batch"),
    st.dictionaries(
        _names, st.tuples(st.sampled_from([ADDED, MODIFIED, DELETED]), _values), max_size=5
    ),
)
_examples = itertools.count()


async def _apply(ops: list[tuple[str, dict[str, Any]]], factory: SinkFactory) -> None:
    model: dict[str, dict[str, Any]] = {}
    async with factory.sink() as sink:
        for rv, (kind, changes) in enumerate(ops, start=1):
            if kind == "list":
                items = [configmap(name, rv, v=value) for name, value in changes.items()]
                await sink.on_list(Snapshot.of(items, str(rv), generation=rv, page_size=2))
                model = by_key(*items)
            else:
                events = []
                for name, (type_, value) in changes.items():
                    obj = configmap(name, rv, v=value)
                    events.append(event(type_, obj))
                    if type_ is DELETED:
                        model.pop(f"default/{name}", None)
                    else:
                        model[f"default/{name}"] = obj
                await sink.on_batch(Batch({e.key: e for e in events}, str(rv), len(ops) + 1))
            assert await sink.objects() == model
            assert await sink.count() == len(model)
    assert (await factory.read("configmaps"))[0] == model


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.one_of(_snapshot_op, _batch_op), min_size=1, max_size=8))
def test_the_mirror_follows_any_sequence_of_snapshots_and_batches(
    sink_factory: SinkFactory, ops: list[tuple[str, dict[str, Any]]]
) -> None:
    # A fresh mirror for each example, on the test's database.
    asyncio.run(_apply(ops, sink_factory.isolated(f"model_{next(_examples)}")))
