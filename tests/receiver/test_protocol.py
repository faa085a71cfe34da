"""The HTTP sync protocol against the reference receiver, over real HTTP into a real SQLite
file: a cut full sync commits nothing, a stale epoch gets 409 and changes nothing, an empty
full sync deletes everything, a replayed request changes nothing, and every request must
authenticate."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from listwatch import (
    Batch,
    Event,
    EventType,
    GroupVersionResource,
    Item,
    Snapshot,
    StaleEpoch,
)
from listwatch.errors import HttpSyncError, StaleWrite
from listwatch.httpsync import HttpSink, SyncServer
from listwatch.httpsync import _wire as protocol
from listwatch.sinks.sqlite import SQLiteStore, read_mirror
from tests.serving import serving

TOKEN = "s3cret-token"
PODS = GroupVersionResource("", "v1", "pods")


def pod(name: str, rv: int, **labels: str) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": "default",
            "resourceVersion": str(rv),
            "labels": labels,
        },
    }


def snapshot(
    *objs: dict[str, Any], rv: str, epoch: int = 1, generation: int = 1, session: str = "s"
) -> Snapshot:
    items = [
        Item(
            f"default/{o['metadata']['name']}",
            o["metadata"]["resourceVersion"],
            raw=orjson.dumps(o),
        )
        for o in objs
    ]
    return Snapshot.of(
        items, rv, generation=generation, epoch=epoch, resource=PODS, session=session, page_size=2
    )


def batch(
    *events: Event,
    rv: str,
    epoch: int = 1,
    generation: int = 1,
    sequence: int = 1,
    session: str = "s",
) -> Batch:
    return Batch(
        {e.key: e for e in events}, rv, generation, len(events), epoch, PODS, session, sequence
    )


def modified(obj: dict[str, Any]) -> Event:
    return Event.from_object(EventType.MODIFIED, obj)


def deleted(obj: dict[str, Any]) -> Event:
    return Event.from_object(EventType.DELETED, obj)


class Served:
    def __init__(self, url: str, db: Path, receiver: SyncServer) -> None:
        self.url = url
        self.db = db
        self.receiver = receiver

    def state(self) -> dict[str, str]:
        try:
            mirror = read_mirror(self.db, resource="pods")
        except (FileNotFoundError, ValueError):
            return {}
        return {key: obj["metadata"]["resourceVersion"] for key, obj in mirror.objects.items()}

    def sink(self, **kwargs: Any) -> HttpSink:
        kwargs.setdefault("token", TOKEN)
        return HttpSink(self.url, **kwargs)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    db = tmp_path / "received.db"
    store = SQLiteStore(db)
    receiver = SyncServer(store, token=TOKEN)
    try:
        async with serving(receiver.app()) as url:
            yield Served(url, db, receiver)
    finally:
        await store.close()


async def test_a_snapshot_and_batches_arrive_in_order(served: Served) -> None:
    async with served.sink() as sink:
        await sink.on_list(snapshot(pod("a", 1), pod("b", 2), pod("c", 3), rv="3"))
        await sink.on_batch(batch(modified(pod("a", 4, v="2")), deleted(pod("b", 5)), rv="5"))
    assert served.state() == {"default/a": "4", "default/c": "3"}
    mirror = read_mirror(served.db, resource="pods")
    assert mirror.objects["default/a"]["metadata"]["labels"] == {"v": "2"}
    assert mirror.state is not None
    assert (mirror.state.epoch, mirror.state.generation, mirror.state.sequence) == (1, 1, 1)


async def test_an_empty_snapshot_deletes_everything(served: Served) -> None:
    """The seed's server skipped an empty full sync, so deleting the last pod never reached
    it. Here an empty snapshot is a snapshot."""
    async with served.sink() as sink:
        await sink.on_list(snapshot(pod("a", 1), pod("b", 2), rv="2"))
        await sink.on_list(snapshot(rv="9", generation=2))
    assert served.state() == {}
    mirror = read_mirror(served.db, resource="pods")
    assert mirror.state is not None
    assert mirror.state.resource_version == "9"


async def test_a_full_sync_cut_short_commits_nothing(served: Served) -> None:
    async with served.sink() as sink:
        await sink.on_list(snapshot(pod("a", 1), rv="1"))
    header = protocol.encode_header(protocol.Header("snapshot", PODS, 1, "s", 2, 0, "9"))
    records = [
        protocol.encode_object(Item(f"default/n{i}", "9", raw=orjson.dumps(pod(f"n{i}", 9))))
        for i in range(50)
    ]
    body = header + b"".join(records)  # no commit record: the sender died here

    async with aiohttp.ClientSession() as http:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", int(served.url.rsplit(":", 1)[1])
        )
        request = (
            f"POST /sync/pods/snapshot HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: {protocol.CONTENT_TYPE}\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        chunk = f"{len(body):x}\r\n".encode() + body + b"\r\n"
        writer.write(request + chunk)
        await writer.drain()
        writer.close()  # the connection drops mid-body, without the last chunk
        await writer.wait_closed()
        del reader
        # The receiver noticed the end of the body and rolled back: nothing of it committed.
        async with http.post(
            f"{served.url}/sync/pods/snapshot",
            data=header + b"".join(records[:3]),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": protocol.CONTENT_TYPE},
        ) as response:
            answer = await response.json()
    assert response.status == 400
    assert "before its commit record: nothing was applied" in answer["message"]
    assert served.state() == {"default/a": "1"}


async def test_a_count_that_does_not_match_commits_nothing(served: Served) -> None:
    header = protocol.encode_header(protocol.Header("snapshot", PODS, 1, "s", 1, 0, "2"))
    body = (
        header
        + protocol.encode_object(Item("default/a", "1", raw=orjson.dumps(pod("a", 1))))
        + protocol.encode_commit(2, "2")
    )
    status, answer = await post(served, "/sync/pods/snapshot", body)
    assert status == 400
    assert "counts 2 objects, 1 came" in answer["message"]
    assert served.state() == {}


async def test_a_stale_epoch_gets_409_and_changes_nothing(served: Served) -> None:
    async with served.sink() as sink:
        await sink.on_list(snapshot(pod("a", 1), rv="1", epoch=5, session="new-leader"))
        with pytest.raises(StaleEpoch) as caught:
            await sink.on_list(snapshot(pod("old", 9), rv="9", epoch=4, session="old-leader"))
        with pytest.raises(StaleEpoch):
            await sink.on_batch(batch(modified(pod("a", 9)), rv="9", epoch=4, session="old-leader"))
    assert (caught.value.epoch, caught.value.recorded) == (4, 5)
    assert served.state() == {"default/a": "1"}
    header = protocol.encode_header(protocol.Header("snapshot", PODS, 4, "old", 1, 0, "9"))
    status, answer = await post(
        served, "/sync/pods/snapshot", header + protocol.encode_commit(0, "9")
    )
    assert status == 409
    assert answer["reason"] == "Conflict"
    assert answer["details"]["causes"] == [{"reason": "StaleEpoch"}]


async def test_a_replayed_request_changes_nothing(served: Served) -> None:
    first = batch(modified(pod("a", 2, v="2")), rv="2", sequence=1)
    second = batch(modified(pod("a", 3, v="3")), rv="3", sequence=2)
    async with served.sink() as sink:
        await sink.on_list(snapshot(pod("a", 1), rv="1"))
        await sink.on_batch(first)
        await sink.on_batch(second)
        await sink.on_batch(first)  # retried after its answer was lost: applied already
        await sink.on_list(snapshot(pod("a", 1), rv="1"))  # the generation's snapshot again
    assert served.state() == {"default/a": "3"}


async def test_an_older_generation_is_refused(served: Served) -> None:
    async with served.sink() as sink:
        await sink.on_list(snapshot(pod("a", 1), rv="1", generation=3))
        with pytest.raises(StaleWrite, match="holds generation 3"):
            await sink.on_batch(batch(deleted(pod("a", 2)), rv="2", generation=2))
    assert served.state() == {"default/a": "1"}


async def test_every_request_must_authenticate(served: Served) -> None:
    async with served.sink(token="wrong") as sink:
        with pytest.raises(HttpSyncError, match="401 Unauthorized") as caught:
            await sink.on_list(snapshot(pod("a", 1), rv="1"))
    assert "wrong" not in str(caught.value)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{served.url}/sync/pods/batch", data=b"x") as response:
            assert response.status == 401
        for path in ("/metrics", "/healthz"):
            async with http.get(served.url + path) as response:
                assert response.status == 401, path
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with http.get(served.url + path, headers=headers) as response:
                assert response.status == 200, path
    assert served.state() == {}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"", protocol.CONTENT_TYPE, 400, "the body is empty"),
        (b'{"not":"a header"}\n', protocol.CONTENT_TYPE, 400, "not a snapshot header"),
        (b"{}", "application/json", 415, "must be application/x-ndjson"),
    ],
)
async def test_malformed_requests_are_refused_clearly(
    served: Served, body: bytes, content_type: str, status: int, message: str
) -> None:
    got, answer = await post(served, "/sync/pods/snapshot", body, content_type=content_type)
    assert got == status
    assert message in answer["message"]


async def test_a_record_over_the_limit_is_refused_before_it_is_whole(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(protocol, "MAX_RECORD_BYTES", 4096)
    header = protocol.encode_header(protocol.Header("snapshot", PODS, 1, "s", 1, 0, "1"))
    huge = pod("big", 1)
    huge["data"] = "x" * 10_000
    body = header + protocol.encode_object(Item("default/big", "1", raw=orjson.dumps(huge)))
    status, answer = await post(served, "/sync/pods/snapshot", body)
    assert status == 413
    assert "larger than 4096 bytes" in answer["message"]


async def test_gzip_bodies_are_accepted(served: Served) -> None:
    header = protocol.encode_header(protocol.Header("snapshot", PODS, 1, "s", 1, 0, "1"))
    plain = (
        header
        + protocol.encode_object(Item("default/a", "1", raw=orjson.dumps(pod("a", 1))))
        + protocol.encode_commit(1, "1")
    )
    status, _ = await post(served, "/sync/pods/snapshot", gzip.compress(plain), encoding="gzip")
    assert status == 200
    assert served.state() == {"default/a": "1"}
    assert zlib  # the sender's streaming gzip is covered by every HttpSink test above


async def post(
    served: Served,
    path: str,
    body: bytes,
    *,
    content_type: str = protocol.CONTENT_TYPE,
    encoding: str | None = None,
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    async with (
        aiohttp.ClientSession() as http,
        http.post(served.url + path, data=body, headers=headers) as response,
    ):
        return response.status, await response.json()
