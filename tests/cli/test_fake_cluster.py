"""``listwatch fake-cluster``: the fake API server as a process that kubectl and the mirror use.

The process tests run the command as users do (a child process, real signals) and learn
what it did from its lines, the kubeconfig it writes, and what kubectl and ``listwatch
mirror`` (child processes too) get from it. The rest run the command in-process, a ``stop``
event standing in for the signal.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from listwatch.cli import main_async
from listwatch.testing.scenario import namespace_names
from tests.cli.helpers import PYTHON, eventually, mirror_objects, subprocess_env
from tests.processes import running

#: A bound for one kubectl call: a safety net against a hang, never a synchronisation.
KUBECTL_TIMEOUT = 60.0


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """kubectl's HOME: it caches discovery under ~/.kube/cache."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def exists(path: Path) -> bool:
    return path.exists()


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


async def kubectl_pods(binary: str, kubeconfig: Path, home: Path) -> set[str]:
    """``kubectl get pods -A -o json``: the pods' ``namespace/name``."""
    process = await asyncio.create_subprocess_exec(
        binary,
        "--kubeconfig",
        str(kubeconfig),
        "get",
        "pods",
        "-A",
        "-o",
        "json",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)},
    )
    out, err = await asyncio.wait_for(process.communicate(), KUBECTL_TIMEOUT)
    assert process.returncode == 0, err.decode()
    listed = json.loads(out)
    assert listed["kind"] == "List"
    return {
        f"{item['metadata']['namespace']}/{item['metadata']['name']}" for item in listed["items"]
    }


async def test_the_kubeconfig_serves_kubectl_and_the_mirror_and_sigterm_stops_it(
    kubectl_binary: str, home: Path, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "K"
    db = tmp_path / "mirror.db"
    async with running(
        "fake-cluster",
        "fake-cluster",
        "--pods",
        "20",
        "--churn",
        "5",
        "--kubeconfig",
        str(kubeconfig),
    ) as cluster:
        await cluster.wait_for_line(r"Ctrl-C or SIGTERM stops")
        assert exists(kubeconfig)
        assert f"KUBECONFIG={kubeconfig} kubectl get pods -A" in cluster.text()
        assert f"listwatch mirror pods --kubeconfig {kubeconfig} --sqlite" in cluster.text()
        listed = await kubectl_pods(kubectl_binary, kubeconfig, home)
        assert len(listed) >= 10  # the churn keeps the pod count near 20
        assert {key.split("/")[0] for key in listed} <= set(namespace_names(5))

        async with running(
            "mirror",
            "mirror",
            "pods",
            "--kubeconfig",
            str(kubeconfig),
            "--sqlite",
            str(db),
            "--merge-interval",
            "0.1",
        ) as mirror:
            await mirror.wait_for_line(r"pods: synced \d+ objects")

            async def same_pods() -> set[str] | None:
                """The mirror holds what kubectl lists: the churn changes keys about once a
                second, so the two agree between changes."""
                cluster_pods = await kubectl_pods(kubectl_binary, kubeconfig, home)
                mirrored = mirror_objects(db, "pods")
                return (
                    cluster_pods if mirrored is not None and set(mirrored) == cluster_pods else None
                )

            await eventually(same_pods, what="the mirror holds the pods kubectl lists", within=60)
            assert await mirror.stop() == 0

        async with asyncio.timeout(10):
            code = await cluster.stop(signal.SIGTERM)
    assert code == 0, cluster.tail()
    assert "Traceback" not in cluster.text()
    assert cluster.lines[-1] == "listwatch fake-cluster: stopped; kubeconfig removed"
    assert not exists(kubeconfig)


async def test_a_non_loopback_listen_address_is_refused_without_the_flag(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "listwatch",
        "fake-cluster",
        "--listen",
        "0.0.0.0",
        "--kubeconfig",
        str(tmp_path / "K"),
        env=subprocess_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert out == b""
    (line,) = err.decode().splitlines()
    assert line.startswith("listwatch fake-cluster: error: --listen 0.0.0.0 is not a loopback")
    assert "--allow-remote" in line
    assert not exists(tmp_path / "K")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--listen", "example.com"], "--listen example.com: give an IP address"),
        (["--churn", "5"], "--churn changes the workload's pods: give --pods N too"),
        (["--keep-kubeconfig"], "--keep-kubeconfig goes with --kubeconfig PATH"),
        (["--port", "70000"], "--port must be 0 (a free port) to 65535"),
    ],
)
async def test_flags_that_do_not_go_together_are_one_line_and_exit_2(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await main_async(["fake-cluster", *argv], stop=asyncio.Event()) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("listwatch fake-cluster: error: ")
    assert expected in line


async def served(kubeconfig: Path) -> dict[str, Any]:
    """The kubeconfig's cluster, once written, and a verified request through it."""
    await eventually(kubeconfig.is_file, what="the kubeconfig is written")
    config = read_json(kubeconfig)
    cluster = config["clusters"][0]["cluster"]
    token = config["users"][0]["user"]["token"]
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    context = ssl.create_default_context(cadata=ca)
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{cluster['server']}/api/v1/namespaces",
            headers={"Authorization": f"Bearer {token}"},
            ssl=context,
        ) as response,
    ):
        assert response.status == 200
        body: dict[str, Any] = await response.json()
    return {"server": cluster["server"], "namespaces": body}


async def test_a_wildcard_listen_with_the_flag_on_a_given_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """All interfaces, a port of the user's choosing: the kubeconfig reaches it over the
    loopback address, and its certificate verifies there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = tmp_path / "K"
    stop = asyncio.Event()
    argv = ["fake-cluster", "--kubeconfig", str(kubeconfig), "--keep-kubeconfig"]
    argv += ["--listen", "0.0.0.0", "--allow-remote", "--port", str(port)]
    task = asyncio.create_task(main_async(argv, stop=stop))
    answer = await served(kubeconfig)
    assert answer["server"] == f"https://127.0.0.1:{port}"
    names = {item["metadata"]["name"] for item in answer["namespaces"]["items"]}
    assert {"default", *namespace_names(5)} <= names
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    assert exists(kubeconfig)  # --keep-kubeconfig
    err = capsys.readouterr().err
    assert f"serving https://127.0.0.1:{port} (port {port}): no pods" in err
    assert "(kept on exit)" in err


async def test_without_a_path_the_kubeconfig_is_a_temporary_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(main_async(["fake-cluster"], stop=stop))
    line = await eventually(
        lambda: next(
            (x for x in capsys.readouterr().err.splitlines() if "kubeconfig: " in x), None
        ),
        what="the kubeconfig line",
    )
    path = Path(line.split("kubeconfig: ", 1)[1].split(" (", 1)[0])
    await served(path)
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    assert not exists(path)
    assert not exists(path.parent)


async def test_a_file_that_is_not_a_fake_cluster_kubeconfig_is_not_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    precious = tmp_path / "config"
    precious.write_text("apiVersion: v1\nkind: Config\ncurrent-context: production\n")
    code = await main_async(["fake-cluster", "--kubeconfig", str(precious)], stop=asyncio.Event())
    assert code == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "already exists and is not a kubeconfig of fake-cluster" in line
    assert precious.read_text().endswith("current-context: production\n")


async def test_a_busy_port_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["fake-cluster", "--port", str(port), "--kubeconfig", str(tmp_path / "K")]
        code = await main_async(argv, stop=asyncio.Event())
    assert code == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"listwatch fake-cluster: error: cannot listen on 127.0.0.1 port {port}")
    assert not exists(tmp_path / "K")


async def test_without_the_extra_it_says_which_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "jsonpatch", None)  # import jsonpatch: ImportError
    assert await main_async(["fake-cluster"], stop=asyncio.Event()) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("listwatch fake-cluster: error: ")
    assert "jsonpatch" in line
    assert "'cli'" in line or "[cli]" in line  # the extra to install
