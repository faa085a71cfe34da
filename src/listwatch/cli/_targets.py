"""Where ``listwatch mirror`` writes: an SQLite file, a PostgreSQL database, or an HTTP
receiver. Each target opens one receiver (``on_list`` + ``on_batch``) per resource, closes
them all on the way out, and turns what the user can fix into one line (``CliError``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from listwatch._types import Receiver
from listwatch.cli._runtime import CliError, one_line


@dataclass(frozen=True, slots=True)
class HttpStoreSpec:
    url: str
    token_file: Path | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    verify: bool = True

    def describe(self) -> str:
        return without_userinfo(self.url)


@dataclass(frozen=True, slots=True)
class SQLiteStoreSpec:
    path: Path

    def describe(self) -> str:
        return str(self.path)


@dataclass(frozen=True, slots=True)
class PostgresStoreSpec:
    dsn: str

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
    """``url`` without the ``user:password@`` part: where a target is, never how to log in."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


Counter = Callable[[str], Awaitable[int | None]]


@contextlib.asynccontextmanager
async def open_receivers(
    target: StoreSpec, names: Sequence[str]
) -> AsyncIterator[dict[str, Receiver]]:
    """One receiver per resource name (``pods``, ``deployments.apps``), all closed on exit."""
    async with contextlib.AsyncExitStack() as stack:
        receivers: dict[str, Receiver] = {}
        if isinstance(target, SQLiteStoreSpec):
            # Needs aiosqlite: imported on use.
            from listwatch.cli._storage import open_sink, removed_if_unwritten  # noqa: PLC0415

            stack.enter_context(removed_if_unwritten(target.path))  # exits after the sinks
            for name in names:
                sink = await open_sink(target.path, resource=name)
                stack.push_async_callback(sink.close)
                receivers[name] = sink
        elif isinstance(target, HttpStoreSpec):
            receivers.update(await _open_http(target, names, stack))
        else:
            receivers.update(await _open_postgres(target, names, stack))
        yield receivers


async def _open_http(
    target: HttpStoreSpec, names: Sequence[str], stack: contextlib.AsyncExitStack
) -> dict[str, Receiver]:
    from listwatch.httpsync._client import HttpSink  # noqa: PLC0415 - its TLS setup on use

    if without_userinfo(target.url) != target.url:
        # The receiver takes a bearer token or a client certificate, never a password; and
        # the URL is printed in every failure line.
        raise CliError(
            f"--http {target.describe()}: no user or password in the URL (a receiver "
            "authenticates with --http-token-file or --http-client-cert)"
        )
    if target.token_file is not None and not target.token_file.is_file():
        raise CliError(f"--http-token-file {target.token_file}: no such file")
    receivers: dict[str, Receiver] = {}
    for name in names:
        try:
            sink = HttpSink(
                target.url,
                token_file=target.token_file,
                ca_file=target.ca_file,
                client_cert=target.client_cert,
                client_key=target.client_key,
                verify=target.verify,
                resource=name,
            )
        except (ValueError, OSError) as exc:
            raise CliError(f"--http {target.url}: {one_line(exc)}") from None
        await sink.open()
        stack.push_async_callback(sink.close)
        receivers[name] = sink
    return receivers


async def _open_postgres(
    target: PostgresStoreSpec, names: Sequence[str], stack: contextlib.AsyncExitStack
) -> dict[str, Receiver]:
    import asyncpg  # noqa: PLC0415 - the cli extra's: import on use

    from listwatch.sinks.postgres import (  # noqa: PLC0415 - needs asyncpg: import on use
        PostgresStore,
        SchemaError,
        SinkConnectionError,
    )

    try:
        store = await PostgresStore.connect(target.dsn)
    except (SinkConnectionError, ValueError) as exc:
        raise CliError(one_line(exc)) from None
    stack.push_async_callback(store.close)
    receivers: dict[str, Receiver] = {}
    for name in names:
        try:
            receivers[name] = await store.sink(name)
        except (SchemaError, SinkConnectionError) as exc:
            raise CliError(f"PostgreSQL: {one_line(exc)}") from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            # Creating the schema was refused (a missing privilege, say): the server's own
            # words, with the error's class, which names the SQLSTATE's meaning.
            raise CliError(f"PostgreSQL: {type(exc).__name__}: {one_line(exc)}") from None
    return receivers
