"""Malformed input is the sender's fault: the reference receiver answers 4xx with a Status
that says what was wrong, and changes nothing, over real HTTP into a real SQLite file and a
real PostgreSQL database. Never a 503 (which the sender retries as the store's failure),
never a 200 for something the protocol forbids. Paths and keys are matched whole."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from listwatch import GroupVersionResource, Store
from listwatch.httpsync import SyncServer
from listwatch.httpsync import _server as server_module
from listwatch.httpsync import _wire as protocol
from listwatch.sinks.postgres import PostgresStore
from listwatch.sinks.sqlite import SQLiteStore
from tests.serving import serving

TOKEN = "malformed-token"
PODS = GroupVersionResource("", "v1", "pods")
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": protocol.CONTENT_TYPE}
StoreFactory = Callable[[], Awaitable[Store]]


def header(kind: protocol.Kind = "snapshot", *, epoch: int = 1, generation: int = 1) -> bytes:
    sequence = 0 if kind == "snapshot" else 1
    return protocol.encode_header(
        protocol.Header(kind, PODS, epoch, "s", generation, sequence, "5")
    )


def record(key: str, obj: bytes = b'{"kind":"Pod"}', rv: str = "1") -> bytes:
    return (
        (b'{"key":' + orjson.dumps(key) + b',"resourceVersion":' + orjson.dumps(rv) + b',"object":')
        + obj
        + b"}\n"
    )


def snapshot_of(*records: bytes, head: bytes | None = None) -> bytes:
    return (head or header()) + b"".join(records) + protocol.encode_commit(len(records), "5")


def nested(depth: int) -> bytes:
    """A JSON object ``depth`` levels deep: ``{"a":[[...]]}``."""
    return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


@pytest.fixture(params=["sqlite", "postgres"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Both stores a receiver serves: each keeps what the other would let through."""
    if request.param == "sqlite":

        async def sqlite() -> Store:
            return SQLiteStore(tmp_path / "received.db")

        return sqlite
    dsn = request.getfixturevalue("postgres_dsn")

    async def postgres() -> Store:
        return await PostgresStore.connect(dsn)

    return postgres


class Receiver:
    def __init__(self, url: str, store: Store) -> None:
        self.url = url
        self.store = store

    async def post(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                self.url + path, data=body, headers=AUTH if headers is None else headers
            ) as response,
        ):
            return response.status, await response.json()

    async def pods(self) -> dict[str, Any]:
        sink = await self.store.sink("pods")
        return await sink.objects()  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
async def receiver(new_store: StoreFactory) -> AsyncIterator[Receiver]:
    store = await new_store()
    try:
        async with serving(SyncServer(store, token=TOKEN).runner()) as url:
            yield Receiver(url, store)
    finally:
        await store.close()


MALFORMED = {
    "the same key twice": (
        snapshot_of(record("default/a"), record("default/a")),
        "record 2: key 'default/a' twice in one snapshot",
    ),
    "the same key twice, pages apart": (
        snapshot_of(*(record(f"default/p{i}") for i in range(600)), record("default/p3")),
        "record 601: key 'default/p3' twice in one snapshot",
    ),
    '"object": 5': (snapshot_of(record("default/a", b"5")), "its object must be a JSON object"),
    "bad UTF-8 in an object": (
        snapshot_of(record("default/a", b'{"a":"\xff\xfe"}')),
        "record 1 is not valid UTF-8",
    ),
    "an object 1,000 deep": (
        snapshot_of(record("default/a", nested(1000))),
        "record 1 nests its object deeper than 512 levels",
    ),
    "an object 2,000 deep": (
        snapshot_of(record("default/a", nested(2000))),
        "record 1 is not JSON nested at most 512 deep",
    ),
    "epoch 2^63": (snapshot_of(head=header(epoch=2**63)), "epoch must be an integer from 0"),
    "generation 2^63": (
        snapshot_of(head=header(generation=2**63)),
        "generation must be an integer from 0",
    ),
    "a NUL in a key": (
        snapshot_of(record("default/a\x00b")),
        "record 1: a key is 1 to 512 bytes without control characters",
    ),
    "a newline in a key": (snapshot_of(record("default/a\nb")), "record 1: a key is 1 to 512"),
    "a key of 513 bytes": (snapshot_of(record("k" * 513)), "record 1: a key is 1 to 512"),
    "an empty key": (snapshot_of(record("")), "record 1: a key is 1 to 512"),
    "a NUL in a resourceVersion": (
        snapshot_of(record("default/a", rv="1\x00")),
        "record 1's resourceVersion must be at most 128 printable ASCII characters",
    ),
    "a header 1,000 deep": (
        header()[:-2] + b',"x":' + nested(1000) + b"}\n",
        "the header record nests its object deeper than 512 levels",
    ),
}


@pytest.mark.parametrize(("body", "message"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_snapshots_get_400_and_change_nothing(
    receiver: Receiver, body: bytes, message: str
) -> None:
    assert (await receiver.post("/sync/pods/snapshot", snapshot_of(record("default/kept"))))[
        0
    ] == 200
    status, answer = await receiver.post("/sync/pods/snapshot", body)
    assert (status, answer["reason"]) == (400, "BadRequest"), answer
    assert message in answer["message"]
    assert set(await receiver.pods()) == {"default/kept"}


async def test_malformed_batches_get_400_and_change_nothing(receiver: Receiver) -> None:
    assert (await receiver.post("/sync/pods/snapshot", snapshot_of(record("default/a"))))[0] == 200
    head = header("batch")
    for event, message in [
        (b'{"type":"ADDED","key":"default/b","resourceVersion":"2","object":5}', "JSON object"),
        (b'{"type":"ADDED","key":"default/\\u0000","resourceVersion":"2","object":{}}', "a key"),
        (b'{"type":"ADDED","key":"b","resourceVersion":"2","object":' + nested(600) + b"}", "deep"),
    ]:
        status, answer = await receiver.post(
            "/sync/pods/batch", head + event + b"\n" + protocol.encode_commit(1, "2")
        )
        assert (status, answer["reason"]) == (400, "BadRequest"), answer
        assert message in answer["message"]
    assert set(await receiver.pods()) == {"default/a"}


async def test_an_object_as_deep_as_the_limit_is_kept_as_it_came(receiver: Receiver) -> None:
    deepest = nested(protocol.MAX_DEPTH)
    status, answer = await receiver.post(
        "/sync/pods/snapshot", snapshot_of(record("default/deep", deepest))
    )
    assert status == 200, answer
    assert (await receiver.pods())["default/deep"] == orjson.loads(deepest)


@pytest.mark.parametrize(
    "path", ["/sync/pods%0A/snapshot", "/sync/pods%0a/batch", "/sync/Pods/batch"]
)
async def test_a_resource_path_is_matched_whole(receiver: Receiver, path: str) -> None:
    """``$`` matches before a final newline: ``pods\\n`` passed for a resource name."""
    status, answer = await receiver.post(path, snapshot_of())
    assert (status, answer["reason"]) == (404, "NotFound")
    assert "is not a resource name" in answer["message"]


async def test_refused_requests_take_none_of_the_resource_limit(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests refused before their header is read open nothing, so they count nothing:
    with a limit of one resource, pods still gets in after a flood of bad requests for
    other names; then a second resource is refused."""
    monkeypatch.setattr(server_module, "MAX_RESOURCES", 1)
    widgets = protocol.encode_header(
        protocol.Header("snapshot", GroupVersionResource("x.io", "v1", "widgets"), 1, "s", 1, 0, "")
    )
    for i in range(20):
        for path, body, headers, code in [
            (f"/sync/r{i}/snapshot", snapshot_of(), {**AUTH, "Content-Type": "text/plain"}, 415),
            (f"/sync/r{i}/snapshot", snapshot_of(), {}, 401),
            (f"/sync/r{i}/snapshot", b'{"not":"a header"}\n', AUTH, 400),
            (f"/sync/r{i}/snapshot", snapshot_of(), AUTH, 400),  # the header names pods
            (f"/sync/r{i}.x.io/snapshot", widgets + protocol.encode_commit(0, "1"), AUTH, 400),
        ]:
            assert (await receiver.post(path, body, headers))[0] == code
    assert (await receiver.post("/sync/pods/snapshot", snapshot_of(record("default/a"))))[0] == 200
    status, answer = await receiver.post(
        "/sync/widgets.x.io/snapshot", widgets + protocol.encode_commit(0, "1")
    )
    assert (status, answer["reason"]) == (403, "Forbidden")
    assert "at most 1 resources" in answer["message"]
