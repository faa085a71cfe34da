"""Each fault episode of ``--faults``, alone: it fires, and the mirror still ends up right.

The demo runs them on a timer; here each one is injected at a known moment and the test
churns until the server (or the receiver) reports that the fault fired, then stops and
checks the SQLite mirror against the cluster.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from listwatch import Backoff, ListWatch, Syncer
from listwatch.cli._chaos import (
    EPISODES,
    GONE_STORM,
    RECEIVER_FAILURE,
    STREAM_CUT,
    TOO_MANY_REQUESTS,
    Chaos,
    FlakyReceiver,
)
from listwatch.cli._workload import Workload, namespace_names
from listwatch.sinks.sqlite import SQLiteSink, read_mirror
from listwatch.testing import FakeApiServer
from listwatch.testing._server import DEFAULT_NAMESPACES

from .conftest import server_objects

#: How many times each episode's faults fire once its requests come.
FIRES = {STREAM_CUT: 2, GONE_STORM: 1, TOO_MANY_REQUESTS: 2, RECEIVER_FAILURE: 1}
#: The restart reasons an episode must cause (cuts and 429s are resumed, not restarts).
RESTARTS = {GONE_STORM: "ResourceExpired", RECEIVER_FAILURE: "ReceiverError"}


@pytest.mark.parametrize("kind", EPISODES)
async def test_each_fault_episode_fires_and_the_mirror_stays_right(
    kind: str, tmp_path: Path
) -> None:
    db = tmp_path / "mirror.db"
    async with FakeApiServer(
        namespaces=(*DEFAULT_NAMESPACES, *namespace_names(3)), bookmark_interval=0.05
    ) as server:
        workload = Workload(server, random.Random(1), pods=60, namespaces=3)
        await workload.populate()
        async with server.api_client() as api, SQLiteSink(db, resource="pods") as sink:
            receiver = FlakyReceiver(sink.on_batch)
            syncer = Syncer(
                ListWatch.from_client(api, "pods"),
                on_list=sink.on_list,
                on_batch=receiver.on_batch,
                merge_interval=0.02,
                backoff=Backoff(initial=0.01, cap=0.05),
            )

            async def burst(count: int) -> None:
                for _ in range(count):
                    await workload.step()

            chaos = Chaos(server, receiver, burst, path="/api/v1/pods", rng=random.Random(2))
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
        assert read_mirror(db, resource="pods").objects == server_objects(server, "v1", "Pod")
    if kind in RESTARTS:
        assert any(reason.startswith(RESTARTS[kind]) for reason in reasons), reasons
