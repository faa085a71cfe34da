"""Fixtures for the CLI tests: a fake API server, a kubeconfig for it, and bounded waits.

The mirror runs in its own task and writes an SQLite file; the tests learn what it did by
reading that file (as any other reader would) or the server's request log, never by
sleeping for a guessed time. Reading the file is polling, but bounded: ``eventually``
fails with the last state it saw when the condition does not hold within its limit.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from listwatch.sinks.sqlite import read_mirror
from listwatch.testing import FakeApiServer
from listwatch.testing._kubeconfig import write_kubeconfig

T = TypeVar("T")

SRC = Path(__file__).resolve().parents[2] / "src"
POLL = 0.02
"""How often ``eventually`` re-reads: a polling period, not a synchronisation."""


@pytest.fixture
def refused_kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig for 127.0.0.1 on a port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "refused-kubeconfig"
    write_kubeconfig(path, f"http://127.0.0.1:{port}", "token")
    return path


def pod(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


def key_of(obj: dict[str, Any]) -> str:
    metadata = obj["metadata"]
    return (
        f"{metadata['namespace']}/{metadata['name']}"
        if metadata.get("namespace")
        else metadata["name"]
    )


def server_objects(server: FakeApiServer, api_version: str, kind: str) -> dict[str, Any]:
    return {key_of(obj): obj for obj in server.objects(api_version, kind)}


def versions(objects: dict[str, Any]) -> dict[str, str]:
    return {key: obj["metadata"]["resourceVersion"] for key, obj in objects.items()}


def mirror_objects(path: Path, resource: str) -> dict[str, Any] | None:
    """The mirror's objects, or None while the file or its tables do not exist yet (or
    while the sink, opening the file, switches it to WAL mode: a read-only reader may then
    be told "database is locked" without waiting)."""
    try:
        return read_mirror(path, resource=resource).objects
    except (FileNotFoundError, ValueError):
        return None
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        return None


async def eventually(
    check: Callable[[], T | None] | Callable[[], Awaitable[T | None]],
    *,
    what: str,
    within: float = 15.0,
) -> T:
    """Re-run ``check`` until it returns something other than None (or False)."""
    last: object = None
    try:
        async with asyncio.timeout(within):
            while True:
                result = check()
                if asyncio.iscoroutine(result):
                    result = await result
                if result is not None and result is not False:
                    return result  # type: ignore[return-value]
                last = result
                await asyncio.sleep(POLL)
    except TimeoutError:
        raise AssertionError(f"not within {within} s: {what} (last: {last!r})") from None


async def mirrored(
    path: Path, resource: str, server: FakeApiServer, api_version: str, kind: str
) -> dict[str, Any]:
    """Wait until the SQLite mirror holds exactly the server's objects (by key and RV)."""

    def equal() -> dict[str, Any] | None:
        have = mirror_objects(path, resource)
        want = server_objects(server, api_version, kind)
        if have is not None and versions(have) == versions(want):
            return have
        return None

    return await eventually(equal, what=f"the mirror of {resource} equals the server")


def subprocess_env() -> dict[str, str]:
    """The environment for ``python -m listwatch``: this checkout's sources first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env.pop("KUBECONFIG", None)
    return env


PYTHON = sys.executable
