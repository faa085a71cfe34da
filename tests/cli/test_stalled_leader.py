"""A leader SIGSTOPped in the middle of a snapshot holds up nobody: real processes, real signals.

Two ``listwatch mirror --leader-elect`` replicas write to each target in turn: an SQLite
file, a PostgreSQL database, and an HTTP receiver (a ``listwatch receiver`` process) over
each of the two. The leader relists, the fake API server delays the second page of that
LIST, and the test SIGSTOPs the leader as soon as it asks for that page: its snapshot is
open, half staged. The standby takes over, and its first write lands within the lease plus
5 s (the requirement: the new leader does not wait for the stopped one). Then the old
leader is SIGCONTed: nothing of its old epoch lands after the takeover (its late snapshot is
refused by the fence, or never sent once it sees its term is over), and the mirror equals
the cluster. A trigger records the stamp of every committed write, so the assertions are on
the database itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from listwatch.testing import FakeApiServer, Fault, RecordedRequest
from tests.cli.helpers import (
    audit_postgres,
    audit_sqlite,
    eventually,
    postgres_fetch,
    postgres_pod_versions,
    server_objects,
    sqlite_audit,
    sqlite_pod_versions,
    versions,
)
from tests.objects import pod
from tests.processes import ListwatchProcess, mirror_replicas, start_receiver

LEASE = 2.0
TIMING = ["--lease-duration", str(LEASE), "--renew-deadline", "1.5", "--retry-period", "0.3"]
FIRST_WRITE_BOUND = LEASE + 5.0
"""The requirement: after the leader stops, the new leader's first write lands within its
lease plus 5 s, whatever the old one is doing."""
PODS = "/api/v1/pods"
INITIAL_PODS = 600
"""Two LIST pages of 500: the second is the one the fake delays. Each pod carries 2 KB of
noise, so that a page is more than the HTTP sender's gzip stream holds back: page 1
reaches the receiver while the sender waits for page 2."""
PAGE_DELAY = 3.0
"""How long the fake holds back the relist's second page: the test stops the leader within
it (once the page is asked for and, over HTTP, page 1 has reached the receiver), and the
page is sent while the leader is stopped, so the leader may find it when it wakes."""
TOKEN = "stalled-leader-token"

POSTGRES_AUDIT = (
    """
    CREATE TABLE public.audit (
        n bigserial PRIMARY KEY, resource text, epoch bigint, session text,
        generation bigint, sequence bigint
    )
    """,
    """
    CREATE FUNCTION public.audit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO public.audit (resource, epoch, session, generation, sequence)
        VALUES (NEW.resource, NEW.epoch, NEW.session, NEW.generation, NEW.sequence);
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER audit AFTER INSERT OR UPDATE ON listwatch.sync_state
    FOR EACH ROW EXECUTE FUNCTION public.audit()
    """,
)

Audit = list[tuple[int, int]]
"""The committed writes, in order: (n, epoch)."""


@dataclass
class Target:
    """Where the replicas write (``args``), and how the test reads what landed there."""

    name: str
    args: list[str]
    audit: Callable[[], Awaitable[Audit]]
    objects: Callable[[], Awaitable[dict[str, str] | None]]
    staging: Callable[[], Awaitable[int]] | None = None
    """How many snapshots are being staged (where the database shows it: PostgreSQL)."""
    snapshots_open: Callable[[], Awaitable[bool]] | None = None
    """Whether a receiver process has read records of a snapshot it has not committed."""
    processes: list[ListwatchProcess] = field(default_factory=list)


def _sqlite_audit(db: Path) -> Audit:
    return sqlite_audit(db, "n, epoch")


def _sqlite_target(name: str, db: Path, args: list[str]) -> Target:
    async def audit() -> Audit:
        return await asyncio.to_thread(_sqlite_audit, db)

    async def objects() -> dict[str, str] | None:
        return await asyncio.to_thread(sqlite_pod_versions, db)

    return Target(name, args, audit, objects)


def _postgres_target(name: str, dsn: str, args: list[str]) -> Target:
    async def audit() -> Audit:
        rows = await postgres_fetch(dsn, "SELECT n, epoch FROM audit ORDER BY n")
        return [(r["n"], r["epoch"]) for r in rows]

    async def objects() -> dict[str, str] | None:
        return await postgres_pod_versions(dsn)

    async def staging() -> int:
        rows = await postgres_fetch(
            dsn, "SELECT count(*) AS n FROM listwatch.stagings WHERE resource = 'pods'"
        )
        return int(rows[0]["n"])

    return Target(name, args, audit, objects, staging)


async def records_in_flight(url: str) -> bool:
    """Whether the receiver has read records of a snapshot it has not committed yet."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}) as response,
    ):
        text = await response.text()
    return any(
        line.startswith("listwatch_receiver_records_in_flight ") and float(line.split()[1]) > 0
        for line in text.splitlines()
    )


@pytest.fixture(params=["sqlite", "postgres", "http-sqlite", "http-postgres"])
def kind(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The target's name, and a PostgreSQL database for those that need one."""
    name: str = request.param
    return name, "" if name.endswith("sqlite") else request.getfixturevalue("postgres_dsn")


@pytest.fixture
async def target(kind: tuple[str, str], tmp_path: Path) -> AsyncIterator[Target]:
    """Each target in turn; for the HTTP ones, a receiver process writing to the database."""
    name, dsn = kind
    db = tmp_path / "mirror.db"
    if dsn == "":
        await audit_sqlite(db)
        store = ["--sqlite", str(db)]
    else:
        await audit_postgres(dsn, POSTGRES_AUDIT)
        store = ["--postgres", dsn]
    receiver: ListwatchProcess | None = None
    args = store
    if name.startswith("http"):
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN)
        receiver, url = await start_receiver(store, token_file)
        args = ["--http", url, "--http-token-file", str(token_file)]
    made = _sqlite_target(name, db, args) if dsn == "" else _postgres_target(name, dsn, args)
    if receiver is not None:
        made.processes.append(receiver)
        made.snapshots_open = functools.partial(records_in_flight, url)
    try:
        yield made
    finally:
        if receiver is not None:
            await receiver.stop(signal.SIGKILL)


def replicas(
    kubeconfig: Path, target: Target
) -> contextlib.AbstractAsyncContextManager[list[ListwatchProcess]]:
    return mirror_replicas(kubeconfig, 2, *target.args, "--list-strategy", "paged", *TIMING)


def holder(server: FakeApiServer) -> str:
    lease = server.get("coordination.k8s.io/v1", "Lease", "listwatch", "default")
    return "" if lease is None else str(lease["spec"].get("holderIdentity") or "")


async def until(predicate: Callable[[], Awaitable[Any]], *, within: float, what: str) -> None:
    """Until ``predicate()`` holds, bounded by ``within``. The condition lives in other
    processes (their databases), so it can only be polled."""
    try:
        async with asyncio.timeout(within):
            while True:
                if await predicate():
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {within} s: {what}") from None


def _is_preflight(request: RecordedRequest) -> bool:
    return request.path == PODS and request.query.get("limit") == "1"


def _is_page_2(request: RecordedRequest) -> bool:
    return request.path == PODS and not request.watch and "continue" in request.query


@pytest.mark.timeout(120)
async def test_a_leader_stopped_mid_snapshot_holds_up_no_new_leader(
    server: FakeApiServer, kubeconfig: Path, target: Target
) -> None:
    rng = random.Random(19)
    for i in range(INITIAL_PODS):
        await server.create(pod(f"p{i:03d}", noise=rng.randbytes(1000).hex()))

    async def cluster_mirrored() -> bool:
        return await target.objects() == versions(server_objects(server, "v1", "Pod"))

    async with replicas(kubeconfig, target) as group:
        by_name = {replica.name: replica for replica in group}

        async def leader_wrote() -> bool:
            return holder(server) in by_name and bool(await target.audit())

        await until(leader_wrote, within=30, what="a leader wrote")
        await until(cluster_mirrored, within=30, what="the leader's first snapshot")
        # Each replica's preflight LIST is behind us (the faults below are for the relist).
        await server.wait_until(lambda s: sum(map(_is_preflight, s.requests)) == 2, timeout=30)
        old = by_name[holder(server)]
        old_epoch = max(epoch for _, epoch in await target.audit())

        # The leader relists (its watch is told 410), and the fake holds back page 2.
        start = server.request_count
        server.inject(Fault.slow(0), path=PODS, watch=False)  # page 1 goes through
        held = server.inject(Fault.slow(PAGE_DELAY), path=PODS, watch=False)  # page 2 waits
        server.inject(Fault.gone(), path=PODS, watch=True)
        server.cut_watches()
        page_2 = await server.wait_for_request(_is_page_2, start=start, timeout=30)
        assert page_2.fault is held.fault
        if target.snapshots_open is not None:  # the page 1 it sent has reached the receiver
            await eventually(target.snapshots_open, what="the snapshot open at the receiver")
        old.process.send_signal(signal.SIGSTOP)
        if target.name == "postgres":  # the sink staged page 1 before it asked for page 2
            assert target.staging is not None
            assert await target.staging() == 1, "the old leader's snapshot is not being staged"
        await server.create(pod("after-the-stop"))  # for the new leader's batches

        async def new_epoch_wrote() -> bool:
            return any(epoch > old_epoch for _, epoch in await target.audit())

        try:
            await until(
                new_epoch_wrote, within=FIRST_WRITE_BOUND, what="the new leader's first write"
            )
        except AssertionError as exc:
            tails = "\n".join(f"{r.name}:\n{r.tail(15)}" for r in [*group, *target.processes])
            raise AssertionError(f"{target.name}: {exc}\n{tails}") from None
        audit = await target.audit()
        takeover = next(n for n, epoch in audit if epoch > old_epoch)
        new = by_name[holder(server)]
        assert new is not old

        old.process.send_signal(signal.SIGCONT)
        await old.wait_for_line(r"no longer leading: standing by", within=30)
        await server.create(pod("after-the-resume"))
        await eventually(cluster_mirrored, what=f"{target.name}: the mirror equals the cluster")
        late = [(n, epoch) for n, epoch in await target.audit() if n > takeover]
        assert late, "the new leader went on writing"
        assert all(epoch > old_epoch for _, epoch in late), f"old-epoch writes landed: {late}"
        if target.staging is not None:
            staging = target.staging

            async def no_staging_left() -> bool:
                return await staging() == 0

            await eventually(no_staging_left, what="the old leader's staging was deleted")
