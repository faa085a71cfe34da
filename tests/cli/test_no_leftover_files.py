"""A command that fails before it wrote anything leaves no SQLite file behind.

``listwatch mirror --sqlite new.db`` creates the file only once the cluster answered; a
failure after that (an argument checked late, a busy port) removes the file again if this
command created it and committed nothing to it. A file that existed, or that holds a
commit, is kept. Each command runs as a process, as users meet it.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from listwatch.sinks.sqlite import read_mirror
from listwatch.testing import FakeApiServer
from tests.cli.helpers import PYTHON, mirrored, subprocess_env
from tests.objects import pod
from tests.processes import run_to_end


def error_line(err: str) -> str:
    lines = err.splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1, lines
    return lines[0]


def files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


#: Leader election settings that are refused only once the mirror runs (after its file
#: was opened): a lease shorter than the renew deadline.
BAD_ELECTION = ["--leader-elect", "--lease-duration", "1", "--renew-deadline", "5"]


async def test_a_setting_refused_after_the_file_was_opened_leaves_no_file(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    await server.create(pod("a"))
    out = tmp_path / "out"
    out.mkdir()
    db = out / "new.db"
    code, err = await run_to_end(
        "mirror", "pods", "--kubeconfig", str(kubeconfig), "--sqlite", str(db), *BAD_ELECTION
    )
    assert code == 1
    assert "lease_duration (1 s) must be greater than renew_deadline (5 s)" in error_line(err)
    assert files(out) == []


async def test_a_busy_metrics_port_leaves_no_file(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = await run_to_end(
            "mirror",
            "pods",
            "--kubeconfig",
            str(kubeconfig),
            "--sqlite",
            str(out / "new.db"),
            "--metrics-address",
            f"127.0.0.1:{port}",
        )
    assert code == 1
    assert "cannot serve metrics on 127.0.0.1:" in error_line(err)
    assert files(out) == []


async def test_an_unreachable_cluster_leaves_no_file(
    refused_kubeconfig: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    code, err = await run_to_end(
        "mirror", "pods", "--kubeconfig", str(refused_kubeconfig), "--sqlite", str(out / "new.db")
    )
    assert code == 1
    assert "connection refused" in error_line(err)
    assert files(out) == []


async def test_a_file_that_existed_is_kept_with_what_it_held(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    await server.create(pod("a"))
    db = tmp_path / "mirror.db"
    mirror = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "listwatch",
        "mirror",
        "pods",
        "--kubeconfig",
        str(kubeconfig),
        "--sqlite",
        str(db),
        "--merge-interval",
        "0.05",
        env=subprocess_env(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await mirrored(db, "pods", server, "v1", "Pod")
    finally:
        mirror.terminate()
        assert await asyncio.wait_for(mirror.wait(), 15) == 0
    before = read_mirror(db, resource="pods")

    code, err = await run_to_end(
        "mirror", "pods", "--kubeconfig", str(kubeconfig), "--sqlite", str(db), *BAD_ELECTION
    )
    assert code == 1
    error_line(err)
    assert read_mirror(db, resource="pods") == before
