"""Where sharded replicas write, and an audit of every committed write with its shard.

The audit is in the database itself, by triggers, in the writing transaction (a rolled-back
write leaves nothing): each object row written or deleted (its key and ``uid_hash``) and
each sync-state row written (its ``shard`` scope and ``epoch``). The sinks write a
transaction's object rows first and its sync state last, and SQLite runs one writer at a
time, so the object rows of a transaction are exactly those before its sync-state row and
after the previous one: that is how each object write is attributed to the shard that made
it (``foreign_writes``). PostgreSQL's triggers record the transaction id as well, and its
audit is read transaction by transaction in the same shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from listwatch._shard import Shard
from tests.cli.helpers import (
    audit_postgres,
    audit_sqlite,
    on_insert_and_update,
    postgres_fetch,
    postgres_pod_versions,
    sqlite_pod_versions,
)
from tests.processes import ListwatchProcess, start_receiver

TOKEN = "sharded-replicas-token"
HASH_OFFSET = 1 << 63
"""The sinks store ``uid_hash`` as the hash minus 2**63 (a signed 64-bit integer)."""

SQLITE_AUDIT = (
    """
CREATE TABLE shard_audit (
    n INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, shard TEXT, epoch INTEGER,
    key TEXT, uid_hash INTEGER
);
"""
    + on_insert_and_update(
        "shard_audit_object",
        "objects",
        "INSERT INTO shard_audit (kind, key, uid_hash) VALUES ('object', NEW.key, NEW.uid_hash);",
    )
    + """
CREATE TRIGGER shard_audit_object_delete AFTER DELETE ON objects BEGIN
    INSERT INTO shard_audit (kind, key, uid_hash) VALUES ('delete', OLD.key, OLD.uid_hash);
END;
"""
    + on_insert_and_update(
        "shard_audit_state",
        "sync_state",
        "INSERT INTO shard_audit (kind, shard, epoch) VALUES ('state', NEW.shard, NEW.epoch);",
    )
)

AuditRow = tuple[int, str, str | None, int | None, str | None, int | None]
"""(n, kind, shard scope, epoch, key, uid_hash), oldest first."""


@dataclass
class Target:
    """Where the replicas write (``args``), and how the test reads what landed there."""

    name: str
    args: list[str]
    audit: Callable[[], Awaitable[list[AuditRow]]]
    objects: Callable[[], Awaitable[dict[str, str] | None]]
    processes: list[ListwatchProcess] = field(default_factory=list)

    async def epochs(self) -> dict[str, int]:
        """The highest epoch written, by shard name (``2/4``) of a 4-shard layout."""
        highest: dict[str, int] = {}
        for _, kind, scope, epoch, _, _ in await self.audit():
            if kind == "state" and scope and epoch is not None:
                name = _name(scope)
                highest[name] = max(highest.get(name, 0), epoch)
        return highest

    async def foreign_writes(self) -> list[str]:
        """Every object written or deleted by a shard whose range does not hold its uid."""
        return foreign_writes(await self.audit())


LAYOUT = 4
"""The tests' shard count: recorded scopes (ranges) are named as shards of it (``2/4``)."""


def _name(scope: str) -> str:
    shard = Shard.parse(scope)
    for index in range(LAYOUT):
        candidate = Shard.of(index, LAYOUT)
        if (candidate.start, candidate.end) == (shard.start, shard.end):
            return candidate.name
    return shard.name


def foreign_writes(rows: list[AuditRow]) -> list[str]:
    found: list[str] = []
    pending: list[AuditRow] = []
    for row in rows:
        _, kind, scope, _, _, _ = row
        if kind != "state":
            pending.append(row)
            continue
        shard = Shard.parse(scope) if scope else None
        for _, what, _, _, key, uid_hash in pending:
            assert uid_hash is not None
            if shard is not None and not shard.holds_hash(uid_hash + HASH_OFFSET):
                found.append(f"{what} of {key} by shard {_name(scope or '')}")
        pending = []
    assert not pending, f"object writes without a sync-state write after them: {pending[:3]}"
    return found


async def audited_sqlite(db: Path) -> None:
    await audit_sqlite(db, SQLITE_AUDIT)


def _sqlite_audit(db: Path) -> list[AuditRow]:
    connection = sqlite3.connect(db, timeout=10)
    try:
        return connection.execute(
            "SELECT n, kind, shard, epoch, key, uid_hash FROM shard_audit ORDER BY n"
        ).fetchall()
    finally:
        connection.close()


def sqlite_target(name: str, db: Path, args: list[str]) -> Target:
    async def audit() -> list[AuditRow]:
        return await asyncio.to_thread(_sqlite_audit, db)

    async def objects() -> dict[str, str] | None:
        return await asyncio.to_thread(sqlite_pod_versions, db)

    return Target(name, args, audit, objects)


POSTGRES_AUDIT = (
    """
    CREATE TABLE public.shard_audit (
        n bigserial PRIMARY KEY, tx bigint NOT NULL DEFAULT txid_current(), kind text NOT NULL,
        shard text, epoch bigint, key text, uid_hash bigint
    )
    """,
    """
    CREATE FUNCTION public.shard_audit_object() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            INSERT INTO public.shard_audit (kind, key, uid_hash)
            VALUES ('delete', OLD.key, OLD.uid_hash);
            RETURN OLD;
        END IF;
        INSERT INTO public.shard_audit (kind, key, uid_hash)
        VALUES ('object', NEW.key, NEW.uid_hash);
        RETURN NEW;
    END $$
    """,
    """
    CREATE FUNCTION public.shard_audit_state() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO public.shard_audit (kind, shard, epoch) VALUES ('state', NEW.shard, NEW.epoch);
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER shard_audit AFTER INSERT OR UPDATE OR DELETE ON listwatch.objects
    FOR EACH ROW EXECUTE FUNCTION public.shard_audit_object()
    """,
    """
    CREATE TRIGGER shard_audit AFTER INSERT OR UPDATE ON listwatch.sync_state
    FOR EACH ROW EXECUTE FUNCTION public.shard_audit_state()
    """,
)


def postgres_target(name: str, dsn: str, args: list[str]) -> Target:
    async def audit() -> list[AuditRow]:
        """Transaction by transaction (in commit order, roughly: by first row), each with
        its object rows before its sync-state rows: the shape ``foreign_writes`` reads."""
        rows = await postgres_fetch(
            dsn,
            "SELECT n, kind, shard, epoch, key, uid_hash, "
            "min(n) OVER (PARTITION BY tx) AS first FROM public.shard_audit "
            "ORDER BY first, kind = 'state', n",
        )
        return [(r["n"], r["kind"], r["shard"], r["epoch"], r["key"], r["uid_hash"]) for r in rows]

    async def objects() -> dict[str, str] | None:
        return await postgres_pod_versions(dsn)

    return Target(name, args, audit, objects)


@contextlib.asynccontextmanager
async def sharded_target(kind: str, tmp_path: Path, dsn: str) -> AsyncIterator[Target]:
    """``sqlite`` (a file), ``postgres`` (a database), ``http`` (a receiver process writing
    an SQLite file)."""
    db = tmp_path / "mirror.db"
    if kind == "postgres":
        await audit_postgres(dsn, POSTGRES_AUDIT)
        yield postgres_target(kind, dsn, ["--postgres", dsn])
        return
    await audit_sqlite(db, SQLITE_AUDIT)
    args = ["--sqlite", str(db)]
    receiver: ListwatchProcess | None = None
    if kind == "http":
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN)
        receiver, url = await start_receiver(args, token_file)
        args = ["--http", url, "--http-token-file", str(token_file)]
    made = sqlite_target(kind, db, args)
    if receiver is not None:
        made.processes.append(receiver)
    try:
        yield made
    finally:
        if receiver is not None:
            await receiver.stop()
