"""SQLiteSink's fence, in the write's own transaction: a lower epoch changes nothing (in
any resource of the file), a replayed batch changes nothing, and an old file gains the
stamp columns on open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from listwatch import Batch, EventType, Snapshot, StaleEpoch
from listwatch.errors import StaleWrite
from listwatch.sinks.sqlite import SCHEMA_VERSION, SQLiteSink, read_mirror

from .conftest import by_key, configmap, event

ADDED, MODIFIED = EventType.ADDED, EventType.MODIFIED


def snap(
    *objs: dict[str, object], rv: str, epoch: int, session: str, generation: int = 1
) -> Snapshot:
    return Snapshot.of(objs, rv, generation=generation, epoch=epoch, session=session)


def delta(
    *events: object, rv: str, epoch: int, session: str, sequence: int, generation: int = 1
) -> Batch:
    return Batch(
        {e.key: e for e in events},  # type: ignore[attr-defined]
        rv,
        generation,
        epoch=epoch,
        session=session,
        sequence=sequence,
    )


async def test_a_lower_epoch_is_refused_and_changes_nothing(sink: SQLiteSink, db: Path) -> None:
    await sink.on_list(snap(configmap("a", 1), rv="1", epoch=7, session="new-leader"))
    before = read_mirror(db, resource="configmaps")
    with pytest.raises(StaleEpoch, match="epoch 6: the receiver has recorded epoch 7"):
        await sink.on_list(snap(configmap("old", 9), rv="9", epoch=6, session="old-leader"))
    with pytest.raises(StaleEpoch):
        await sink.on_batch(
            delta(event(MODIFIED, configmap("a", 9)), rv="9", epoch=6, session="old", sequence=1)
        )
    assert read_mirror(db, resource="configmaps") == before


async def test_the_fence_covers_every_resource_of_the_file(db: Path) -> None:
    """The new leader has written pods; the old one must not write nodes either."""
    async with SQLiteSink(db, resource="pods") as pods, SQLiteSink(db, resource="nodes") as nodes:
        await nodes.on_list(snap(configmap("n", 1), rv="1", epoch=3, session="old"))
        await pods.on_list(snap(configmap("p", 2), rv="2", epoch=4, session="new"))
        with pytest.raises(StaleEpoch):
            await nodes.on_batch(
                delta(event(ADDED, configmap("m", 3)), rv="3", epoch=3, session="old", sequence=1)
            )
        assert set(await nodes.objects()) == {"default/n"}


async def test_a_replayed_batch_changes_nothing(sink: SQLiteSink, db: Path) -> None:
    await sink.on_list(snap(configmap("a", 1), rv="1", epoch=1, session="s"))
    first = delta(
        event(MODIFIED, configmap("a", 2, v="2")), rv="2", epoch=1, session="s", sequence=1
    )
    second = delta(
        event(MODIFIED, configmap("a", 3, v="3")), rv="3", epoch=1, session="s", sequence=2
    )
    await sink.on_batch(first)
    await sink.on_batch(second)
    await sink.on_batch(first)  # a retried request, after the newer batch: no effect
    assert await sink.objects() == by_key(configmap("a", 3, v="3"))
    state = await sink.sync_state()
    assert state is not None
    assert (state.resource_version, state.sequence, state.session) == ("3", 2, "s")


async def test_a_batch_after_a_missing_one_is_refused(sink: SQLiteSink) -> None:
    await sink.on_list(snap(configmap("a", 1), rv="1", epoch=1, session="s"))
    with pytest.raises(StaleWrite, match="one went missing"):
        await sink.on_batch(
            delta(event(MODIFIED, configmap("a", 3)), rv="3", epoch=1, session="s", sequence=2)
        )
    assert await sink.objects() == by_key(configmap("a", 1))


async def test_a_file_of_the_previous_schema_gains_the_stamp_columns(db: Path) -> None:
    connection = sqlite3.connect(db)
    connection.executescript(
        """
        CREATE TABLE objects (resource TEXT NOT NULL, key TEXT NOT NULL,
            resource_version TEXT NOT NULL, object TEXT NOT NULL, updated_at REAL NOT NULL,
            PRIMARY KEY (resource, key));
        CREATE TABLE sync_state (resource TEXT PRIMARY KEY, resource_version TEXT NOT NULL,
            generation INTEGER NOT NULL, synced_at REAL NOT NULL, listed_at REAL);
        INSERT INTO objects VALUES ('configmaps', 'default/a', '1', '{"metadata":{}}', 0);
        INSERT INTO sync_state VALUES ('configmaps', '1', 4, 0, 0);
        """
    )
    connection.close()
    async with SQLiteSink(db, resource="configmaps") as sink:
        state = await sink.sync_state()
        assert state is not None
        assert (state.generation, state.epoch, state.session, state.sequence) == (4, 0, "", 0)
        await sink.on_list(snap(configmap("b", 2), rv="2", epoch=1, session="s"))
    connection = sqlite3.connect(db)
    try:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        connection.close()


async def test_a_file_of_a_newer_schema_is_refused(db: Path) -> None:
    connection = sqlite3.connect(db)
    connection.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(RuntimeError, match="newer than this listwatch"):
        async with SQLiteSink(db, resource="configmaps"):
            pass
