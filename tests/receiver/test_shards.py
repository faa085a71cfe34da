"""Sharded writes over the HTTP sync protocol (issue 23), over real HTTP into a real SQLite
file: version 2 carries the shard and the receiver replaces that shard's rows only, fenced
per shard; an unsharded write still goes as version 1; a new receiver takes old senders'
version-1 requests, and a sharded write to a receiver pinned to version 1 (what a receiver
from before shards answers) fails with one clear error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from listwatch import Batch, Event, EventType, GroupVersionResource, Snapshot, StaleEpoch
from listwatch._shard import Shard
from listwatch.errors import HttpSyncError
from listwatch.httpsync import HttpSink, SyncServer
from listwatch.httpsync import _wire as protocol
from listwatch.sinks.sqlite import SQLiteStore, read_mirror
from tests.receiver.helpers import items
from tests.serving import serving
from tests.sinks.helpers import in_shard

TOKEN = "s3cret-token"
CONFIGMAPS = GroupVersionResource("", "v1", "configmaps")
HALVES = (Shard.of(0, 2), Shard.of(1, 2))


def snapshot(
    shard: Shard | None, *objs: dict[str, Any], rv: str, epoch: int = 1, generation: int = 1
) -> Snapshot:
    return Snapshot.of(
        items(*objs),
        rv,
        generation=generation,
        epoch=epoch,
        resource=CONFIGMAPS,
        session=f"s-{shard}",
        shard=shard,
    )


def batch(shard: Shard | None, *events: Event, rv: str, epoch: int = 1, sequence: int = 1) -> Batch:
    return Batch(
        {e.key: e for e in events},
        rv,
        1,
        len(events),
        epoch,
        CONFIGMAPS,
        f"s-{shard}",
        sequence,
        shard=shard,
    )


class Receiver:
    def __init__(self, url: str, db: Path) -> None:
        self.url = url
        self.db = db

    def keys(self) -> set[str]:
        return set(read_mirror(self.db, resource="configmaps").objects)

    def sink(self) -> HttpSink:
        return HttpSink(self.url, token=TOKEN)


async def receiver_at(tmp_path: Path, version: int) -> AsyncIterator[Receiver]:
    db = tmp_path / "received.db"
    store = SQLiteStore(db)
    server = SyncServer(store, token=TOKEN, protocol_version=version)
    try:
        async with serving(server.app()) as url:
            yield Receiver(url, db)
    finally:
        await store.close()


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[Receiver]:
    async for served in receiver_at(tmp_path, protocol.PROTOCOL_VERSION):
        yield served


@pytest.fixture
async def old_receiver(tmp_path: Path) -> AsyncIterator[Receiver]:
    """A receiver that serves version 1 only, as every receiver before shards did."""
    async for served in receiver_at(tmp_path, 1):
        yield served


async def post(url: str, kind: str, body: bytes) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": protocol.CONTENT_TYPE, "Authorization": f"Bearer {TOKEN}"}
    path = f"{url}/sync/configmaps/{kind}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(path, data=body, headers=headers) as response,
    ):
        return response.status, orjson.loads(await response.read())


async def test_a_shards_snapshot_over_http_replaces_only_its_own_rows(
    receiver: Receiver,
) -> None:
    first, second = HALVES
    a, gone = in_shard(first, "a"), in_shard(first, "gone")
    b = in_shard(second, "b")
    async with receiver.sink() as sink:
        await sink.on_list(snapshot(None, a, gone, b, rv="10"))
        await sink.on_list(snapshot(first, a, rv="11"))
        assert receiver.keys() == {"default/a", "default/b"}
        await sink.on_list(snapshot(second, b, rv="12"))
        await sink.on_batch(batch(second, Event.from_object(EventType.DELETED, b), rv="13"))
    assert receiver.keys() == {"default/a"}
    state = read_mirror(receiver.db, resource="configmaps", shard=first).state
    assert state is not None
    assert state.resource_version == "11"


async def test_shards_fail_over_independently_through_the_receiver(receiver: Receiver) -> None:
    first, second = HALVES
    async with receiver.sink() as sink:
        await sink.on_list(snapshot(first, in_shard(first, "a"), rv="10", epoch=700))
        await sink.on_list(snapshot(second, in_shard(second, "b"), rv="11", epoch=900))
        # Shard 1's leader goes on beside shard 2's newer one...
        c = in_shard(first, "c", 12)
        await sink.on_batch(batch(first, Event.from_object(EventType.ADDED, c), rv="12", epoch=700))
        # ...until shard 1 moves: its old leader is refused, shard 2's goes on.
        await sink.on_list(snapshot(first, in_shard(first, "a"), c, rv="13", epoch=1000))
        late = in_shard(first, "late", 14)
        with pytest.raises(StaleEpoch, match="shard"):
            await sink.on_batch(
                batch(first, Event.from_object(EventType.ADDED, late), rv="14", epoch=700)
            )
        d = in_shard(second, "d", 15)
        await sink.on_batch(
            batch(second, Event.from_object(EventType.ADDED, d), rv="15", epoch=900)
        )
    assert receiver.keys() == {"default/a", "default/b", "default/c", "default/d"}


def test_an_unsharded_header_is_version_1_byte_for_byte_and_a_sharded_one_version_2() -> None:
    unsharded = protocol.Header("snapshot", CONFIGMAPS, 1, "s", 1, 0, "7")
    assert orjson.loads(protocol.encode_header(unsharded)) == {
        "listwatch": "snapshot",
        "version": 1,
        "resource": {"group": "", "version": "v1", "resource": "configmaps"},
        "epoch": 1,
        "session": "s",
        "generation": 1,
        "sequence": 0,
        "resourceVersion": "7",
    }
    sharded = protocol.Header("snapshot", CONFIGMAPS, 1, "s", 1, 0, "7", Shard.of(3, 4))
    record = orjson.loads(protocol.encode_header(sharded))
    assert record["version"] == 2
    assert record["shard"] == {"start": "0xc000000000000000", "end": "0x10000000000000000"}
    decoded = protocol.decode_header(
        protocol.encode_header(sharded), kind="snapshot", resource="configmaps"
    )
    assert decoded.shard == Shard(3 * 2**62, 2**64)


async def test_a_new_receiver_applies_an_old_senders_version_1_requests(
    receiver: Receiver,
) -> None:
    """The bytes a sender from before shards sends (version 1, no shard field)."""
    a = in_shard(HALVES[0], "a")
    header = protocol.encode_header(protocol.Header("snapshot", CONFIGMAPS, 1, "old", 1, 0, "5"))
    assert b'"version":1' in header
    assert b"shard" not in header
    body = header + b"".join(protocol.encode_object(i) for i in items(a))
    body += protocol.encode_commit(1, "5")
    status, answer = await post(receiver.url, "snapshot", body)
    assert (status, answer["status"]) == (200, "Success")
    assert receiver.keys() == {"default/a"}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            {"version": 1, "shard": {"start": "0x0000000000000000", "end": "0x8000000000000000"}},
            "a version 1 header carries no shard",
        ),
        ({"version": 2, "shard": {"start": "0x8", "end": "0x9"}}, "16 lowercase hex digits"),
        (
            {"version": 2, "shard": {"start": "0x8000000000000000", "end": "0x0000000000000001"}},
            "not a non-empty range",
        ),
        ({"version": 3}, "protocol version 3 is not served (this receiver speaks 1 to 2)"),
    ],
)
async def test_a_bad_shard_or_version_is_refused_clearly(
    receiver: Receiver, header: dict[str, Any], message: str
) -> None:
    record = orjson.loads(
        protocol.encode_header(protocol.Header("snapshot", CONFIGMAPS, 1, "s", 1, 0, "5"))
    )
    body = orjson.dumps(record | header) + b"\n" + protocol.encode_commit(0, "5")
    status, answer = await post(receiver.url, "snapshot", body)
    assert status == 400
    assert message in answer["message"]
    assert not receiver.db.exists() or receiver.keys() == set()


async def test_an_unsharded_write_still_reaches_a_receiver_from_before_shards(
    old_receiver: Receiver,
) -> None:
    async with old_receiver.sink() as sink:
        await sink.on_list(snapshot(None, in_shard(HALVES[0], "a"), rv="5"))
        await sink.on_batch(
            batch(None, Event.from_object(EventType.ADDED, in_shard(HALVES[1], "b")), rv="6")
        )
    assert old_receiver.keys() == {"default/a", "default/b"}


async def test_a_sharded_write_to_a_receiver_from_before_shards_fails_clearly(
    old_receiver: Receiver,
) -> None:
    first = HALVES[0]
    async with old_receiver.sink() as sink:
        with pytest.raises(HttpSyncError, match="predates protocol version 2") as listed:
            await sink.on_list(snapshot(first, in_shard(first, "a"), rv="5"))
        event = Event.from_object(EventType.ADDED, in_shard(first, "b"))
        with pytest.raises(HttpSyncError, match=r"shard 0/2\): upgrade the receiver"):
            await sink.on_batch(batch(first, event, rv="6"))
    assert "400" not in str(listed.value)
    assert not old_receiver.db.exists() or old_receiver.keys() == set()


@pytest.mark.parametrize(
    "message",
    [
        # What receivers before version 2 answer a sharded header: their header record has
        # no shard field (msgspec's refusal), or, had it none, their version check.
        "the first record is not a snapshot header: Object contains unknown field `shard`",
        "protocol version 2 is not served (this receiver speaks 1)",
    ],
)
def test_an_old_receivers_refusal_of_a_sharded_header_is_recognised(message: str) -> None:
    body = protocol.status_body(400, "BadRequest", message)
    sharded = protocol.Header("snapshot", CONFIGMAPS, 1, "s", 1, 0, "5", HALVES[1])
    unsharded = protocol.Header("snapshot", CONFIGMAPS, 1, "s", 1, 0, "5")
    error = protocol.older_receiver(400, body, sharded)
    assert error is not None
    assert "shard 1/2" in str(error)
    assert protocol.older_receiver(400, body, unsharded) is None
    assert protocol.older_receiver(409, body, sharded) is None
