"""The tests' own PostgreSQL server (tests/postgres_server.py): found or clearly missing,
run unprivileged, private, and never left running."""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import pytest

from tests import postgres_server
from tests.postgres_server import (
    BIN_VARIABLE,
    DSN_VARIABLE,
    LocalPostgres,
    PostgresUnavailable,
    find_bindir,
)

REPO = Path(__file__).resolve().parents[2]


def wait_for_exit(pid: int, timeout: float = 30.0) -> bool:
    """Whether process ``pid`` (not our child) exits within ``timeout``: a pidfd becomes
    readable when it does, so this waits for the event itself."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


def test_missing_binaries_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(PostgresUnavailable) as missing:
        find_bindir({"PATH": str(tmp_path)}, debian_root=tmp_path / "no-such-dir")
    message = str(missing.value)
    assert "apt-get install postgresql" in message
    assert DSN_VARIABLE in message


def test_a_bin_directory_without_the_server_is_named(tmp_path: Path) -> None:
    with pytest.raises(PostgresUnavailable, match=BIN_VARIABLE) as missing:
        find_bindir({BIN_VARIABLE: str(tmp_path), "PATH": ""})
    assert "apt-get install postgresql" in str(missing.value)


def test_the_bin_directory_can_be_given(tmp_path: Path) -> None:
    real = find_bindir()
    for name in ("initdb", "postgres"):
        (tmp_path / name).symlink_to(real / name)
    assert find_bindir({BIN_VARIABLE: str(tmp_path), "PATH": ""}) == tmp_path


async def test_a_server_runs_unprivileged_and_private_and_stops_completely() -> None:
    server = LocalPostgres()
    await asyncio.to_thread(server.start)
    try:
        pid, directory = server.pid, server.directory
        assert pid is not None
        assert directory is not None
        owner = os.stat(f"/proc/{pid}").st_uid
        if os.geteuid() == 0:
            assert owner == postgres_server.server_account().pw_uid  # type: ignore[union-attr]
            assert owner != 0
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700  # nobody else can connect
        connection = await asyncpg.connect(server.dsn())
        try:
            assert await connection.fetchval("SHOW listen_addresses") == ""  # no TCP port
            assert await connection.fetchval("SHOW server_encoding") == "UTF8"
        finally:
            await connection.close()
    finally:
        await asyncio.to_thread(server.stop)
    assert wait_for_exit(pid)
    assert not directory.exists()
    server.stop()  # twice is fine


STARTER = textwrap.dedent(
    """
    import sys
    from tests.postgres_server import LocalPostgres

    server = LocalPostgres()
    server.start()
    print(server.pid, server.directory, flush=True)
    sys.stdin.readline()  # until killed
    """
)


async def test_a_killed_test_run_leaves_no_server_running() -> None:
    """SIGKILL leaves no chance to clean up; the parent-death signal still stops the server."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        STARTER,
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    try:
        async with asyncio.timeout(60):
            pid_text, directory = (await child.stdout.readline()).decode().split()
        pid = int(pid_text)
        os.kill(pid, 0)  # the server is running
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert await asyncio.to_thread(wait_for_exit, pid)
    shutil.rmtree(directory)  # what a killed run cannot remove itself


def test_without_postgresql_the_tests_fail_and_do_not_skip(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ("tests.postgres_server",)\n')
    (tmp_path / "test_needs_postgres.py").write_text("async def test_it(postgres_dsn):\n    pass\n")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in (DSN_VARIABLE, "PYTEST_ADDOPTS")
    }
    env.update({BIN_VARIABLE: str(tmp_path), "PYTHONPATH": str(REPO)})
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "1 error" in output
    assert "skipped" not in output
    assert "apt-get install postgresql" in output
