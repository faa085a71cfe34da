"""A sharded source: one shard of a collection, filtered by the server or by listwatch.

Every test runs against a fake API server with the ``ShardedListAndWatch`` gate on (the
server filters and echoes ``shardInfo``) and one without it (the server ignores the
selector, so listwatch filters by the uid's hash), and checks the same promise: the
receiver gets exactly the shard's objects, in snapshots and in batches, each stamped with
the shard.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from listwatch import Agent, Backoff, Batch, EventType, ListWatch, Shard, Snapshot, Syncer
from listwatch._agent import WriteGate
from listwatch.testing import FakeApiServer
from tests.objects import key_of, pod

FOUR = [Shard.of(i, 4) for i in range(4)]


@pytest.fixture(
    params=[pytest.param(True, id="server-side"), pytest.param(False, id="client-side")]
)
def server_filters(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
async def server(server_filters: bool) -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(
        bookmark_interval=0.05, too_large_wait=0.2, tls=False, sharding=server_filters
    ) as fake:
        yield fake


class Changes:
    """Tells waiters that some receiver call completed (one per mirror, or shared)."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool], limit: float = 15.0) -> None:
        """Until ``predicate()`` holds after some receiver call (no polling)."""
        async with asyncio.timeout(limit):
            while not predicate():
                await self._changed.wait()


class ShardMirror:
    """Keeps ``{key: object}`` from snapshots and batches, and every scope it was given."""

    def __init__(self, changes: Changes | None = None) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.snapshot_shards: list[Shard | None] = []
        self.batches: list[Batch] = []
        self.rv = ""
        self.changes = changes or Changes()

    async def on_list(self, snapshot: Snapshot) -> None:
        self.snapshot_shards.append(snapshot.shard)
        self.objects = {key_of(item): item for item in await snapshot.collect()}
        self.rv = snapshot.resource_version
        self._notify()

    async def on_batch(self, batch: Batch) -> None:
        self.batches.append(batch)
        for key, event in batch.events.items():
            if event.type is EventType.DELETED:
                self.objects.pop(key, None)
            else:
                self.objects[key] = event.object
        self.rv = batch.resource_version
        self._notify()

    def _notify(self) -> None:
        self.changes.notify()

    async def wait_for(self, predicate: Callable[[ShardMirror], bool]) -> None:
        await self.changes.wait_for(lambda: predicate(self))

    def uids(self) -> set[str]:
        return {obj["metadata"]["uid"] for obj in self.objects.values()}


def syncer(source: ListWatch, mirror: ShardMirror, **kwargs: Any) -> Syncer:
    kwargs.setdefault("list_strategy", "paged")
    return Syncer(
        source,
        on_list=mirror.on_list,
        on_batch=mirror.on_batch,
        merge_interval=0.02,
        backoff=Backoff(initial=0.01, cap=0.05),
        **kwargs,
    )


def in_shard(server: FakeApiServer, shard: Shard) -> set[str]:
    """The uids of the server's pods that ``shard`` holds, by the hash rule alone."""
    return {
        obj["metadata"]["uid"]
        for obj in server.objects("v1", "Pod")
        if shard.holds_uid(obj["metadata"]["uid"])
    }


async def create_pods(server: FakeApiServer, count: int, prefix: str = "p") -> None:
    for i in range(count):
        await server.create(pod(f"{prefix}{i}"))


def expected_sharding(server_filters: bool) -> str:
    return "server" if server_filters else "client"


@pytest.mark.parametrize("list_strategy", ["paged", "stream"])
async def test_a_shard_snapshot_holds_exactly_the_shard_s_objects(
    server: FakeApiServer, api_client: Any, server_filters: bool, list_strategy: str
) -> None:
    await create_pods(server, 24)
    shard = Shard.of(1, 4)
    mirror = ShardMirror()
    source = ListWatch.from_client(api_client, "pods", shard="1/4")
    async with syncer(source, mirror, list_strategy=list_strategy, page_size=5) as running:
        status = await running.wait_synced()
        assert mirror.uids() == in_shard(server, shard)
        assert 0 < len(mirror.objects) < 24
        assert mirror.snapshot_shards == [shard]
        assert status.shard == shard
        assert running.status.sharding == expected_sharding(server_filters)
    requests = [r for r in server.requests if r.path == "/api/v1/pods"]
    assert requests
    assert all(r.query.get("shardSelector") == shard.selector for r in requests)


async def test_four_shards_partition_the_collection_key_by_key(
    server: FakeApiServer, api_client: Any
) -> None:
    await create_pods(server, 30)
    changes = Changes()
    mirrors = [ShardMirror(changes) for _ in FOUR]
    syncers = [
        syncer(ListWatch.from_client(api_client, "pods", shard=shard), mirror, page_size=4)
        for shard, mirror in zip(FOUR, mirrors, strict=True)
    ]
    async with syncers[0], syncers[1], syncers[2], syncers[3]:
        for running in syncers:
            await running.wait_synced()
        for i in range(30, 36):
            await server.create(pod(f"p{i}"))
        await server.delete(pod("p0"))
        expected = {
            key_of(o): o["metadata"]["resourceVersion"] for o in server.objects("v1", "Pod")
        }

        def union() -> dict[str, str]:
            merged: dict[str, str] = {}
            for mirror in mirrors:
                for key, obj in mirror.objects.items():
                    assert key not in merged, f"{key} is in two shards"
                    merged[key] = obj["metadata"]["resourceVersion"]
            return merged

        await changes.wait_for(lambda: union() == expected)
    assert union() == expected


async def test_watch_events_outside_the_shard_never_reach_the_receiver(
    server: FakeApiServer, api_client: Any, server_filters: bool
) -> None:
    shard = Shard.of(0, 2)
    mirror = ShardMirror()
    async with syncer(ListWatch.from_client(api_client, "pods", shard=shard), mirror) as running:
        await running.wait_synced()
        await server.wait_for_watchers(1)
        await create_pods(server, 20, prefix="w")
        changed = pod("w3")
        changed["metadata"]["labels"] = {"v": "2"}
        await server.replace(changed)
        await server.delete(pod("w5"))
        expected = in_shard(server, shard)
        await mirror.wait_for(
            lambda m: m.uids() == expected and m.rv == str(server.resource_version)
        )
        assert running.status.sharding == expected_sharding(server_filters)
    delivered = {
        event.object["metadata"]["uid"]
        for batch in mirror.batches
        for event in batch.events.values()
        if event.type is not EventType.BOOKMARK
    }
    assert delivered
    assert all(shard.holds_uid(uid) for uid in delivered)
    assert all(batch.shard == shard for batch in mirror.batches)


async def test_only_foreign_events_still_move_the_receiver_s_resource_version(
    server: FakeApiServer, api_client: Any
) -> None:
    """Bookmarks pass the filter: a shard none of whose objects change stays current."""
    shard = Shard.of(0, 4)
    mirror = ShardMirror()
    async with syncer(ListWatch.from_client(api_client, "pods", shard=shard), mirror) as running:
        await running.wait_synced()
        await server.wait_for_watchers(1)
        created = 0
        while True:  # pods of the other three shards only
            obj = await server.create(pod(f"x{created}"))
            created += 1
            if shard.holds_uid(obj["metadata"]["uid"]):
                await server.delete(obj)
                continue
            if created >= 5:
                break
        target = str(server.resource_version)
        await mirror.wait_for(lambda m: int(m.rv or 0) >= int(target))
    assert mirror.uids() == in_shard(server, shard)


async def test_the_filtering_decision_is_logged_once_not_per_request(
    server: FakeApiServer,
    api_client: Any,
    server_filters: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await create_pods(server, 12)
    caplog.set_level(logging.INFO, logger="listwatch")
    mirror = ShardMirror()
    source = ListWatch.from_client(api_client, "pods", shard="2/4")
    async with syncer(source, mirror, page_size=2) as running:
        await running.wait_synced()
        await server.wait_for_watchers(1)
        await create_pods(server, 8, prefix="q")
        await mirror.wait_for(lambda m: m.uids() == in_shard(server, Shard.of(2, 4)))
    lists = [r for r in server.requests if r.path == "/api/v1/pods" and not r.watch]
    assert len(lists) > 1
    decided = [r.getMessage() for r in caplog.records if "shard 2/4: filtered by" in r.getMessage()]
    who = "API server" if server_filters else "client"
    assert len(decided) == 1, decided
    assert f"filtered by the {who}" in decided[0]


async def test_an_unsharded_source_sends_no_selector_and_reports_no_sharding(
    server: FakeApiServer, api_client: Any
) -> None:
    await create_pods(server, 3)
    mirror = ShardMirror()
    async with syncer(ListWatch.from_client(api_client, "pods"), mirror) as running:
        status = await running.wait_synced()
        assert len(mirror.objects) == 3
    assert status.shard is None
    assert status.sharding is None
    assert mirror.snapshot_shards == [None]
    assert all("shardSelector" not in r.query for r in server.requests)


@pytest.mark.parametrize("text", ["1/3", "0x0000000000000000-0x8000000000000000"])
async def test_a_shard_given_as_text_is_parsed(
    server: FakeApiServer, api_client: Any, text: str
) -> None:
    source = ListWatch.from_client(api_client, "pods", version="v1", shard=text)
    assert source.shard == Shard.parse(text)
    assert "shard" in source.description


async def test_readiness_names_the_shard_and_who_filters_it(
    server: FakeApiServer, api_client: Any, server_filters: bool
) -> None:
    await create_pods(server, 6)
    mirror = ShardMirror()

    def build(epoch: int, gate: WriteGate) -> list[Syncer]:
        source = ListWatch.from_client(api_client, "pods", shard="3/4")
        return [syncer(source, mirror, epoch=epoch)]

    agent = Agent(build)
    async with asyncio.TaskGroup() as group:
        running = group.create_task(agent.run())
        supervisor = await agent.wait_for_supervisor()
        await supervisor.wait_synced()
        report = agent.readiness()
        running.cancel()
    entry = report.details["resources"]["pods"]
    assert report.ok
    assert entry["shard"] == "3/4"
    assert entry["sharding"] == expected_sharding(server_filters)
