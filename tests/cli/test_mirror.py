"""``listwatch mirror`` against a FakeApiServer through a real kubeconfig.

The command runs in-process as a task (``main_async`` with a ``stop`` event standing in for
SIGTERM) so the fake server keeps serving on the same loop; one test runs it as a real
process and sends a real SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from listwatch.cli import main_async
from listwatch.sinks.sqlite import read_mirror
from listwatch.testing import FakeApiServer
from listwatch.testing._kubeconfig import write_kubeconfig
from tests.cli.helpers import (
    PYTHON,
    eventually,
    mirror_objects,
    mirrored,
    server_objects,
    subprocess_env,
    versions,
)
from tests.objects import pod

FAST = ["--merge-interval", "0.05"]


async def run_until_stopped(argv: list[str]) -> tuple[asyncio.Task[int], asyncio.Event]:
    stop = asyncio.Event()
    return asyncio.create_task(main_async(argv, stop=stop)), stop


def single_error_line(err: str) -> str:
    """The one line a failing command printed; asserts it is exactly one, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, lines
    return lines[0]


async def test_mirror_follows_the_server_and_stops_cleanly(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(5):
        await server.create(pod(f"p{i}"))
    db = tmp_path / "mirror.db"
    task, stop = await run_until_stopped(
        ["mirror", "pods", "--sqlite", str(db), "--kubeconfig", str(kubeconfig), *FAST]
    )
    await mirrored(db, "pods", server, "v1", "Pod")

    await server.wait_for_watchers(1)
    await server.create(pod("new"))
    changed = pod("p0", tier="web")
    await server.replace(changed)
    await server.delete(pod("p1"))
    await server.delete(pod("p2"))
    await server.create(pod("p2"))  # recreated under the same name: a new uid
    have = await mirrored(db, "pods", server, "v1", "Pod")
    assert set(have) == {"default/p0", "default/p2", "default/p3", "default/p4", "default/new"}
    assert have["default/p0"]["metadata"]["labels"] == {"tier": "web"}

    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    final = read_mirror(db, resource="pods")
    assert final.objects == server_objects(server, "v1", "Pod")
    assert final.state is not None
    assert final.state.resource_version == str(server.resource_version)
    err = capsys.readouterr().err
    assert "pods: synced 5 objects" in err
    assert "stopped after" in err
    assert "Traceback" not in err


async def test_mirror_of_a_grouped_resource_in_one_namespace_with_a_selector(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    await server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}})

    def deployment(name: str, namespace: str, app: str) -> dict[str, object]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
            "spec": {"selector": {"matchLabels": {"app": app}}, "template": {}},
        }

    await server.create(deployment("web", "prod", "web"))
    await server.create(deployment("db", "prod", "db"))
    await server.create(deployment("web", "default", "web"))
    db = tmp_path / "mirror.db"
    task, stop = await run_until_stopped(
        [
            "mirror",
            "deployments",
            "--group",
            "apps",
            "--namespace",
            "prod",
            "--selector",
            "app=web",
            "--sqlite",
            str(db),
            "--kubeconfig",
            str(kubeconfig),
            *FAST,
        ]
    )
    objects = await eventually(
        lambda: mirror_objects(db, "deployments.apps") or None,
        what="the deployments mirror has rows",
    )
    assert set(objects) == {"prod/web"}
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    request = next(
        r for r in server.requests if r.path == "/apis/apps/v1/namespaces/prod/deployments"
    )
    assert request.query["labelSelector"] == "app=web"


@pytest.mark.parametrize(
    ("make_argv", "expected"),
    [
        (
            lambda tmp, kc: ["--kubeconfig", str(tmp / "missing")],
            "no such file",
        ),
        (
            lambda tmp, kc: ["--kubeconfig", str(_write(tmp / "bad", "clusters: [oops"))],
            "cannot load kubeconfig",
        ),
        (
            lambda tmp, kc: ["--kubeconfig", str(kc), "--context", "nope"],
            "cannot load kubeconfig",
        ),
    ],
    ids=["missing-file", "not-yaml", "unknown-context"],
)
async def test_a_bad_kubeconfig_is_one_line(
    make_argv: object,
    expected: str,
    kubeconfig: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    extra = make_argv(tmp_path, kubeconfig)  # type: ignore[operator]
    code = await main_async(["mirror", "pods", "--sqlite", str(tmp_path / "m.db"), *extra])
    assert code == 1
    line = single_error_line(capsys.readouterr().err)
    assert line.startswith("listwatch mirror: error: ")
    assert expected in line
    assert not (tmp_path / "m.db").exists()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


async def test_an_unknown_resource_is_one_line(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await main_async(
        ["mirror", "widgets", "--sqlite", str(tmp_path / "m.db"), "--kubeconfig", str(kubeconfig)]
    )
    assert code == 1
    line = single_error_line(capsys.readouterr().err)
    assert "widgets: the server does not serve a resource of that name" in line
    assert "deployments.apps" in line  # how to name one


async def test_a_refused_connection_is_one_line(
    refused_kubeconfig: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await main_async(
        [
            "mirror",
            "pods",
            "--sqlite",
            str(tmp_path / "m.db"),
            "--kubeconfig",
            str(refused_kubeconfig),
        ]
    )
    assert code == 1
    line = single_error_line(capsys.readouterr().err)
    assert "cannot connect to the API server at http://127.0.0.1:" in line
    assert "connection refused" in line


async def test_rejected_credentials_are_one_line(
    server: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kubeconfig"
    write_kubeconfig(path, server.url, "not-the-token")
    code = await main_async(
        ["mirror", "pods", "--sqlite", str(tmp_path / "m.db"), "--kubeconfig", str(path)]
    )
    assert code == 1
    line = single_error_line(capsys.readouterr().err)
    assert "refused our credentials" in line
    assert "401" in line


async def test_sigterm_stops_the_mirror_process_gracefully(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    for i in range(3):
        await server.create(pod(f"p{i}"))
    db = tmp_path / "mirror.db"
    start = server.request_count
    process = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "listwatch",
        "mirror",
        "pods",
        "--sqlite",
        str(db),
        "--kubeconfig",
        str(kubeconfig),
        *FAST,
        env=subprocess_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        # A watch request means the snapshot was written (on_list returns before it).
        await server.wait_for_request(lambda r: r.watch, start=start, timeout=30)
        await server.create(pod("late"))
        await mirrored(db, "pods", server, "v1", "Pod")
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    assert b"Traceback" not in err
    assert b"SIGTERM: stopping" in err
    assert b"stopped after" in err
    assert versions(read_mirror(db, resource="pods").objects) == versions(
        server_objects(server, "v1", "Pod")
    )


async def test_without_kubeconfig_flag_kubeconfig_env_is_used(
    server: FakeApiServer,
    kubeconfig: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    await server.create(pod("a"))
    db = tmp_path / "mirror.db"
    task, stop = await run_until_stopped(["mirror", "pods", "--sqlite", str(db), *FAST])
    await mirrored(db, "pods", server, "v1", "Pod")
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0


async def test_without_any_kubeconfig_the_line_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    code = await main_async(["mirror", "pods", "--sqlite", str(tmp_path / "m.db")])
    assert code == 1
    line = single_error_line(capsys.readouterr().err)
    assert f"kubeconfig {tmp_path}/.kube/config: no such file" in line
    assert "--in-cluster" in line
