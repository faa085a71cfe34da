"""Opening the SQLite mirror for a command, with a one-line error for what the user can fix.

A path in a missing directory, a file that is not a database, or a database whose
``objects`` table someone else created are mistakes in the command line, not bugs: they
become a ``CliError`` naming the file, not a traceback.
"""

from __future__ import annotations

import os
import sqlite3

from listwatch.cli.runtime import CliError, one_line
from listwatch.sinks.sqlite import SQLiteSink


async def open_sink(path: str | os.PathLike[str], *, resource: str) -> SQLiteSink:
    """An open ``SQLiteSink`` for ``resource`` in ``path``; the caller closes it."""
    sink = SQLiteSink(path, resource=resource)
    try:
        await sink.open()
    except (sqlite3.Error, OSError, RuntimeError) as exc:
        raise CliError(f"cannot open the SQLite database {path}: {one_line(exc)}") from None
    return sink
