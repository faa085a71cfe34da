"""The sharding benchmark's payload server serves one stream, split as a sharding server would.

``benchmarks.shards`` compares replicas over "the same stream": these tests hold the
``sharded`` scenario to that, over real HTTP with listwatch's own source: each shard's
replica gets exactly its pods of the ``unique`` stream, the shards together all of them,
each LIST echoes its selector (so the replica reports server-side filtering), and every
stream ends at the same RV.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from benchmarks.server import BenchServer, build
from kubernetes_asyncio.client import ApiClient, Configuration

from benchmarks import payloads
from listwatch import Backoff, Batch, ListWatch, Shard, Snapshot, Syncer
from tests.benchmarks.helpers import served

EVENTS = 1_200  # more than payloads.POOL_SIZE: renamed pods (same uids) are sharded too


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    args = argparse.Namespace(
        page_size=500,
        list_sizes="",
        watch_events=EVENTS,
        hot_events=0,
        hot_keys=1,
        stall_events=0,
        stall_keys=1,
        latency_keys=1,
        cluster_size=0,
        shard_counts="1,2,4",
    )
    async with served(BenchServer(build(args))) as url:
        yield url


async def mirror_shard(url: str, shard: Shard | None) -> tuple[set[str], Any]:
    """The keys a replica of ``shard`` mirrors from the stream, and its final status."""
    keys: set[str] = set()
    done = asyncio.Event()
    last = payloads.format_rv(EVENTS + 1).decode()

    async def on_list(snapshot: Snapshot) -> None:
        assert await snapshot.collect() == []

    async def on_batch(batch: Batch) -> None:
        keys.update(batch.events)
        if batch.resource_version == last:
            done.set()

    configuration = Configuration(host=url)
    async with ApiClient(configuration=configuration) as api:
        source = ListWatch.from_client(api, "pods", version="v1", shard=shard)
        syncer = Syncer(
            source,
            on_list=on_list,
            on_batch=on_batch,
            list_strategy="paged",
            merge_interval=0.01,
            backoff=Backoff(initial=0.01, cap=0.05),
        )
        async with syncer:
            async with asyncio.timeout(30):
                await done.wait()
            return keys, syncer.status


@pytest.mark.parametrize("count", [1, 2, 4])
async def test_the_shards_of_the_stream_split_it_exactly(base_url: str, count: int) -> None:
    whole = {payloads.key_of(i) for i in range(EVENTS)}
    union: set[str] = set()
    for index in range(count):
        shard = Shard.of(index, count)
        keys, status = await mirror_shard(f"{base_url}/sharded", shard)
        assert keys <= whole
        assert not keys & union
        assert status.sharding == "server"
        union |= keys
    assert union == whole


async def test_the_unique_stream_is_filtered_by_the_replica_itself(base_url: str) -> None:
    shard = Shard.of(1, 4)
    served, _ = await mirror_shard(f"{base_url}/sharded", shard)
    filtered, status = await mirror_shard(f"{base_url}/unique", shard)
    assert filtered == served
    assert status.sharding == "client"
