"""What only SQLiteSink's writes do (the all-or-nothing contract is test_contract.py): a
process killed in the middle of a snapshot leaves the file as it was (the snapshot never
reached it), a snapshot being staged takes no lock on the file, not even a read lock, and a
reader holding a read transaction on another connection does not block writes (WAL)."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

from listwatch.sinks.sqlite import SQLiteSink, read_mirror

from .helpers import (
    NEXT,
    PREVIOUS,
    GatedItems,
    by_key,
    run_script,
    snapshot,
    sqlite_connect,
    write_previous,
)

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
        wal_before = wal.stat().st_size
        for start in range(0, 2 * crash_at, 100):
            if start == crash_at:  # half the snapshot is staged, nothing committed
                report = {"rows": start, "wal_before": wal_before, "wal_now": wal.stat().st_size}
                print(json.dumps(report), flush=True)
                os._exit(17)
            yield Page([Item.of(configmap(i)) for i in range(start, start + 100)], "999")


    async def main():
        async with SQLiteSink(db, resource="configmaps") as sink:
            await sink.on_list(Snapshot(pages(), resource_version="999", generation=7))
        print("the crash did not happen", flush=True)


    asyncio.run(main())
    """
)


async def test_a_crash_mid_snapshot_keeps_the_previous_state(db: Path, tmp_path: Path) -> None:
    async with SQLiteSink(db, resource="configmaps") as sink:
        previous = await write_previous(sink)

    script = tmp_path / "crashing_writer.py"
    script.write_text(CRASHING_WRITER)
    child = await run_script(script, str(db), "2000")
    assert child.returncode == 17, child.stdout + child.stderr
    report = json.loads(child.stdout)
    assert report["rows"] == 2000
    # 8 MB staged, and not a byte of it in the mirror's file: staging writes elsewhere.
    assert report["wal_now"] == report["wal_before"]

    connection = sqlite_connect(db)
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


# -- a reader on another connection ---------------------------------------------------------


async def test_a_reader_holding_a_read_transaction_does_not_block_writes(
    sqlite_sink: SQLiteSink, db: Path
) -> None:
    await write_previous(sqlite_sink)
    reader = sqlite_connect(db)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM objects").fetchone()[0] == len(PREVIOUS)
        await sqlite_sink.on_list(snapshot(*NEXT, rv="20", generation=2))  # commits meanwhile
        # The open read transaction keeps its snapshot...
        assert reader.execute("SELECT count(*) FROM objects").fetchone()[0] == len(PREVIOUS)
        reader.execute("COMMIT")
        # ...and the next one sees the write.
        assert reader.execute("SELECT count(*) FROM objects").fetchone()[0] == len(NEXT)
    finally:
        reader.close()


# -- staging locks nothing of the file -------------------------------------------------------


async def test_a_snapshot_being_staged_takes_no_lock_on_the_file(
    sqlite_sink: SQLiteSink, db: Path
) -> None:
    """Half a snapshot is staged, the staging statement stopped in the middle (its
    connection's thread waits in the gate): another connection writes and commits without
    waiting (timeout 0), and a TRUNCATE checkpoint completes, which it cannot while any
    connection holds a read transaction (a SHARED lock) on the file."""
    previous = await write_previous(sqlite_sink)
    gate = GatedItems(NEXT, at=len(NEXT) // 2)
    staging = asyncio.create_task(sqlite_sink.on_list(gate.snapshot))
    other = sqlite_connect(db)
    try:
        await gate.wait_reached()
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE sync_state SET synced_at = synced_at WHERE resource = 'configmaps'")
        other.execute("COMMIT")
        busy, frames, checkpointed = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
        assert frames == checkpointed == 0  # the WAL was emptied: nobody reads an old state
        assert read_mirror(db, resource="configmaps").objects == by_key(*PREVIOUS)
    finally:
        other.close()
        gate.release.set()
    await staging
    assert await sqlite_sink.objects() == by_key(*NEXT)
    state = await sqlite_sink.sync_state()
    assert state is not None
    assert (state.resource_version, previous.resource_version) == ("20", "10")
