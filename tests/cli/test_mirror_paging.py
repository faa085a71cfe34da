"""``listwatch mirror --page-size``: a paged snapshot of many pages, and a continue token that
expires in the middle of it (etcd compacted the list's revision: 410 Expired), under churn.
The mirror as a process, against the fake."""

from __future__ import annotations

import asyncio
import base64
import random
from pathlib import Path
from typing import Any

import orjson

from listwatch.sinks.sqlite import read_mirror
from listwatch.testing import FakeApiServer, RecordedRequest
from listwatch.testing._server import DEFAULT_NAMESPACES
from listwatch.testing.scenario import PodWorkload, namespace_names
from tests.cli.helpers import mirrored, server_objects
from tests.processes import run_to_end, running

PODS = "/api/v1/pods"


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    return {**obj, "metadata": metadata}


def token_rv(token: str) -> int:
    """The resourceVersion inside a continue token (base64url JSON, kube-apiserver's)."""
    fields: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    rv: int = fields["rv"]
    return rv


def paged_list(request: RecordedRequest, *, continued: bool) -> bool:
    """A LIST of the mirror's snapshot, pages of 2: its first page, or one after it."""
    if request.path != PODS or request.watch or request.query.get("limit") != "2":
        return False
    return ("continue" in request.query) == continued


async def test_an_expired_continue_token_mid_list_relists_and_the_mirror_converges(
    tmp_path: Path,
) -> None:
    namespaces = namespace_names(3)
    async with FakeApiServer(
        namespaces=(*DEFAULT_NAMESPACES, *namespaces), bookmark_interval=0.05, tls=False
    ) as server:
        workload = PodWorkload(server, random.Random(18), pods=60, namespaces=3)
        await workload.populate()
        kubeconfig, db = tmp_path / "kubeconfig", tmp_path / "mirror.db"
        server.write_kubeconfig(kubeconfig)
        pages: list[RecordedRequest] = []

        def fifth_continued_page(request: RecordedRequest) -> bool:
            if paged_list(request, continued=True):
                pages.append(request)
            return len(pages) == 5

        fifth = asyncio.create_task(server.wait_for_request(fifth_continued_page, timeout=60))
        churn = asyncio.create_task(workload.churn(rate=100))
        try:
            async with running(
                "mirror",
                *("mirror", "pods", "--sqlite", str(db), "--kubeconfig", str(kubeconfig)),
                *("--list-strategy", "paged", "--page-size", "2", "--merge-interval", "0.05"),
                "-v",
            ) as mirror:
                await fifth
                # Page 6 of the snapshot is asked for only once page 5's answer is in, which
                # is after this task has run: a write and a compaction now expire the
                # continue token the mirror holds, between two of its pages.
                await workload.step()
                server.compact()
                compacted, after = server.resource_version, server.request_count

                refused = await server.wait_for_request(
                    lambda r: paged_list(r, continued=True), start=after
                )
                relist = await server.wait_for_request(
                    lambda r: paged_list(r, continued=False), start=after
                )
                await mirror.wait_for_line(r"pods: synced \d+ objects")
                churn.cancel()
                await mirrored(db, "pods", server, "v1", "Pod")  # key by key, RV by RV
                assert await mirror.stop() == 0
        finally:
            churn.cancel()
        want = server_objects(server, "v1", "Pod")

    assert token_rv(refused.query["continue"]) < compacted
    # It relisted from the start (no continue) right after the refused page, and never took
    # the inconsistent remainder the 410 offered (a token with resourceVersion -1).
    log = list(server.requests)[after:]
    between = log[log.index(refused) + 1 : log.index(relist)]
    assert not [r for r in between if paged_list(r, continued=True)]
    assert all(token_rv(r.query["continue"]) > 0 for r in log if paged_list(r, continued=True))
    assert relist.query.get("resourceVersion", "") == ""
    assert read_mirror(db, resource="pods").objects == {
        key: without_managed_fields(obj) for key, obj in want.items()
    }
    # The log says why the snapshot was listed again.
    text = mirror.text()
    assert "The provided continue parameter is too old" in text, mirror.tail()
    assert "next attempt in" in text


async def test_page_size_must_be_at_least_one(kubeconfig: Path, tmp_path: Path) -> None:
    code, err = await run_to_end(
        *("mirror", "pods", "--sqlite", str(tmp_path / "m.db"), "--kubeconfig", str(kubeconfig)),
        *("--page-size", "0"),
    )
    assert code == 2
    assert "argument --page-size: must be at least 1, not 0" in err
