"""``ShardedAgent`` in one process against the fake: replicas share N shard Leases fairly.

Each replica is an agent over its own ApiClient, building, for every shard it holds, one
Syncer of that shard writing into a per-shard mirror (``tests.core.helpers.Mirror``). The
assertions are on the Leases and on what each shard's receiver holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from kubernetes_asyncio.client import ApiClient

from listwatch import ListWatch, Syncer
from listwatch._agent import WriteGate, gated
from listwatch._shard import Shard
from listwatch._sharding import ShardedAgent
from listwatch.testing import FakeApiServer, RecordedRequest
from tests.core.helpers import Mirror
from tests.objects import pod

SHARDS = 4
TIMING = {"lease_duration": 2.0, "renew_deadline": 1.5, "retry_period": 0.2}


def holders(server: FakeApiServer) -> dict[int, str]:
    found = {}
    for index in range(SHARDS):
        lease = server.get("coordination.k8s.io/v1", "Lease", f"lw-shard-{index}", "default")
        found[index] = "" if lease is None else str(lease["spec"].get("holderIdentity") or "")
    return found


class Replica:
    def __init__(self, server: FakeApiServer, identity: str) -> None:
        self.api: ApiClient = server.api_client()
        self.mirrors: dict[str, Mirror] = {}
        self.agent = ShardedAgent(
            self.build,
            self.api,
            shards=SHARDS,
            lease_name="lw",
            lease_namespace="default",
            identity=identity,
            settle=0.5,
            **TIMING,
        )

    def build(self, shard: Shard, epoch: int, gate: WriteGate) -> Sequence[Syncer]:
        mirror = self.mirrors[shard.name] = Mirror()
        source = ListWatch.from_client(self.api, "pods", version="v1", shard=shard)
        return [
            Syncer(
                source,
                on_list=gated(mirror.on_list, gate),
                on_batch=gated(mirror.on_batch, gate),
                merge_interval=0.02,
                epoch=epoch,
            )
        ]


@contextlib.asynccontextmanager
async def running(server: FakeApiServer, identity: str) -> AsyncIterator[Replica]:
    replica = Replica(server, identity)
    task = asyncio.create_task(replica.agent.run())
    try:
        yield replica
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await replica.api.close()


async def test_a_joining_replica_is_given_shards_and_a_stopped_ones_are_taken_over(
    server: FakeApiServer,
) -> None:
    for i in range(30):
        await server.create(pod(f"p{i:02d}"))
    async with running(server, "a") as a:
        await asyncio.wait_for(a.agent.wait_until(lambda g: len(g.leading()) == SHARDS), 20)
        assert set(holders(server).values()) == {"a"}
        for index in range(SHARDS):
            await asyncio.wait_for(a.agent.wait_until(lambda g, i=index: _synced(g, i)), 20)
        before = {held.shard: held.supervisor for held in a.agent.held}
        async with running(server, "b") as b:
            # The share halves: a gives two back (one per round), b takes them.
            both = asyncio.gather(
                a.agent.wait_until(lambda g: len(g.leading()) == 2),
                b.agent.wait_until(lambda g: len(g.leading()) == 2),
            )
            await asyncio.wait_for(both, 20)
            held = holders(server)
            assert sorted(held.values()) == ["a", "a", "b", "b"]
            assert a.agent.share == b.agent.share == 2
            # Giving two back stopped exactly those: a's other shards ran on, untouched
            # (the same Supervisor, still in its first generation).
            for kept in a.agent.held:
                if kept.shard in a.agent.leading():
                    assert kept.supervisor is before[kept.shard]
                    assert kept.supervisor is not None
                    assert [s.generation for s in kept.supervisor.statuses().values()] == [1]
            # b's shards, synced by b, hold exactly b's objects.
            for shard in b.agent.leading():
                mirror = b.mirrors[shard.name]
                await asyncio.wait_for(
                    b.agent.wait_until(lambda g, i=shard.index: _synced(g, i)), 20
                )
                uids = {obj["metadata"]["uid"] for obj in mirror.objects.values()}
                want = {
                    o["metadata"]["uid"]
                    for o in server.objects("v1", "Pod")
                    if shard.holds_uid(o["metadata"]["uid"])
                }
                assert uids == want
        # b stopped (its Leases released): a takes all four back, and deletes b's presence.
        await asyncio.wait_for(a.agent.wait_until(lambda g: len(g.leading()) == SHARDS), 20)
        await server.wait_until(
            lambda s: s.get("coordination.k8s.io/v1", "Lease", "lw-replica-b", "default") is None,
            timeout=10,
        )
        assert server.get("coordination.k8s.io/v1", "Lease", "lw-replica-a", "default")
        assert set(holders(server).values()) == {"a"}
        report = a.agent.readiness()
        assert report.details["fair_share"] == SHARDS
        assert sorted(report.details["shards"]) == [f"{i}/{SHARDS}" for i in range(SHARDS)]


async def test_a_replica_that_holds_no_shard_is_ready_and_says_so(server: FakeApiServer) -> None:
    async with running(server, "a") as a, running(server, "b") as b:
        both = asyncio.gather(
            a.agent.wait_until(lambda g: len(g.leading()) == 2 and g.share == 2),
            b.agent.wait_until(lambda g: len(g.leading()) == 2 and g.share == 2),
        )
        await asyncio.wait_for(both, 20)
        async with running(server, "c") as c:
            # 3 replicas, 4 shards: the share stays ceil(4 / 3) = 2, so nothing moves.
            await asyncio.wait_for(c.agent.wait_until(lambda g: len(g.live) == 3), 20)
            await asyncio.wait_for(
                a.agent.wait_until(lambda g: len(g.live) == 3 and g.share == 2), 20
            )
            assert c.agent.leading() == []
            report = c.agent.readiness()
            assert report.ok
            assert report.details["note"] == "this replica holds no shard"
            assert report.details["shards"] == {}
            assert report.details["live_replicas"] == ["a", "b", "c"]
            assert len(a.agent.leading()) == len(b.agent.leading()) == 2
            # No flapping: with the share unchanged, nothing moves for several settle
            # periods' worth of planning rounds (each a LIST of the presences).
            transitions = lease_transitions(server)
            start = server.request_count
            rounds = 3 * 3 * 4  # 3 replicas, 4 rounds per settle period, 3 settle periods
            await server.wait_until(lambda s: presence_lists_since(s, start) >= rounds, timeout=20)
            assert lease_transitions(server) == transitions
            assert sorted(holders(server).values()) == ["a", "a", "b", "b"]


async def test_losing_one_shards_term_stops_only_that_shards_syncers(
    server: FakeApiServer,
) -> None:
    for i in range(12):
        await server.create(pod(f"p{i:02d}"))
    async with running(server, "a") as a:
        for index in range(SHARDS):
            await asyncio.wait_for(a.agent.wait_until(lambda g, i=index: _synced(g, i)), 20)
        before = {held.shard.index: (held.supervisor, held.epoch) for held in a.agent.held}
        lease = server.get("coordination.k8s.io/v1", "Lease", "lw-shard-0", "default")
        assert lease is not None
        await server.delete(lease)  # shard 0's term cannot go on: its Lease is gone

        def shard_0_again(agent: ShardedAgent) -> bool:
            first = agent.held[0]
            return first.supervisor not in (None, before[0][0]) and _synced(agent, 0)

        await asyncio.wait_for(a.agent.wait_until(shard_0_again), 20)
        first = a.agent.held[0]
        old_epoch = before[0][1]
        assert first.epoch is not None
        assert old_epoch is not None
        assert first.epoch > old_epoch  # a new term: a larger epoch
        for held in a.agent.held[1:]:
            assert (held.supervisor, held.epoch) == before[held.shard.index]


def lease_transitions(server: FakeApiServer) -> dict[int, int]:
    found = {}
    for index in range(SHARDS):
        lease = server.get("coordination.k8s.io/v1", "Lease", f"lw-shard-{index}", "default")
        assert lease is not None
        found[index] = lease["spec"].get("leaseTransitions", 0)
    return found


def presence_lists_since(server: FakeApiServer, start: int) -> int:
    """The planners' LISTs of the presence Leases since request number ``start``."""
    new = server.request_count - start
    recent: list[RecordedRequest] = list(server.requests)[-new:] if new > 0 else []
    return sum(r.path.endswith("/leases") and "labelSelector" in r.query for r in recent)


def _synced(agent: ShardedAgent, index: int | None) -> bool:
    """Whether shard ``index`` is held and all its resources are synced."""
    for held in agent.held:
        if held.shard.index == index and held.supervisor is not None:
            return all(s.synced for s in held.supervisor.statuses().values())
    return False
