"""``listwatch mirror``'s watch as a process meets it: an API server that restarts, and the
lines it writes about its watch.

kube-apiserver ends its watches when it stops, refuses connections while it is down, and
comes back with a fresh watch cache that answers a watch from an older resourceVersion with
a 410 (the fake server's ``stop()``/``start()`` does all three). The mirror must notice the
server within a few seconds of its return, and its relist must not wait a backoff that grew
for as long as the server was down. What it did is read from its own lines (each wait is
announced before it begins) and the server's request log, never from a clock.
"""

from __future__ import annotations

import re
from pathlib import Path

from listwatch._reflector import RECONNECT_CAP
from listwatch.testing import FakeApiServer
from tests.cli.helpers import eventually, mirrored
from tests.objects import configmap, pod
from tests.processes import ListwatchProcess, running

PODS = "/api/v1/pods"
FIRST_RELIST = 0.8
"""The relist backoff's first wait (client-go's, the mirror's): [0.8, 1.6) s with jitter."""


def mirror_args(kubeconfig: Path, db: Path, verbosity: str) -> tuple[str, ...]:
    return (
        "mirror",
        "pods",
        "--kubeconfig",
        str(kubeconfig),
        "--sqlite",
        str(db),
        "--merge-interval",
        "0.05",
        verbosity,
    )


def matches(mirror: ListwatchProcess, pattern: str) -> list[re.Match[str]]:
    return [found for line in mirror.lines if (found := re.search(pattern, line))]


async def test_a_restarted_apiserver_is_found_at_once_and_relisted_without_a_grown_backoff(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    await server.create(pod("a"))
    db = tmp_path / "mirror.db"
    async with running("mirror", *mirror_args(kubeconfig, db, "-v")) as mirror:
        await mirrored(db, "pods", server, "v1", "Pod")
        await server.create(pod("b"))  # through the watch: it has started for sure
        await mirrored(db, "pods", server, "v1", "Pod")
        await server.stop()
        rewatch = (
            r"watch /api/v1/pods: cannot connect \(refused\)"
            r"(?: \(no answer for \d+ s\))?; re-watching in ([\d.]+) s$"
        )
        await eventually(
            lambda: len(matches(mirror, rewatch)) >= 4,
            what=f"four refused re-watches announced\n{mirror.tail()}",
            within=30,
        )
        await server.create(pod("while-down"))
        restarted = server.request_count
        await server.start()
        objects = await mirrored(db, "pods", server, "v1", "Pod")
        assert "default/while-down" in objects
        failed = await mirror.wait_for_line(
            r"warning: pods: sync into \S+ failed: (.+); next attempt in ([\d.]+) s$"
        )
        assert await mirror.stop() == 0, mirror.tail()
    # Each refused connection waited a short streak of its own, capped, jittered.
    waits = [float(found.group(1)) for found in matches(mirror, rewatch)]
    assert all(0 < wait < 2 * RECONNECT_CAP for wait in waits), waits
    # The restarted server's fresh watch cache answered the re-watch with a 410; the relist
    # waited the relist backoff's first step, not one grown by the refused connections.
    assert "HTTP 410" in failed.group(1), failed.group(0)
    # logged to 0.1 s: a first step just under 2 x 0.8 s reads 1.6
    assert float(failed.group(2)) <= 2 * FIRST_RELIST, failed.group(0)
    relisting = matches(mirror, r"generation 1 ended: .*410.*; relisting in ([\d.]+) s$")
    assert [found.group(1) for found in relisting] == [failed.group(2)]
    after = server.requests[restarted:]
    listings = [
        r
        for r in after
        if r.path == PODS and (not r.watch or r.query.get("sendInitialEvents") == "true")
    ]
    assert len(listings) == 1, [r.query for r in after]  # one relist, no storm
    watches = [r for r in after if r.path == PODS and r.watch and r is not listings[0]]
    assert watches[0].query.get("resourceVersion") not in (None, "", "0")  # a re-watch first


async def test_debug_lines_name_a_bookmarks_resource_once_and_not_the_path_again(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    """The command names the resource on every line of its Syncer (``pods: ``); the loop's
    own watch lines then need neither the path nor a repetition of it."""
    db = tmp_path / "mirror.db"
    async with running("mirror", *mirror_args(kubeconfig, db, "-vv")) as mirror:
        await mirror.wait_for_line(r"pods: synced")
        await server.wait_for_watchers(1)
        await server.create(configmap("elsewhere"))  # moves the RV: a bookmark for pods
        bookmark = await mirror.wait_for_line(r" DEBUG listwatch: pods: BOOKMARK at (\d+)$")
        assert int(bookmark.group(1)) == server.resource_version
        server.cut_watches(mid_line=True)
        rewatch = await mirror.wait_for_line(
            r" DEBUG listwatch: pods: watch (.*) after (\d+) events; re-watching from (\d+)$"
        )
        assert await mirror.stop() == 0, mirror.tail()
    assert rewatch.group(1) == "ended by ConnectionLost"
    assert (rewatch.group(2), rewatch.group(3)) == ("1", bookmark.group(1))  # the bookmark
    assert "/api/v1/pods" not in rewatch.string
