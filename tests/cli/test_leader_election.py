"""Three ``listwatch mirror --leader-elect`` processes on one SQLite file, against the fake.

Exactly one leads. SIGSTOP the leader: a standby takes over within lease duration + 2 s;
SIGCONT the old one: not a single write of its old epoch lands (an SQLite trigger records
every committed write's stamp, so the assertion is on the database itself). SIGTERM of the
leader hands over within 2 s (it releases the Lease). A Lease deleted and recreated does
not let an old epoch win.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from listwatch.testing import FakeApiServer
from tests.cli.helpers import audit_sqlite, mirrored, sqlite_audit
from tests.objects import pod
from tests.processes import ListwatchProcess, mirror_replicas

LEASE = 2.0
TIMING = ["--lease-duration", str(LEASE), "--renew-deadline", "1.5", "--retry-period", "0.3"]


METRICS_LINE = r"metrics and health on (http://[\d.]+:\d+)/metrics"


async def metrics_url(replica: ListwatchProcess) -> str:
    return (await replica.wait_for_line(METRICS_LINE)).group(1)


async def leading(http: aiohttp.ClientSession, replica: ListwatchProcess) -> bool:
    url = await metrics_url(replica)
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    return 'leader_election_master_status{name="listwatch"} 1.0' in text


def audit(db: Path) -> list[tuple[int, int, str, int, int]]:
    return sqlite_audit(db)


def holder(server: FakeApiServer) -> tuple[str, str]:
    lease = server.get("coordination.k8s.io/v1", "Lease", "listwatch", "default")
    assert lease is not None
    return lease["spec"].get("holderIdentity") or "", lease["metadata"]["resourceVersion"]


async def until(predicate: Any, *, within: float, what: str) -> None:
    """Until ``predicate()`` holds, bounded by ``within``. The condition lives in other
    processes (their metrics, the SQLite file), so it can only be polled."""
    try:
        async with asyncio.timeout(within):
            while True:
                if await predicate():
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {within} s: {what}") from None


def replicas(
    kubeconfig: Path, db: Path, count: int
) -> contextlib.AbstractAsyncContextManager[list[ListwatchProcess]]:
    return mirror_replicas(
        kubeconfig, count, "--sqlite", str(db), "--metrics-address", "127.0.0.1:0", *TIMING
    )


@pytest.fixture
async def audited_db(tmp_path: Path) -> Path:
    db = tmp_path / "mirror.db"
    await audit_sqlite(db)
    return db


async def churn(
    server: FakeApiServer, stop: asyncio.Event, going: asyncio.Event | None = None
) -> None:
    """Changes pods until ``stop``; while ``going`` is clear, it pauses."""
    step = 0
    while not stop.is_set():
        if going is not None:
            await going.wait()
        name = f"p{step % 20}"
        current = server.get("v1", "Pod", name, "default")
        if current is None:
            await server.create(pod(name))
        else:
            current["metadata"]["labels"] = {"step": str(step)}
            await server.replace(current)
        step += 1
        await asyncio.sleep(0.01)  # pacing the churn, not synchronisation


async def test_one_leads_a_paused_leader_is_fenced_and_sigterm_hands_over(
    server: FakeApiServer, kubeconfig: Path, audited_db: Path
) -> None:
    db = audited_db
    stop_churn, churning = asyncio.Event(), asyncio.Event()
    churning.set()
    async with (
        aiohttp.ClientSession() as http,
        replicas(kubeconfig, db, 3) as group,
        asyncio.TaskGroup() as tasks,
    ):
        tasks.create_task(churn(server, stop_churn, churning))
        by_name = {r.name: r for r in group}

        async def one_leader() -> bool:
            if server.get("coordination.k8s.io/v1", "Lease", "listwatch", "default") is None:
                return False
            name, _ = holder(server)
            if name not in by_name or not audit(db):
                return False
            flags = [await leading(http, r) for r in group]
            return flags.count(True) == 1 and await leading(http, by_name[name])

        await until(one_leader, within=30, what="exactly one replica leads and has written")
        first, _ = holder(server)
        old = by_name[first]
        old_epoch = audit(db)[-1][1]

        # SIGSTOP the leader between writes: the churn pauses until the mirror holds every
        # change. (A leader stopped in the middle of a snapshot, for every target, is
        # test_stalled_leader.py's.) The churn then goes on, so the old leader has events to
        # write when it wakes.
        churning.clear()
        await mirrored(db, "pods", server, "v1", "Pod")
        old.process.send_signal(signal.SIGSTOP)
        churning.set()

        async def taken_over() -> bool:
            return holder(server)[0] not in ("", first)

        await until(taken_over, within=LEASE + 2.0, what="a standby took over the lease")
        second, _ = holder(server)

        async def new_epoch_written() -> bool:
            return any(row[1] > old_epoch for row in audit(db))

        await until(new_epoch_written, within=15, what="the new leader wrote")
        takeover_at = next(row[0] for row in audit(db) if row[1] > old_epoch)

        # SIGCONT the old leader: it must learn it lost, and write nothing meanwhile.
        old.process.send_signal(signal.SIGCONT)

        async def old_knows() -> bool:
            return not await leading(http, old)

        try:
            await until(old_knows, within=10, what="the old leader sees it no longer leads")
        except AssertionError:
            raise AssertionError(old.text()) from None
        await until(new_epoch_written, within=5, what="writes go on")  # a read after SIGCONT
        late = [row for row in audit(db) if row[0] > takeover_at and row[1] <= old_epoch]
        assert late == [], f"writes of the old epoch after the takeover: {late}"
        flags = {r.name: await leading(http, r) for r in group}
        assert flags == {r.name: r.name == second for r in group}

        # SIGTERM of the leader: it releases the Lease, a standby leads within 2 s.
        by_name[second].process.send_signal(signal.SIGTERM)

        async def handed_over() -> bool:
            return holder(server)[0] not in ("", second)

        try:
            await until(handed_over, within=2.0, what="SIGTERM handed the lease over")
        except AssertionError as exc:
            tails = "\n".join(r.name + ":\n" + "\n".join(r.lines[-12:]) for r in group)
            raise AssertionError(f"{exc}\n{tails}") from None
        assert await asyncio.wait_for(by_name[second].process.wait(), 15) == 0
        stop_churn.set()

    epochs = [row[1] for row in audit(db)]
    assert epochs == sorted(epochs), "an epoch went back in the database"
    assert "Traceback" not in by_name[second].text()


async def test_a_recreated_lease_does_not_let_an_old_epoch_win(
    server: FakeApiServer, kubeconfig: Path, audited_db: Path
) -> None:
    db = audited_db
    await server.create(pod("a"))
    async with aiohttp.ClientSession() as http, replicas(kubeconfig, db, 2) as group:

        async def someone_wrote() -> bool:
            return bool(audit(db)) and any([await leading(http, r) for r in group])

        await until(someone_wrote, within=30, what="a leader wrote")
        # Each replica's lines say which it is: the leader mirrors, the standby waits.
        flags = [await leading(http, r) for r in group]
        leader, standby = (group[0], group[1]) if flags[0] else (group[1], group[0])
        await leader.wait_for_line(
            r"^listwatch mirror \[leading\]: leading \(epoch \d+\): mirroring pods"
        )
        await standby.wait_for_line(
            rf"^listwatch mirror \[standby\]: standing by as {standby.name} for lease "
            r"default/listwatch: mirrors pods into .* while leading"
        )
        assert not any("[standby]: leading" in line for line in standby.lines)
        before = max(row[1] for row in audit(db))
        lease = server.get("coordination.k8s.io/v1", "Lease", "listwatch", "default")
        assert lease is not None
        await server.delete(lease)
        await server.create(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": "listwatch", "namespace": "default"},
                "spec": {},
            }
        )
        await server.create(pod("b"))  # something to write in the new term

        async def newer_term_wrote() -> bool:
            return any(row[1] > before for row in audit(db))

        await until(newer_term_wrote, within=20, what="a new term (larger epoch) wrote")
    epochs = [row[1] for row in audit(db)]
    assert epochs == sorted(epochs)
