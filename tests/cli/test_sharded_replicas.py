"""Three ``listwatch mirror pods --shards 4 --leader-elect`` replicas, real processes, churn.

Each target in turn (an SQLite file, a PostgreSQL database, a ``listwatch receiver`` over
``--http``), with the fake's server-side sharding on and off. What must hold:

* every shard Lease is held by exactly one replica at any time (the replicas' own
  ``leader_election_master_status`` gauges, read throughout), and no replica holds more
  than its fair share, ceil(4 / 3) = 2, once the share has settled;
* SIGKILL of a replica that holds shards: each of its shards is written by a new holder
  (a larger epoch for that shard) within lease + 2 s of the kill;
* the mirror equals the cluster key by key and resourceVersion by resourceVersion;
* no object is ever written by a shard that does not hold it: every write is audited with
  the shard that made it, and each object's uid hashes into that shard's range.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from listwatch._shard import Shard
from listwatch.testing import FakeApiServer
from tests.cli.helpers import eventually, server_objects, versions
from tests.cli.sharded_targets import (
    Target,
    audited_sqlite,
    foreign_writes,
    sharded_target,
    sqlite_target,
)
from tests.objects import pod
from tests.processes import ListwatchProcess, mirror_replicas

LEASE = 2.0
TIMING = ["--lease-duration", str(LEASE), "--renew-deadline", "1.5", "--retry-period", "0.3"]
SHARDS = 4
REPLICAS = 3
SHARE = 2  # ceil(4 / 3)
TAKEOVER_BOUND = LEASE + 2.0
"""The requirement: a dead replica's shards are written by their new holders within the
lease duration plus 2 s of its death."""
METRICS_LINE = r"metrics and health on (http://[\d.]+:\d+)/metrics"
LEADING = re.compile(r'leader_election_master_status\{name="listwatch-shard-(\d+)"\} 1\.0')


@pytest.fixture(params=["server", "client"])
def filtered_by(request: pytest.FixtureRequest) -> str:
    """Who filters the shards: the fake (it applies shardSelector as kube-apiserver 1.36
    does, and echoes it) or the replicas (the fake ignores it, as a server without the
    feature does)."""
    return str(request.param)


SAID = {"server": "API server", "client": "client"}
"""How the replicas' lines name who filtered: ``shard 2/4: filtered by the API server``."""


@pytest.fixture
async def server(filtered_by: str) -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(
        bookmark_interval=0.05, too_large_wait=0.2, tls=False, sharding=filtered_by == "server"
    ) as fake:
        yield fake


@pytest.fixture(params=["sqlite", "postgres", "http"])
def target_kind(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The target's name, and a PostgreSQL database for the one that needs it."""
    name = str(request.param)
    return name, request.getfixturevalue("postgres_dsn") if name == "postgres" else ""


@pytest.fixture
async def target(target_kind: tuple[str, str], tmp_path: Path) -> AsyncIterator[Target]:
    name, dsn = target_kind
    async with sharded_target(name, tmp_path, dsn) as made:
        yield made


def replicas(
    kubeconfig: Path, target: Target
) -> contextlib.AbstractAsyncContextManager[list[ListwatchProcess]]:
    return mirror_replicas(
        kubeconfig,
        REPLICAS,
        *target.args,
        "--shards",
        str(SHARDS),
        "--metrics-address",
        "127.0.0.1:0",
        *TIMING,
    )


def lease_holders(server: FakeApiServer) -> dict[int, str]:
    held = {}
    for index in range(SHARDS):
        lease = server.get("coordination.k8s.io/v1", "Lease", f"listwatch-shard-{index}", "default")
        held[index] = "" if lease is None else str(lease["spec"].get("holderIdentity") or "")
    return held


async def churn(server: FakeApiServer, stop: asyncio.Event) -> None:
    """Creates, updates and deletes pods until ``stop``."""
    step = 0
    while not stop.is_set():
        name = f"c{step % 30}"
        current = server.get("v1", "Pod", name, "default")
        if current is None:
            await server.create(pod(name))
        elif step % 7 == 0:
            await server.delete(current)
        else:
            current["metadata"]["labels"] = {"step": str(step)}
            await server.replace(current)
        step += 1
        await asyncio.sleep(0.01)  # pacing the churn, not synchronisation


class Holdings:
    """What each replica says it leads, read from its metrics again and again; every read
    is checked: no shard led by two replicas at once."""

    def __init__(self, http: aiohttp.ClientSession, group: list[ListwatchProcess]) -> None:
        self.http = http
        self.group = group
        self.dead: set[str] = set()
        self.urls: dict[str, str] = {}
        self.violations: list[str] = []
        self.last: dict[str, set[int]] = {}

    async def read(self) -> dict[str, set[int]]:
        held: dict[str, set[int]] = {}
        for replica in self.group:
            if replica.name in self.dead:
                continue
            if replica.name not in self.urls:
                found = await replica.wait_for_line(METRICS_LINE)
                self.urls[replica.name] = found.group(1)
            try:
                async with self.http.get(f"{self.urls[replica.name]}/metrics") as response:
                    text = await response.text()
            except aiohttp.ClientError:
                if replica.name in self.dead:
                    continue
                raise
            held[replica.name] = {int(m.group(1)) for m in LEADING.finditer(text)}
        for index in range(SHARDS):
            leaders = sorted(name for name, shards in held.items() if index in shards)
            if len(leaders) > 1:
                self.violations.append(f"shard {index} led by {leaders}")
        self.last = held
        return held

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.read()
            await asyncio.sleep(0.05)  # a polling period


@pytest.mark.timeout(120)
async def test_replicas_share_the_shards_and_take_over_a_killed_replicas_within_the_lease(
    kubeconfig: Path, server: FakeApiServer, target: Target, filtered_by: str
) -> None:
    for i in range(40):
        await server.create(pod(f"p{i:02d}"))
    stop = asyncio.Event()
    async with (
        aiohttp.ClientSession() as http,
        replicas(kubeconfig, target) as group,
        asyncio.TaskGroup() as tasks,
    ):
        by_name = {replica.name: replica for replica in group}
        holdings = Holdings(http, group)
        tasks.create_task(churn(server, stop))
        tasks.create_task(holdings.watch(stop))

        async def settled() -> bool:
            held = lease_holders(server)
            if set(held.values()) - set(by_name):
                return False  # a shard free
            counts = [list(held.values()).count(name) for name in by_name]
            if max(counts) > SHARE:
                return False
            mine = await holdings.read()
            return all(
                mine.get(name) == {i for i, h in held.items() if h == name} for name in by_name
            )

        try:
            await eventually(settled, what="every shard held, nobody over the share", within=40)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{tails(group)}") from None

        # Each replica's /readyz names the shards it holds, all synced; its metrics carry
        # the shard label.
        async def probes_agree() -> bool:
            held = lease_holders(server)
            for replica in group:
                mine = {f"{i}/{SHARDS}" for i, h in held.items() if h == replica.name}
                url = holdings.urls[replica.name]
                async with http.get(f"{url}/readyz") as response:
                    ready = await response.json()
                if set(ready["shards"]) != mine or not ready["ok"]:
                    return False
                if not mine and ready.get("note") != "this replica holds no shard":
                    return False
                async with http.get(f"{url}/metrics") as response:
                    text = await response.text()
                for name in mine:
                    synced = (
                        f'listwatch_synced{{group="",resource="pods",shard="{name}",version="v1"}}'
                    )
                    if f"{synced} 1.0" not in text:
                        return False
                if f"listwatch_shard_fair_share {float(SHARE)}" not in text:
                    return False
            return True

        await eventually(probes_agree, what="/readyz and /metrics name each held shard")

        # Kill a replica that holds shards; note each of its shards' epoch.
        held = lease_holders(server)
        victim = by_name[held[0]]
        orphans = sorted(i for i, h in held.items() if h == victim.name)
        epochs = await target.epochs()
        before = {i: epochs.get(Shard.of(i, SHARDS).name, 0) for i in orphans}
        holdings.dead.add(victim.name)
        victim.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()

        async def taken_over() -> bool:
            now = await target.epochs()
            return all(now.get(Shard.of(i, SHARDS).name, 0) > before[i] for i in orphans)

        await eventually(taken_over, what="the orphans written by new holders", within=30)
        took = time.monotonic() - killed_at
        print(f"takeover of shards {orphans}: {took:.2f} s after the kill")
        assert took <= TAKEOVER_BOUND, f"{took:.2f} s > {TAKEOVER_BOUND} s\n{tails(group)}"
        assert all(h in by_name and h != victim.name for h in lease_holders(server).values())

        stop.set()

        async def equal() -> bool:
            return await target.objects() == versions(server_objects(server, "v1", "Pod"))

        await eventually(equal, what=f"{target.name}: the mirror equals the cluster", within=30)

    assert holdings.violations == []
    assert await target.foreign_writes() == []
    said = {
        replica.name: set(
            re.findall(r"shard \d/4: filtered by the (API server|client)", replica.text())
        )
        for replica in group
    }
    assert set().union(*said.values()) == {SAID[filtered_by]}, said


def tails(group: list[ListwatchProcess]) -> str:
    return "\n".join(f"{r.name}:\n{r.tail(20)}" for r in group)


async def test_one_static_shard_mirrors_exactly_its_objects_and_replaces_only_them(
    kubeconfig: Path, server: FakeApiServer, tmp_path: Path, filtered_by: str
) -> None:
    db = tmp_path / "mirror.db"
    await audited_sqlite(db)
    for i in range(40):
        await server.create(pod(f"p{i:02d}"))
    shard = Shard.of(1, SHARDS)

    def wanted() -> dict[str, str]:
        return {
            key: rv
            for key, rv in versions(server_objects(server, "v1", "Pod")).items()
            if shard.holds_uid(server_objects(server, "v1", "Pod")[key]["metadata"]["uid"])
        }

    async with running_mirror(kubeconfig, db, "--shard", "1/4") as replica:
        await replica.wait_for_line(r"mirroring shard 1/4 of pods into")
        await replica.wait_for_line(rf"shard 1/4: filtered by the {SAID[filtered_by]}")
        await server.delete(next(iter(server.objects("v1", "Pod"))))
        await server.create(pod("late"))

        async def equal() -> bool:
            have = await sqlite_target("sqlite", db, []).objects()
            return have == wanted() and bool(have)

        await eventually(equal, what="the mirror holds exactly shard 1/4's pods")
    rows = await sqlite_target("sqlite", db, []).audit()
    assert {scope for _, kind, scope, _, _, _ in rows if kind == "state"} == {
        f"0x{shard.start:016x}-0x{shard.end:016x}"
    }
    assert {epoch for _, kind, _, epoch, _, _ in rows if kind == "state"} == {0}
    assert foreign_writes(rows) == []


@contextlib.asynccontextmanager
async def running_mirror(
    kubeconfig: Path, db: Path, *flags: str
) -> AsyncIterator[ListwatchProcess]:
    replica = await ListwatchProcess.start(
        "static",
        "mirror",
        "pods",
        "--sqlite",
        str(db),
        "--kubeconfig",
        str(kubeconfig),
        "--merge-interval",
        "0.05",
        "-v",
        *flags,
    )
    try:
        yield replica
    finally:
        await replica.stop(signal.SIGKILL)
