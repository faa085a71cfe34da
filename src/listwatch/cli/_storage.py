"""Opening the SQLite mirror for a command, with a one-line error for what the user can fix.

A path in a missing directory, a file that is not a database, or a database whose
``objects`` table someone else created are mistakes in the command line, not bugs: they
become a ``CliError`` naming the file, not a traceback.

The file is first opened with plain ``sqlite3`` (in a worker thread): when aiosqlite fails
to connect, its worker thread finishes stopping only after the failure has been reported,
and if the command has ended and closed its event loop by then, that thread dies with a
traceback of its own ("Event loop is closed"). Checking first keeps aiosqlite out of the
common failures entirely.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3

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


async def open_sink(path: str | os.PathLike[str], *, resource: str) -> SQLiteSink:
    """An open ``SQLiteSink`` for ``resource`` in ``path``; the caller closes it."""
    try:
        await asyncio.to_thread(_check_openable, os.fspath(path))
        sink = SQLiteSink(path, resource=resource)
        await sink.open()
    except (sqlite3.Error, OSError, RuntimeError) as exc:
        raise CliError(f"cannot open the SQLite database {path}: {one_line(exc)}") from None
    return sink
