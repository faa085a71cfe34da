"""SQLiteSink: the schema, on_list as the snapshot boundary, on_batch, the readers."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from listwatch import Batch, Event, EventType, Snapshot
from listwatch.errors import StaleWrite
from listwatch.sinks.sqlite import Mirror, SQLiteSink, SyncState, read_mirror

from .conftest import batch, by_key, configmap, connect, event, rows, snapshot, state_row

ADDED, MODIFIED, DELETED = EventType.ADDED, EventType.MODIFIED, EventType.DELETED


# -- lifecycle and schema --------------------------------------------------------------------


async def test_open_creates_the_schema_in_wal_mode(db: Path) -> None:
    async with SQLiteSink(db, resource="pods") as sink:
        assert await sink.count() == 0
        assert await sink.objects() == {}
        assert await sink.sync_state() is None
        connection = connect(db)
        try:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            columns = {
                table: {row["name"] for row in connection.execute(f"PRAGMA table_info({table})")}
                for table in ("objects", "sync_state")
            }
        finally:
            connection.close()
    assert columns["objects"] >= {"resource", "key", "resource_version", "object"}
    assert columns["sync_state"] >= {"resource", "resource_version", "generation", "synced_at"}


async def test_open_and_close_without_context_manager(db: Path) -> None:
    sink = SQLiteSink(db, resource="pods")
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


async def test_use_before_open_says_so(db: Path) -> None:
    sink = SQLiteSink(db, resource="pods")
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


async def test_use_after_close_says_so(db: Path) -> None:
    async with SQLiteSink(db, resource="pods") as sink:
        pass
    with pytest.raises(RuntimeError, match="not open"):
        await sink.count()


async def test_opening_twice_is_an_error(sink: SQLiteSink) -> None:
    with pytest.raises(RuntimeError, match="already open"):
        await sink.open()


@pytest.mark.parametrize("path", ["", ":memory:", "file::memory:?cache=shared"])
def test_in_memory_databases_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="file path"):
        SQLiteSink(path, resource="pods")


def test_resource_must_be_named(db: Path) -> None:
    with pytest.raises(ValueError, match="resource"):
        SQLiteSink(db, resource="")


async def test_a_foreign_objects_table_is_refused(db: Path) -> None:
    connection = sqlite3.connect(db)
    connection.execute("CREATE TABLE objects (id INTEGER PRIMARY KEY, name TEXT)")
    connection.commit()
    connection.close()
    sink = SQLiteSink(db, resource="pods")
    with pytest.raises(RuntimeError, match="did not create"):
        await sink.open()
    with pytest.raises(RuntimeError, match="not open"):
        await sink.count()


# -- on_list ---------------------------------------------------------------------------------


async def test_on_list_stores_objects_and_sync_state(sink: SQLiteSink, db: Path) -> None:
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
    assert (state.resource, state.resource_version, state.generation) == ("configmaps", "42", 3)
    assert before <= state.synced_at <= after
    assert state.listed_at == state.synced_at

    stored = rows(db, "configmaps")
    assert stored["default/a"]["resource_version"] == "10"
    assert stored["kube-system/b"]["resource_version"] == "11"


async def test_on_list_replaces_and_deletes_vanished_objects(sink: SQLiteSink) -> None:
    a, b, c = configmap("a", 1), configmap("b", 2), configmap("c", 3)
    await sink.on_list(snapshot(a, b, c, rv="10"))
    b2, d = configmap("b", 20, changed="yes"), configmap("d", 21)
    await sink.on_list(snapshot(b2, d, rv="30", generation=2))

    assert await sink.objects() == by_key(b2, d)
    state = await sink.sync_state()
    assert state is not None
    assert (state.resource_version, state.generation) == ("30", 2)


async def test_an_empty_snapshot_empties_the_resource(sink: SQLiteSink) -> None:
    await sink.on_list(snapshot(configmap("a"), configmap("b"), rv="10"))
    await sink.on_list(snapshot(rv="11", generation=2))
    assert await sink.objects() == {}
    assert await sink.count() == 0
    state = await sink.sync_state()
    assert state is not None
    assert state.resource_version == "11"


async def test_on_list_leaves_other_resources_in_the_same_file_alone(db: Path) -> None:
    pod = {"kind": "Pod", "metadata": {"name": "a", "namespace": "default"}}
    async with (
        SQLiteSink(db, resource="configmaps") as configmaps,
        SQLiteSink(db, resource="pods") as pods,
    ):
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


async def test_unchanged_objects_are_not_rewritten(sink: SQLiteSink, db: Path) -> None:
    a, b = configmap("a", 1), configmap("b", 2)
    await sink.on_list(snapshot(a, b, rv="10"))
    first = await sink.sync_state()
    b2 = configmap("b", 3, changed="yes")
    await sink.on_list(snapshot(a, b2, rv="11", generation=2))
    second = await sink.sync_state()
    assert first is not None
    assert second is not None

    stored = rows(db, "configmaps")
    assert stored["default/a"]["updated_at"] == first.synced_at
    assert stored["default/b"]["updated_at"] == second.synced_at
    assert stored["default/b"]["resource_version"] == "3"


async def test_a_custom_key_function(db: Path) -> None:
    def by_uid(obj: dict[str, Any]) -> str:
        return str(obj["metadata"]["uid"])

    a = {"metadata": {"name": "a", "uid": "u-1", "resourceVersion": "5"}}
    async with SQLiteSink(db, resource="things", key=by_uid) as sink:
        await sink.on_list(snapshot(a, rv="5"))
        assert await sink.objects() == {"u-1": a}


async def test_duplicate_keys_in_a_snapshot_keep_the_last(sink: SQLiteSink) -> None:
    await sink.on_list(snapshot(configmap("a", 1, v="old"), configmap("a", 2, v="new")))
    assert await sink.objects() == by_key(configmap("a", 2, v="new"))


# -- on_batch --------------------------------------------------------------------------------


async def test_on_batch_applies_upserts_and_deletes(sink: SQLiteSink, db: Path) -> None:
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
    assert rows(db, "configmaps")["default/b"]["resource_version"] == "12"
    state = await sink.sync_state()
    assert state is not None
    assert listed is not None
    assert (state.resource_version, state.generation) == ("14", 1)
    assert state.synced_at >= listed.synced_at
    assert state.listed_at == listed.listed_at  # a batch is not a snapshot


async def test_batches_apply_in_order(sink: SQLiteSink) -> None:
    await sink.on_list(snapshot(configmap("a", 1), rv="1"))
    await sink.on_batch(batch(event(DELETED, configmap("a", 2)), rv="2"))
    await sink.on_batch(batch(event(ADDED, configmap("a", 3, again="yes")), rv="3"))
    await sink.on_batch(batch(event(MODIFIED, configmap("b", 4)), rv="4"))
    await sink.on_batch(batch(event(DELETED, configmap("b", 5)), rv="5"))
    assert await sink.objects() == by_key(configmap("a", 3, again="yes"))
    state = await sink.sync_state()
    assert state is not None
    assert state.resource_version == "5"


async def test_an_empty_batch_advances_the_resource_version(sink: SQLiteSink) -> None:
    a = configmap("a", 1)
    await sink.on_list(snapshot(a, rv="10"))
    await sink.on_batch(batch(rv="99"))
    assert await sink.objects() == by_key(a)
    state = await sink.sync_state()
    assert state is not None
    assert state.resource_version == "99"


async def test_a_batch_without_resource_version_keeps_the_resume_point(sink: SQLiteSink) -> None:
    await sink.on_list(snapshot(rv="10"))
    await sink.on_batch(batch(event(ADDED, configmap("a")), rv=""))
    state = await sink.sync_state()
    assert state is not None
    assert state.resource_version == "10"
    assert await sink.count() == 1


async def test_a_batch_before_any_snapshot_creates_the_sync_state(sink: SQLiteSink) -> None:
    await sink.on_batch(batch(event(ADDED, configmap("a")), rv="5", generation=2))
    state = await sink.sync_state()
    assert state is not None
    assert (state.resource_version, state.generation, state.listed_at) == ("5", 2, None)


@pytest.mark.parametrize("kind", [EventType.BOOKMARK, EventType.ERROR])
async def test_a_batch_cannot_hold_bookmarks_or_errors(sink: SQLiteSink, kind: EventType) -> None:
    await sink.on_list(snapshot(configmap("a"), rv="10"))
    bad = Batch({"default/b": Event(kind, configmap("b"), "default/b", "11")}, "11", 1)
    with pytest.raises(ValueError, match=str(kind)):
        await sink.on_batch(bad)
    state = await sink.sync_state()
    assert state is not None
    assert state.resource_version == "10"


async def test_a_batch_from_an_older_generation_is_refused(sink: SQLiteSink) -> None:
    await sink.on_list(Snapshot.of([configmap("a")], "10", generation=2, session="s1"))
    old = Batch({"default/a": event(DELETED, configmap("a"))}, "9", 1, session="s1", sequence=1)
    with pytest.raises(StaleWrite, match="holds generation 2"):
        await sink.on_batch(old)
    assert set(await sink.objects()) == {"default/a"}
    assert await sink.count() == 1


# -- sharing a file, readers -----------------------------------------------------------------


async def test_sinks_sharing_a_file_write_concurrently(db: Path) -> None:
    async with (
        SQLiteSink(db, resource="configmaps") as configmaps,
        SQLiteSink(db, resource="secrets") as secrets,
    ):

        async def churn(sink: SQLiteSink, prefix: str) -> None:
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


async def test_other_tools_can_query_the_json(sink: SQLiteSink, db: Path) -> None:
    await sink.on_list(
        snapshot(configmap("a", tier="web"), configmap("b", tier="db"), configmap("c", tier="web"))
    )
    connection = connect(db)
    try:
        names = connection.execute(
            "SELECT json_extract(object, '$.metadata.name') FROM objects "
            "WHERE resource = 'configmaps' AND json_extract(object, '$.data.tier') = 'web' "
            "ORDER BY key"
        ).fetchall()
    finally:
        connection.close()
    assert [row[0] for row in names] == ["a", "c"]


async def test_read_mirror_reads_objects_and_state_synchronously(
    sink: SQLiteSink, db: Path
) -> None:
    a = configmap("a", 1)
    await sink.on_list(snapshot(a, rv="10", generation=4))
    mirror = read_mirror(db, resource="configmaps")
    assert isinstance(mirror, Mirror)
    assert mirror.objects == by_key(a)
    assert mirror.state == await sink.sync_state()
    assert read_mirror(db, resource="pods") == Mirror({}, None)


def test_read_mirror_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_mirror(tmp_path / "missing.db", resource="pods")
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    with pytest.raises(ValueError, match="not a listwatch"):
        read_mirror(other, resource="pods")


async def test_sync_state_is_a_frozen_value(sink: SQLiteSink, db: Path) -> None:
    await sink.on_list(snapshot(rv="10", generation=2))
    state = await sink.sync_state()
    assert isinstance(state, SyncState)
    with pytest.raises(AttributeError):
        state.generation = 3  # type: ignore[misc]
    row = state_row(db, "configmaps")
    assert row is not None
    assert (row["resource_version"], row["generation"]) == ("10", 2)


# -- the sink equals a dict model after any sequence of writes ------------------------------

_names = st.sampled_from(["a", "b", "c", "d", "e"])
_values = st.text(max_size=3)
_snapshot_op = st.tuples(st.just("list"), st.dictionaries(_names, _values, max_size=5))
_batch_op = st.tuples(
    st.just("batch"),
    st.dictionaries(
        _names, st.tuples(st.sampled_from([ADDED, MODIFIED, DELETED]), _values), max_size=5
    ),
)


async def _apply(ops: list[tuple[str, dict[str, Any]]], path: Path) -> None:
    model: dict[str, dict[str, Any]] = {}
    async with SQLiteSink(path, resource="configmaps") as sink:
        for rv, (kind, changes) in enumerate(ops, start=1):
            if kind == "list":
                items = [configmap(name, rv, v=value) for name, value in changes.items()]
                await sink.on_list(Snapshot.of(items, str(rv), generation=rv))
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
    assert read_mirror(path, resource="configmaps").objects == model


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_snapshot_op, _batch_op), min_size=1, max_size=8))
def test_the_mirror_follows_any_sequence_of_snapshots_and_batches(
    ops: list[tuple[str, dict[str, Any]]],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_apply(ops, Path(directory) / "model.db"))
