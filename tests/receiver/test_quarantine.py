"""An object the receiver's store cannot keep as JSON is kept as its bytes, over real HTTP into
a real SQLite file and a real PostgreSQL database: never a 400 (which would restart the
sender's generation, and the same object would be refused at every one) nor a 503. The 200
names it, the receiver logs a WARNING naming it (never quoting it), and ``HttpSink`` reports
it to its Syncer as an in-process sink would."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from listwatch import Batch, Event, EventType, GroupVersionResource, Item, Snapshot, Store
from listwatch.httpsync import SyncServer
from listwatch.httpsync import _wire as protocol
from listwatch.httpsync._client import HttpSink
from listwatch.sinks._base import Sink
from listwatch.sinks.postgres import PostgresStore
from listwatch.sinks.sqlite import SQLiteStore
from tests.serving import serving

TOKEN = "quarantine-token"
CONFIGMAPS = GroupVersionResource("", "v1", "configmaps")
SECRET = "secret-body-text"
NUL_REASON = "it holds the character U+0000, which PostgreSQL's jsonb cannot store"
DEEP_REASON = "it nests deeper than 512 levels"
StoreFactory = Callable[[], Awaitable[Store]]


def configmap(name: str, rv: str, data: bytes) -> bytes:
    return (
        b'{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"' + name.encode()
        + b'","namespace":"default","resourceVersion":"' + rv.encode() + b'"},"data":'
        + data + b"}"
    )  # fmt: skip


NUL = configmap("nul", "2", b'{"v":"' + SECRET.encode() + b'\\u0000"}')
DEEP = configmap("deep", "3", b'{"a":' * 1500 + b'"' + SECRET.encode() + b'"' + b"}" * 1500)
NOT_UTF8 = configmap("bad", "4", b'{"v":"' + SECRET.encode() + b'\xff"}')
PLAIN = configmap("a", "1", b'{"v":"1"}')


@pytest.fixture(params=["sqlite", "postgres"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, StoreFactory]:
    if request.param == "sqlite":

        async def sqlite() -> Store:
            return SQLiteStore(tmp_path / "received.db")

        return "sqlite", sqlite
    dsn = request.getfixturevalue("postgres_dsn")

    async def postgres() -> Store:
        return await PostgresStore.connect(dsn)

    return "postgres", postgres


@pytest.fixture
async def served(
    new_store: tuple[str, StoreFactory],
) -> AsyncIterator[tuple[str, str, Store, SyncServer]]:
    name, factory = new_store
    store = await factory()
    server = SyncServer(store, token=TOKEN)
    try:
        async with serving(server.runner()) as url:
            yield name, url, store, server
    finally:
        await store.close()


def item(data: bytes, rv: str) -> Item:
    name = re.search(rb'"name":"(\w+)"', data)
    assert name is not None
    return Item(f"default/{name.group(1).decode()}", rv, raw=data)


async def test_what_the_store_cannot_keep_as_json_is_kept_and_named_in_the_200(
    served: tuple[str, str, Store, SyncServer], caplog: pytest.LogCaptureFixture
) -> None:
    """A snapshot and a batch through ``HttpSink``: the objects that cannot travel as JSON go
    as raw bytes, the NUL as JSON (SQLite keeps it so; PostgreSQL quarantines it), and the
    sender learns from each 200 what the store kept as bytes."""
    kind, url, store, server = served
    caplog.set_level(logging.WARNING)
    expected = {"default/deep": DEEP_REASON, "default/bad": r"its JSON is not valid UTF-8"}
    if kind == "postgres":
        expected["default/nul"] = re.escape(NUL_REASON)
    async with HttpSink(url, token=TOKEN) as sink:
        items = [item(PLAIN, "1"), item(NUL, "2"), item(DEEP, "3"), item(NOT_UTF8, "4")]
        snapshot = Snapshot.of(items, "10", generation=1, resource=CONFIGMAPS, session="s")
        await sink.on_list(snapshot)
        assert set(snapshot.quarantined) == set(expected)
        for key, why in expected.items():
            assert re.search(why, snapshot.quarantined[key])

        modified = EventType.MODIFIED
        events = {
            "default/deep": Event(modified, key="default/deep", resource_version="11", raw=DEEP),
            "default/nul": Event(modified, key="default/nul", resource_version="12", raw=NUL),
            "default/bad": Event(EventType.DELETED, {}, "default/bad", "13"),
        }
        batch = Batch(events, "13", 1, resource=CONFIGMAPS, session="s", sequence=1)
        await sink.on_batch(batch)
        assert set(batch.quarantined) == set(expected) - {"default/bad"}

    sink_of = await store.sink("configmaps")
    assert isinstance(sink_of, Sink)
    kept = await sink_of.quarantined()
    assert kept["default/deep"].raw == DEEP
    assert kept["default/deep"].resource_version == "11"
    assert "default/bad" not in kept
    objects = await sink_of.objects()
    assert set(objects) == ({"default/a"} if kind == "postgres" else {"default/a", "default/nul"})
    if kind == "postgres":
        assert kept["default/nul"].raw == NUL
    warnings = [r.getMessage() for r in caplog.records if r.name == "listwatch.httpsync._server"]
    named = (
        f"cluster default: configmaps default/deep is quarantined: {DEEP_REASON}; the store "
        "keeps its bytes"
    )
    assert f"{named}, not its JSON" in warnings
    assert all(SECRET not in line for line in warnings)
    scraped = server.registry.get_sample_value(
        "listwatch_receiver_quarantined_records_total",
        {"cluster": "default", "resource": "configmaps"},
    )
    assert scraped == (5.0 if kind == "postgres" else 3.0)  # fmt: skip


async def post(url: str, body: bytes) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": protocol.CONTENT_TYPE}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/sync/configmaps/snapshot", data=body, headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_an_object_that_is_not_json_a_store_can_keep_is_still_a_400_as_object(
    served: tuple[str, str, Store, SyncServer],
) -> None:
    """Sent as ``object`` (not as ``raw``) it breaks the protocol: the sender's fault, a 400
    naming the record, as before. Only ``raw`` carries such bytes."""
    _, url, _, _ = served
    head = protocol.encode_header(protocol.Header("snapshot", CONFIGMAPS, 1, "s", 1, 0, "5"))
    record = b'{"key":"default/deep","resourceVersion":"3","object":' + DEEP + b"}\n"
    status, body = await post(url, head + record + protocol.encode_commit(1, "5"))
    assert status == 400
    assert "record 1" in str(body["message"])
    raw = protocol.encode_object(item(DEEP, "3"))
    status, body = await post(url, head + raw + protocol.encode_commit(1, "5"))
    assert status == 200, body
    assert body["details"] == {
        "records": 1,
        "quarantined": [{"key": "default/deep", "reason": DEEP_REASON}],
        "quarantinedCount": 1,
    }


async def test_a_sender_learns_the_first_50_by_name_and_the_count_of_the_rest(
    served: tuple[str, str, Store, SyncServer], caplog: pytest.LogCaptureFixture
) -> None:
    _, url, store, _ = served
    caplog.set_level(logging.WARNING)
    deep = [
        item(configmap(f"d{i:02}", "3", DEEP[DEEP.index(b'"data":') + 7 : -1]), "3")
        for i in range(60)
    ]
    snapshot = Snapshot.of(deep, "10", generation=1, resource=CONFIGMAPS, session="s")
    async with HttpSink(url, token=TOKEN) as sink:
        await sink.on_list(snapshot)
    assert sorted(snapshot.quarantined) == [f"default/d{i:02}" for i in range(50)]
    sink_of = await store.sink("configmaps")
    assert isinstance(sink_of, Sink)
    assert len(await sink_of.quarantined()) == 60
    said = [r.getMessage() for r in caplog.records if r.name == "listwatch"]
    assert said == [
        "the receiver quarantined 10 more objects of configmaps than its answer names (its "
        "store's rows say which)"
    ]
