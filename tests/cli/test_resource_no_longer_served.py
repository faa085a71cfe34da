"""``listwatch mirror`` of a custom resource whose CRD is deleted mid-run, as a real process.

The deletions of its objects reach the mirror, the process keeps running and the other
resources keep syncing, the resource is reported (a warning, ``/readyz``, ``/metrics``) and
retried, and once the CRD is recreated its objects arrive again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from listwatch.testing import FakeApiServer
from tests.cli.helpers import eventually, mirror_objects, mirrored
from tests.objects import configmap
from tests.processes import running

WIDGETS = "widgets.example.com"


def widget(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"size": 1},
    }


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_a_deleted_crd_is_reported_and_retried_while_the_others_keep_syncing(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    server.register_resource("example.com", "v1", "widgets", "Widget")
    await server.create(widget("a"))  # one: its watch ends right after a single event
    await server.create(configmap("c"))
    db = tmp_path / "mirror.db"
    args = (
        *("mirror", WIDGETS, "configmaps", "--sqlite", str(db), "--kubeconfig", str(kubeconfig)),
        *("--merge-interval", "0.05", "--metrics-address", "127.0.0.1:0"),
    )
    async with running("mirror", *args) as mirror:
        base = (await mirror.wait_for_line(r"metrics and health on (http://\S+)/metrics")).group(1)
        await mirror.wait_for_line(rf"^listwatch mirror: {WIDGETS}: synced 1 objects")
        await mirror.wait_for_line(r"^listwatch mirror: configmaps: synced ")
        await server.wait_for_watchers(2)

        server.unregister_resource("example.com", "v1", "widgets")
        await eventually(
            lambda: mirror_objects(db, WIDGETS) == {},
            what=f"the widgets' rows deleted\n{mirror.tail()}",
        )
        warning = await mirror.wait_for_line(
            rf"WARNING listwatch: {WIDGETS}: no longer served by the API server \((.*)\): "
            r"retried with backoff until it is served again"
        )
        await mirror.wait_for_line(rf"^listwatch mirror: warning: {WIDGETS}: sync into .* failed: ")
        await server.create(configmap("d"))
        configmaps = await mirrored(db, "configmaps", server, "v1", "ConfigMap")
        async with http.get(f"{base}/readyz") as response:
            ready_status, ready = response.status, await response.json()
        async with http.get(f"{base}/metrics") as response:
            metrics = await response.text()
        assert mirror.process.returncode is None, mirror.tail()  # still mirroring

        server.register_resource("example.com", "v1", "widgets", "Widget")
        await server.create(widget("e"))
        widgets = await eventually(
            lambda: mirror_objects(db, WIDGETS) or None,
            what=f"the recreated CRD's widget mirrored\n{mirror.tail()}",
            within=60,  # the backoff may have grown to its cap
        )
        assert await mirror.stop() == 0, mirror.tail()
    assert "ResourceNotFound" in warning.group(1)
    assert "HTTP 404" in warning.group(1)
    assert "default/d" in configmaps
    assert ready_status == 503
    assert ready["not_ready"] == [WIDGETS]
    assert ready["resources"][WIDGETS]["served"] is False
    assert "HTTP 404" in ready["resources"][WIDGETS]["last_error"]
    assert ready["resources"]["configmaps"]["ready"] is True
    assert 'listwatch_served{group="example.com",resource="widgets",version="v1"} 0.0' in metrics
    assert (
        'listwatch_restarts_total{group="example.com",reason="ResourceNotFound",'
        'resource="widgets",version="v1"}'
    ) in metrics
    assert set(widgets) == {"default/e"}
    assert "Traceback" not in mirror.text()
