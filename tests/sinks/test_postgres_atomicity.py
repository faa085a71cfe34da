"""PostgresSink's writes are all or nothing, and readers see the last committed state meanwhile.

Against a real server: writes that fail half way (a bad object, a key function, a list
error out of the snapshot), writes cancelled while the sink waits for the next page and
while PostgreSQL executes a statement, a writer process that dies mid-snapshot, and readers
on other connections while a write is open. The ordering comes from snapshots that pause
between pages (``GatedSnapshot``) and from PostgreSQL's own locks, never from sleeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

import listwatch
from listwatch import EventType, Item, Page, Snapshot
from listwatch.sinks.postgres import PostgresSink, SyncState

from .conftest import batch, by_key, configmap, event, snapshot
from .postgres_helpers import (
    LOCK_WAIT,
    GatedSnapshot,
    fence_is_free,
    objects,
    wait_for_fence,
    wait_until_blocked,
)

ADDED, MODIFIED, DELETED = EventType.ADDED, EventType.MODIFIED, EventType.DELETED
SRC = Path(listwatch.__file__).resolve().parents[1]

PREVIOUS = [configmap("a", 1, v="a"), configmap("b", 2, v="b"), configmap("c", 3, v="c")]
NEXT = [configmap(f"n{i}", 100 + i, v=str(i)) for i in range(10)] + [configmap("b", 50, v="b2")]
NEXT_PAGES = [[Item.of(obj) for obj in NEXT[:4]], [Item.of(obj) for obj in NEXT[4:]]]


async def write_previous(sink: PostgresSink) -> SyncState:
    await sink.on_list(snapshot(*PREVIOUS, rv="10", generation=1))
    state = await sink.sync_state()
    assert state is not None
    return state


async def assert_previous(sink: PostgresSink, dsn: str, previous: SyncState) -> None:
    assert await sink.objects() == by_key(*PREVIOUS)
    assert await objects(dsn, "configmaps") == by_key(*PREVIOUS)
    assert await sink.sync_state() == previous


# -- failures inside the transaction ---------------------------------------------------------


async def test_a_batch_with_an_unserialisable_object_changes_nothing(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    previous = await write_previous(pg_sink)
    unserialisable = configmap("bad", 13)
    unserialisable["data"] = {"payload": object()}  # orjson cannot serialise this
    failing = batch(
        event(ADDED, configmap("new", 11)),
        event(MODIFIED, configmap("a", 12, v="changed")),
        event(DELETED, configmap("c", 12)),
        event(ADDED, unserialisable),
        rv="14",
    )
    with pytest.raises(TypeError, match="default/bad"):
        await pg_sink.on_batch(failing)
    await assert_previous(pg_sink, postgres_dsn, previous)
    assert await fence_is_free(postgres_dsn)
    await pg_sink.on_batch(batch(event(DELETED, configmap("a", 15)), rv="15"))
    assert await pg_sink.objects() == by_key(*PREVIOUS[1:])


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


async def test_a_snapshot_that_fails_on_a_later_page_changes_nothing(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    previous = await write_previous(pg_sink)
    unserialisable = configmap("bad", 99)
    unserialisable["data"] = {"payload": {1, 2}}
    # Two pages are merged (b rewritten, n0..n9 added) before the bad object's page.
    with pytest.raises(TypeError, match="default/bad"):
        await pg_sink.on_list(Snapshot.of([*NEXT, unserialisable], "20", generation=2, page_size=5))
    await assert_previous(pg_sink, postgres_dsn, previous)
    assert await fence_is_free(postgres_dsn)


async def test_a_key_function_that_fails_half_way_changes_nothing(postgres_dsn: str) -> None:
    def key(obj: dict[str, Any]) -> str:
        if obj["metadata"]["name"] == "n7":
            raise ValueError("no key for n7")
        return str(obj["metadata"]["name"])

    async with PostgresSink(postgres_dsn, resource="configmaps", key=key) as sink:
        await sink.on_list(snapshot(*PREVIOUS, rv="10"))
        previous = await sink.sync_state()
        with pytest.raises(ValueError, match="no key for n7"):
            await sink.on_list(Snapshot.of(NEXT, "21", generation=3, page_size=3))
        assert set(await sink.objects()) == {"a", "b", "c"}
        assert await sink.sync_state() == previous


async def test_a_list_error_raised_out_of_the_iteration_changes_nothing(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    """A continue token that expires while the sink writes: the error comes out of the
    sink's iteration of the snapshot, after a page was merged, and it is all rolled back."""
    previous = await write_previous(pg_sink)

    async def pages() -> AsyncIterator[Page]:
        yield Page([Item.of(obj) for obj in NEXT], "20", "token")
        raise listwatch.ResourceExpired(
            410, "Expired", "The provided continue parameter is too old"
        )

    with pytest.raises(listwatch.ResourceExpired):
        await pg_sink.on_list(Snapshot(pages(), resource_version="20", generation=2))
    await assert_previous(pg_sink, postgres_dsn, previous)
    assert await fence_is_free(postgres_dsn)


# -- cancellation ----------------------------------------------------------------------------


async def test_a_write_cancelled_between_pages_rolls_back(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    previous = await write_previous(pg_sink)
    gate = GatedSnapshot(NEXT_PAGES, pause_after=1)
    task = asyncio.create_task(pg_sink.on_list(gate.snapshot))
    await gate.wait_reached()
    assert not await fence_is_free(postgres_dsn)  # the write's transaction is open
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await assert_previous(pg_sink, postgres_dsn, previous)
    assert await fence_is_free(postgres_dsn)  # rolled back before the cancellation surfaced
    await pg_sink.on_list(snapshot(*NEXT, rv="21", generation=3))
    assert await pg_sink.objects() == by_key(*NEXT)


async def test_a_write_cut_by_a_cancel_scope_rolls_back(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    """An anyio cancel scope keeps cancelling while the write cleans up (its rollback is
    cancelled too); the pool's release, shielded, still ends the transaction."""
    previous = await write_previous(pg_sink)
    gate = GatedSnapshot(NEXT_PAGES, pause_after=1)
    with anyio.CancelScope() as scope:

        async def cancel_when_reached() -> None:
            await gate.wait_reached()
            scope.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(cancel_when_reached)
            await pg_sink.on_list(gate.snapshot)
    assert scope.cancelled_caught

    await wait_for_fence(postgres_dsn)  # the rollback may still be on its way: wait for it
    await assert_previous(pg_sink, postgres_dsn, previous)
    await pg_sink.on_batch(batch(event(ADDED, configmap("d", 30)), rv="30", generation=2))
    assert await pg_sink.objects() == by_key(*PREVIOUS, configmap("d", 30))


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
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script), postgres_dsn, "1000"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert child.returncode == 17, child.stdout + child.stderr
    assert json.loads(child.stdout)["rows"] == 1000

    # The server ends the dead client's session and its transaction; wait for that.
    await wait_for_fence(postgres_dsn)
    async with PostgresSink(postgres_dsn, resource="configmaps") as sink:
        await assert_previous(sink, postgres_dsn, previous)
        await sink.on_list(snapshot(*NEXT, rv="20", generation=2))  # and it takes new writes
        assert await sink.objects() == by_key(*NEXT)


# -- readers during a write ------------------------------------------------------------------


async def test_readers_see_the_previous_state_while_a_write_is_open(
    pg_sink: PostgresSink, postgres_dsn: str
) -> None:
    previous = await write_previous(pg_sink)
    gate = GatedSnapshot(NEXT_PAGES, pause_after=1)
    task = asyncio.create_task(pg_sink.on_list(gate.snapshot))
    try:
        await gate.wait_reached()
        assert not await fence_is_free(postgres_dsn)  # open, one page written
        # Another connection, as another process would have it, reads the committed state...
        assert await objects(postgres_dsn, "configmaps") == by_key(*PREVIOUS)
        # ...and so do the sink's own readers, which do not queue behind its write.
        assert await pg_sink.objects() == by_key(*PREVIOUS)
        assert await pg_sink.get("default/n0") is None
        assert await pg_sink.count() == len(PREVIOUS)
        assert await pg_sink.sync_state() == previous
        assert not task.done()
    finally:
        gate.release.set()
    await task
    assert await objects(postgres_dsn, "configmaps") == by_key(*NEXT)
    state = await pg_sink.sync_state()
    assert state is not None
    assert (state.resource_version, state.generation) == ("20", 2)


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


async def test_close_waits_for_a_write_in_progress(postgres_dsn: str) -> None:
    sink = PostgresSink(postgres_dsn, resource="configmaps")
    await sink.open()
    gate = GatedSnapshot(NEXT_PAGES, pause_after=1)
    write = asyncio.create_task(sink.on_list(gate.snapshot))
    await gate.wait_reached()
    close = asyncio.create_task(sink.close())
    await asyncio.sleep(0)  # let close() start and queue behind the write's lock
    assert not close.done()
    gate.release.set()
    async with asyncio.timeout(LOCK_WAIT):
        await write
        await close
    assert await objects(postgres_dsn, "configmaps") == by_key(*NEXT)
    with pytest.raises(RuntimeError, match="not open"):
        await sink.count()
