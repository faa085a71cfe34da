"""A fleet, as processes: ten fake clusters, each mirrored by its own ``listwatch mirror
--http`` process, into three ``listwatch receiver --postgres DSN --clients FILE`` processes
over one real PostgreSQL.

Every cluster holds the same pod names (``default/p000`` ...), so a row written into the
wrong cluster, or a snapshot that deleted beyond its own, would show; each churns
throughout. Along the way:

* one receiver is SIGKILLed while a cluster's first snapshot streams into it (its LIST
  pages held back by the fake): nothing of that snapshot lands; the mirrors using it fail
  over to the next receiver (each mirror has all three, ``--http URL1 --http URL2 --http
  URL3``, starting on its own), where the cluster's next generation lands; the killed
  receiver is restarted on its port;
* one cluster's token writes an empty snapshot (as a rogue agent of that cluster could):
  it empties that cluster's rows only, and that cluster's mirror, refused by the fence
  from then on, lists again and converges;
* one cluster's pods are all deleted while its watches are refused (410), so only a
  snapshot can tell the mirror: that empty snapshot deletes that cluster's rows only;
* two clusters run ``--leader-elect``, one with an older etcd (its revision pushed far
  ahead first) and one with a younger: the younger's lower epochs write beside the older's.

At the end every cluster's rows equal its pods key by key and RV by RV.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from listwatch import GroupVersionResource
from listwatch.httpsync import _wire as protocol
from listwatch.testing import FakeApiServer, Fault
from tests.cli.helpers import eventually
from tests.objects import configmap, pod
from tests.processes import ListwatchProcess

from .helpers import Connection, chunk, request_head

PODS = "/api/v1/pods"
CLUSTERS = 10
RECEIVERS = 3
FIXED = 20
"""Pods every cluster holds, under the same names, never deleted by the churn."""
SLOW = "c00"
"""Its first snapshot streams slowly (300 pods, pages of 50 held back 0.4 s each): the
receiver it streams into is SIGKILLed in the middle."""
EMPTIED, INTRUDED, OLD_ETCD, YOUNG_ETCD = "c01", "c02", "c03", "c04"
OLD_REVISION = 3000
"""How far the older etcd's revision is pushed before its mirror takes the Lease."""


def token_of(cluster: str) -> str:
    return f"fleet-token-{cluster}-{hashlib.sha256(cluster.encode()).hexdigest()[:12]}"


@dataclass
class Cluster:
    name: str
    server: FakeApiServer
    kubeconfig: Path
    mirror: ListwatchProcess | None = None
    writes: int = 0
    rng: random.Random = field(default_factory=random.Random)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    """Set: this cluster's churn stops."""

    def pods(self) -> dict[str, str]:
        return {
            f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["metadata"][
                "resourceVersion"
            ]
            for o in self.server.objects("v1", "Pod")
        }

    async def churn(self) -> None:
        """Creates, updates and deletes ``churn-*`` pods until ``stopped``."""
        while not self.stopped.is_set():
            name = f"churn-{self.rng.randrange(30):02d}"
            current = self.server.get("v1", "Pod", name, "default")
            if current is None:
                await self.server.create(pod(name, step=str(self.writes)))
            elif self.rng.random() < 0.3:
                await self.server.delete(current)
            else:
                current["metadata"]["labels"] = {"step": str(self.writes)}
                await self.server.replace(current)
            self.writes += 1
            await asyncio.sleep(self.rng.uniform(0.02, 0.08))  # pacing, not synchronisation


async def rows(dsn: str) -> dict[str, dict[str, str]]:
    """Every cluster's pod rows in PostgreSQL: cluster -> key -> RV."""
    connection = await asyncpg.connect(dsn)
    try:
        if not await connection.fetchval("SELECT to_regclass('listwatch.objects') IS NOT NULL"):
            return {}
        records = await connection.fetch(
            "SELECT cluster, key, resource_version FROM listwatch.objects WHERE resource = 'pods'"
        )
    finally:
        await connection.close()
    found: dict[str, dict[str, str]] = {}
    for record in records:
        found.setdefault(record["cluster"], {})[record["key"]] = record["resource_version"]
    return found


async def fences(dsn: str) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        records = await connection.fetch("SELECT cluster, epoch FROM listwatch.fence")
    finally:
        await connection.close()
    return {record["cluster"]: record["epoch"] for record in records}


def fixed_keys() -> set[str]:
    return {f"default/p{i:03d}" for i in range(FIXED)}


async def metrics(url: str) -> str:
    headers = {"Authorization": f"Bearer {token_of('c05')}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/metrics", headers=headers) as response,
    ):
        assert response.status == 200
        return await response.text()


async def in_flight(url: str) -> bool:
    """Whether the receiver holds records of a request not committed yet."""
    text = await metrics(url)
    return any(
        line.startswith("listwatch_receiver_records_in_flight ") and float(line.split()[1]) > 0
        for line in text.splitlines()
    )


async def empty_snapshot(url: str, token: str) -> int:
    """An empty snapshot of pods sent with ``token``, as a rogue sender of that token's
    cluster would (its own session, epoch 0, no resourceVersion): the status answered."""
    resource = GroupVersionResource("", "v1", "pods")
    header = protocol.Header("snapshot", resource, 0, "intruder", 1, 0, "")
    body = protocol.encode_header(header) + protocol.encode_commit(0, "")
    connection = await Connection.to(url)
    try:
        await connection.send(request_head("/sync/pods/snapshot", token=token) + chunk(body))
        await connection.send(chunk(b""))
        status, _ = await connection.answer()
    finally:
        connection.close()
    return status


class Receivers:
    """The three ``listwatch receiver`` processes (a killed one restarted on its port)."""

    def __init__(self, dsn: str, clients: Path) -> None:
        self.dsn = dsn
        self.clients = clients
        self.processes: list[ListwatchProcess] = []
        self.urls: list[str] = []

    async def start(self, port: int = 0) -> tuple[ListwatchProcess, str]:
        process = await ListwatchProcess.start(
            "receiver",
            "receiver",
            "--listen",
            f"127.0.0.1:{port}",
            "--postgres",
            self.dsn,
            "--clients",
            str(self.clients),
        )
        self.processes.append(process)
        found = await process.wait_for_line(r"serving (http://127\.0\.0\.1:\d+)", within=60)
        return process, found.group(1)

    def urls_for(self, index: int) -> list[str]:
        """The receivers a mirror sends to: all three, each mirror starting on its own (so
        the fleet is spread over them), as the README advises outside Kubernetes; a mirror
        whose receiver dies fails over to the next."""
        start = index % RECEIVERS
        return self.urls[start:] + self.urls[:start]


@contextlib.asynccontextmanager
async def fake_clusters(tmp_path: Path) -> AsyncIterator[list[Cluster]]:
    async with contextlib.AsyncExitStack() as stack:
        clusters = []
        for i in range(CLUSTERS):
            name = f"c{i:02d}"
            server = await stack.enter_async_context(
                FakeApiServer(bookmark_interval=0.2, tls=False, seed=i)
            )
            kubeconfig = tmp_path / f"{name}.kubeconfig"
            server.write_kubeconfig(kubeconfig)
            clusters.append(Cluster(name, server, kubeconfig, rng=random.Random(i)))
        yield clusters


@pytest.mark.timeout(240)
async def test_a_fleet_of_ten_clusters_through_three_receivers_into_one_postgres(
    postgres_dsn: str, tmp_path: Path
) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text(
        "".join(
            f'[[cluster]]\nname = "c{i:02d}"\n'
            f'token_sha256 = "{hashlib.sha256(token_of(f"c{i:02d}").encode()).hexdigest()}"\n'
            for i in range(CLUSTERS)
        )
    )
    receivers = Receivers(postgres_dsn, clients)
    async with fake_clusters(tmp_path) as clusters, asyncio.TaskGroup() as tasks:
        by_name = {cluster.name: cluster for cluster in clusters}
        try:
            started = await asyncio.gather(*(receivers.start() for _ in range(RECEIVERS)))
            receivers.urls = [url for _, url in started]

            for cluster in clusters:
                for i in range(FIXED):
                    await cluster.server.create(pod(f"p{i:03d}", app="fixed"))
            slow = by_name[SLOW]
            for i in range(FIXED, 300):
                await slow.server.create(pod(f"p{i:03d}", app="bulk"))
            slow.server.inject(Fault.slow(0.4), path=PODS, watch=False, times=None)
            old = by_name[OLD_ETCD].server
            bumped = await old.create(configmap("revisions"))
            for step in range(OLD_REVISION):
                bumped["data"] = {"step": str(step)}
                bumped = await old.replace(bumped)

            async def start_mirror(index: int, cluster: Cluster) -> None:
                token_file = tmp_path / f"{cluster.name}.token"
                token_file.write_text(token_of(cluster.name))
                args = ["mirror", "pods", "--kubeconfig", str(cluster.kubeconfig)]
                for url in receivers.urls_for(index):
                    args += ["--http", url]
                args += ["--http-token-file", str(token_file), "--list-strategy", "paged"]
                args += ["--merge-interval", "0.1", "-v"]
                if cluster.name == SLOW:
                    args += ["--page-size", "50"]
                if cluster.name in (OLD_ETCD, YOUNG_ETCD):
                    args += ["--leader-elect", "--identity", f"{cluster.name}-agent"]
                cluster.mirror = await ListwatchProcess.start(cluster.name, *args)

            # The slow cluster's mirror streams into the first receiver.
            assert receivers.urls_for(0)[0] == receivers.urls[0]
            await asyncio.gather(*(start_mirror(i, c) for i, c in enumerate(clusters)))
            for cluster in clusters:
                tasks.create_task(cluster.churn())

            # -- a receiver SIGKILLed while a snapshot streams into it --------------------
            # Page 2 of the slow cluster's first LIST asked for: page 1 was sent on.
            await slow.server.wait_for_request(
                lambda r: r.path == PODS and "continue" in r.query, timeout=60
            )
            await eventually(
                lambda: in_flight(receivers.urls[0]),
                within=30,
                what="a snapshot in flight at the first receiver",
            )
            assert await started[0][0].stop(signal.SIGKILL) == -signal.SIGKILL
            assert SLOW not in await rows(postgres_dsn), "a cut snapshot left rows behind"
            slow.server.clear_faults()
            assert slow.mirror is not None
            first, second = (re.escape(url) for url in receivers.urls[:2])
            await slow.mirror.wait_for_line(rf"failing over from {first} to {second}$")
            port = int(receivers.urls[0].rsplit(":", 1)[1])
            _, restarted = await receivers.start(port)
            assert restarted == receivers.urls[0]

            # -- every cluster converges (under churn, so: holds every fixed pod) ---------
            async def all_synced() -> bool:
                found = await rows(postgres_dsn)
                return all(fixed_keys() <= found.get(c.name, {}).keys() for c in clusters)

            await eventually(all_synced, within=90, what=f"every cluster synced: {tails(clusters)}")

            # -- one cluster's token touches its own rows only ---------------------------
            assert await empty_snapshot(receivers.urls[1], token_of(INTRUDED)) == 200
            found = await rows(postgres_dsn)
            assert found.get(INTRUDED, {}) == {}
            for cluster in clusters:
                if cluster.name != INTRUDED:
                    assert fixed_keys() <= found[cluster.name].keys(), cluster.name

            # -- an empty snapshot of one cluster deletes its rows only -------------------
            # Its watches refused from now on (410), so only a snapshot brings the deletes.
            emptied = by_name[EMPTIED]
            emptied.stopped.set()
            emptied.server.inject(Fault.gone(), path=PODS, watch=True, times=None)
            emptied.server.cut_watches()
            for obj in emptied.server.objects("v1", "Pod"):
                await emptied.server.delete(obj)

            async def emptied_only() -> bool:
                return EMPTIED not in await rows(postgres_dsn)

            await eventually(emptied_only, within=30, what=f"{EMPTIED} emptied by a snapshot")
            found = await rows(postgres_dsn)
            for name in (SLOW, OLD_ETCD, YOUNG_ETCD):
                assert fixed_keys() <= found[name].keys(), name
            emptied.server.clear_faults()
        finally:
            for cluster in clusters:
                cluster.stopped.set()

        # -- the end: every cluster equals its rows, key by key and RV by RV -------------
        async def converged() -> bool:
            found = await rows(postgres_dsn)
            return all(found.get(c.name, {}) == c.pods() for c in clusters)

        try:
            await eventually(
                converged, within=90, what=f"every cluster converged: {tails(clusters)}"
            )
            epochs = await fences(postgres_dsn)
            assert 0 < epochs[YOUNG_ETCD] < OLD_REVISION < epochs[OLD_ETCD], epochs
            assert sum(c.writes for c in clusters) > 200
            # Each receiver's series name the clusters it served.
            served = await metrics(receivers.urls[1])
            for cluster in clusters[1::RECEIVERS]:
                series = f'last_sync_timestamp_seconds{{cluster="{cluster.name}",resource="pods"}}'
                assert series in served, cluster.name
            assert len(by_name[SLOW].pods()) > 290
            for cluster in clusters:
                assert cluster.mirror is not None
                assert await cluster.mirror.stop() == 0, cluster.mirror.tail()
            for process in receivers.processes[1:]:
                assert await process.stop() == 0, process.tail()
        finally:
            for cluster in clusters:
                if cluster.mirror is not None:
                    await cluster.mirror.stop(signal.SIGKILL)
            for process in receivers.processes:
                await process.stop(signal.SIGKILL)
    output = "\n".join(p.text() for p in receivers.processes) + "".join(
        c.mirror.text() for c in clusters if c.mirror is not None
    )
    assert not any(token_of(c.name) in output for c in clusters)


def tails(clusters: list[Cluster]) -> str:
    return "\n".join(f"--- {c.name}\n{c.mirror.tail(5)}" for c in clusters if c.mirror is not None)
