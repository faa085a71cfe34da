"""``PostgresSink``: a receiver that mirrors one resource into PostgreSQL (asyncpg).

::

    async with PostgresSink("postgresql://mirror@db/cluster", resource="pods") as sink:
        syncer = Syncer(source, on_list=sink.on_list, on_batch=sink.on_batch)
        await syncer.run()

Tables (see ``listwatch.sinks._postgres_schema``, created and versioned on first use), in the
schema ``listwatch`` unless told otherwise; several resources, clusters and sinks share them,
one row set per (cluster, resource) (``"default"``, ``"pods"``), the cluster leading every
primary key::

    objects(cluster, resource, key, resource_version, object jsonb, object_sha256, uid,
            updated_at, raw, quarantined, size)
                                  raw and quarantined: NULL but for a quarantined object
    sync_state(cluster, resource, resource_version, generation, epoch, synced_at, listed_at,
               session, sequence, object_count, object_bytes, shard)
    fence(cluster, shard, epoch)  per cluster and scope, the highest leader epoch written
    stagings, staged              snapshots on their way in (UNLOGGED; below)
    schema_version(version, migrated_at)

``object`` is the object as the API server sent it: the sink hands ``Item.json`` to
PostgreSQL as bytes and PostgreSQL parses it into ``jsonb``; Python never parses an object
(unless a custom ``key`` function needs it). ``uid`` is a generated column that PostgreSQL
derives from the ``jsonb``; ``object_sha256`` is the SHA-256 of the bytes written, which
PostgreSQL computes too. Readers query the table directly::

    SELECT key, object #>> '{status,phase}' FROM listwatch.objects
    WHERE cluster = 'default' AND resource = 'pods';

No codec is set on any connection: the bytes travel as ``bytea`` (parameters, or COPY's
binary format) and the SQL converts them (``convert_from(…, 'UTF8')::jsonb``). So a pool the
application shares with the sink keeps its own codecs, and a custom ``jsonb`` codec there
cannot turn an object into a JSON string by encoding it twice. Reads come back as text and
are decoded with orjson.

What every sink does (the snapshot boundary, batches, transactions, the fence, quarantine) is
``listwatch.sinks._base``'s; here is how PostgreSQL does it.

**Quarantine.** ``jsonb`` cannot hold U+0000 (nor can ``text``), so an object whose JSON
holds the escape ``\u0000`` is quarantined, as is one that breaks the rule every sink
shares (``_jsonparse.unreadable``: not UTF-8, nested past 512 levels): its row holds
``'null'::jsonb`` as ``object``, the bytes as they came in ``raw`` (``bytea``), and why in
``quarantined``; ``object_sha256`` is still the bytes', so an unchanged quarantined object
is not rewritten by a relist. Both are found in Python before PostgreSQL sees the object
(cheap: the NUL's regular expression runs only where the escape's text occurs). Should
PostgreSQL refuse a page or a batch all the same (malformed JSON from a custom source, an
escaped lone surrogate), each of its objects is tried alone (``SELECT …::jsonb``, only
after a refusal), those refused are quarantined with PostgreSQL's SQLSTATE and primary
message (never its detail, which quotes the JSON), and the statement runs once more::

    SELECT key, quarantined, length(raw) FROM listwatch.objects WHERE quarantined IS NOT NULL;

**A snapshot** (``on_list``) replaces the resource's rows. It is *staged* first, holding
nothing another writer needs (no transaction, no lock, no pool connection between pages:
the contract's rule, so a sender that stops mid-snapshot, or a slow LIST, holds up nobody),
then swapped in by one short transaction::

    check the fence without locking (refuse early); record a new leader's epoch (below)
    INSERT INTO stagings (a random id, the resource, now)
    for each page of the LIST, as it arrives, on whichever pool connection is free:
      one statement: INSERT the page INTO staged (its rows by key, their SHA-256); each
        object whose RV and bytes are the stored row's is staged without a body (NULL),
        the others parsed into jsonb (and compressed) here, not in the swap
    BEGIN
      SET LOCAL idle_in_transaction_session_timeout (below)
      fence: lock it shared, refuse an older epoch; lock the resource's sync_state row
      lock the staging's row (gone: it was dropped as abandoned, the snapshot is refused)
      one statement: upsert into objects every staged row whose RV or bytes differ from the
        stored row's (unchanged rows are not touched at all: no new row version, no row
        lock, updated_at kept, so a relist of a quiet cluster writes almost nothing)
      DELETE this resource's objects that the staging lacks           (what vanished:
        swap_delete, a merge anti join; swap_plan keeps the planner off a nested loop)
      upsert sync_state (RV, generation, epoch, synced_at = listed_at = now())
    COMMIT
    DELETE the staging's rows (after the commit, and whatever ended the snapshot)

So the swap copies rows PostgreSQL already parsed and compressed: its length is a local
copy of what changed, not the network's, nor the parsing (``benchmarks/staging.py``). A row
staged without a body is one the stored row matched when it was staged; if another write
changed or deleted that row before the swap (a concurrent snapshot of the same resource),
the upsert meets a NULL object, the NOT NULL constraint stops it, and the swap is refused
with ``StaleWrite`` (the sender lists again): nothing is ever written from a comparison that
went stale.

Why staging tables of the schema, not ``TEMP`` tables: a temporary table lives in one
session, so the snapshot would keep a pool connection for as long as its stream lasts (a
sender that stops would hold one, and a few would exhaust the pool). Staged rows are keyed
by the staging's id instead, and any connection can add a page; memory is two pages, as the
rest waits in PostgreSQL. Why UNLOGGED: staged rows are worth nothing after a crash, so they
need no WAL, and PostgreSQL empties both tables when it recovers from one (a snapshot in
flight then fails at its next page: its staging row is gone). Cleaning: a staging is deleted
when its snapshot ends, committed or not; one whose writer died (a SIGKILL, a lost
connection) is deleted by the next snapshot of any resource once nothing touched it for
``ABANDONED_AFTER`` (every staged page touches it), and a snapshot whose staging was deleted
that way is refused at its next page or at the swap. Nobody waits for an abandoned staging:
it holds no lock. Where the time goes overall (``benchmarks/sinks_ceiling.py``,
docs/architecture.md): PostgreSQL parsing each object into ``jsonb`` and compressing it (LZ4
where the server has it) while staging, then copying it into ``objects`` at the swap.

A list error raised out of the iteration (an expired continue token: ``ResourceExpired``),
a key function or transform that fails, a cancellation (the Syncer's ``sync_timeout``, or
its generation ending) or a crash all end the snapshot before its swap, or its swap before
``COMMIT``, so the resource's rows stay as they were and readers keep seeing the previous
state. An *empty* snapshot is a snapshot too: it deletes every row of the resource.

**A batch** (``on_batch``) is one transaction: the fence, the upserts (one statement over
arrays), the deletes (one statement), the sync state. A batch holds each key's last event,
so its keys are distinct and an upsert and a delete of the same key never meet in one
batch; a delete and a re-creation in successive batches apply in order.

**The epoch fence** (a receiver that has recorded epoch E never applies a write of an epoch
below E, so a paused leader that wakes up after another replica took over cannot overwrite
anything). The highest epoch is one row per cluster and scope, ``fence.epoch``, shared by
every resource of the cluster (one agent's resources share one leader, per shard; another
cluster's epochs are another etcd's revisions, never compared with these), and a write is
fenced by the rows of the scopes that overlap its own (``fencing.highest_epoch``: an
unsharded write by all of them; the rows are few, one per shard of the layouts written). A
scope's row is created by its first write:

* first in every write transaction, before anything is written, the write takes the rows
  of the overlapping scopes in a share mode (its own ``FOR SHARE``, the others ``FOR KEY
  SHARE``: ``_check_fence`` says why), reads the epochs again (a scope whose row was
  committed meanwhile is seen), and is refused with ``StaleEpoch`` if one is higher than
  its own; the locks are held until it commits. Writers never wait for each other;
* a new leader's epoch (higher than its scope's recorded one) is recorded first, in a short
  transaction of its own that takes the overlapping scopes' rows ``FOR NO KEY UPDATE`` and
  its own ``FOR UPDATE``: that waits until every write it fences in flight has committed
  or rolled back (writes of disjoint shards are not waited for), and after it commits,
  every such write of an older epoch is refused.

So two writers with different epochs, in two sessions or two processes, cannot both pass:
the newer epoch cannot be recorded while an older write holds the row, and once it is
recorded no older write gets past its locked read (READ COMMITTED's locking read sees the
newest committed epoch). Recording the epoch apart from the write is safe (a recorded epoch
only refuses older ones; the new leader's own write is checked in its transaction like any
other), and it keeps the exclusive lock to an instant: the new leader's writers of other
resources do not wait for one another's snapshots. A row lock rather than an advisory lock:
it lives in the schema it guards (no key that another application could also pick), it is
visible as what it is in ``pg_locks``, and it is the first lock every write takes, so
writers cannot deadlock on it. The cost: a new leader's first write waits for a write
in flight from the old one; but a write holds the fence only for its transaction (a batch,
or a snapshot's swap), never while a snapshot streams in. And a writer that stops in the
middle of one (paused, cut off) is ended by PostgreSQL: every write transaction sets
``idle_in_transaction_session_timeout`` to ``IDLE_IN_TRANSACTION_TIMEOUT``, so the server ends
the session, and its locks, if the client goes quiet for that long in the middle of a
transaction. Then, with the resource's
``sync_state`` row locked, the rest of ``listwatch.fencing``'s rules apply: an older
generation of the same sender is refused (``StaleWrite``), and a replayed batch or snapshot
changes nothing.

Connections: a DSN (the sink keeps its own small pool) or an asyncpg pool (shared; the sink
never closes it). Connection errors are one clear ``SinkConnectionError`` without the
password, for a sink and a ``PostgresStore`` alike (``_create_pool``). Timeouts of
``on_list``/``on_batch`` are the Syncer's (``sync_timeout``); whatever cancels a write, it
rolls back. Needs PostgreSQL 12 or newer, and a UTF-8 database.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import unquote, urlsplit

import orjson

from listwatch import fencing
from listwatch._jsonparse import unreadable
from listwatch._models import Batch, Item, JsonObject, KeyFunc, Snapshot, object_key
from listwatch._shard import Shard
from listwatch.errors import SchemaError, SinkConnectionError, StaleEpoch, StaleWrite
from listwatch.sinks import _base
from listwatch.sinks._base import (
    DEFAULT_CLUSTER,
    QuarantinedObject,
    Sink,
    SinkStore,
    SyncState,
    Usage,
    Verdict,
)

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise _base.missing_extra(__name__, "asyncpg", "postgres") from exc

from listwatch.sinks._postgres_schema import ensure_schema, quote  # it imports asyncpg too

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]

__all__ = [
    "PostgresSink",
    "PostgresStore",
    "QuarantinedObject",
    "SchemaError",
    "SinkConnectionError",
    "SyncState",
]

MIN_SERVER_VERSION = 120000
"""PostgreSQL 12: generated columns (``objects.uid``)."""

DEFAULT_SCHEMA = "listwatch"
_POOL_SIZE = 4
"""Connections of the sink's own pool: one for the writer, the rest for readers."""

IDLE_IN_TRANSACTION_TIMEOUT = 5.0
"""Seconds a write transaction may sit waiting for its client before PostgreSQL ends the
session (``idle_in_transaction_session_timeout``): a writer paused or cut off in the middle
of one holds the fence, and every other writer, no longer than this. A healthy writer sends
its next statement within milliseconds."""
_BOUNDED_TRANSACTION = (
    f"SET LOCAL idle_in_transaction_session_timeout = {int(IDLE_IN_TRANSACTION_TIMEOUT * 1000)}"
)
ABANDONED_AFTER = 15 * 60.0
"""Seconds after which a staging nothing touched (no page staged) is taken for abandoned
(its writer died) and deleted by the next snapshot that starts. Far beyond any wait for a
LIST page or an HTTP sender's next bytes, which are bounded well below it."""


class _Statements:
    """Every statement the sink runs, with its schema spliced in (quoted) once. In every
    statement ``$1`` is the cluster and ``$2`` the resource: each is routed to one cluster's
    rows (with Citus, to one node)."""

    def __init__(self, schema: str) -> None:
        s = quote(schema)

        # Changed rows only: a row whose RV and JSON bytes (their SHA-256) are the listed
        # object's is filtered out before the INSERT, so a relist of a quiet cluster neither
        # parses the objects again nor touches their rows (ON CONFLICT would lock, and so
        # dirty, even a row it then leaves alone). The filter is a scalar subquery per row
        # (an index probe), never a join that would read every stored row for each page.
        # ``low``, ``high``: the parameters of the write's ``_base.scope_bounds``; another
        # shard's row under the key is overwritten only by a newer RV
        # (``_base.NEWER_ACROSS_SHARDS``; CASE: PostgreSQL's OR does not short-circuit).
        newer = (
            "CASE WHEN excluded.resource_version ~ '^[1-9][0-9]*$' "
            "AND o.resource_version ~ '^[1-9][0-9]*$' "
            "THEN length(excluded.resource_version) > length(o.resource_version) "
            "OR (length(excluded.resource_version) = length(o.resource_version) "
            'AND excluded.resource_version COLLATE "C" > o.resource_version COLLATE "C") '
            "ELSE true END"
        )

        def upsert_changed(
            source: str, obj: str, raw: str, *, bounds: tuple[str, str], where: str = ""
        ) -> str:
            low, high = bounds
            return f"""
                INSERT INTO {s}.objects AS o (cluster, resource, key, resource_version, object,
                                              raw, quarantined, object_sha256, size, updated_at,
                                              uid_hash)
                SELECT $1, $2, p.key, p.resource_version, {obj}, {raw}, p.quarantined,
                       p.object_sha256, p.size, now(), p.uid_hash
                FROM {source}
                WHERE {where} {unchanged("p")} IS NOT TRUE
                ON CONFLICT (cluster, resource, key) DO UPDATE SET
                    resource_version = excluded.resource_version,
                    object = excluded.object,
                    raw = excluded.raw,
                    quarantined = excluded.quarantined,
                    object_sha256 = excluded.object_sha256,
                    size = excluded.size,
                    updated_at = excluded.updated_at,
                    uid_hash = excluded.uid_hash
                WHERE (o.resource_version <> excluded.resource_version
                       OR o.object_sha256 <> excluded.object_sha256)
                  AND (o.uid_hash BETWEEN {low} AND {high} OR {newer})
            """

        # A quarantined object (a reason given) is the JSON null and its bytes; any other
        # is parsed into jsonb, its bytes not kept twice.
        as_jsonb = (
            "CASE WHEN p.quarantined IS NULL THEN convert_from(p.object, 'UTF8')::jsonb "
            "ELSE 'null'::jsonb END"
        )
        as_raw = "CASE WHEN p.quarantined IS NOT NULL THEN p.object END"

        def unchanged(p: str) -> str:
            """Whether the stored row holds the RV and bytes of ``p``'s (NULL: no row)."""
            return f"""(
                SELECT c.resource_version = {p}.resource_version
                       AND c.object_sha256 = {p}.object_sha256
                FROM {s}.objects c WHERE c.cluster = $1 AND c.resource = $2 AND c.key = {p}.key
            )"""

        def page(keys: str, versions: str, objects: str, reasons: str, hashes: str) -> str:
            """A page's or a batch's rows from the arrays (the objects' bytes, why each is
            quarantined, their uid hashes), with their SHA-256 and size."""
            return f"""
                SELECT u.key, u.resource_version, u.object, u.quarantined, u.uid_hash,
                       sha256(u.object) AS object_sha256, octet_length(u.object) AS size
                FROM unnest({keys}::text[], {versions}::text[], {objects}::bytea[],
                            {reasons}::text[], {hashes}::bigint[])
                    AS u(key, resource_version, object, quarantined, uid_hash)
            """

        # The scope's fence row ($2), made by its first write (not on open: a row of the
        # whole resource, "", would overlap every shard, and tie every shard's new leader
        # to the writes in flight of all the others).
        self.ensure_fence = (
            f"INSERT INTO {s}.fence (cluster, shard, epoch) VALUES ($1, $2, 0) "
            "ON CONFLICT (cluster, shard) DO NOTHING"
        )
        self.register_staging = f"""
            INSERT INTO {s}.stagings (cluster, staging, resource, started_at, touched_at)
            VALUES ($1, $3, $2, now(), now())
        """
        # Any cluster's: the one statement that is not routed to one cluster (rare, and
        # nobody waits for it: abandoned stagings hold no lock).
        self.drop_abandoned = f"""
            WITH gone AS (
                DELETE FROM {s}.stagings
                WHERE touched_at < now() - $1::float8 * interval '1 second'
                RETURNING cluster, staging
            )
            DELETE FROM {s}.staged WHERE (cluster, staging) IN (SELECT cluster, staging FROM gone)
        """
        self.drop_staging = f"""
            WITH gone AS (DELETE FROM {s}.stagings WHERE cluster = $1 AND staging = $2)
            DELETE FROM {s}.staged WHERE cluster = $1 AND staging = $2
        """
        # One statement per page, in a transaction of its own: touch the staging (no row:
        # it was dropped as abandoned, and nothing is inserted), then stage the page's rows,
        # the changed ones parsed into jsonb. A key staged again (a later page) keeps the
        # last.
        self.stage_page = f"""
            WITH touched AS (
                UPDATE {s}.stagings SET touched_at = now() WHERE cluster = $1 AND staging = $3
                RETURNING staging
            ), p AS MATERIALIZED ({page("$4", "$5", "$6", "$7", "$8")})
            INSERT INTO {s}.staged AS st (cluster, staging, key, resource_version,
                                          object_sha256, size, object, raw, quarantined,
                                          uid_hash)
            SELECT $1, t.staging, p.key, p.resource_version, p.object_sha256, p.size,
                   CASE WHEN {unchanged("p")} THEN NULL ELSE {as_jsonb} END,
                   CASE WHEN p.quarantined IS NULL OR {unchanged("p")} THEN NULL
                        ELSE p.object END,
                   p.quarantined, p.uid_hash
            FROM p CROSS JOIN touched t
            ON CONFLICT (cluster, staging, key) DO UPDATE SET
                resource_version = excluded.resource_version,
                object_sha256 = excluded.object_sha256,
                size = excluded.size,
                object = excluded.object,
                raw = excluded.raw,
                quarantined = excluded.quarantined,
                uid_hash = excluded.uid_hash
        """
        self.lock_staging = (
            f"SELECT 1 FROM {s}.stagings WHERE cluster = $1 AND staging = $2 FOR UPDATE"
        )
        self.staged_usage = (
            f"SELECT count(*), coalesce(sum(size), 0)::bigint FROM {s}.staged "
            "WHERE cluster = $1 AND staging = $2"
        )
        # A row staged without a body (NULL: unchanged when staged) that is not unchanged
        # now meets objects.object's NOT NULL: the swap fails rather than write a stale
        # comparison (the module's docs).
        self.swap_upsert = upsert_changed(
            f"{s}.staged p",
            "p.object",
            "p.raw",
            bounds=("$4::bigint", "$5::bigint"),
            where="p.cluster = $1 AND p.staging = $3 AND",
        )
        # What vanished: the resource's rows that the staging lacks, a merge (or hash) anti
        # join of two primary-key ranges, O(n). The planner, left alone, takes a nested loop
        # (``staged`` is filled after its last ANALYZE, so it looks empty) that scans the
        # whole staging for every stored row, O(n^2): 1.8 s for 5,000 pods, minutes for
        # 50,000. ``swap_plan`` forbids the nested loop for the rest of the swap, first.
        self.swap_plan = "SET LOCAL enable_nestloop = off"
        self.swap_delete = f"""
            DELETE FROM {s}.objects o
            WHERE o.cluster = $1 AND o.resource = $2
              AND NOT EXISTS (SELECT 1 FROM {s}.staged p
                              WHERE p.cluster = $1 AND p.staging = $3 AND p.key = o.key)
        """
        # A shard's snapshot replaces its range only ($4, $5: ``_base.hash_bounds``).
        self.swap_delete_in_shard = self.swap_delete + " AND o.uid_hash BETWEEN $4 AND $5"
        self.upsert_many = f"""
            WITH p AS MATERIALIZED ({page("$3", "$4", "$5", "$6", "$7")})
            {upsert_changed("p", as_jsonb, as_raw, bounds=("$8::bigint", "$9::bigint"))}
        """
        # PostgreSQL's own verdict on one object, when it refused a page or a batch for a
        # reason found nowhere else (_why_not_jsonb): each object is tried alone.
        self.try_jsonb = "SELECT convert_from($1::bytea, 'UTF8')::jsonb IS NOT NULL"
        self.delete_many = (
            f"DELETE FROM {s}.objects "
            "WHERE cluster = $1 AND resource = $2 AND key = ANY($3::text[])"
        )
        # A shard's batch deletes only its own rows: the key may name a newer object (another
        # uid) of another shard.
        self.delete_many_in_shard = self.delete_many + " AND uid_hash BETWEEN $4 AND $5"
        # What a batch's keys hold, before and after it: its change to the resource's counts,
        # one index probe per key.
        self.keys_usage = (
            f"SELECT count(*), coalesce(sum(size), 0)::bigint FROM {s}.objects "
            "WHERE cluster = $1 AND resource = $2 AND key = ANY($3::text[])"
        )
        self.others_usage = (
            "SELECT coalesce(sum(object_count), 0)::bigint, "
            f"coalesce(sum(object_bytes), 0)::bigint FROM {s}.sync_state "
            "WHERE cluster = $1 AND NOT (resource = $2 AND shard = $3)"
        )
        self.cluster_usage = (
            f"SELECT resource, sum(object_count)::bigint, sum(object_bytes)::bigint "
            f"FROM {s}.sync_state WHERE cluster = $1 GROUP BY resource"
        )
        self.other_scopes = (
            f"SELECT shard FROM {s}.sync_state WHERE cluster = $1 AND resource = $2 AND shard <> $3"
        )
        self.supersede = (
            f"UPDATE {s}.sync_state SET object_count = 0, object_bytes = 0 "
            "WHERE cluster = $1 AND resource = $2 AND shard = ANY($3::text[])"
        )
        # SyncState's fields, in order.
        self.state_after_list = _base.record_state_sql(
            f"{s}.sync_state",
            ("$2", "$3", "$4", "now()", "now()", "$5", "$6", "0", "$7", "$8", "$1", "$9"),
            snapshot=True,
        )
        self.state_after_batch = _base.record_state_sql(
            f"{s}.sync_state",
            ("$2", "$3", "$4", "now()", "NULL", "$5", "$6", "$7", "$8", "$9", "$1", "$10"),
            snapshot=False,
        )
        # The resource's last stamp and counts; locked: writers of one resource go one at a
        # time.
        self.read_stamp = f"""
            SELECT epoch, session, generation, sequence, resource_version, object_count,
                   object_bytes
            FROM {s}.sync_state WHERE cluster = $1 AND resource = $2 AND shard = $3
        """
        self.recorded_stamp = self.read_stamp + " FOR UPDATE"
        # Every scope's epoch in the cluster: a few rows, one per shard of the layouts
        # written (``fencing.highest_epoch`` picks those that overlap a write's scope).
        self.read_fences = f"SELECT shard, epoch FROM {s}.fence WHERE cluster = $1"
        # The row locks of the fence (``PostgresSink._check_fence`` says why these modes).
        lock_one = f"SELECT 1 FROM {s}.fence WHERE cluster = $1 AND shard = $2"
        lock_some = (
            f"SELECT 1 FROM {s}.fence WHERE cluster = $1 AND shard = ANY($2::text[]) ORDER BY shard"
        )
        self.lock_own_fence = lock_one + " FOR SHARE"
        self.lock_other_fences = lock_some + " FOR KEY SHARE"
        self.lock_fences_to_raise = lock_some + " FOR NO KEY UPDATE"
        self.lock_own_fence_to_raise = lock_one + " FOR UPDATE"
        self.raise_fence = (
            f"UPDATE {s}.fence SET epoch = $3 WHERE cluster = $1 AND shard = $2 AND epoch < $3"
        )
        self.select_objects = (
            f"SELECT key, object::text FROM {s}.objects "
            "WHERE cluster = $1 AND resource = $2 AND quarantined IS NULL ORDER BY key"
        )
        self.select_object = (
            f"SELECT object::text FROM {s}.objects "
            "WHERE cluster = $1 AND resource = $2 AND key = $3 AND quarantined IS NULL"
        )
        self.select_quarantined = (
            f"SELECT key, resource_version, quarantined, raw FROM {s}.objects "
            "WHERE cluster = $1 AND resource = $2 AND quarantined IS NOT NULL ORDER BY key"
        )
        self.count = f"SELECT count(*) FROM {s}.objects WHERE cluster = $1 AND resource = $2"
        self.select_state = f"""
            SELECT resource, resource_version, generation,
                   extract(epoch FROM synced_at)::float8,
                   extract(epoch FROM listed_at)::float8, epoch, session, sequence,
                   object_count, object_bytes, cluster, shard
            FROM {s}.sync_state WHERE cluster = $1 AND resource = $2 AND shard = $3
        """


def _usage(row: asyncpg.Record | None) -> Usage:
    """A row of (objects, bytes) as ``Usage`` (an aggregate's row is never missing)."""
    assert row is not None
    return Usage(int(row[0]), int(row[1]))


_Record = tuple[str, str, bytes, str | None, int]
"""A row for the staging table or the batch arrays: key, resourceVersion, JSON bytes, why
it is quarantined (None: stored as jsonb), and the uid hash (``_base.uid_hash``)."""

_NUL = b"\\u0000"
# A JSON \u0000 escape: preceded by an odd number of backslashes (an even number escapes
# themselves). jsonb cannot hold U+0000, which PostgreSQL's text type cannot.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_NUL_REASON = "it holds the character U+0000, which PostgreSQL's jsonb cannot store"
_REFUSED = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)
"""What PostgreSQL answers for a value it cannot take as jsonb (22xxx; 54001 for a nesting
deeper than its stack, which _jsonparse's limit stops well before)."""
_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def _why_not_jsonb(data: bytes) -> str | None:
    """Why ``data`` is quarantined rather than stored as jsonb: the rule every sink shares
    (``_jsonparse.unreadable``), and U+0000, which only PostgreSQL refuses. Cheap for an
    ordinary object: the regular expression runs only where the escape's text occurs."""
    why = unreadable(data)
    # No backslash (memchr: most objects), no escape at all.
    if why is None and data.find(b"\\") != -1 and _NUL in data and _NUL_ESCAPE.search(data):
        why = _NUL_REASON
    return why


def _refusal(exc: Exception) -> str:
    """PostgreSQL's refusal of an object, without quoting it: the SQLSTATE and the primary
    message only (its detail and context quote the offending JSON)."""
    sqlstate = getattr(exc, "sqlstate", "")
    message = " ".join(str(exc.args[0] if exc.args else "").split())[:200]
    return f"PostgreSQL refused it as jsonb ({sqlstate}: {message})"


def _unstorable(resource: str, exc: Exception) -> ValueError:
    """The error for a page or batch PostgreSQL refused even once each object it refused
    alone was quarantined (nothing should: the statement failed for another reason)."""
    return ValueError(f"cannot store a page of {resource}: {_refusal(exc)}")


def _scrub(text: str, password: str | None) -> str:
    text = _PASSWORD_IN_URL.sub(r"\1***@", text)
    if password:
        text = text.replace(password, "***")
    return text


_NOT_A_PORT = re.compile(r"invalid literal for int\(\) with base 10: '([^']*)'")


def _connect_failure(exc: BaseException, dsn: str) -> SinkConnectionError:
    """One line saying why a connection failed: the server's own message (asyncpg's never
    holds the password; scrubbed anyway), never the DSN's password."""
    where, password = _describe_dsn(dsn)
    text = _scrub(" ".join(str(exc).split()), password)
    if isinstance(exc, ValueError):  # a DSN that asyncpg cannot parse
        port = _NOT_A_PORT.search(text)
        why = f"the port {port.group(1)!r} is not a number" if port else f"a bad DSN: {text}"
        return SinkConnectionError(f"cannot connect to PostgreSQL at {where}: {why}")
    name = type(exc).__name__
    if isinstance(exc, TimeoutError) and not text:
        text = "no answer in time"
    return SinkConnectionError(
        f"cannot connect to PostgreSQL at {where}: {name}: {text}"
        if text
        else f"cannot connect to PostgreSQL at {where}: {name}"
    )


def _describe_dsn(dsn: str) -> tuple[str, str | None]:
    """Where a DSN points, for messages (no password), and its password (to scrub).

    Hosts and ports are shown as written (``h1:5432,h2:5433``, or a port that is not a
    number, which is what the message is then about)."""
    try:
        parts = urlsplit(dsn)
        password = unquote(parts.password) if parts.password else None
        host = parts.netloc.rpartition("@")[2]
        user = f"{unquote(parts.username)}@" if parts.username else ""
        where = f"{parts.scheme}://{user}{host}{parts.path}"
        if not host and "host=" in parts.query:
            socket = re.search(r"(?:^|&)host=([^&]*)", parts.query)
            where += f" (socket {unquote(socket.group(1)) if socket else '?'})"
        return where, password
    except ValueError:
        return "(a DSN that cannot be parsed)", None


def _check_dsn(dsn: str) -> str:
    if not dsn.startswith(("postgresql://", "postgres://")):
        raise ValueError(
            "PostgresSink needs a DSN of the form postgresql://user:password@host:port/"
            "database, or an asyncpg pool"
        )
    return dsn


async def _create_pool(dsn: str, *, max_size: int, connect_timeout: float) -> asyncpg.Pool:
    """A pool of up to ``max_size`` connections to ``dsn``, each attempt bounded by
    ``connect_timeout`` seconds.

    Whatever fails (refused, unreachable, timed out, authentication, a DSN asyncpg cannot
    parse) is one ``SinkConnectionError`` that says where, never with the password: the
    driver's error is not chained either, since its message or arguments may quote the DSN.
    """
    try:
        return await asyncpg.create_pool(
            dsn, min_size=1, max_size=max_size, timeout=connect_timeout
        )
    except (
        OSError,
        TimeoutError,
        ValueError,  # a DSN that asyncpg cannot parse
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ) as exc:
        raise _connect_failure(exc, dsn) from None


def _records(items: Iterable[Item], resource: str, key: KeyFunc | None) -> list[_Record]:
    """The rows for a page or a batch's upserts, one per key (the last wins, as in a mirror
    that applied them in order), each with why it is quarantined (``_why_not_jsonb``)."""
    records: list[_Record] = []
    for item in items:
        data = _base.item_json(resource, item)
        stored_key = _base.item_key(item, key)
        why = _why_not_jsonb(data)
        records.append((stored_key, item.resource_version, data, why, _base.uid_hash(data)))
    if len({record[0] for record in records}) != len(records):
        records = list({record[0]: record for record in records}.values())
    return records


_Columns = tuple[list[str], list[str], list[bytes], list[str | None], list[int]]


def _columns(records: Sequence[_Record]) -> _Columns:
    """``records`` as the arrays the statements unnest: keys, RVs, bytes, reasons, hashes."""
    keys, versions, objects, reasons, hashes = zip(*records, strict=True)
    return list(keys), list(versions), list(objects), list(reasons), list(hashes)


def _overlapping(shard: Shard | None, scopes: Iterable[str]) -> list[str]:
    """The scopes (``fencing.scope_text``) that share objects with ``shard``."""
    return [scope for scope in scopes if fencing.overlap(shard, fencing.scope_shard(scope))]


def _quarantined_in(records: Sequence[_Record]) -> dict[str, str]:
    return {key: why for key, _, _, why, _ in records if why is not None}


class PostgresSink(Sink[asyncpg.Pool]):
    """Mirror one resource into PostgreSQL; pass ``on_list`` and ``on_batch`` to a Syncer.

    ``database`` is a DSN (``postgresql://user:password@host:5432/db``; the sink opens a pool
    of up to four connections and closes it with the sink) or an ``asyncpg.Pool`` (used as
    it is and never closed here; it needs at least two connections for readers to answer
    while a write is in progress). ``resource`` names the row set (``"pods"``,
    ``"deployments.apps"``) and ``cluster`` the cluster it belongs to (a schema may hold a
    fleet; a schema older than clusters, opened first by this sink, becomes this cluster's).
    ``key`` must be the key function the Syncer uses. ``schema`` is where the tables live:
    sinks of one cluster sharing a schema share its epoch fence. ``connect_timeout`` bounds
    each connection attempt (seconds).

    Readers (:meth:`objects`, :meth:`get`, :meth:`count`, :meth:`sync_state`) use other
    connections of the pool than the writer, so they see the last committed state while a
    write is in progress, instead of waiting for it (or seeing it half done).
    """

    def __init__(
        self,
        database: str | asyncpg.Pool,
        *,
        resource: str,
        cluster: str = DEFAULT_CLUSTER,
        key: KeyFunc = object_key,
        schema: str = DEFAULT_SCHEMA,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(resource, key, cluster)
        if isinstance(database, str):
            self._dsn: str | None = _check_dsn(database)
            self._given_pool: asyncpg.Pool | None = None
        elif isinstance(database, asyncpg.Pool):
            self._dsn, self._given_pool = None, database
        else:
            raise TypeError(
                f"database must be a DSN or an asyncpg.Pool, not {type(database).__name__}"
            )
        if not connect_timeout > 0:
            raise ValueError("connect_timeout must be positive seconds")
        quote(schema)  # refuses an unusable name now rather than on open
        self._schema = schema
        self._connect_timeout = connect_timeout
        self._sql = _Statements(schema)

    @property
    def schema(self) -> str:
        return self._schema

    def _location(self) -> str:
        where = _describe_dsn(self._dsn)[0] if self._dsn is not None else "an asyncpg pool"
        return f"{where}, schema={self._schema!r}"

    # -- lifecycle -------------------------------------------------------------------------

    async def _connect(self) -> asyncpg.Pool:
        """Connect (or take the given pool), check the server, and create or migrate the
        schema."""
        if self._given_pool is not None:
            pool = self._given_pool
        else:
            assert self._dsn is not None
            pool = await _create_pool(
                self._dsn, max_size=_POOL_SIZE, connect_timeout=self._connect_timeout
            )
        try:
            async with pool.acquire() as connection:
                await self._check_server(connection)
                await ensure_schema(connection, self._schema, cluster=self._cluster)
        except BaseException:
            if pool is not self._given_pool:
                await pool.close()
            raise
        return pool

    async def _disconnect(self, handle: asyncpg.Pool) -> None:
        """Close the sink's own pool, never a pool it was given."""
        if handle is not self._given_pool:
            await handle.close()

    async def _check_server(self, connection: Connection) -> None:
        version = int(await connection.fetchval("SELECT current_setting('server_version_num')"))
        if version < MIN_SERVER_VERSION:
            raise SchemaError(
                f"PostgresSink needs PostgreSQL 12 or newer (generated columns); the server "
                f"is {await connection.fetchval('SHOW server_version')}"
            )
        encoding = await connection.fetchval("SHOW server_encoding")
        if encoding != "UTF8":
            raise SchemaError(
                f"PostgresSink needs a UTF8 database (Kubernetes objects are UTF-8 JSON); "
                f"this one is {encoding}: CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0"
            )

    @contextlib.asynccontextmanager
    async def _write(
        self, stamp: fencing.Stamp
    ) -> AsyncIterator[tuple[Connection, Verdict, Usage]]:
        """One write transaction, fenced, one at a time; rolled back unless the body returns.

        Whatever ends the body early (an error, a list error out of the snapshot, a
        cancellation) means no COMMIT is sent, so PostgreSQL keeps nothing of it: the
        transaction's ``__aexit__`` rolls back, and should that be cancelled in turn (an
        anyio cancel scope cancels again), the pool's release, which asyncpg shields from
        cancellation, rolls back (or closes the connection, which rolls back too).
        """
        async with self._lock:
            pool = self._opened()
            async with pool.acquire() as connection:
                await self._raise_fence(connection, stamp)
                async with connection.transaction():
                    await connection.execute(_BOUNDED_TRANSACTION)
                    yield connection, *await self._check_fence(connection, stamp)

    async def _raise_fence(self, connection: Connection, stamp: fencing.Stamp) -> None:
        """Record a new leader's epoch, in a short transaction of its own, before its write.

        The write's scope has a fence row of its own (made here by its first write). ``FOR
        UPDATE`` on the rows of every scope that overlaps it waits until every write in
        flight that could be fenced by the new epoch has ended (each holds the rows of its
        overlapping scopes shared), and once this commits, every such write that starts is
        refused. Raising it apart from the write costs nothing in safety (a recorded epoch
        only refuses older ones, and this leader's write is checked again in its own
        transaction) and keeps the exclusive lock short: the new leader's writers of other
        resources need not wait for this one's snapshot, and writers of disjoint shards are
        not waited for at all. A write of an epoch not above its scope's recorded one does
        nothing here.
        """
        sql, cluster, scope = self._sql, self._cluster, fencing.scope_text(stamp.shard)
        await connection.execute(sql.ensure_fence, cluster, scope)
        fences = {row[0]: int(row[1]) for row in await connection.fetch(sql.read_fences, cluster)}
        if stamp.epoch <= fences.get(scope, 0):
            return
        overlapping = _overlapping(stamp.shard, fences)
        async with connection.transaction():
            await connection.execute(_BOUNDED_TRANSACTION)
            await connection.execute(sql.lock_fences_to_raise, cluster, overlapping)
            await connection.execute(sql.lock_own_fence_to_raise, cluster, scope)
            await connection.execute(sql.raise_fence, cluster, scope, stamp.epoch)

    async def _peek_fence(self, connection: Connection, stamp: fencing.Stamp) -> Verdict:
        """``fencing.decide`` on what the database recorded, read without locking anything:
        the early check before a snapshot is staged (the swap checks again, locked)."""
        sql, scope = self._sql, fencing.scope_text(stamp.shard)
        fences = await connection.fetch(sql.read_fences, self._cluster)
        highest = fencing.highest_epoch(stamp.shard, [(row[0], row[1]) for row in fences])
        row = await connection.fetchrow(sql.read_stamp, self._cluster, self._resource, scope)
        recorded = fencing.Stamp(*row[:5]) if row is not None else None
        return fencing.decide(self._resource, stamp, recorded, highest)

    async def _check_fence(
        self, connection: Connection, stamp: fencing.Stamp
    ) -> tuple[Verdict, Usage]:
        """First in the write's transaction: ``fencing.decide`` on the recorded epochs of the
        scopes that overlap the write's (their fence rows held shared until the write
        commits, so that no newer epoch of them can be recorded, and no newer leader can
        write, in between; writers of the same epochs share them) and on the scope's last
        stamp (its row locked: one writer at a time). Also what the scope holds, by that
        row. The epochs are read again once the rows are locked: a scope whose first write
        committed in between (a new layout's shard) has its row seen then.

        The lock modes make a new leader wait for exactly the writes its epoch fences. A
        writer holds its own scope's row ``FOR SHARE`` and the other overlapping scopes'
        ``FOR KEY SHARE``; a raiser (``_raise_fence``) takes the overlapping scopes' rows
        ``FOR NO KEY UPDATE`` and then its own ``FOR UPDATE``. So a raiser waits for every
        writer of a scope overlapping its own (that writer holds the raiser's row in a
        share mode, which ``FOR UPDATE`` conflicts with; or, if the raiser's row is newer
        than the write, holds its own row ``FOR SHARE``, which ``FOR NO KEY UPDATE``
        conflicts with), and for no other: the writer of shard 1 and the raiser of shard 2
        meet only on rows overlapping both (the whole resource's, ""), where ``FOR KEY
        SHARE`` and ``FOR NO KEY UPDATE`` do not conflict. Writers never wait for writers.
        A writer locks its own row first, a raiser its own last, each in scope order."""
        sql, cluster, resource = self._sql, self._cluster, self._resource
        scope = fencing.scope_text(stamp.shard)
        fences = {row[0]: int(row[1]) for row in await connection.fetch(sql.read_fences, cluster)}
        await connection.execute(sql.lock_own_fence, cluster, scope)
        others = [other for other in _overlapping(stamp.shard, fences) if other != scope]
        await connection.execute(sql.lock_other_fences, cluster, others)
        rows = await connection.fetch(sql.read_fences, cluster)
        highest = fencing.highest_epoch(stamp.shard, [(row[0], row[1]) for row in rows])
        if highest is not None and stamp.epoch < highest:  # at once: not after waiting
            raise StaleEpoch(fencing.named(resource, stamp.shard), stamp.epoch, highest)
        row = await connection.fetchrow(sql.recorded_stamp, cluster, resource, scope)
        recorded = fencing.Stamp(*row[:5]) if row is not None else None
        usage = Usage(*row[5:]) if row is not None else Usage()
        return fencing.decide(resource, stamp, recorded, highest), usage

    async def _enforce_limits(
        self, connection: Connection, stamp: fencing.Stamp, before: Usage, after: Usage
    ) -> None:
        """``enforce_limits`` in the write's transaction, against the rest of the cluster."""
        if self.limits is None or not self.limits.any:
            return
        scope = fencing.scope_text(stamp.shard)
        row = await connection.fetchrow(
            self._sql.others_usage, self._cluster, self._resource, scope
        )
        _base.enforce_limits(
            self.limits,
            self._cluster,
            self._resource,
            others=_usage(row),
            before=before,
            after=after,
        )

    # -- receiver callbacks ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _staging(self, stamp: fencing.Stamp) -> AsyncIterator[_PostgresStaging | None]:
        """A staging of the snapshot's own (``stagings``' row and ``staged``' rows), deleted
        when the block ends; each step takes a pool connection and gives it back."""
        pool, sql = self._opened(), self._sql
        staging = uuid.uuid4()
        async with pool.acquire() as connection:
            # A new leader's epoch is recorded now: the old leader's writes, its snapshots
            # in flight included, are refused from here on, before this one is even staged.
            await self._raise_fence(connection, stamp)
            duplicate = await self._peek_fence(connection, stamp) is Verdict.DUPLICATE
            if not duplicate:
                await connection.execute(sql.drop_abandoned, ABANDONED_AFTER)
                await connection.execute(
                    sql.register_staging, self._cluster, self._resource, staging
                )
        if duplicate:
            yield None
            return
        try:
            yield _PostgresStaging(self, staging)
        finally:
            await self._drop_staging(staging)

    async def _drop_staging(self, staging: uuid.UUID) -> None:
        """Delete a staging's rows, at its end. Best effort: should this fail (the database
        gone, the sink closed), the staging is abandoned and a later snapshot deletes it."""
        try:
            async with self._opened().acquire() as connection:
                await connection.execute(self._sql.drop_staging, self._cluster, staging)
        except (RuntimeError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass

    async def on_batch(self, batch: Batch) -> None:
        """The upserts are one statement over arrays, the deletes another. A batch that
        PostgreSQL refuses for an object that ``_why_not_jsonb`` did not see is written
        again, once, with each object it refuses alone quarantined (``_tried_alone``)."""
        upserts, deletes = _base.split_batch(batch)
        records = _records(upserts, self._resource, self._custom_key)
        try:
            written = await self._write_batch(batch, records, deletes)
        except _REFUSED:
            records = await self._tried_alone(records)
            try:
                written = await self._write_batch(batch, records, deletes)
            except _REFUSED as exc:
                raise _unstorable(self._resource, exc) from None
        if written:
            for key, why in _quarantined_in(records).items():
                batch.quarantine(key, why)

    async def _write_batch(
        self, batch: Batch, records: Sequence[_Record], deletes: Sequence[str]
    ) -> bool:
        """One batch's transaction; False if the fence found it applied already. What the
        keys held before and after it is the batch's change to the resource's counts."""
        cluster, resource, sql = self._cluster, self._resource, self._sql
        touched = [record[0] for record in records] + list(deletes)
        stamp = fencing.stamp_of(batch)
        async with self._write(stamp) as (connection, verdict, recorded):
            if verdict is Verdict.DUPLICATE:
                return False
            before = _usage(await connection.fetchrow(sql.keys_usage, cluster, resource, touched))
            if records:
                bounds = _base.scope_bounds(stamp.shard)
                await connection.execute(
                    sql.upsert_many, cluster, resource, *_columns(records), *bounds
                )
            if deletes and stamp.shard is not None:
                bounds = _base.hash_bounds(stamp.shard)
                await connection.execute(
                    sql.delete_many_in_shard, cluster, resource, deletes, *bounds
                )
            elif deletes:
                await connection.execute(sql.delete_many, cluster, resource, deletes)
            after = _usage(await connection.fetchrow(sql.keys_usage, cluster, resource, touched))
            change = after - before
            await self._enforce_limits(connection, stamp, recorded, recorded + change)
            await connection.execute(
                sql.state_after_batch,
                cluster,
                resource,
                batch.resource_version,
                batch.generation,
                batch.epoch,
                batch.session,
                _base.recorded_sequence(batch),
                change.objects,
                change.bytes,
                fencing.scope_text(stamp.shard),
            )
        return True

    async def _tried_alone(self, records: Sequence[_Record]) -> list[_Record]:
        """``records``, each that PostgreSQL refuses as jsonb on its own quarantined with
        its refusal: the way to find which object of a refused statement it was, for a
        reason ``_why_not_jsonb`` does not know (malformed JSON from a custom source, an
        escaped lone surrogate, ...). One statement per object, only after a refusal."""
        tried: list[_Record] = []
        async with self._opened().acquire() as connection:
            for key, version, data, known, hashed in records:
                why = known
                if why is None:
                    try:
                        await connection.fetchval(self._sql.try_jsonb, data)
                    except _REFUSED as exc:
                        why = _refusal(exc)
                tried.append((key, version, data, why, hashed))
        return tried

    # -- readers ---------------------------------------------------------------------------

    async def objects(self) -> dict[str, JsonObject]:
        rows = await self._opened().fetch(self._sql.select_objects, self._cluster, self._resource)
        # Decoding tens of megabytes of JSON would stall the event loop: a thread does it.
        return await asyncio.to_thread(_base.decode_objects, rows)

    async def get(self, key: str) -> JsonObject | None:
        text = await self._opened().fetchval(
            self._sql.select_object, self._cluster, self._resource, key
        )
        return None if text is None else orjson.loads(text)

    async def quarantined(self) -> dict[str, QuarantinedObject]:
        rows = await self._opened().fetch(
            self._sql.select_quarantined, self._cluster, self._resource
        )
        return {key: QuarantinedObject(version, why, bytes(raw)) for key, version, why, raw in rows}

    async def count(self) -> int:
        return int(await self._opened().fetchval(self._sql.count, self._cluster, self._resource))

    async def sync_state(self, shard: Shard | None = None) -> SyncState | None:
        scope = fencing.scope_text(shard)
        return SyncState.from_row(
            await self._opened().fetchrow(
                self._sql.select_state, self._cluster, self._resource, scope
            )
        )

    async def cluster_usage(self) -> dict[str, Usage]:
        rows = await self._opened().fetch(self._sql.cluster_usage, self._cluster)
        return {row[0]: Usage(row[1], row[2]) for row in rows}


class _PostgresStaging(_base.Staging):
    """A snapshot's pages in ``staged`` under the staging's id; swapped by ``_write``."""

    def __init__(self, sink: PostgresSink, staging: uuid.UUID) -> None:
        self._sink = sink
        self._staging = staging

    def _abandoned(self) -> StaleWrite:
        return StaleWrite(
            f"{self._sink.resource}: refused a snapshot: its staging was dropped as abandoned "
            f"(nothing staged for {ABANDONED_AFTER:g} s, or PostgreSQL restarted)"
        )

    async def add(self, page: Sequence[Item]) -> Mapping[str, str]:
        """One statement; a page PostgreSQL refuses for an object ``_why_not_jsonb`` did not
        see is staged again, once, with each object it refuses alone quarantined."""
        sink = self._sink
        records = _records(page, sink.resource, sink._custom_key)
        if not records:
            return {}
        try:
            await self._stage(records)
        except _REFUSED:
            records = await sink._tried_alone(records)
            try:
                await self._stage(records)
            except _REFUSED as exc:
                raise _unstorable(sink.resource, exc) from None
        return _quarantined_in(records)

    async def _stage(self, records: Sequence[_Record]) -> None:
        sink = self._sink
        async with sink._opened().acquire() as connection:
            status = await connection.execute(
                sink._sql.stage_page,
                sink.cluster,
                sink.resource,
                self._staging,
                *_columns(records),
            )
        if status.endswith(" 0"):  # "INSERT 0 n": nothing inserted, so no staging row
            raise self._abandoned()

    async def swap(self, snapshot: Snapshot) -> None:
        sink, sql = self._sink, self._sink._sql
        cluster, resource = sink.cluster, sink.resource
        stamp = fencing.stamp_of(snapshot)
        scope = fencing.scope_text(stamp.shard)
        async with sink._write(stamp) as (connection, verdict, recorded):
            if verdict is Verdict.DUPLICATE:
                return
            if await connection.fetchval(sql.lock_staging, cluster, self._staging) is None:
                raise self._abandoned()
            staged = _usage(await connection.fetchrow(sql.staged_usage, cluster, self._staging))
            await sink._enforce_limits(connection, stamp, recorded, staged)
            try:
                bounds = _base.scope_bounds(stamp.shard)
                await connection.execute(sql.swap_upsert, cluster, resource, self._staging, *bounds)
            except asyncpg.NotNullViolationError:
                raise StaleWrite(
                    f"{resource}: refused a snapshot: another write changed the rows while it "
                    "was staged"
                ) from None
            await connection.execute(sql.swap_plan)
            if stamp.shard is None:
                await connection.execute(sql.swap_delete, cluster, resource, self._staging)
            else:
                bounds = _base.hash_bounds(stamp.shard)
                await connection.execute(
                    sql.swap_delete_in_shard, cluster, resource, self._staging, *bounds
                )
            # The resource's other scopes that overlap this one (an older layout's, or the
            # whole resource's) no longer count the rows it replaced.
            others = await connection.fetch(sql.other_scopes, cluster, resource, scope)
            superseded = _overlapping(stamp.shard, [row[0] for row in others])
            if superseded:
                await connection.execute(sql.supersede, cluster, resource, superseded)
            await connection.execute(
                sql.state_after_list,
                cluster,
                resource,
                snapshot.resource_version,
                snapshot.generation,
                snapshot.epoch,
                snapshot.session,
                staged.objects,
                staged.bytes,
                scope,
            )


class PostgresStore(SinkStore[PostgresSink]):
    """One PostgreSQL schema holding several resources of one cluster or a fleet: a
    ``PostgresSink`` per (cluster, resource) over one shared pool, opened on first use (the
    HTTP receiver's store for ``--postgres``). ``close`` closes the pool too.
    ``legacy_cluster``: the cluster the rows of a schema older than clusters become."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        schema: str = DEFAULT_SCHEMA,
        legacy_cluster: str = DEFAULT_CLUSTER,
    ) -> None:
        super().__init__(legacy_cluster=legacy_cluster)
        self._pool = pool
        self._schema = schema

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        legacy_cluster: str = DEFAULT_CLUSTER,
    ) -> PostgresStore:
        """A store over a pool of its own (``_create_pool``)."""
        return cls(
            await _create_pool(_check_dsn(dsn), max_size=max_size, connect_timeout=connect_timeout),
            schema=schema,
            legacy_cluster=legacy_cluster,
        )

    async def _prepare(self) -> None:
        async with self._pool.acquire() as connection:
            await ensure_schema(connection, self._schema, cluster=self._legacy_cluster)

    def _new_sink(self, resource: str, cluster: str) -> PostgresSink:
        return PostgresSink(self._pool, resource=resource, cluster=cluster, schema=self._schema)

    async def _release(self) -> None:
        await self._pool.close()
