"""Helpers the tests of cli/ import (fixtures stay in conftest.py)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from listwatch.sinks.postgres import PostgresSink
from listwatch.sinks.sqlite import SQLiteSink, read_mirror
from listwatch.testing import FakeApiServer
from tests.objects import key_of

T = TypeVar("T")


SRC = Path(__file__).resolve().parents[2] / "src"


POLL = 0.02
"""How often ``eventually`` re-reads: a polling period, not a synchronisation."""


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


def on_insert_and_update(name: str, table: str, statement: str) -> str:
    """SQLite triggers ``{name}_insert`` and ``{name}_update`` on ``table``, each running
    ``statement`` (which reads ``NEW``): SQLite has no ``AFTER INSERT OR UPDATE``, so a write
    audited either way takes two triggers with one body."""
    return "".join(
        f"CREATE TRIGGER {name}_{event.lower()} AFTER {event} ON {table} BEGIN\n"
        f"    {statement}\nEND;\n"
        for event in ("INSERT", "UPDATE")
    )


_SQLITE_AUDIT = """
CREATE TABLE audit (
    n INTEGER PRIMARY KEY AUTOINCREMENT, resource TEXT, epoch INTEGER, session TEXT,
    generation INTEGER, sequence INTEGER
);
""" + on_insert_and_update(
    "audit",
    "sync_state",
    "INSERT INTO audit (resource, epoch, session, generation, sequence) "
    "VALUES (NEW.resource, NEW.epoch, NEW.session, NEW.generation, NEW.sequence);",
)


async def audit_sqlite(db: Path, script: str = _SQLITE_AUDIT) -> None:
    """Give the mirror file ``db`` an audit trail: by default a row per write of a sync
    state (its epoch, session, generation and sequence), in the writing transaction, by a
    trigger; ``script`` for another trail."""
    async with SQLiteSink(db, resource="pods"):
        pass  # the schema, so that the audit triggers can be attached to it
    connection = sqlite3.connect(db)
    try:
        connection.executescript(script)
    finally:
        connection.close()


def sqlite_audit(db: Path, columns: str = "n, epoch, session, generation, sequence") -> list[Any]:
    """The audit trail of ``db`` (``audit_sqlite``), oldest first."""
    connection = sqlite3.connect(db, timeout=10)
    try:
        return connection.execute(f"SELECT {columns} FROM audit ORDER BY n").fetchall()
    finally:
        connection.close()


def sqlite_pod_versions(db: Path) -> dict[str, str] | None:
    """The pods mirrored in ``db``, key to resourceVersion; None before its tables exist."""
    try:
        mirror = read_mirror(db, resource="pods")
    except sqlite3.OperationalError:
        return None
    return {key: obj["metadata"]["resourceVersion"] for key, obj in mirror.objects.items()}


async def audit_postgres(dsn: str, statements: Sequence[str]) -> None:
    """Give the mirror database ``dsn`` an audit trail: its schema, then ``statements``
    (the tables and triggers that record each committed write)."""
    async with PostgresSink(dsn, resource="pods"):
        pass  # the schema, so that the audit triggers can be attached to it
    connection = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def postgres_fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    """``sql``'s rows, on a connection of its own (the test reads while replicas write)."""
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetch(sql)
    finally:
        await connection.close()


async def postgres_pod_versions(dsn: str) -> dict[str, str]:
    """The pods mirrored in ``dsn``, key to resourceVersion."""
    rows = await postgres_fetch(
        dsn, "SELECT key, resource_version FROM listwatch.objects WHERE resource = 'pods'"
    )
    return {r["key"]: r["resource_version"] for r in rows}
