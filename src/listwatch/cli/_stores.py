"""Where the commands write: an SQLite file, a PostgreSQL database, or (for ``mirror``) an
HTTP receiver. A ``StoreSpec`` is the user's choice; ``open_receivers`` opens one receiver
per resource for ``mirror``, ``open_store`` a store for ``receiver``. Everything is closed on
the way out, and what the user can fix becomes one line (``CliError``). In log lines the
spec's ``describe()`` is the ``spec`` field: where it writes, never how it logs in."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from listwatch._types import Receiver, Store
from listwatch.cli._runtime import CliError, one_line

if TYPE_CHECKING:
    from listwatch.sinks.postgres import PostgresStore


@dataclass(frozen=True, slots=True)
class HttpStoreSpec:
    urls: tuple[str, ...]
    """Every ``--http``, in order: the receivers the mirror fails over between."""
    token_file: Path | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    verify: bool = True

    def describe(self) -> str:
        return ", ".join(without_userinfo(url) for url in self.urls)


@dataclass(frozen=True, slots=True)
class SQLiteStoreSpec:
    path: Path
    cluster: str = "default"
    """``mirror``: the cluster it writes; ``receiver``: the cluster an older file's rows
    become."""

    def describe(self) -> str:
        return str(self.path)


@dataclass(frozen=True, slots=True)
class PostgresStoreSpec:
    dsn: str
    cluster: str = "default"
    """``mirror``: the cluster it writes; ``receiver``: the cluster an older schema's rows
    become."""

    def describe(self) -> str:
        """``postgresql://user@host:port/db``: the DSN without its password and its query
        (which may hold one, or key files): where it writes, never how it logs in."""
        try:
            parts = urlsplit(self.dsn)
            user = f"{parts.username}@" if parts.username else ""
            host = parts.netloc.rpartition("@")[2]
        except ValueError:
            return "PostgreSQL"
        return urlunsplit((parts.scheme, user + host, parts.path, "", ""))


StoreSpec = SQLiteStoreSpec | PostgresStoreSpec | HttpStoreSpec


def without_userinfo(url: str) -> str:
    """``url`` without a ``user:password@`` part, a query or a fragment (where secrets
    hide): where it writes, never how to log in; a URL that cannot be parsed is not shown."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port raises for one that is not a number
    except ValueError:
        return "(a URL that cannot be parsed)"
    if "@" not in parts.netloc and not parts.query and not parts.fragment:
        return url
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


Counter = Callable[[str], Awaitable[int | None]]


@contextlib.asynccontextmanager
async def open_receivers(
    spec: StoreSpec, names: Sequence[str]
) -> AsyncIterator[dict[str, Receiver]]:
    """One receiver per resource name (``pods``, ``deployments.apps``), all closed on exit."""
    async with contextlib.AsyncExitStack() as stack:
        receivers: dict[str, Receiver] = {}
        if isinstance(spec, SQLiteStoreSpec):
            # Needs aiosqlite: imported on use.
            from listwatch.cli._storage import open_sink, removed_if_unwritten  # noqa: PLC0415

            stack.enter_context(removed_if_unwritten(spec.path))  # exits after the sinks
            for name in names:
                sink = await open_sink(spec.path, resource=name, cluster=spec.cluster)
                stack.push_async_callback(sink.close)
                receivers[name] = sink
        elif isinstance(spec, HttpStoreSpec):
            receivers.update(await _open_http(spec, names, stack))
        else:
            receivers.update(await _open_postgres(spec, names, stack))
        yield receivers


async def _open_http(
    spec: HttpStoreSpec, names: Sequence[str], stack: contextlib.AsyncExitStack
) -> dict[str, Receiver]:
    from listwatch.httpsync._client import (  # noqa: PLC0415 - its TLS setup on use
        HttpSink,
        ReceiverUrls,
        receiver_url,
    )

    for url in spec.urls:  # printed in every failure line and in /readyz: nothing secret
        try:
            receiver_url(url)
        except ValueError as exc:
            raise CliError(f"--http {without_userinfo(url)}: {exc}") from None
    try:
        # One for all the resources: a receiver one of them found dead is left by all.
        urls = ReceiverUrls(spec.urls)
    except ValueError as exc:
        raise CliError(f"--http: {exc}") from None
    if spec.token_file is not None and not spec.token_file.is_file():
        raise CliError(f"--http-token-file {spec.token_file}: no such file")
    receivers: dict[str, Receiver] = {}
    for name in names:
        try:
            sink = HttpSink(
                urls,
                token_file=spec.token_file,
                ca_file=spec.ca_file,
                client_cert=spec.client_cert,
                client_key=spec.client_key,
                verify=spec.verify,
                resource=name,
            )
        except (ValueError, OSError) as exc:
            raise CliError(f"--http {spec.describe()}: {one_line(exc)}") from None
        await sink.open()
        stack.push_async_callback(sink.close)
        receivers[name] = sink
    return receivers


async def _open_postgres(
    spec: PostgresStoreSpec, names: Sequence[str], stack: contextlib.AsyncExitStack
) -> dict[str, Receiver]:
    import asyncpg  # noqa: PLC0415 - the cli extra's: import on use

    from listwatch.sinks.postgres import (  # noqa: PLC0415 - needs asyncpg: import on use
        SchemaError,
        SinkConnectionError,
    )

    store = await _connect_postgres(spec)
    stack.push_async_callback(store.close)
    receivers: dict[str, Receiver] = {}
    for name in names:
        try:
            receivers[name] = await store.sink(name, cluster=spec.cluster)
        except (SchemaError, SinkConnectionError) as exc:
            raise CliError(f"PostgreSQL: {one_line(exc)}") from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            # Creating the schema was refused (a missing privilege, say): the server's own
            # words, with the error's class, which names the SQLSTATE's meaning.
            raise CliError(f"PostgreSQL: {type(exc).__name__}: {one_line(exc)}") from None
    return receivers


async def _connect_postgres(spec: PostgresStoreSpec) -> PostgresStore:
    """The one way both commands connect to PostgreSQL: a failure is one line, never with
    the password (the sink's own error policy)."""
    from listwatch.sinks.postgres import (  # noqa: PLC0415 - needs asyncpg: import on use
        PostgresStore,
        SinkConnectionError,
    )

    try:
        return await PostgresStore.connect(spec.dsn, legacy_cluster=spec.cluster)
    except (SinkConnectionError, ValueError) as exc:
        raise CliError(one_line(exc)) from None


@contextlib.asynccontextmanager
async def open_store(spec: SQLiteStoreSpec | PostgresStoreSpec) -> AsyncIterator[Store]:
    """The store ``listwatch receiver`` writes every resource through, closed on exit."""
    if isinstance(spec, SQLiteStoreSpec):
        from listwatch.sinks.sqlite import SQLiteStore  # noqa: PLC0415 - needs aiosqlite

        if not spec.path.parent.is_dir():
            raise CliError(f"--sqlite {spec.path}: no such directory")
        store: Store = SQLiteStore(spec.path, legacy_cluster=spec.cluster)
    else:
        store = await _connect_postgres(spec)
    try:
        yield store
    finally:
        await store.close()
