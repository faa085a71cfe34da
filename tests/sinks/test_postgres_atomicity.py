"""What only PostgresSink's writes do, against a real server (the all-or-nothing contract is
test_contract.py): writes cancelled while PostgreSQL executes a statement (between a batch's
upserts and its deletes, too) or cut by ``sync_timeout``, a writer process that dies
mid-snapshot, and a reader in a long transaction. The ordering comes from snapshots that
pause between pages (``GatedSnapshot``) and from PostgreSQL's own locks, never from sleeps.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import asyncpg
import pytest

from listwatch import EventType, Item
from listwatch.sinks.postgres import PostgresSink, SyncState

from .helpers import (
    NEXT,
    PREVIOUS,
    GatedSnapshot,
    batch,
    by_key,
    configmap,
    event,
    fence_is_free,
    pg_objects,
    run_script,
    snapshot,
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

    # The server ends the dead client's session and its transaction; wait for that.
    await wait_for_fence(postgres_dsn)
    async with PostgresSink(postgres_dsn, resource="configmaps") as sink:
        await assert_previous(sink, postgres_dsn, previous)
        await sink.on_list(snapshot(*NEXT, rv="20", generation=2))  # and it takes new writes
        assert await sink.objects() == by_key(*NEXT)


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
