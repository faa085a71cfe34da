"""Opening the SQLite mirror for a command, with a one-line error for what the user can fix.

A path in a missing directory, a file that is not a database, or a database whose
``objects`` table someone else created are mistakes in the command line, not bugs: they
become a ``CliError`` naming the file, not a traceback.

The file is first opened with plain ``sqlite3`` (in a worker thread): when aiosqlite fails
to connect, its worker thread finishes stopping only after the failure has been reported,
and if the command has ended and closed its event loop by then, that thread dies with a
traceback of its own ("Event loop is closed"). Checking first keeps aiosqlite out of the
common failures entirely.

A command that fails before it wrote anything must not leave an empty database behind for
the user to wonder about (or to trip the next run's "file exists" check):
``removed_if_unwritten`` deletes the file again if this command created it and no snapshot
or batch was committed to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Iterator

from listwatch.cli._runtime import CliError, one_line
from listwatch.sinks.sqlite import SQLiteSink


def _check_openable(path: str) -> None:
    """Open the file and read its header: raises for a missing directory, a directory, no
    permission, or a file that is not a database. Creates nothing but an empty file."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA schema_version").fetchone()
    finally:
        connection.close()


async def open_sink(
    path: str | os.PathLike[str], *, resource: str, cluster: str = "default"
) -> SQLiteSink:
    """An open ``SQLiteSink`` for ``resource`` of ``cluster`` in ``path``; the caller closes
    it."""
    try:
        await asyncio.to_thread(_check_openable, os.fspath(path))
        sink = SQLiteSink(path, resource=resource, cluster=cluster)
        await sink.open()
    except (sqlite3.Error, OSError, RuntimeError) as exc:
        raise CliError(f"cannot open the SQLite database {path}: {one_line(exc)}") from None
    return sink


@contextlib.contextmanager
def removed_if_unwritten(path: str | os.PathLike[str]) -> Iterator[None]:
    """Around a command's use of the SQLite file ``path``, its sinks closed inside: if the
    file did not exist before and the command fails (raises) while it holds no sync state
    (each snapshot and batch records one in its own transaction), remove the file and the
    journal files beside it. A file that existed, or that holds a commit, is kept."""
    file = os.fspath(path)
    created = not os.path.lexists(file)
    try:
        yield
    except BaseException:
        if created and _unwritten(file):
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(file + suffix)
        raise


def _unwritten(path: str) -> bool:
    """True if ``path`` is missing, or a database without a sync state row; False if it
    has one, or if it cannot be told (then the file is left alone)."""
    if not os.path.exists(path):
        return True
    try:
        connection = sqlite3.connect(path)
        try:
            return connection.execute("SELECT 1 FROM sync_state LIMIT 1").fetchone() is None
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        return "no such table" in str(exc)
    except sqlite3.Error:
        return False
