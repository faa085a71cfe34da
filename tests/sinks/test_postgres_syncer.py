"""End to end: a Syncer mirrors pods from the fake API server (real HTTP, the real
kubernetes_asyncio client) into a real PostgreSQL database, and converges under churn,
relists and list errors."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from listwatch import Backoff, ListStrategy, ListWatch, Syncer
from listwatch.sinks.postgres import PostgresSink
from listwatch.testing import FakeApiServer, Fault
from listwatch.testing._server import DEFAULT_NAMESPACES
from listwatch.testing.scenario import FlakyReceiver, PodWorkload, namespace_names

from .helpers import pg_rows

PODS = "/api/v1/pods"
CONVERGE = 30.0
"""A bound on waiting for the mirror to catch up (a safety net, not a synchronisation)."""


def cluster_pods(server: FakeApiServer) -> dict[str, Any]:
    return {
        f"{pod['metadata']['namespace']}/{pod['metadata']['name']}": pod
        for pod in server.objects("v1", "Pod")
    }


@pytest.mark.parametrize("strategy", [ListStrategy.PAGED, ListStrategy.STREAM])
async def test_a_syncer_mirrors_pods_into_postgresql_under_churn(
    postgres_dsn: str, strategy: ListStrategy
) -> None:
    async with FakeApiServer(
        namespaces=(*DEFAULT_NAMESPACES, *namespace_names(3)), bookmark_interval=0.05
    ) as server:
        workload = PodWorkload(server, random.Random(5), pods=120, namespaces=3)
        await workload.populate()
        async with server.api_client() as api, PostgresSink(postgres_dsn, resource="pods") as sink:
            receiver = FlakyReceiver(sink.on_batch)
            syncer = Syncer(
                ListWatch.from_client(api, "pods"),
                on_list=sink.on_list,
                on_batch=receiver.on_batch,
                merge_interval=0.02,
                page_size=25,  # a paged snapshot is five pages, each COPY'd as it comes
                list_strategy=strategy,
                backoff=Backoff(initial=0.01, cap=0.05),
            )

            async def converged() -> None:
                target = server.resource_version
                async with asyncio.timeout(CONVERGE):
                    await syncer.wait_until(
                        lambda s: s.synced and int(s.resource_version or 0) >= target
                    )

            async with syncer:
                await syncer.wait_synced()
                assert await sink.objects() == cluster_pods(server)
                await server.wait_for_watchers(1)

                for _ in range(150):  # creates, updates, deletes, through the watch
                    await workload.step()
                await converged()
                assert await sink.objects() == cluster_pods(server)

                # The receiver fails once: a new generation, whose snapshot must also delete
                # what vanished meanwhile. That relist fails too: a paged LIST is refused
                # (410), a streaming list ends in an ERROR event after 30 objects, which
                # comes out of the sink's iteration mid-snapshot and rolls it back.
                receiver.armed = 1
                if strategy is ListStrategy.PAGED:
                    server.inject(Fault.status(410), path=PODS, watch=False)
                else:
                    server.inject(Fault.error_event(after_events=30, code=410), path=PODS)
                for _ in range(150):
                    await workload.step()
                async with asyncio.timeout(CONVERGE):
                    await syncer.wait_until(lambda s: s.generation >= 3 and s.synced)
                for _ in range(50):
                    await workload.step()
                await converged()
                status = syncer.status

            expected = cluster_pods(server)
            assert await sink.objects() == expected
            assert await sink.count() == len(expected)
            state = await sink.sync_state()
            assert state is not None
            assert state.generation == status.generation
            assert state.listed_at is not None

    reasons = [restart.reason for restart in status.recent_restarts]
    assert any(reason.startswith("ReceiverError") for reason in reasons), reasons
    assert any(reason.startswith("ResourceExpired") for reason in reasons), reasons
    stored = await pg_rows(postgres_dsn, "pods")
    assert {key: row.uid for key, row in stored.items()} == {
        key: pod["metadata"]["uid"] for key, pod in expected.items()
    }
    assert {key: row.resource_version for key, row in stored.items()} == {
        key: pod["metadata"]["resourceVersion"] for key, pod in expected.items()
    }
