"""``pip install .`` without extras, into a fresh virtualenv: the CLI works as far as it can.

What a user meets after installing the package alone: ``listwatch --help``, ``--version``
and every command's ``--help`` work, and a command that needs an extra says which, in one
line, before it touches a cluster or a file. The package is built and installed by pip
from this checkout with its core dependencies (from the machine's package index and pip's
cache), so an import of an optional dependency on the CLI's path fails here as it would
for the user; the test environment's own packages and ``PYTHONPATH`` are kept out.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import listwatch
from listwatch.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 600
"""Seconds for pip to build the package and fetch its core dependencies on a cold cache."""

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 120)


def clean_env() -> dict[str, str]:
    """This environment without what would let the venv see the test environment's code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.pop("KUBECONFIG", None)
    return env


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding listwatch installed from this checkout, no extras: its bin/."""
    root = tmp_path_factory.mktemp("plain-install")
    venv.EnvBuilder(with_pip=True, clear=True).create(root / "venv")
    bin_dir = root / "venv" / ("Scripts" if sys.platform == "win32" else "bin")
    install = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(REPO)],
        env=clean_env() | {"PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return bin_dir


def listwatch_cli(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "listwatch"), *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def commands() -> list[str]:
    """Every subcommand of the parser, so a new one is covered without editing this test."""
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    raise AssertionError("the parser has no subcommands")


def test_the_venv_lacks_the_extras(plain_venv: Path) -> None:
    """Otherwise the tests below would prove nothing."""
    probe = subprocess.run(
        [
            str(plain_venv / "python"),
            "-c",
            "import importlib.util as u; "
            "print([m for m in ('aiosqlite', 'asyncpg', 'rich', 'trustme', 'jsonpatch') "
            "if u.find_spec(m)])",
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]"


def test_help_and_version_work(plain_venv: Path, tmp_path: Path) -> None:
    shown = listwatch_cli(plain_venv, "--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "mirror" in shown.stdout
    version = listwatch_cli(plain_venv, "--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"listwatch {listwatch.__version__}"


@pytest.mark.parametrize("command", commands())
def test_every_commands_help_works(plain_venv: Path, tmp_path: Path, command: str) -> None:
    shown = listwatch_cli(plain_venv, command, "--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"listwatch {command}" in shown.stdout


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["mirror", "pods", "--sqlite", "x.db"], "--sqlite"),
        (["mirror", "pods", "--postgres", "postgresql://mirror@db/k8s"], "--postgres"),
        (["receiver", "--listen", "127.0.0.1:0", "--sqlite", "x.db"], "--sqlite"),
        (["demo", "--db", "x.db"], "this command"),
        (["fake-cluster", "--kubeconfig", "k"], "this command"),
    ],
)
def test_a_command_that_needs_an_extra_says_which_in_one_line(
    plain_venv: Path, tmp_path: Path, args: list[str], option: str
) -> None:
    ran = listwatch_cli(plain_venv, *args, cwd=tmp_path)
    assert ran.returncode == 1
    assert ran.stderr.count("\n") == 1, ran.stderr
    assert "Traceback" not in ran.stderr
    assert f"{option} needs the 'cli' extra" in ran.stderr
    assert "python -m pip install '.[cli]'" in ran.stderr
    assert list(tmp_path.iterdir()) == []  # no empty SQLite file left behind


def test_mirror_over_http_needs_no_extra(plain_venv: Path, tmp_path: Path) -> None:
    """``--http`` sends with aiohttp, a core dependency: it goes on to its real work (here,
    finding no kubeconfig) instead of asking for an extra."""
    missing = tmp_path / "no-kubeconfig"
    ran = listwatch_cli(
        plain_venv,
        *("mirror", "pods", "--http", "http://127.0.0.1:9/", "--kubeconfig", str(missing)),
        cwd=tmp_path,
    )
    assert ran.returncode == 1
    assert "Traceback" not in ran.stderr
    assert f"kubeconfig {missing}: no such file" in ran.stderr
