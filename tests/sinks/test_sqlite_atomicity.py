"""SQLiteSink's writes are all or nothing, and readers see the last committed state meanwhile.

Every test here uses a real SQLite file: a write that fails half way (an object that cannot
be serialised, a cancellation), a process killed in the middle of a transaction, and readers
on other connections while the sink's transaction is open. The ordering comes from events
that the sink's own iteration of the snapshot sets and waits on (see ``GatedItems``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import listwatch
from listwatch import EventType, Item, Page, Snapshot
from listwatch.sinks.sqlite import SQLiteSink, SyncState, read_mirror

from .conftest import (
    GATE_TIMEOUT,
    GatedItems,
    batch,
    by_key,
    configmap,
    connect,
    event,
    one_page,
    snapshot,
)

ADDED, MODIFIED, DELETED = EventType.ADDED, EventType.MODIFIED, EventType.DELETED
SRC = Path(listwatch.__file__).resolve().parents[1]

PREVIOUS = [configmap("a", 1, v="a"), configmap("b", 2, v="b"), configmap("c", 3, v="c")]
NEXT = [configmap(f"n{i}", 100 + i, v=str(i)) for i in range(10)] + [configmap("b", 50, v="b2")]


async def write_previous(sink: SQLiteSink) -> SyncState:
    await sink.on_list(snapshot(*PREVIOUS, rv="10", generation=1))
    state = await sink.sync_state()
    assert state is not None
    return state


def assert_write_lock_held(path: Path) -> None:
    """Another writer cannot start: the sink's transaction is open (no waiting: timeout 0)."""
    other = connect(path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()


def assert_write_lock_free(path: Path) -> None:
    other = connect(path)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()


async def wait_reached(gate: GatedItems) -> None:
    assert await asyncio.to_thread(gate.reached.wait, GATE_TIMEOUT), "the write never started"


# -- failures inside the transaction ---------------------------------------------------------


async def test_a_batch_that_fails_half_way_changes_nothing(sink: SQLiteSink, db: Path) -> None:
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

    assert await sink.objects() == by_key(*PREVIOUS)
    assert await sink.sync_state() == previous
    assert read_mirror(db, resource="configmaps").objects == by_key(*PREVIOUS)
    assert_write_lock_free(db)
    # The connection is usable again: no transaction was left open.
    await sink.on_batch(batch(event(DELETED, configmap("a", 15)), rv="15"))
    assert await sink.objects() == by_key(*PREVIOUS[1:])


async def test_a_snapshot_that_fails_half_way_changes_nothing(sink: SQLiteSink, db: Path) -> None:
    previous = await write_previous(sink)
    unserialisable = configmap("bad", 99)
    unserialisable["data"] = {"payload": {1, 2}}
    # Would delete a and c (vanished) and rewrite b before reaching the bad object.
    with pytest.raises(TypeError, match="default/bad"):
        await sink.on_list(snapshot(*NEXT, unserialisable, configmap("z"), rv="20", generation=2))
    assert await sink.objects() == by_key(*PREVIOUS)
    assert await sink.sync_state() == previous

    assert_write_lock_free(db)


async def test_a_key_function_that_fails_half_way_changes_nothing(db: Path) -> None:
    def key(obj: dict[str, Any]) -> str:
        if obj["metadata"]["name"] == "n5":
            raise ValueError("no key for n5")
        return str(obj["metadata"]["name"])

    async with SQLiteSink(db, resource="configmaps", key=key) as sink:
        await sink.on_list(snapshot(*PREVIOUS, rv="10"))
        previous = await sink.sync_state()
        with pytest.raises(ValueError, match="no key for n5"):
            await sink.on_list(snapshot(*NEXT, rv="21", generation=3))
        assert set(await sink.objects()) == {"a", "b", "c"}
        assert await sink.sync_state() == previous
    assert_write_lock_free(db)


async def test_a_list_error_raised_out_of_the_iteration_changes_nothing(
    sink: SQLiteSink, db: Path
) -> None:
    """A continue token that expires while the sink writes: the error comes out of the
    sink's iteration of the snapshot, and the half-written snapshot is rolled back."""
    previous = await write_previous(sink)

    async def pages() -> AsyncIterator[Page]:
        yield Page([Item.of(obj) for obj in NEXT[:5]], "20", "token")
        raise listwatch.ResourceExpired(
            410, "Expired", "The provided continue parameter is too old"
        )

    with pytest.raises(listwatch.ResourceExpired):
        await sink.on_list(Snapshot(pages(), resource_version="20", generation=2))
    assert await sink.objects() == by_key(*PREVIOUS)
    assert await sink.sync_state() == previous
    assert_write_lock_free(db)


async def test_a_cancelled_write_rolls_back(sink: SQLiteSink, db: Path) -> None:
    previous = await write_previous(sink)
    gate = GatedItems(NEXT, at=5)
    task = asyncio.create_task(sink.on_list(one_page(gate, "20", 2)))
    try:
        await wait_reached(gate)
        assert_write_lock_held(db)
        task.cancel()
    finally:
        gate.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await sink.objects() == by_key(*PREVIOUS)
    assert await sink.sync_state() == previous
    assert_write_lock_free(db)
    await sink.on_list(snapshot(*NEXT, rv="21", generation=3))
    assert await sink.objects() == by_key(*NEXT)


async def test_a_write_cut_by_a_cancel_scope_rolls_back(sink: SQLiteSink, db: Path) -> None:
    """The Syncer bounds receiver calls with an anyio cancel scope (``sync_timeout``), which
    keeps cancelling while the call cleans up; the rollback must still happen."""
    previous = await write_previous(sink)
    gate = GatedItems(NEXT, at=5)
    with anyio.CancelScope() as scope:

        async def cancel_when_reached() -> None:
            await wait_reached(gate)
            scope.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(cancel_when_reached)
            await sink.on_list(one_page(gate, "20", 2))
    assert scope.cancelled_caught
    gate.release.set()

    assert await sink.objects() == by_key(*PREVIOUS)
    assert await sink.sync_state() == previous
    # The next write waits for the rollback that the cancellation left running.
    await sink.on_batch(batch(event(ADDED, configmap("d", 30)), rv="30", generation=2))
    assert await sink.objects() == by_key(*PREVIOUS, configmap("d", 30))
    assert_write_lock_free(db)


# -- a real crash ----------------------------------------------------------------------------

CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from pathlib import Path

    from listwatch import Item, Page, Snapshot
    from listwatch.sinks.sqlite import SQLiteSink

    db, crash_at = Path(sys.argv[1]), int(sys.argv[2])
    wal = db.with_name(db.name + "-wal")
    padding = "x" * 4000  # enough data that SQLite spills uncommitted pages into the WAL


    def configmap(i):
        return {
            "kind": "ConfigMap",
            "metadata": {"name": f"new-{i}", "namespace": "default", "resourceVersion": str(i)},
            "data": {"padding": padding},
        }


    async def pages():
        for start in range(0, 2 * crash_at, 100):
            if start == crash_at:  # half the snapshot is written, nothing committed
                print(json.dumps({"rows": start, "wal_bytes": wal.stat().st_size}), flush=True)
                os._exit(17)
            yield Page([Item.of(configmap(i)) for i in range(start, start + 100)], "999")


    async def main():
        async with SQLiteSink(db, resource="configmaps") as sink:
            await sink.on_list(Snapshot(pages(), resource_version="999", generation=7))
        print("the crash did not happen", flush=True)


    asyncio.run(main())
    """
)


async def test_a_crash_mid_write_keeps_the_previous_state(db: Path, tmp_path: Path) -> None:
    async with SQLiteSink(db, resource="configmaps") as sink:
        previous = await write_previous(sink)

    script = tmp_path / "crashing_writer.py"
    script.write_text(CRASHING_WRITER)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script), str(db), "2000"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert child.returncode == 17, child.stdout + child.stderr
    report = json.loads(child.stdout)
    assert report["rows"] == 2000
    # Uncommitted pages of the half-written snapshot reached the file before the crash.
    assert report["wal_bytes"] > 0

    connection = connect(db)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        connection.close()
    assert read_mirror(db, resource="configmaps").objects == by_key(*PREVIOUS)
    async with SQLiteSink(db, resource="configmaps") as sink:
        assert await sink.objects() == by_key(*PREVIOUS)
        assert await sink.sync_state() == previous
        await sink.on_list(snapshot(*NEXT, rv="20", generation=2))  # and the file takes new writes
        assert await sink.objects() == by_key(*NEXT)


# -- readers during a write ------------------------------------------------------------------


async def test_readers_see_the_previous_state_while_a_write_is_open(
    sink: SQLiteSink, db: Path
) -> None:
    previous = await write_previous(sink)
    gate = GatedItems(NEXT, at=len(NEXT) // 2)
    task = asyncio.create_task(sink.on_list(one_page(gate, "20", 2)))
    reader = connect(db)
    try:
        await wait_reached(gate)
        assert_write_lock_held(db)  # the sink's transaction is open, half written

        # Another connection, as another process would have it, reads the committed state...
        stored = reader.execute(
            "SELECT key, object FROM objects WHERE resource = 'configmaps' ORDER BY key"
        ).fetchall()
        assert {key: json.loads(text) for key, text in stored} == by_key(*PREVIOUS)
        state = reader.execute(
            "SELECT resource_version, generation FROM sync_state WHERE resource = 'configmaps'"
        ).fetchone()
        assert tuple(state) == ("10", 1)
        assert read_mirror(db, resource="configmaps").objects == by_key(*PREVIOUS)
        # ...and so do the sink's own readers, which do not queue behind its write.
        assert await sink.objects() == by_key(*PREVIOUS)
        assert await sink.get("default/n0") is None
        assert await sink.count() == len(PREVIOUS)
        assert await sink.sync_state() == previous
        assert not task.done()
    finally:
        gate.release.set()
    await task

    stored = reader.execute(
        "SELECT key, object FROM objects WHERE resource = 'configmaps' ORDER BY key"
    ).fetchall()
    reader.close()
    assert {key: json.loads(text) for key, text in stored} == by_key(*NEXT)
    assert await sink.objects() == by_key(*NEXT)
    state_after = await sink.sync_state()
    assert state_after is not None
    assert (state_after.resource_version, state_after.generation) == ("20", 2)


async def test_a_reader_holding_a_read_transaction_does_not_block_writes(
    sink: SQLiteSink, db: Path
) -> None:
    await write_previous(sink)
    reader = connect(db)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM objects").fetchone()[0] == len(PREVIOUS)
        await sink.on_list(snapshot(*NEXT, rv="20", generation=2))  # commits while the read is open
        # The open read transaction keeps its snapshot...
        assert reader.execute("SELECT count(*) FROM objects").fetchone()[0] == len(PREVIOUS)
        reader.execute("COMMIT")
        # ...and the next one sees the write.
        assert reader.execute("SELECT count(*) FROM objects").fetchone()[0] == len(NEXT)
    finally:
        reader.close()


async def test_close_waits_for_a_write_in_progress(db: Path) -> None:
    sink = SQLiteSink(db, resource="configmaps")
    await sink.open()
    gate = GatedItems(NEXT, at=3)
    write = asyncio.create_task(sink.on_list(one_page(gate, "20", 2)))
    try:
        await wait_reached(gate)
        close = asyncio.create_task(sink.close())
        # close() starts while this awaits, and must queue behind the open write.
        await asyncio.to_thread(assert_write_lock_held, db)
        assert not close.done()
    finally:
        gate.release.set()
    await write
    await close
    assert read_mirror(db, resource="configmaps").objects == by_key(*NEXT)
