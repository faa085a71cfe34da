"""One resource's slow LIST never fails another resource's writes in the same SQLite file.

``listwatch mirror pods configmaps --sqlite`` as a process. Pods relist (their watch is told
410) and the fake API server holds back the second page of that LIST for far longer than
the sink's busy timeout (10 s). While the pods snapshot is open, waiting for that page,
config maps change: every change lands in the file, and no configmaps write fails.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from listwatch.sinks.sqlite import read_mirror
from listwatch.testing import FakeApiServer, Fault, RecordedRequest
from tests.cli.helpers import eventually, mirror_objects, mirrored, server_objects, versions
from tests.objects import configmap, pod
from tests.processes import running

PODS = "/api/v1/pods"
HELD_BACK = 60.0
"""How long the fake holds back page 2 of the pods LIST: far beyond the SQLite sink's busy
timeout, and beyond this test's end (the fake cancels it when it stops)."""
LANDS_WITHIN = 15.0
"""Bound on each config map change reaching the file. A write queued behind the pods
snapshot would wait for the held-back page (HELD_BACK), or fail after the busy timeout."""


@pytest.mark.timeout(120)
async def test_a_slow_list_of_one_resource_never_fails_another_s_writes(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    for i in range(600):  # two LIST pages of 500
        await server.create(pod(f"p{i:03d}"))
    db = tmp_path / "mirror.db"
    args = ("mirror", "pods", "configmaps", "--sqlite", str(db), "--kubeconfig", str(kubeconfig))
    args += ("--list-strategy", "paged", "--merge-interval", "0.05", "-v")
    async with running("mirror", *args) as mirror:
        await mirrored(db, "pods", server, "v1", "Pod")
        await eventually(lambda: synced(db, "configmaps"), what="the config maps' snapshot")
        await server.create(configmap("c1", v="1"))  # configmaps' watch has had an event:
        await configmaps_landed(server, db, mirror.tail)  # a cut is no failure for it
        listed = read_mirror(db, resource="pods").state

        # Pods relist (their watch is cut, and told 410 when it comes back); of that LIST,
        # page 1 goes through and page 2 is held back.
        start = server.request_count
        server.inject(Fault.slow(0), path=PODS, watch=False)
        held = server.inject(Fault.slow(HELD_BACK), path=PODS, watch=False)
        server.inject(Fault.gone(), path=PODS, watch=True)
        server.cut_watches()
        page_2 = await server.wait_for_request(_is_page_2, start=start, timeout=30)
        assert page_2.fault is held.fault

        for step in range(2, 5):
            await server.create(configmap(f"c{step}", v=str(step)))
            await configmaps_landed(server, db, mirror.tail)
        # All the while, the pods snapshot was open (not committed: it waits for page 2). Its
        # old generation may still have written a batch (a bookmark) before the cut.
        now = read_mirror(db, resource="pods").state
        assert now is not None
        assert listed is not None
        assert (now.generation, now.listed_at) == (listed.generation, listed.listed_at)
        assert not [line for line in mirror.lines if "warning: configmaps" in line]
        assert "database is locked" not in mirror.text()


def _is_page_2(request: RecordedRequest) -> bool:
    return request.path == PODS and not request.watch and "continue" in request.query


def synced(db: Path, resource: str) -> bool:
    try:
        return read_mirror(db, resource=resource).state is not None
    except (FileNotFoundError, ValueError, sqlite3.OperationalError):
        return False  # no file or tables yet, or the sink is switching it to WAL mode


async def configmaps_landed(server: FakeApiServer, db: Path, tail: Callable[[], str]) -> None:
    def landed() -> bool:
        want = versions(server_objects(server, "v1", "ConfigMap"))
        have = mirror_objects(db, "configmaps")
        return have is not None and versions(have) == want

    await eventually(landed, within=LANDS_WITHIN, what=f"config maps in the file\n{tail()}")
