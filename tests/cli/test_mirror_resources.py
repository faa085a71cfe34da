"""``listwatch mirror`` with several resources, a config file, and the metrics endpoint."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from listwatch.cli import main_async
from listwatch.testing import FakeApiServer
from tests.cli.helpers import eventually, mirror_objects, mirrored
from tests.objects import pod

from .test_mirror import run_until_stopped, single_error_line

FAST = ["--merge-interval", "0.05"]


def deployment(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"selector": {"matchLabels": labels}, "template": {}},
    }


async def test_several_resources_share_one_file(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await server.create(pod("a"))
    await server.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    await server.create(deployment("web", app="web"))
    db = tmp_path / "mirror.db"
    task, stop = await run_until_stopped(
        [
            "mirror",
            "pods",
            "nodes",
            "deployments.v1.apps",
            "--sqlite",
            str(db),
            "--kubeconfig",
            str(kubeconfig),
            *FAST,
        ]
    )
    await mirrored(db, "pods", server, "v1", "Pod")
    await mirrored(db, "nodes", server, "v1", "Node")
    await mirrored(db, "deployments.apps", server, "apps/v1", "Deployment")
    await server.wait_for_watchers(3)
    await server.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}})
    nodes = await mirrored(db, "nodes", server, "v1", "Node")
    assert set(nodes) == {"n1", "n2"}
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    err = capsys.readouterr().err
    for name in ("pods", "nodes", "deployments.apps"):
        assert f"{name}: synced " in err
    assert "pods: 1, nodes: 2, deployments.apps: 1 objects" in err


async def test_a_config_file_gives_each_resource_its_own_settings(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    await server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}})
    await server.create(pod("a", tier="web"))
    await server.create(pod("b", tier="db"))
    await server.create(deployment("web", "prod", app="web"))
    await server.create(deployment("web", "default", app="web"))
    config = tmp_path / "mirror.toml"
    config.write_text(
        '[[resource]]\nname = "deployments.apps"\nnamespace = "prod"\n\n'
        '[[resource]]\nname = "pods"\nlabel_selector = "tier=web"\n'
    )
    db = tmp_path / "mirror.db"
    task, stop = await run_until_stopped(
        [
            "mirror",
            "--config",
            str(config),
            "--sqlite",
            str(db),
            "--kubeconfig",
            str(kubeconfig),
            *FAST,
        ]
    )
    pods = await eventually(lambda: mirror_objects(db, "pods") or None, what="pods mirrored")
    deployments = await eventually(
        lambda: mirror_objects(db, "deployments.apps") or None, what="deployments mirrored"
    )
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    assert set(pods) == {"default/a"}
    assert set(deployments) == {"prod/web"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[resource]]\nname = "pods"\nlabelSelector = "a=b"\n', "unknown keys ['labelSelector']"),
        ('[[resource]]\nnamespace = "x"\n', "needs a name"),
        ("[resource\n", "not valid TOML"),
        ('[[resource]]\nname = "pods"\nmetadata_only = "yes"\n', "must be true or false"),
    ],
    ids=["unknown-key", "no-name", "not-toml", "not-a-bool"],
)
async def test_a_bad_config_file_is_one_line(
    text: str,
    expected: str,
    kubeconfig: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "mirror.toml"
    config.write_text(text)
    code = await main_async(
        [
            "mirror",
            "--config",
            str(config),
            "--sqlite",
            str(tmp_path / "m.db"),
            "--kubeconfig",
            str(kubeconfig),
        ]
    )
    assert code == 1
    assert expected in single_error_line(capsys.readouterr().err)


async def test_the_metrics_address_serves_metrics_and_probes(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await server.create(pod("a"))
    db = tmp_path / "mirror.db"
    task, stop = await run_until_stopped(
        [
            "mirror",
            "pods",
            "nodes",
            "--sqlite",
            str(db),
            "--kubeconfig",
            str(kubeconfig),
            "--metrics-address",
            "127.0.0.1:0",
            *FAST,
        ]
    )
    await mirrored(db, "pods", server, "v1", "Pod")

    def address() -> str | None:
        found = re.search(
            r"metrics and health on (http://[\d.]+:\d+)/metrics", capsys.readouterr().err
        )
        return found.group(1) if found else None

    base = await eventually(address, what="the metrics address is announced")
    async with aiohttp.ClientSession() as http:

        async def ready() -> bool | None:
            async with http.get(f"{base}/readyz") as response:
                return response.status == 200 or None

        await eventually(ready, what="/readyz says ready")
        async with http.get(f"{base}/readyz") as response:
            body = await response.json()
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with http.get(f"{base}/metrics") as response:
            text = await response.text()
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    assert set(body["resources"]) == {"pods", "nodes"}
    assert 'listwatch_synced{group="",resource="nodes",version="v1"} 1.0' in text
    assert 'listwatch_generations_total{group="",resource="pods",version="v1"} 1.0' in text


async def test_a_busy_metrics_address_is_one_line(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = await main_async(
            [
                "mirror",
                "pods",
                "--sqlite",
                str(tmp_path / "m.db"),
                "--kubeconfig",
                str(kubeconfig),
                "--metrics-address",
                f"127.0.0.1:{port}",
            ]
        )
    assert code == 1
    assert "cannot serve metrics on 127.0.0.1:" in single_error_line(capsys.readouterr().err)


async def test_metadata_only_mirrors_metadata(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    await server.create(pod("a", app="web"))
    db = tmp_path / "mirror.db"
    task, stop = await run_until_stopped(
        [
            "mirror",
            "pods",
            "--metadata-only",
            "--sqlite",
            str(db),
            "--kubeconfig",
            str(kubeconfig),
            *FAST,
        ]
    )
    rows = await eventually(lambda: mirror_objects(db, "pods") or None, what="pods mirrored")
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    stored = rows["default/a"]
    assert stored["kind"] == "PartialObjectMetadata"
    assert stored["metadata"]["labels"] == {"app": "web"}
    assert "spec" not in stored
