"""``listwatch mirror`` against servers that cannot stream lists, as real processes.

A server without the WatchList feature refuses ``--list-strategy stream`` with 422: the
mirror exits 1 with the server's own code and the flag to change. A server whose etcd lacks
RequestWatchProgress answers every streaming list with an ERROR event: under ``auto`` the
mirror pages, says why once (not at every relist), and ``/readyz`` shows it per resource.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from listwatch.testing import FakeApiServer
from tests.cli.helpers import eventually, mirrored
from tests.objects import pod
from tests.processes import run_to_end, running

FAST = ("--merge-interval", "0.05")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_stream_against_a_server_without_watch_list_exits_with_its_422_and_the_flag(
    tmp_path: Path,
) -> None:
    async with FakeApiServer(watch_list=False, tls=False) as server:
        server.write_kubeconfig(tmp_path / "kubeconfig")
        code, err = await run_to_end(
            "mirror",
            "pods",
            "--list-strategy",
            "stream",
            "--sqlite",
            str(tmp_path / "mirror.db"),
            "--kubeconfig",
            str(tmp_path / "kubeconfig"),
        )
    assert code == 1, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines[-1] == (
        "listwatch mirror: error: the API server refused a streaming list of /api/v1/pods "
        '(HTTP 422 Invalid: ListOptions.meta.k8s.io "" is invalid: sendInitialEvents: '
        "Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature "
        "gate is enabled): it does not serve streaming lists; use --list-strategy auto (pages "
        "where it cannot stream) or --list-strategy paged"
    )
    assert "HTTP 400" not in err  # the server said 422


async def test_auto_says_once_why_snapshots_are_paged_and_readyz_shows_it(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """etcd 3.5.1 (before 3.5.13): every streaming list is refused with an ERROR event. The mirror
    relists every 0.2 s; the warning is written once, the status says paged and why."""
    async with FakeApiServer(request_watch_progress=False, tls=False) as server:
        await server.create(pod("a"))
        server.write_kubeconfig(tmp_path / "kubeconfig")
        db = tmp_path / "mirror.db"
        args = (
            *("mirror", "pods", "--sqlite", str(db), "--kubeconfig", str(tmp_path / "kubeconfig")),
            *("--resync-period", "0.2", "--metrics-address", "127.0.0.1:0", *FAST),
        )
        async with running("mirror", *args) as mirror:
            base = (
                await mirror.wait_for_line(r"metrics and health on (http://\S+)/metrics")
            ).group(1)
            warning = await mirror.wait_for_line(
                r"WARNING listwatch: pods: snapshots are paged LISTs, not streaming lists: (.*)$"
            )
            await mirrored(db, "pods", server, "v1", "Pod")

            async def relisted() -> bool:
                async with http.get(f"{base}/metrics") as response:
                    text = await response.text()
                found = re.search(r"^listwatch_generations_total\{[^}]*\} (\S+)$", text, re.M)
                return found is not None and float(found.group(1)) >= 4

            await eventually(relisted, what="four generations listed")
            async with http.get(f"{base}/readyz") as response:
                ready_status, ready = response.status, await response.json()
            assert await mirror.stop() == 0, mirror.tail()
        streams = [r for r in server.requests if r.query.get("sendInitialEvents") == "true"]
    reason = (
        "a streaming list failed (HTTP 500 InternalError: a watch stream was requested by the "
        "client but the required storage feature RequestWatchProgress is disabled)"
    )
    assert warning.group(1) == f"{reason}; a streaming list is tried again at every relist"
    assert sum("snapshots are paged" in line for line in mirror.lines) == 1, mirror.tail()
    assert len(streams) >= 4  # tried again at every relist, said once
    assert ready_status == 200, ready
    assert ready["resources"]["pods"]["snapshots"] == "paged"
    assert ready["resources"]["pods"]["paged_because"] == reason
