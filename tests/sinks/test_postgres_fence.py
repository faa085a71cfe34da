"""What only PostgresSink's epoch fence does (the fence contract is test_contract.py): a
fence row per schema, and two writers of different epochs, in two sessions or two
processes, cannot both pass it, while writers of one epoch do not wait for each other, and
nobody waits for a snapshot that is still being staged.

Concurrency is arranged, not hoped for: a snapshot pauses between pages (``GatedSnapshot``),
or a session of the test holds a lock, and the test waits until PostgreSQL reports the
other writer waiting for that lock before it lets the first one go on.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path

import asyncpg
import pytest

from listwatch import EventType, Item, Snapshot, StaleEpoch
from listwatch._shard import Shard
from listwatch.fencing import scope_text
from listwatch.sinks.postgres import PostgresSink

from .helpers import (
    LOCK_WAIT,
    GatedSnapshot,
    batch,
    by_key,
    child_env,
    configmap,
    event,
    fence_epoch,
    in_shard,
    pg_objects,
    snapshot,
    wait_until_blocked,
)

ADDED = EventType.ADDED

OLD = [configmap("old-1", 1), configmap("shared", 2, by="old")]
NEW = [configmap("new-1", 3), configmap("shared", 4, by="new")]


def pages(objs: list[dict[str, object]]) -> list[list[Item]]:
    """Two pages, so that a GatedSnapshot can pause between them."""
    items = [Item.of(obj) for obj in objs]
    return [items[:1], items[1:]]


# -- schemas ---------------------------------------------------------------------------------


async def test_another_schema_has_a_fence_of_its_own(postgres_dsn: str) -> None:
    """A schema is a mirror (of one agent), with its own fence: a new leader's epoch in one
    schema refuses nothing in another."""
    async with (
        PostgresSink(postgres_dsn, resource="configmaps") as configmaps,
        PostgresSink(postgres_dsn, resource="configmaps", schema="other_agent") as other,
    ):
        await configmaps.on_list(snapshot(*OLD, rv="1", epoch=2))
        await other.on_list(snapshot(*NEW, rv="4", epoch=1))
        assert await other.objects() == by_key(*NEW)
        assert await fence_epoch(postgres_dsn) == 2
        assert await fence_epoch(postgres_dsn, "other_agent") == 1


# -- two writers at once ---------------------------------------------------------------------


async def test_the_new_leader_does_not_wait_for_the_old_one_s_snapshot(postgres_dsn: str) -> None:
    """The old leader (epoch 1) is mid-snapshot, its stream stopped, when the new one (epoch
    2) writes: the new one's snapshot lands at once, and the old one's is refused at its
    swap, when its stream goes on."""
    async with (
        PostgresSink(postgres_dsn, resource="configmaps") as old,
        PostgresSink(postgres_dsn, resource="configmaps") as new,
    ):
        await old.on_list(snapshot(configmap("before", 1), rv="1", epoch=1))
        gate = GatedSnapshot(pages(OLD), pause_after=1, epoch=1)
        old_write = asyncio.create_task(old.on_list(gate.snapshot))
        await gate.wait_reached()
        async with asyncio.timeout(LOCK_WAIT):
            await new.on_list(snapshot(*NEW, rv="20", epoch=2))
        assert await fence_epoch(postgres_dsn) == 2
        assert await pg_objects(postgres_dsn, "configmaps") == by_key(*NEW)
        gate.release.set()
        with pytest.raises(StaleEpoch):
            await old_write
        with pytest.raises(StaleEpoch):
            await old.on_batch(
                batch(event(ADDED, configmap("late", 9)), rv="21", generation=2, epoch=1)
            )
        assert await pg_objects(postgres_dsn, "configmaps") == by_key(*NEW)


async def test_the_new_leader_waits_only_for_the_old_one_s_swap(postgres_dsn: str) -> None:
    """The old leader's swap (its one transaction) is under way, held up by a row lock the
    test holds: the new leader's epoch waits for that transaction, and once it commits the
    new leader takes over. Two epochs never write at once."""
    async with (
        PostgresSink(postgres_dsn, resource="configmaps") as old,
        PostgresSink(postgres_dsn, resource="configmaps") as new,
    ):
        await old.on_list(snapshot(configmap("before", 1), rv="1", epoch=1))
        blocker = await asyncpg.connect(postgres_dsn)
        try:
            locked = blocker.transaction()
            await locked.start()
            await blocker.execute(
                "SELECT 1 FROM listwatch.objects WHERE key = 'default/before' FOR UPDATE"
            )
            old_write = asyncio.create_task(old.on_list(snapshot(*OLD, rv="2", epoch=1)))
            await wait_until_blocked(postgres_dsn)  # the swap's delete waits for the row
            new_write = asyncio.create_task(new.on_list(snapshot(*NEW, rv="20", epoch=2)))
            await wait_until_blocked(postgres_dsn, count=2)  # the new epoch waits for the swap
            assert await fence_epoch(postgres_dsn) == 1
            await locked.rollback()
        finally:
            await blocker.close()
        async with asyncio.timeout(LOCK_WAIT):
            await old_write  # legal: its swap began before the new epoch was recorded
            await new_write
        assert await pg_objects(postgres_dsn, "configmaps") == by_key(*NEW)
        assert await fence_epoch(postgres_dsn) == 2


async def test_the_old_leader_is_refused_while_the_new_one_writes(postgres_dsn: str) -> None:
    """The new leader (epoch 2) has recorded its epoch and is mid-snapshot; the old leader
    (epoch 1) is refused at once, and nothing of it is written."""
    async with (
        PostgresSink(postgres_dsn, resource="configmaps") as old,
        PostgresSink(postgres_dsn, resource="configmaps") as new,
    ):
        await old.on_list(snapshot(configmap("before", 1), rv="1", epoch=1))
        gate = GatedSnapshot(pages(NEW), pause_after=1, epoch=2)
        new_write = asyncio.create_task(new.on_list(gate.snapshot))
        await gate.wait_reached()
        async with asyncio.timeout(LOCK_WAIT):
            with pytest.raises(StaleEpoch) as refused:
                await old.on_list(snapshot(*OLD, rv="2", epoch=1))
        assert refused.value.recorded == 2
        gate.release.set()
        await new_write
        assert await pg_objects(postgres_dsn, "configmaps") == by_key(*NEW)


async def test_a_write_that_raced_the_epoch_being_raised_is_refused(postgres_dsn: str) -> None:
    """The old leader read epoch 1 (committed) while the new epoch was being recorded (not
    yet committed): its locked read waits for that, sees 2, and refuses the write."""
    async with PostgresSink(postgres_dsn, resource="configmaps") as old:
        await old.on_list(snapshot(configmap("before", 1), rv="1", epoch=1))
        raiser = await asyncpg.connect(postgres_dsn)
        try:
            raising = raiser.transaction()
            await raising.start()
            await raiser.execute("SELECT epoch FROM listwatch.fence FOR UPDATE")
            await raiser.execute("UPDATE listwatch.fence SET epoch = 2")
            old_write = asyncio.create_task(old.on_list(snapshot(*OLD, rv="2", epoch=1)))
            await wait_until_blocked(postgres_dsn)  # its FOR SHARE waits for the raise
            await raising.commit()
            async with asyncio.timeout(LOCK_WAIT):
                with pytest.raises(StaleEpoch) as refused:
                    await old_write
        finally:
            await raiser.close()
        assert refused.value.recorded == 2
        assert await old.objects() == by_key(configmap("before", 1))


async def test_at_a_takeover_the_new_leaders_writers_do_not_wait_for_each_other(
    postgres_dsn: str,
) -> None:
    """The new leader's first snapshot of one resource is in flight; its first batch of
    another resource goes through meanwhile (the raise of the epoch is not held)."""
    async with (
        PostgresSink(postgres_dsn, resource="pods") as pods,
        PostgresSink(postgres_dsn, resource="configmaps") as configmaps,
    ):
        await pods.on_list(snapshot(rv="1", epoch=1))
        gate = GatedSnapshot(pages(NEW), pause_after=1, epoch=2)
        pods_write = asyncio.create_task(pods.on_list(gate.snapshot))
        await gate.wait_reached()
        async with asyncio.timeout(LOCK_WAIT):
            await configmaps.on_batch(batch(event(ADDED, configmap("cm", 1)), rv="2", epoch=2))
        assert await configmaps.objects() == by_key(configmap("cm", 1))
        assert not pods_write.done()
        gate.release.set()
        await pods_write
        assert await pods.objects() == by_key(*NEW)


async def test_writers_of_the_same_epoch_do_not_wait_for_each_other(postgres_dsn: str) -> None:
    """One leader writes several resources at once: their shared fence lock does not
    serialise them. (Were it exclusive, the batch below would wait for the gated snapshot,
    which waits for the test, and the test would time out.)"""
    async with (
        PostgresSink(postgres_dsn, resource="pods") as pods,
        PostgresSink(postgres_dsn, resource="configmaps") as configmaps,
    ):
        await pods.on_list(snapshot(rv="1", epoch=3))
        gate = GatedSnapshot(pages(NEW), pause_after=1, epoch=3)
        pods_write = asyncio.create_task(pods.on_list(gate.snapshot))
        await gate.wait_reached()
        async with asyncio.timeout(LOCK_WAIT):
            await configmaps.on_batch(batch(event(ADDED, configmap("cm", 1)), rv="2", epoch=3))
        assert await configmaps.objects() == by_key(configmap("cm", 1))
        assert not pods_write.done()
        gate.release.set()
        await pods_write
        assert await pods.objects() == by_key(*NEW)


OLD_LEADER = textwrap.dedent(
    """
    import asyncio, json, sys

    from listwatch import Item, Page, Snapshot, StaleEpoch
    from listwatch.sinks.postgres import PostgresSink

    dsn = sys.argv[1]
    objects = json.loads(sys.argv[2])


    async def pages():
        yield Page([Item.of(objects[0])], "30")
        print("paused", flush=True)  # one page staged
        await asyncio.to_thread(sys.stdin.readline)
        yield Page([Item.of(obj) for obj in objects[1:]], "30")


    async def main():
        async with PostgresSink(dsn, resource="configmaps") as sink:
            try:
                await sink.on_list(Snapshot(pages(), resource_version="30", generation=1, epoch=1))
            except StaleEpoch as exc:
                print(json.dumps({"refused": exc.recorded}), flush=True)
            else:
                print(json.dumps({"refused": None}), flush=True)


    asyncio.run(main())
    """
)


async def test_a_paused_process_s_snapshot_holds_up_nobody_and_is_refused(
    postgres_dsn: str, tmp_path: Path
) -> None:
    """The old leader is another process, paused mid-snapshot; this process is the new one:
    it writes at once, and the old one's snapshot, resumed, is refused."""
    async with PostgresSink(postgres_dsn, resource="configmaps") as new:
        await new.on_list(snapshot(configmap("before", 1), rv="1", epoch=1))
        script = tmp_path / "old_leader.py"
        script.write_text(OLD_LEADER)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            postgres_dsn,
            json.dumps(OLD),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=child_env(),
        )
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            async with asyncio.timeout(LOCK_WAIT):
                assert await child.stdout.readline() == b"paused\n"
                await new.on_list(snapshot(*NEW, rv="40", epoch=2))
                child.stdin.write(b"go\n")
                await child.stdin.drain()
                refused = json.loads(await child.stdout.readline())
                assert await child.wait() == 0
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
        assert refused == {"refused": 2}
        assert await new.objects() == by_key(*NEW)
        state = await new.sync_state()
        assert state is not None
        assert (state.epoch, state.resource_version) == (2, "40")


# -- shards: a fence row per scope ------------------------------------------------------------


async def test_a_new_leader_of_one_shard_does_not_wait_for_another_shards_swap(
    postgres_dsn: str,
) -> None:
    """Shard 1's swap is under way, held up by a row lock the test holds. Shard 2's new
    leader (a higher epoch) records its epoch and writes meanwhile: disjoint shards share
    no fence row. Then shard 1's swap, at its lower epoch, commits all the same."""
    first, second = Shard.of(0, 2), Shard.of(1, 2)
    before, after = in_shard(first, "before", 1), in_shard(first, "after", 2)
    theirs = in_shard(second, "theirs", 3)
    async with (
        PostgresSink(postgres_dsn, resource="configmaps") as one,
        PostgresSink(postgres_dsn, resource="configmaps") as two,
    ):
        await one.on_list(Snapshot.of([before], "1", epoch=700, shard=first))
        blocker = await asyncpg.connect(postgres_dsn)
        try:
            locked = blocker.transaction()
            await locked.start()
            await blocker.execute(
                "SELECT 1 FROM listwatch.objects WHERE key = 'default/before' FOR UPDATE"
            )
            held = asyncio.create_task(
                one.on_list(Snapshot.of([after], "2", generation=2, epoch=700, shard=first))
            )
            await wait_until_blocked(postgres_dsn)  # shard 1's swap waits for the row
            async with asyncio.timeout(LOCK_WAIT):
                await two.on_list(Snapshot.of([theirs], "3", epoch=900, shard=second))
            assert not held.done()
            await locked.rollback()
        finally:
            await blocker.close()
        async with asyncio.timeout(LOCK_WAIT):
            await held
        assert await pg_objects(postgres_dsn, "configmaps") == by_key(after, theirs)
        epochs = await fence_epochs(postgres_dsn)
        assert (epochs[scope_text(first)], epochs[scope_text(second)]) == (700, 900)


async def test_a_new_layouts_leader_waits_for_the_overlapping_old_leaders_swap(
    postgres_dsn: str,
) -> None:
    """4 shards become 8. The old leader of 0/4 is mid-swap when the leader of 0/8 (half of
    it, a higher epoch) starts: its epoch waits for that swap, then fences 0/4."""
    old_scope, new_scope = Shard.of(0, 4), Shard.of(0, 8)
    before, mine = in_shard(new_scope, "before", 1), in_shard(new_scope, "mine", 5)
    async with (
        PostgresSink(postgres_dsn, resource="configmaps") as old,
        PostgresSink(postgres_dsn, resource="configmaps") as new,
    ):
        await old.on_list(Snapshot.of([before], "1", epoch=700, shard=old_scope))
        blocker = await asyncpg.connect(postgres_dsn)
        try:
            locked = blocker.transaction()
            await locked.start()
            await blocker.execute(
                "SELECT 1 FROM listwatch.objects WHERE key = 'default/before' FOR UPDATE"
            )
            old_write = asyncio.create_task(
                old.on_list(Snapshot.of([], "2", generation=2, epoch=700, shard=old_scope))
            )
            await wait_until_blocked(postgres_dsn)
            new_write = asyncio.create_task(
                new.on_list(Snapshot.of([mine], "3", epoch=900, shard=new_scope))
            )
            await wait_until_blocked(postgres_dsn, count=2)  # 0/8's epoch waits for 0/4
            await locked.rollback()
        finally:
            await blocker.close()
        async with asyncio.timeout(LOCK_WAIT):
            await old_write  # legal: its swap began before 0/8's epoch was recorded
            await new_write
        with pytest.raises(StaleEpoch):
            await old.on_list(Snapshot.of([before], "4", generation=3, epoch=700, shard=old_scope))
        assert await pg_objects(postgres_dsn, "configmaps") == by_key(mine)


async def fence_epochs(dsn: str) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT shard, epoch FROM listwatch.fence")
    finally:
        await connection.close()
    return {row["shard"]: row["epoch"] for row in rows}
