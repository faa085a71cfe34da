"""Receivers replace by scope (issue 23): a shard's snapshot and batches write only the rows
whose uid hashes into its range, and each shard is fenced by its own epochs. Every test runs
against a real SQLite file and a real PostgreSQL server (the ``sink`` fixtures)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from listwatch import Batch, Event, EventType, Snapshot, StaleEpoch
from listwatch._shard import Shard
from listwatch.sinks._base import Sink, Usage

from .helpers import SinkFactory, by_key, configmap, in_shard

ADDED, MODIFIED, DELETED = EventType.ADDED, EventType.MODIFIED, EventType.DELETED
HALVES = (Shard.of(0, 2), Shard.of(1, 2))


def shard_snapshot(
    shard: Shard | None, *items: dict[str, Any], rv: str, generation: int = 1, epoch: int = 0
) -> Snapshot:
    return Snapshot.of(items, rv, generation=generation, epoch=epoch, shard=shard)


def shard_batch(
    shard: Shard | None,
    *events: Event,
    rv: str,
    generation: int = 1,
    epoch: int = 0,
    sequence: int = 0,
) -> Batch:
    return Batch(
        {e.key: e for e in events},
        rv,
        generation,
        received=len(events),
        epoch=epoch,
        shard=shard,
        sequence=sequence,
    )


async def test_a_shard_snapshot_deletes_only_its_own_vanished_rows(sink: Sink[Any]) -> None:
    first, second = HALVES
    kept_a, gone_a = in_shard(first, "a1"), in_shard(first, "a2")
    others = [in_shard(second, f"b{i}") for i in range(3)]
    await sink.on_list(shard_snapshot(None, kept_a, gone_a, *others, rv="10"))

    await sink.on_list(shard_snapshot(first, kept_a, rv="20"))

    assert await sink.objects() == by_key(kept_a, *others)


async def test_a_shard_snapshot_never_deletes_another_shards_rows(sink: Sink[Any]) -> None:
    first, second = HALVES
    theirs = [in_shard(second, f"b{i}") for i in range(3)]
    await sink.on_list(shard_snapshot(second, *theirs, rv="10"))

    await sink.on_list(shard_snapshot(first, rv="20"))  # shard 1 holds nothing

    assert await sink.objects() == by_key(*theirs)
    assert await sink.count() == 3


async def test_two_shards_snapshots_of_one_resource_interleave_and_the_union_is_exact(
    sink: Sink[Any],
) -> None:
    first, second = HALVES
    cluster: dict[str, dict[str, Any]] = {}
    rv = itertools.count(10)
    for round in range(4):
        # Each round the cluster changes: objects of both shards come, change and go.
        for shard, prefix in ((first, "a"), (second, "b")):
            name = f"{prefix}{round}"
            cluster[name] = in_shard(shard, name, next(rv), round=str(round))
            if round >= 2:
                cluster.pop(f"{prefix}{round - 2}")
        for shard in (second, first) if round % 2 else (first, second):
            mine = [obj for obj in cluster.values() if shard.holds_uid(obj["metadata"]["uid"])]
            await sink.on_list(shard_snapshot(shard, *mine, rv=str(next(rv)), generation=round))

    assert await sink.objects() == by_key(*cluster.values())
    assert sorted(cluster) == ["a2", "a3", "b2", "b3"]


async def test_a_shards_batch_writes_and_deletes_its_own_rows(sink: Sink[Any]) -> None:
    first, second = HALVES
    a, b = in_shard(first, "a"), in_shard(second, "b")
    await sink.on_list(shard_snapshot(first, a, rv="10"))
    await sink.on_list(shard_snapshot(second, b, rv="11"))
    added, changed = in_shard(first, "a-new", 12), in_shard(first, "a", 13, changed="yes")

    await sink.on_batch(
        shard_batch(
            first,
            Event.from_object(ADDED, added),
            Event.from_object(MODIFIED, changed),
            rv="13",
        )
    )
    await sink.on_batch(
        shard_batch(first, Event.from_object(DELETED, in_shard(first, "a-new", 14)), rv="14")
    )

    assert await sink.objects() == by_key(changed, b)
    state = await sink.sync_state(first)
    assert state is not None
    assert state.resource_version == "14"
    assert (await sink.sync_state(second)).resource_version == "11"  # type: ignore[union-attr]


async def test_a_shards_delete_leaves_a_recreated_object_of_another_shard(
    sink: Sink[Any],
) -> None:
    """``same`` was deleted and created again: the new object's uid is in the other shard,
    which wrote it before the first shard saw the deletion."""
    first, second = HALVES
    old = in_shard(first, "same", 10)
    await sink.on_list(shard_snapshot(first, old, rv="10"))
    recreated = in_shard(second, "same", 12, life="second")
    await sink.on_batch(shard_batch(second, Event.from_object(ADDED, recreated), rv="12"))

    deleted = in_shard(first, "same", 11)
    await sink.on_batch(shard_batch(first, Event.from_object(DELETED, deleted), rv="13"))
    await sink.on_list(shard_snapshot(first, rv="14", generation=2))

    assert await sink.objects() == by_key(recreated)


async def test_each_scope_has_its_own_sync_state(sink: Sink[Any]) -> None:
    first, second = HALVES
    await sink.on_list(shard_snapshot(first, in_shard(first, "a"), rv="10"))
    await sink.on_list(shard_snapshot(second, in_shard(second, "b"), rv="20"))

    first_state, second_state = await sink.sync_state(first), await sink.sync_state(second)
    assert first_state is not None
    assert second_state is not None
    assert (first_state.resource_version, first_state.object_count) == ("10", 1)
    assert (second_state.resource_version, second_state.object_count) == ("20", 1)
    assert first_state.shard == "0x0000000000000000-0x8000000000000000"
    assert await sink.sync_state() is None  # nothing written for the whole resource
    assert (await sink.cluster_usage())["configmaps"].objects == 2


async def test_a_whole_space_shard_is_the_unsharded_scope(sink: Sink[Any]) -> None:
    await sink.on_list(shard_snapshot(Shard.of(0, 1), in_shard(Shard.of(0, 1), "a"), rv="10"))

    state = await sink.sync_state()
    assert state is not None
    assert state.shard == ""
    assert state.resource_version == "10"


async def test_shards_of_one_resource_fail_over_independently(sink: Sink[Any]) -> None:
    first, second = HALVES
    await sink.on_list(shard_snapshot(first, in_shard(first, "a"), rv="10", epoch=700))
    # Shard 2 moves to a new leader, whose epoch (a later etcd revision) is higher.
    await sink.on_list(shard_snapshot(second, in_shard(second, "b"), rv="11", epoch=900))

    # Shard 1's leader, at 700, is not fenced by shard 2's 900.
    a2 = in_shard(first, "a2", 12)
    await sink.on_batch(shard_batch(first, Event.from_object(ADDED, a2), rv="12", epoch=700))
    # Then shard 1 moves too: its old leader is refused; shard 2's writes go on.
    await sink.on_list(
        shard_snapshot(first, in_shard(first, "a"), a2, rv="13", generation=1, epoch=1000)
    )
    late = in_shard(first, "late", 14)
    with pytest.raises(StaleEpoch, match=r"configmaps \(shard 0/2\): refused a write of epoch 700"):
        await sink.on_batch(
            shard_batch(first, Event.from_object(ADDED, late), rv="14", generation=1, epoch=700)
        )
    b2 = in_shard(second, "b2", 15)
    await sink.on_batch(shard_batch(second, Event.from_object(ADDED, b2), rv="15", epoch=900))

    assert set(await sink.objects()) == {"default/a", "default/a2", "default/b", "default/b2"}


async def test_an_unsharded_write_is_fenced_by_every_shards_epoch(sink: Sink[Any]) -> None:
    first, _ = HALVES
    await sink.on_list(shard_snapshot(first, in_shard(first, "a"), rv="10", epoch=700))

    with pytest.raises(StaleEpoch):
        await sink.on_list(shard_snapshot(None, rv="11", epoch=500))
    assert set(await sink.objects()) == {"default/a"}


async def test_a_new_layouts_shard_replaces_the_overlapping_range_of_the_old_one(
    sink: Sink[Any],
) -> None:
    """4 shards become 8: shard 0/8 is half of 0/4. Its snapshot replaces its half only,
    fences the old leader of 0/4 (whose range it overlaps), and not that of 1/4."""
    old, next_old = Shard.of(0, 4), Shard.of(1, 4)
    new_first, new_second = Shard.of(0, 8), Shard.of(1, 8)
    in_first, in_second = in_shard(new_first, "x1"), in_shard(new_second, "x2")
    gone_first = in_shard(new_first, "gone")
    neighbour = in_shard(next_old, "n")
    await sink.on_list(shard_snapshot(old, in_first, in_second, gone_first, rv="10", epoch=700))
    await sink.on_list(shard_snapshot(next_old, neighbour, rv="11", epoch=710))

    await sink.on_list(shard_snapshot(new_first, in_first, rv="20", epoch=900))

    assert await sink.objects() == by_key(in_first, in_second, neighbour)
    with pytest.raises(StaleEpoch):
        await sink.on_list(shard_snapshot(old, in_first, rv="21", generation=2, epoch=700))
    await sink.on_list(shard_snapshot(next_old, neighbour, rv="22", generation=2, epoch=710))
    # The old scope's counts are superseded: the resource's total never counts a row twice.
    await sink.on_list(shard_snapshot(new_second, in_second, rv="23", epoch=901))
    usage = (await sink.cluster_usage())["configmaps"]
    assert usage.objects == 3


async def test_an_unsharded_snapshot_replaces_every_shards_rows(sink: Sink[Any]) -> None:
    first, second = HALVES
    await sink.on_list(shard_snapshot(first, in_shard(first, "a"), rv="10"))
    await sink.on_list(shard_snapshot(second, in_shard(second, "b"), rv="11"))
    c = in_shard(second, "c", 12)

    await sink.on_list(shard_snapshot(None, c, rv="12"))

    assert await sink.objects() == by_key(c)
    assert (await sink.cluster_usage())["configmaps"] == Usage(1, (await usage_of(sink)).bytes)


async def usage_of(sink: Sink[Any]) -> Usage:
    state = await sink.sync_state()
    assert state is not None
    return Usage(state.object_count, state.object_bytes)


async def test_an_object_without_a_uid_is_in_the_shard_of_the_empty_uid(
    sink: Sink[Any],
) -> None:
    """The API server hashes a missing field as "": so does the sink."""
    holder = next(shard for shard in HALVES if shard.holds_uid(""))
    other = next(shard for shard in HALVES if shard is not holder)
    await sink.on_list(shard_snapshot(None, configmap("no-uid"), rv="10"))

    await sink.on_list(shard_snapshot(other, rv="11"))
    assert set(await sink.objects()) == {"default/no-uid"}
    await sink.on_list(shard_snapshot(holder, rv="12"))
    assert await sink.objects() == {}


async def test_a_store_keeps_shards_of_one_resource_apart(sink_factory: SinkFactory) -> None:
    first, second = HALVES
    async with await sink_factory.store() as store:
        sink = await store.sink("configmaps")
        await sink.on_list(shard_snapshot(first, in_shard(first, "a"), rv="10", epoch=5))
        await sink.on_list(shard_snapshot(second, in_shard(second, "b"), rv="11", epoch=9))
        await sink.on_batch(
            shard_batch(first, Event.from_object(ADDED, in_shard(first, "c")), rv="12", epoch=5)
        )
        assert set(await sink.objects()) == {"default/a", "default/b", "default/c"}


async def test_a_lagging_shard_does_not_bring_back_an_older_object_of_a_recreated_name(
    sink: Sink[Any],
) -> None:
    """``same`` was modified (RV 10), deleted (11) and created again (12) with a uid of the
    other shard, which wrote it first. The first shard lags: its MODIFIED at 10 and its
    DELETED at 11 come after. The newer object stays; the first shard's own rows move on."""
    first, second = HALVES
    old = in_shard(first, "same", 5)
    mine = in_shard(first, "mine", 6)
    await sink.on_list(shard_snapshot(first, old, mine, rv="6"))
    await sink.on_list(shard_snapshot(second, rv="6"))
    recreated = in_shard(second, "same", 12, life="second")
    await sink.on_batch(shard_batch(second, Event.from_object(ADDED, recreated), rv="12"))

    modified = in_shard(first, "same", 10, life="first, modified")
    changed = in_shard(first, "mine", 9, changed="yes")
    await sink.on_batch(
        shard_batch(
            first,
            Event.from_object(MODIFIED, modified),
            Event.from_object(MODIFIED, changed),
            rv="10",
        )
    )
    await sink.on_batch(
        shard_batch(
            first, Event.from_object(DELETED, in_shard(first, "same", 11)), rv="11", sequence=2
        )
    )
    assert await sink.objects() == by_key(recreated, changed)

    # A snapshot the first shard listed before the re-creation, swapped in after it.
    await sink.on_list(shard_snapshot(first, modified, changed, rv="10", generation=2))
    assert await sink.objects() == by_key(recreated, changed)


async def test_a_name_moving_into_a_shard_takes_the_older_object_of_another(
    sink: Sink[Any],
) -> None:
    """The other way round: the newer object is this shard's, the stored one another's."""
    first, second = HALVES
    await sink.on_list(shard_snapshot(second, in_shard(second, "same", 5), rv="5"))
    newer = in_shard(first, "same", 12)
    await sink.on_list(shard_snapshot(first, newer, rv="12"))

    assert await sink.objects() == by_key(newer)
    await sink.on_batch(
        shard_batch(second, Event.from_object(DELETED, in_shard(second, "same", 11)), rv="11")
    )
    assert await sink.objects() == by_key(newer)
