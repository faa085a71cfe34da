"""The fault catalogue: every class injects and is counted; each of the demo's episodes,
alone, fires, and the mirror still ends up right.

The demo runs its episodes on a timer; here each one is injected at a known moment and the
test churns until the server (or the receiver) reports that the fault fired, then stops and
checks the SQLite mirror against the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from listwatch import Backoff, Batch, ListWatch, Syncer, object_key
from listwatch.sinks.sqlite import SQLiteSink, read_mirror
from listwatch.testing import FakeApiServer
from listwatch.testing._server import DEFAULT_NAMESPACES
from listwatch.testing.scenario import (
    ALL_FAULTS,
    DEMO_EPISODES,
    FaultInjector,
    FlakyReceiver,
    PodWorkload,
    demo_faults,
    namespace_names,
)

STREAM_CUT = "stream cut"
GONE_STORM = "410 storm"
TOO_MANY_REQUESTS = "429 Retry-After"
RECEIVER_FAILURE = "receiver failure"

#: How many times each episode's faults fire once its requests come.
FIRES = {STREAM_CUT: 2, GONE_STORM: 1, TOO_MANY_REQUESTS: 2, RECEIVER_FAILURE: 1}
#: The restart reasons an episode must cause (cuts and 429s are resumed, not restarts).
RESTARTS = {GONE_STORM: "ResourceExpired", RECEIVER_FAILURE: "ReceiverError"}


@contextlib.asynccontextmanager
async def pods(count: int, namespaces: int) -> AsyncIterator[PodWorkload]:
    """A fake API server holding ``count`` pods of a pod workload."""
    async with FakeApiServer(
        namespaces=(*DEFAULT_NAMESPACES, *namespace_names(namespaces)), bookmark_interval=0.05
    ) as server:
        workload = PodWorkload(server, random.Random(1), pods=count, namespaces=namespaces)
        await workload.populate()
        yield workload


@pytest.mark.parametrize("kind", DEMO_EPISODES)
async def test_each_fault_episode_fires_and_the_mirror_stays_right(
    kind: str, tmp_path: Path
) -> None:
    db = tmp_path / "mirror.db"
    async with pods(60, namespaces=3) as workload:
        server = workload.server
        async with server.api_client() as api, SQLiteSink(db, resource="pods") as sink:
            receiver = FlakyReceiver(sink.on_batch)
            syncer = Syncer(
                ListWatch.from_client(api, "pods"),
                on_list=sink.on_list,
                on_batch=receiver.on_batch,
                merge_interval=0.02,
                backoff=Backoff(initial=0.01, cap=0.05),
            )
            chaos = demo_faults(workload, receiver, rng=random.Random(2))
            async with syncer:
                await syncer.wait_synced()
                await server.wait_for_watchers(1)
                await chaos.episode(kind)
                if kind in (STREAM_CUT, TOO_MANY_REQUESTS):
                    receiver.armed += 1  # a restart: the next list and watches meet the faults
                async with asyncio.timeout(20):
                    while chaos.fired()[kind] < FIRES[kind]:
                        await workload.step()  # churn until the fault has fired
                        await asyncio.sleep(0.005)
                chaos.stop()
                target = server.resource_version
                await asyncio.wait_for(
                    syncer.wait_until(
                        lambda s: s.synced and int(s.resource_version or 0) >= target
                    ),
                    20,
                )
                reasons = [r.reason for r in syncer.status.recent_restarts]
        cluster = {object_key(pod): pod for pod in server.objects("v1", "Pod")}
        assert read_mirror(db, resource="pods").objects == cluster
    if kind in RESTARTS:
        assert any(reason.startswith(RESTARTS[kind]) for reason in reasons), reasons


async def _nowhere(batch: Batch) -> None:
    pass


async def test_every_fault_class_injects_and_is_counted() -> None:
    async with pods(10, namespaces=1) as workload:
        receiver = FlakyReceiver(_nowhere)
        injector = FaultInjector(
            workload.server,
            path=workload.PATH,
            rng=random.Random(4),
            workload=workload,
            receiver=receiver,
        )
        classes = (*ALL_FAULTS, *(name for names in DEMO_EPISODES.values() for name in names))
        for name in classes:
            assert (await injector.inject(name)).startswith(name)
        injected = injector.injected()
        # A cut of the open watches counts the watches it cut: none are open here.
        assert all(injected[name] >= 1 for name in classes if not name.startswith("watch-cut-open"))
        assert receiver.armed == 1
        injector.stop()
        assert receiver.armed == 0
        with pytest.raises(ValueError, match="unknown fault class"):
            await injector.inject("meteor-strike")


async def test_a_fault_class_without_what_it_acts_on_is_refused() -> None:
    async with FakeApiServer() as server:
        injector = FaultInjector(server, path=PodWorkload.PATH, rng=random.Random(1))
        for name in ("compaction-storm", "receiver-failure"):
            with pytest.raises(ValueError, match="needs what it acts on"):
                await injector.inject(name)
