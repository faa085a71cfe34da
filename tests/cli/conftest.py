"""Fixtures for the CLI tests: a fake API server, a kubeconfig for it, and bounded waits.

The mirror runs in its own task and writes an SQLite file; the tests learn what it did by
reading that file (as any other reader would) or the server's request log, never by
sleeping for a guessed time. Reading the file is polling, but bounded: ``eventually``
fails with the last state it saw when the condition does not hold within its limit.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from listwatch.testing._kubeconfig import write_kubeconfig


@pytest.fixture
def refused_kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig for 127.0.0.1 on a port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "refused-kubeconfig"
    write_kubeconfig(path, f"http://127.0.0.1:{port}", "token")
    return path
