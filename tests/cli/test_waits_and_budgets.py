"""A mirror whose API server asks it to wait, or sends more than a page may hold, as a real
process: a ``Retry-After`` of days on page 2 of a relist waits a minute at most, is a
WARNING naming the resource and the reason before it starts, holds up no other resource
writing into the same SQLite file, and makes ``/readyz`` false
once the resource has gone ``--stale-after`` without a sync; a gzip LIST that inflates to
2 GiB is refused at ``max_list_bytes`` as inflated, having read no more than that, and the
mirror syncs at its next attempt. Every condition is awaited in the process's own lines or
its probes, never guessed with a sleep."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp

from listwatch._kube.resource import MAX_LIST_BYTES
from listwatch.testing import FakeApiServer, Fault
from tests.cli.helpers import eventually, mirrored
from tests.objects import configmap, pod
from tests.processes import running


async def readyz(http: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{base}/readyz") as response:
        return response.status, await response.json()


async def test_a_retry_after_of_days_on_page_two_is_capped_warned_and_not_ready(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    for i in range(501):  # two pages of the mirror's 500
        await server.create(pod(f"p-{i:03d}"))
    # Page 2 of every list but the first: the resync's relist never gets past it.
    server.inject(
        Fault.too_many_requests(retry_after=999999),
        path="/api/v1/pods",
        watch=False,
        continued=True,
        skip=1,
        times=None,
    )
    args = (
        "mirror",
        "pods",
        "configmaps",  # beside it in the same SQLite file: it keeps syncing meanwhile
        "--kubeconfig",
        str(kubeconfig),
        "--sqlite",
        str(tmp_path / "m.db"),
        "--list-strategy",
        "paged",
        "--resync-period",
        "1",
        "--stale-after",
        "2",
        "--metrics-address",
        "127.0.0.1:0",
    )
    async with running("mirror", *args) as mirror, aiohttp.ClientSession() as http:
        probes = (await mirror.wait_for_line(r"metrics and health on (http://\S+)/metrics")).group(
            1
        )
        await mirror.wait_for_line(r"^listwatch mirror: pods: synced 501 objects")
        assert (await readyz(http, probes))[0] == 200
        warning = await mirror.wait_for_line(
            r"^\S+ WARNING listwatch: pods: list /api/v1/pods: HTTP 429 TooManyRequests: (.*); "
            r"retrying the same request in ([\d.]+) s \(the server asked for 999999 s; at most "
            r"60 s is honoured\), attempt 1 of 10$"
        )
        assert float(warning.group(2)) == 60.0
        # pods' relist waits with page 1 read; configmaps' writes into the same file go on
        await server.create(configmap("during-the-wait"))
        assert "default/during-the-wait" in await mirrored(
            tmp_path / "m.db", "configmaps", server, "v1", "ConfigMap"
        )
        await mirror.wait_for_line(
            r"^listwatch mirror: error: pods: not synced into \S+ for \d+ s \(since its last "
            r"sync; no attempt has failed yet: still listing or writing\): not ready until it "
            r"syncs$"
        )
        status, body = await eventually(
            lambda: _not_ready(http, probes), what="/readyz false past --stale-after"
        )
        assert status == 503
        assert body["not_ready"] == ["pods"]
        entry = body["resources"]["pods"]
        assert (entry["stale"], entry["phase"], entry["synced"]) == (True, "listing", False)
        assert entry["unsynced_seconds"] > 2
        assert await mirror.stop() == 0, mirror.tail()
    waits = [line for line in mirror.lines if "retrying the same request" in line]
    assert len(waits) == 1, mirror.tail()  # one wait, said once, before it started


async def _not_ready(http: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, Any]] | None:
    answer = await readyz(http, base)
    return answer if answer[0] != 200 else None


async def test_a_gzip_list_inflating_to_gigabytes_is_refused_at_the_cap(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    await server.create(pod("a"))
    # Not the preflight: the mirror's first page, and its retry one object at a time.
    server.inject(Fault.gzip_bomb(2 * 1024**3), path="/api/v1/pods", watch=False, skip=1, times=2)
    args = (
        "mirror",
        "pods",
        "--kubeconfig",
        str(kubeconfig),
        "--sqlite",
        str(tmp_path / "m.db"),
        "--list-strategy",
        "paged",
    )
    async with running("mirror", *args) as mirror:
        failed = await mirror.wait_for_line(
            r"^listwatch mirror: warning: pods: sync into \S+ failed: ResponseTooLarge: "
            r"list /api/v1/pods: "
            r"response larger than max_list_bytes=(\d+) \(read (\d+) bytes, inflated from "
            r"(\d+) bytes of gzip\); next attempt in [\d.]+ s$"
        )
        cap, read, wire = (int(failed.group(i)) for i in (1, 2, 3))
        assert cap == MAX_LIST_BYTES == 32 * 1024 * 1024
        assert read == cap + 1  # no more than the cap was ever held
        assert wire < cap // 100  # from a few KB on the wire: it was a bomb
        await mirror.wait_for_line(r"^listwatch mirror: pods: synced 1 objects")
        assert await mirror.stop() == 0, mirror.tail()
    limits = [
        r.query.get("limit") for r in server.requests if r.path == "/api/v1/pods" and not r.watch
    ]
    assert limits[:3] == ["1", "500", "1"], limits  # preflight, the page, the page one by one
    assert not any(re.search(r"Traceback|unexpected", line) for line in mirror.lines)
