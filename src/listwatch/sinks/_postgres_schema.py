"""The PostgreSQL sink's tables, and how a database is brought up to them (versioned, in one
transaction).

Everything lives in one schema (``listwatch`` unless the sink is told otherwise), so the
mirror never mixes with an application's own tables; one schema holds a whole fleet, every
row of it scoped by its cluster::

    <schema>.schema_version(version, migrated_at)                  one row
    <schema>.fence(cluster, shard, epoch)                          PRIMARY KEY (cluster, shard)
    <schema>.objects(cluster, resource, key, resource_version, object jsonb, object_sha256,
                     uid (generated from object), updated_at, raw bytea, quarantined text,
                     size, uid_hash)
                                                   PRIMARY KEY (cluster, resource, key)
    <schema>.sync_state(cluster, resource, resource_version, generation, epoch, synced_at,
                        listed_at, session, sequence, object_count, object_bytes, shard)
                                                   PRIMARY KEY (cluster, resource, shard)
    <schema>.stagings(cluster, staging, resource, started_at, touched_at)
                                                   PRIMARY KEY (cluster, staging), UNLOGGED
    <schema>.staged(cluster, staging, key, resource_version, object_sha256, object jsonb,
                    raw, quarantined, size, uid_hash)
                                                   PRIMARY KEY (cluster, staging, key), UNLOGGED

``shard`` is a write's scope (``listwatch.fencing.scope_text``: "" for the whole resource,
else the range of a shard); ``uid_hash`` is FNV-1a 64 of the object's uid minus 2**63
(``listwatch.sinks._base.uid_hash``), so that a shard is one range of its index.

Why the cluster leads every primary key: a fleet's clusters never share a row, a lock or a
transaction (each write touches one cluster's rows, its fence row and its sync state), so
a distributed PostgreSQL can shard the schema by cluster as it is. With Citus, distribute
every table but ``schema_version`` on ``cluster`` (``create_distributed_table(...,
'cluster')``, co-located), and make ``schema_version`` a reference table: every statement
of the sink names its cluster, so each is routed to one node (the one exception is the
clean-up of abandoned stagings, a rare multi-shard ``DELETE``).

Versioning: ``schema_version.version`` is the number of migrations applied. Opening a sink
applies the missing ones, all in one transaction with the version update (PostgreSQL's DDL is
transactional, so a failed step leaves the database as it was), under a transaction-level
advisory lock, because two sinks opening a fresh database at once would otherwise race to
create the same tables (there is no row to lock before the schema exists). A database of a
*newer* version than this code knows is refused: this code cannot know what the newer one
changed. Opening a database that is already current takes no lock and changes nothing.

Storage: objects are kilobytes of JSON, so ``object`` is TOASTed (compressed, and stored out
of line). Where the server has LZ4 (PostgreSQL 14 and newer, built with it, as the Debian and
official images are) the column uses it: compressing a pod with LZ4 costs half as much of the
write as the default pglz does, for about the same size (``benchmarks/sink_rates.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

from listwatch.errors import SchemaError

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Migration",
    "SchemaError",
    "SchemaTarget",
    "ensure_schema",
    "quote",
]


@dataclass(frozen=True)
class SchemaTarget:
    """Where a migration writes: the schema (quoted) and what the server offers."""

    schema: str
    compression: str
    """``"COMPRESSION lz4"`` where the server has LZ4, else ``""`` (its default, pglz)."""
    cluster: str = "'default'"
    """The cluster (an SQL literal) that the rows of a schema older than clusters become."""


Migration = Callable[[SchemaTarget], Sequence[str]]
"""One schema version: the statements that reach it from the version before."""


def quote(identifier: str) -> str:
    """``identifier`` as a quoted SQL identifier (so any schema name is safe to splice in)."""
    if not identifier or "\x00" in identifier:
        raise ValueError(f"not a usable SQL identifier: {identifier!r}")
    return '"' + identifier.replace('"', '""') + '"'


def literal(text: str) -> str:
    """``text`` as an SQL string literal (DDL takes no parameters)."""
    if "\x00" in text:
        raise ValueError(f"not a usable SQL literal: {text!r}")
    return "'" + text.replace("'", "''") + "'"


def _version_1(target: SchemaTarget) -> Sequence[str]:
    s = target.schema
    return (
        f"""
        CREATE TABLE {s}.objects (
            resource         text NOT NULL,
            key              text NOT NULL,
            resource_version text NOT NULL,
            object           jsonb {target.compression} NOT NULL,
            -- SHA-256 of the JSON bytes written: a relist compares it with the listed
            -- object's instead of parsing the object again to compare jsonb.
            object_sha256    bytea NOT NULL,
            -- Derived by PostgreSQL from the stored object: the sink never parses objects.
            uid              text GENERATED ALWAYS AS (object -> 'metadata' ->> 'uid') STORED,
            updated_at       timestamptz NOT NULL,
            PRIMARY KEY (resource, key)
        )
        """,
        # Owner references name their owner by uid: the join a mirror is most often asked for.
        f"CREATE INDEX objects_uid ON {s}.objects (uid)",
        f"""
        CREATE TABLE {s}.sync_state (
            resource         text PRIMARY KEY,
            resource_version text NOT NULL,
            generation       bigint NOT NULL,
            epoch            bigint NOT NULL,
            synced_at        timestamptz NOT NULL,
            listed_at        timestamptz
        )
        """,
        f"""
        CREATE TABLE {s}.fence (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            epoch     bigint NOT NULL CHECK (epoch >= 0)
        )
        """,
        f"INSERT INTO {s}.fence (epoch) VALUES (0)",
        f"COMMENT ON TABLE {s}.objects IS "
        "'listwatch: one row per Kubernetes object, as the API server sent it'",
        f"COMMENT ON TABLE {s}.sync_state IS 'listwatch: how current each resource''s rows are'",
        f"COMMENT ON TABLE {s}.fence IS "
        "'listwatch: the highest leader epoch that has written; lower ones are refused'",
    )


def _version_2(target: SchemaTarget) -> Sequence[str]:
    """The rest of a write's stamp (``listwatch.fencing``): the sending Syncer's session
    and the batch's sequence in its generation, so replays and old generations are known."""
    s = target.schema
    return (
        f"ALTER TABLE {s}.sync_state ADD COLUMN session text NOT NULL DEFAULT ''",
        f"ALTER TABLE {s}.sync_state ADD COLUMN sequence bigint NOT NULL DEFAULT 0",
    )


def _version_3(target: SchemaTarget) -> Sequence[str]:
    """Where snapshots are staged before they are swapped in (``listwatch.sinks.postgres``):
    one row per snapshot in flight, one per object it staged. UNLOGGED: staged rows are
    worth nothing after a crash (the snapshot they belong to failed with its connection), so
    they need no WAL, and PostgreSQL empties both tables after a crash by itself."""
    s = target.schema
    return (
        f"""
        CREATE UNLOGGED TABLE {s}.stagings (
            staging    uuid PRIMARY KEY,
            resource   text NOT NULL,
            started_at timestamptz NOT NULL,
            -- Each staged page moves it: a staging left alone too long was abandoned.
            touched_at timestamptz NOT NULL
        )
        """,
        f"""
        CREATE UNLOGGED TABLE {s}.staged (
            staging          uuid NOT NULL,
            key              text NOT NULL,
            resource_version text NOT NULL,
            object_sha256    bytea NOT NULL,
            -- Parsed while staging (not in the swap); NULL when the stored row held these
            -- very bytes when the page was staged.
            object           jsonb {target.compression},
            PRIMARY KEY (staging, key)
        )
        """,
        f"COMMENT ON TABLE {s}.stagings IS "
        "'listwatch: snapshots being received, before they replace their resource''s rows'",
        f"COMMENT ON TABLE {s}.staged IS 'listwatch: the objects of the snapshots in stagings'",
    )


def _version_4(target: SchemaTarget) -> Sequence[str]:
    """Quarantined objects (``listwatch.sinks._base``): an object that cannot be stored as
    jsonb as it is (U+0000, bytes that are not UTF-8, nesting past ``_jsonparse.MAX_DEPTH``)
    is kept as its bytes, ``raw``, with why in ``quarantined``, its ``object`` the JSON null,
    rather than failing every write of its resource. Existing rows are JSON: both NULL."""
    s = target.schema
    return (
        f"ALTER TABLE {s}.objects ADD COLUMN raw bytea, ADD COLUMN quarantined text, "
        "ADD CONSTRAINT objects_quarantined_raw CHECK ((raw IS NULL) = (quarantined IS NULL))",
        f"ALTER TABLE {s}.staged ADD COLUMN raw bytea, ADD COLUMN quarantined text",
        f"COMMENT ON COLUMN {s}.objects.raw IS "
        "'listwatch: a quarantined object''s bytes as they came (object is then null)'",
        f"COMMENT ON COLUMN {s}.objects.quarantined IS "
        "'listwatch: why the object could not be stored as jsonb; NULL for the others'",
    )


def _version_5(target: SchemaTarget) -> Sequence[str]:
    """A fleet in one schema: the cluster leads every primary key (the module's docs say
    why), the fence is one row per cluster, and each object's size and each resource's
    counts are kept (what a cluster's caps count). Every row of the older schema becomes
    the cluster ``target.cluster``; sizes of those rows are their ``jsonb``'s text length
    (the bytes first written are gone; a quarantined row's, its ``raw``), each rewritten
    row's the bytes written. The staging tables hold only snapshots in flight, which the
    older code's writers cannot finish against this schema anyway: they are made again,
    empty."""
    s, cluster = target.schema, target.cluster
    return (
        f"ALTER TABLE {s}.objects ADD COLUMN cluster text NOT NULL DEFAULT {cluster}",
        f"ALTER TABLE {s}.objects ALTER COLUMN cluster DROP DEFAULT",
        f"ALTER TABLE {s}.objects ADD COLUMN size integer",
        f"UPDATE {s}.objects SET size = coalesce(octet_length(raw), octet_length(object::text))",
        f"ALTER TABLE {s}.objects ALTER COLUMN size SET NOT NULL",
        f"ALTER TABLE {s}.objects DROP CONSTRAINT objects_pkey",
        f"ALTER TABLE {s}.objects ADD PRIMARY KEY (cluster, resource, key)",
        f"ALTER TABLE {s}.sync_state ADD COLUMN cluster text NOT NULL DEFAULT {cluster}",
        f"ALTER TABLE {s}.sync_state ALTER COLUMN cluster DROP DEFAULT",
        f"ALTER TABLE {s}.sync_state ADD COLUMN object_count bigint NOT NULL DEFAULT 0",
        f"ALTER TABLE {s}.sync_state ADD COLUMN object_bytes bigint NOT NULL DEFAULT 0",
        f"""
        UPDATE {s}.sync_state t SET object_count = u.n, object_bytes = u.b
        FROM (SELECT resource, count(*) AS n, sum(size) AS b FROM {s}.objects GROUP BY resource) u
        WHERE u.resource = t.resource
        """,
        f"ALTER TABLE {s}.sync_state DROP CONSTRAINT sync_state_pkey",
        f"ALTER TABLE {s}.sync_state ADD PRIMARY KEY (cluster, resource)",
        f"ALTER TABLE {s}.fence ADD COLUMN cluster text NOT NULL DEFAULT {cluster}",
        f"ALTER TABLE {s}.fence ALTER COLUMN cluster DROP DEFAULT",
        f"ALTER TABLE {s}.fence DROP COLUMN singleton",
        f"ALTER TABLE {s}.fence ADD PRIMARY KEY (cluster)",
        f"COMMENT ON TABLE {s}.fence IS "
        "'listwatch: per cluster, the highest leader epoch that has written; lower ones are "
        "refused'",
        f"DROP TABLE {s}.staged, {s}.stagings",
        f"""
        CREATE UNLOGGED TABLE {s}.stagings (
            cluster    text NOT NULL,
            staging    uuid NOT NULL,
            resource   text NOT NULL,
            started_at timestamptz NOT NULL,
            -- Each staged page moves it: a staging left alone too long was abandoned.
            touched_at timestamptz NOT NULL,
            PRIMARY KEY (cluster, staging)
        )
        """,
        f"""
        CREATE UNLOGGED TABLE {s}.staged (
            cluster          text NOT NULL,
            staging          uuid NOT NULL,
            key              text NOT NULL,
            resource_version text NOT NULL,
            object_sha256    bytea NOT NULL,
            -- Parsed while staging (not in the swap); NULL when the stored row held these
            -- very bytes when the page was staged.
            object           jsonb {target.compression},
            raw              bytea,
            quarantined      text,
            size             integer NOT NULL,
            PRIMARY KEY (cluster, staging, key)
        )
        """,
        f"COMMENT ON TABLE {s}.stagings IS "
        "'listwatch: snapshots being received, before they replace their resource''s rows'",
        f"COMMENT ON TABLE {s}.staged IS 'listwatch: the objects of the snapshots in stagings'",
    )


# FNV-1a 64 of a text's UTF-8 bytes, minus 2**63 (``_base.uid_hash``), for the migration to
# version 6 only (the sink computes it in Python for every write): numeric arithmetic,
# since bigint's would overflow; the XOR touches the low byte only.
_FNV_FUNCTION = """
    CREATE FUNCTION {s}.lw_uid_hash(uid text) RETURNS bigint
    LANGUAGE plpgsql IMMUTABLE STRICT AS $$
    DECLARE
        bytes bytea := convert_to(uid, 'UTF8');
        h numeric := 14695981039346656037;
        low integer;
    BEGIN
        FOR i IN 0 .. octet_length(bytes) - 1 LOOP
            low := mod(h, 256)::integer;
            h := mod((h - low + (low # get_byte(bytes, i))) * 1099511628211,
                     18446744073709551616);
        END LOOP;
        RETURN (h - 9223372036854775808)::bigint;
    END
    $$
"""
_UID_IN_RAW = """substring(encode(raw, 'escape') from '"uid"\\s*:\\s*"([^"\\\\]{1,128})"')"""


def _version_6(target: SchemaTarget) -> Sequence[str]:
    """Shards (issue 23): a write replaces only its scope's rows, and is fenced by the
    epochs of the scopes that overlap its own (``listwatch.fencing``). Each object gets its
    uid's hash (computed once here, from the stored ``uid``, or from a quarantined row's
    bytes), indexed so that a shard's delete is one range;
    ``sync_state`` and ``fence`` gain the scope in their keys, their rows becoming the whole
    resource's (""). Staged rows carry the hash too (the tables hold only snapshots in
    flight, which older code cannot finish against this schema: they are emptied)."""
    s = target.schema
    return (
        _FNV_FUNCTION.format(s=s),
        f"ALTER TABLE {s}.objects ADD COLUMN uid_hash bigint",
        f"UPDATE {s}.objects SET uid_hash = "
        f"{s}.lw_uid_hash(coalesce(uid, CASE WHEN raw IS NOT NULL THEN {_UID_IN_RAW} END, ''))",
        f"ALTER TABLE {s}.objects ALTER COLUMN uid_hash SET NOT NULL",
        f"DROP FUNCTION {s}.lw_uid_hash(text)",
        # The hash alone, not (cluster, resource, uid_hash): an index that leads with the
        # primary key's prefix tempts the planner, before the table has statistics, to
        # probe it for (cluster, resource, key) and filter on the key, a scan of the whole
        # resource per probe (measured: a relist of 5,000 pods 30 ms -> 3.6 s). A shard's
        # delete ranges over it, or over the primary key's prefix, whichever is cheaper.
        f"CREATE INDEX objects_uid_hash ON {s}.objects (uid_hash)",
        f"ALTER TABLE {s}.sync_state ADD COLUMN shard text NOT NULL DEFAULT ''",
        f"ALTER TABLE {s}.sync_state DROP CONSTRAINT sync_state_pkey",
        f"ALTER TABLE {s}.sync_state ADD PRIMARY KEY (cluster, resource, shard)",
        f"ALTER TABLE {s}.fence ADD COLUMN shard text NOT NULL DEFAULT ''",
        f"ALTER TABLE {s}.fence DROP CONSTRAINT fence_pkey",
        f"ALTER TABLE {s}.fence ADD PRIMARY KEY (cluster, shard)",
        f"COMMENT ON TABLE {s}.fence IS "
        "'listwatch: per cluster and scope, the highest leader epoch that has written; a "
        "write is refused below any epoch of a scope overlapping its own'",
        f"TRUNCATE {s}.staged, {s}.stagings",
        f"ALTER TABLE {s}.staged ADD COLUMN uid_hash bigint NOT NULL",
    )


MIGRATIONS: tuple[Migration, ...] = (
    _version_1,
    _version_2,
    _version_3,
    _version_4,
    _version_5,
    _version_6,
)
SCHEMA_VERSION = len(MIGRATIONS)
"""The schema version this code writes: the number of migrations."""

_LOCK_NAMESPACE = "listwatch schema "


async def _read_version(connection: Connection, schema: str) -> int | None:
    """The recorded version, or None when the schema has no version table (a new database).

    The table is looked for in ``pg_class`` itself rather than with ``to_regclass``: after
    waiting for another sink's migration, this session's catalog cache may still hold the
    "no such schema" it saw before, and reading ``pg_class`` (which locks it, and so makes
    the session take in what other sessions committed) gets the truth.
    """
    exists = await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = 'schema_version')",
        schema,
    )
    if not exists:
        return None
    version = await connection.fetchval(f"SELECT version FROM {quote(schema)}.schema_version")
    if version is None:
        raise SchemaError(
            f"schema {schema!r}: the schema_version table is empty; it was not written by "
            "listwatch (or was emptied by hand)"
        )
    return int(version)


async def _compression(connection: Connection) -> str:
    has_lz4 = await connection.fetchval(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_catalog.pg_settings "
        "WHERE name = 'default_toast_compression'"
    )
    return "COMPRESSION lz4" if has_lz4 else ""


def _check_known(schema: str, version: int, latest: int) -> None:
    if version > latest:
        raise SchemaError(
            f"schema {schema!r} is at listwatch schema version {version}, newer than this "
            f"listwatch knows ({latest}); upgrade listwatch, or use another schema"
        )


async def ensure_schema(
    connection: Connection,
    schema: str,
    migrations: Sequence[Migration] = MIGRATIONS,
    *,
    cluster: str = "default",
) -> int:
    """Bring ``schema`` up to ``len(migrations)``; return the version it was at (0: new).
    The rows of a schema older than clusters become ``cluster``'s.

    Refuses a newer version with ``SchemaError`` before changing anything.
    """
    latest = len(migrations)
    version = await _read_version(connection, schema)
    if version is not None:
        _check_known(schema, version, latest)
        if version == latest:
            return version
    s = quote(schema)
    async with connection.transaction():
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", _LOCK_NAMESPACE + schema
        )
        version = await _read_version(connection, schema)  # another sink may have migrated
        if version is not None:
            _check_known(schema, version, latest)
        else:
            await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
            await connection.execute(
                f"""
                CREATE TABLE {s}.schema_version (
                    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                    version     integer NOT NULL,
                    migrated_at timestamptz NOT NULL
                )
                """
            )
            await connection.execute(
                f"INSERT INTO {s}.schema_version (version, migrated_at) VALUES (0, now())"
            )
            version = 0
        start = version
        where = SchemaTarget(s, await _compression(connection), literal(cluster))
        for migration in migrations[start:]:
            for statement in migration(where):
                try:
                    await connection.execute(statement)
                except (asyncpg.DuplicateTableError, asyncpg.DuplicateObjectError) as exc:
                    raise SchemaError(
                        f"schema {schema!r} holds tables that listwatch did not create "
                        f"({exc}); give the sink a schema of its own"
                    ) from None
        if latest > start:
            await connection.execute(
                f"UPDATE {s}.schema_version SET version = $1, migrated_at = now()", latest
            )
    return start
