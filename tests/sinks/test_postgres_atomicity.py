"""What only PostgresSink's writes do, against a real server (the all-or-nothing contract is
test_contract.py): writes cancelled while PostgreSQL executes a statement (between a batch's
upserts and its deletes, too) or cut by ``sync_timeout``, a writer process that dies
mid-snapshot or stops inside a transaction, stagings (what is left of them, snapshots that
stop sending, rows changed while a snapshot was staged), and a reader in a long transaction.
The ordering comes from snapshots that pause between pages (``GatedSnapshot``), from
PostgreSQL's own locks and from signals, never from sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import textwrap
import time
from pathlib import Path

import asyncpg
import pytest

from listwatch import EventType, Item
from listwatch.errors import StaleWrite
from listwatch.sinks.postgres import ABANDONED_AFTER, PostgresSink, SyncState

from .helpers import (
    LOCK_WAIT,
    NEXT,
    PREVIOUS,
    GatedSnapshot,
    age_stagings,
    batch,
    by_key,
    child_env,
    configmap,
    event,
    fence_is_free,
    pg_objects,
    run_script,
    snapshot,
    stagings,
    wait_for_fence,
    wait_until_blocked,
    write_previous,
)

ADDED, MODIFIED, DELETED = EventType.ADDED, EventType.MODIFIED, EventType.DELETED

NEXT_PAGES = [[Item.of(obj) for obj in NEXT[:4]], [Item.of(obj) for obj in NEXT[4:]]]


async def assert_previous(sink: PostgresSink, dsn: str, previous: SyncState) -> None:
    assert await sink.objects() == by_key(*PREVIOUS)
    assert await pg_objects(dsn, "configmaps") == by_key(*PREVIOUS)
    assert await sink.sync_state() == previous


# -- cancellation ----------------------------------------------------------------------------


async def test_a_batch_cut_between_its_upserts_and_its_deletes_changes_nothing(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    """The upserts have run (uncommitted) and the delete waits for a row another session
    holds; the batch is cancelled there, and none of it is kept."""
    previous = await write_previous(pg_sink)
    blocker = await asyncpg.connect(postgres_dsn)
    try:
        locked = blocker.transaction()
        await locked.start()
        await blocker.execute("SELECT 1 FROM listwatch.objects WHERE key = 'default/c' FOR UPDATE")
        changes = batch(
            event(ADDED, configmap("new", 11)),
            event(MODIFIED, configmap("a", 12, v="changed")),
            event(DELETED, configmap("c", 13)),
            rv="14",
        )
        task = asyncio.create_task(pg_sink.on_batch(changes))
        await wait_until_blocked(postgres_dsn)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await locked.rollback()
    finally:
        await blocker.close()
    await assert_previous(pg_sink, postgres_dsn, previous)
    assert await fence_is_free(postgres_dsn)


async def test_a_write_cancelled_while_postgresql_executes_it_rolls_back(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    """The cancellation arrives while a statement runs on the server (here: waits for a row
    another session has locked). asyncpg cancels the statement; nothing is kept."""
    previous = await write_previous(pg_sink)
    blocker = await asyncpg.connect(postgres_dsn)
    try:
        locked = blocker.transaction()
        await locked.start()
        await blocker.execute("SELECT 1 FROM listwatch.objects WHERE key = 'default/b' FOR UPDATE")
        task = asyncio.create_task(pg_sink.on_list(snapshot(*NEXT, rv="20", generation=2)))
        await wait_until_blocked(postgres_dsn)  # the sink's upsert of b waits for the lock
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await locked.rollback()
    finally:
        await blocker.close()
    await assert_previous(pg_sink, postgres_dsn, previous)
    assert await fence_is_free(postgres_dsn)


async def test_a_write_cut_by_sync_timeout_rolls_back(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    """What the Syncer's ``sync_timeout`` does: an ``asyncio.timeout`` around the call."""
    previous = await write_previous(pg_sink)
    gate = GatedSnapshot(NEXT_PAGES, pause_after=1)  # never released: the timeout must cut it
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await pg_sink.on_list(gate.snapshot)
    assert gate.reached.is_set()
    await assert_previous(pg_sink, postgres_dsn, previous)
    assert await fence_is_free(postgres_dsn)


# -- a real crash ----------------------------------------------------------------------------

CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, json, os, sys

    from listwatch import Item, Page, Snapshot
    from listwatch.sinks.postgres import PostgresSink

    dsn, crash_at = sys.argv[1], int(sys.argv[2])


    def configmap(i):
        return {
            "kind": "ConfigMap",
            "metadata": {"name": f"new-{i}", "namespace": "default", "resourceVersion": str(i)},
            "data": {"padding": "x" * 2000},
        }


    async def pages():
        for start in range(0, 2 * crash_at, 100):
            if start == crash_at:  # half the snapshot is written, nothing committed
                print(json.dumps({"rows": start}), flush=True)
                os._exit(17)
            yield Page([Item.of(configmap(i)) for i in range(start, start + 100)], "999")


    async def main():
        async with PostgresSink(dsn, resource="configmaps") as sink:
            await sink.on_list(Snapshot(pages(), resource_version="999", generation=7))
        print("the crash did not happen", flush=True)


    asyncio.run(main())
    """
)


async def test_a_writer_that_dies_mid_snapshot_leaves_the_previous_state(
    postgres_dsn: str, tmp_path: Path
) -> None:
    async with PostgresSink(postgres_dsn, resource="configmaps") as sink:
        previous = await write_previous(sink)

    script = tmp_path / "crashing_writer.py"
    script.write_text(CRASHING_WRITER)
    child = await run_script(script, postgres_dsn, "1000")
    assert child.returncode == 17, child.stdout + child.stderr
    assert json.loads(child.stdout)["rows"] == 1000

    # It died staging: no transaction of it was open, nothing of it is locked.
    assert await fence_is_free(postgres_dsn)
    # Abandoned, visible: every page staged before the crash; the last one was staging
    # while the next was read (stage_pages), so it may or may not have landed.
    abandoned = await stagings(postgres_dsn)
    assert abandoned in ({"configmaps": 900}, {"configmaps": 1000})
    async with PostgresSink(postgres_dsn, resource="configmaps") as sink:
        await assert_previous(sink, postgres_dsn, previous)
        await sink.on_list(snapshot(*NEXT, rv="20", generation=2))  # and it takes new writes
        assert await sink.objects() == by_key(*NEXT)
        assert await stagings(postgres_dsn) == abandoned  # not yet taken for dead
        await age_stagings(postgres_dsn, ABANDONED_AFTER + 1)
        await sink.on_list(snapshot(*NEXT, rv="21", generation=3))
        assert await stagings(postgres_dsn) == {}  # the next snapshot deleted it


PAUSED_IN_A_SWAP = textwrap.dedent(
    """
    import asyncio, sys

    from listwatch import Item, Page, Snapshot
    from listwatch.sinks.postgres import PostgresSink

    dsn = sys.argv[1]


    async def main():
        async with PostgresSink(dsn, resource="configmaps") as sink:
            print("open", flush=True)
            obj = {"metadata": {"name": "z", "namespace": "default", "resourceVersion": "5"}}
            await sink.on_list(Snapshot.of([obj], "5", generation=5))
        print("committed", flush=True)


    asyncio.run(main())
    """
)


async def test_a_writer_stopped_inside_its_transaction_is_ended_by_postgresql(
    postgres_dsn: str, tmp_path: Path
) -> None:
    """A writer process is SIGSTOPped in its swap, holding the fence: PostgreSQL ends its
    session once the transaction has waited ``IDLE_IN_TRANSACTION_TIMEOUT`` for it, so the
    next leader's write goes through while the old one is still stopped."""
    async with PostgresSink(postgres_dsn, resource="configmaps") as sink:
        await write_previous(sink)
    script = tmp_path / "paused_in_a_swap.py"
    script.write_text(PAUSED_IN_A_SWAP)
    blocker = await asyncpg.connect(postgres_dsn)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        postgres_dsn,
        stdout=asyncio.subprocess.PIPE,
        env=child_env(),
    )
    assert child.stdout is not None
    try:
        locked = blocker.transaction()
        await locked.start()
        # The swap deletes a (the snapshot lacks it): it waits for this lock, in its
        # transaction, holding the fence.
        await blocker.execute("SELECT 1 FROM listwatch.objects WHERE key = 'default/a' FOR UPDATE")
        async with asyncio.timeout(LOCK_WAIT):
            assert await child.stdout.readline() == b"open\n"
        await wait_until_blocked(postgres_dsn)
        child.send_signal(signal.SIGSTOP)
        await locked.rollback()  # the statement ends; the transaction waits for the client
        started = time.monotonic()
        await wait_for_fence(postgres_dsn)
        waited = time.monotonic() - started
        async with PostgresSink(postgres_dsn, resource="configmaps") as new:
            await new.on_list(snapshot(*NEXT, rv="20", generation=2, epoch=1))
            assert await new.objects() == by_key(*NEXT)
    finally:
        await blocker.close()
        child.send_signal(signal.SIGCONT)
        if child.returncode is None:
            child.kill()
        await child.wait()
    assert waited < LOCK_WAIT  # ended by the timeout, while the old writer is still stopped


# -- stagings --------------------------------------------------------------------------------


async def test_snapshots_that_stop_sending_hold_no_pool_connection(postgres_dsn: str) -> None:
    """Five snapshots stopped mid-stream over a pool of two connections: a batch and a
    snapshot of other resources still get a connection at once."""
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=2)
    try:
        stalled_sinks = [PostgresSink(pool, resource=f"stalled-{i}") for i in range(5)]
        gates = [GatedSnapshot(NEXT_PAGES, pause_after=1) for _ in stalled_sinks]
        async with contextlib.AsyncExitStack() as stack:
            for stalled in stalled_sinks:
                await stack.enter_async_context(stalled)
            writers = [
                asyncio.create_task(stalled.on_list(gate.snapshot))
                for stalled, gate in zip(stalled_sinks, gates, strict=True)
            ]
            try:
                for gate in gates:
                    await gate.wait_reached()
                async with PostgresSink(pool, resource="configmaps") as other:
                    async with asyncio.timeout(LOCK_WAIT):
                        await other.on_list(snapshot(*PREVIOUS, rv="10"))
                        await other.on_batch(batch(event(ADDED, configmap("d", 11)), rv="11"))
                    assert await other.objects() == by_key(*PREVIOUS, configmap("d", 11))
                assert await stagings(postgres_dsn) == {f"stalled-{i}": 4 for i in range(5)}
            finally:
                for gate in gates:
                    gate.release.set()
            await asyncio.gather(*writers)
        assert await stagings(postgres_dsn) == {}
    finally:
        await pool.close()


async def test_a_staging_dropped_as_abandoned_refuses_its_snapshot(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    """A snapshot stopped for longer than ABANDONED_AFTER: another snapshot that starts
    deletes its staging, and when its stream goes on it is refused, changing nothing."""
    previous = await write_previous(pg_sink)
    gate = GatedSnapshot(NEXT_PAGES, pause_after=1)
    stalled = asyncio.create_task(pg_sink.on_list(gate.snapshot))
    await gate.wait_reached()
    await age_stagings(postgres_dsn, ABANDONED_AFTER + 1)
    async with PostgresSink(postgres_dsn, resource="secrets") as other:
        await other.on_list(snapshot(configmap("s"), rv="12"))
    assert await stagings(postgres_dsn) == {}
    gate.release.set()
    with pytest.raises(StaleWrite, match="dropped as abandoned"):
        await stalled
    await assert_previous(pg_sink, postgres_dsn, previous)


# -- a reader in a long transaction ----------------------------------------------------------


async def test_a_reader_in_a_long_transaction_does_not_block_writes(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    await write_previous(pg_sink)
    reader = await asyncpg.connect(postgres_dsn)
    try:
        async with reader.transaction(isolation="repeatable_read"):
            count = "SELECT count(*) FROM listwatch.objects"
            assert await reader.fetchval(count) == len(PREVIOUS)
            await pg_sink.on_list(snapshot(*NEXT, rv="20", generation=2))  # commits meanwhile
            assert await reader.fetchval(count) == len(PREVIOUS)  # the reader's snapshot
        assert await reader.fetchval(count) == len(NEXT)
    finally:
        await reader.close()
