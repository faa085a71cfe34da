"""Where ``listwatch mirror`` writes: an SQLite file, a PostgreSQL database, or an HTTP
receiver. Each target opens one receiver (``on_list`` + ``on_batch``) per resource, closes
them all on the way out, and turns what the user can fix into one line (``CliError``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from listwatch._models import Batch, Snapshot
from listwatch.cli._runtime import CliError, one_line
from listwatch.cli._storage import open_sink


class ResourceReceiver(Protocol):
    async def on_list(self, snapshot: Snapshot) -> None: ...

    async def on_batch(self, batch: Batch) -> None: ...


@dataclass(frozen=True, slots=True)
class HttpTarget:
    url: str
    token_file: Path | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    verify: bool = True

    def describe(self) -> str:
        return self.url


@dataclass(frozen=True, slots=True)
class SQLiteTarget:
    path: Path

    def describe(self) -> str:
        return str(self.path)


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    dsn: str

    def describe(self) -> str:
        return "PostgreSQL"  # a DSN may hold a password: never printed


Target = SQLiteTarget | PostgresTarget | HttpTarget
Counter = Callable[[str], Awaitable[int | None]]


@contextlib.asynccontextmanager
async def open_receivers(
    target: Target, names: Sequence[str]
) -> AsyncIterator[dict[str, ResourceReceiver]]:
    """One receiver per resource name (``pods``, ``deployments.apps``), all closed on exit."""
    async with contextlib.AsyncExitStack() as stack:
        receivers: dict[str, ResourceReceiver] = {}
        if isinstance(target, SQLiteTarget):
            for name in names:
                sink = await open_sink(target.path, resource=name)
                stack.push_async_callback(sink.close)
                receivers[name] = sink
        elif isinstance(target, HttpTarget):
            receivers.update(await _open_http(target, names, stack))
        else:
            receivers.update(await _open_postgres(target, names, stack))
        yield receivers


async def _open_http(
    target: HttpTarget, names: Sequence[str], stack: contextlib.AsyncExitStack
) -> dict[str, ResourceReceiver]:
    from listwatch.httpsync._client import HttpSink  # noqa: PLC0415 - its TLS setup on use

    if target.token_file is not None and not target.token_file.is_file():
        raise CliError(f"--http-token-file {target.token_file}: no such file")
    receivers: dict[str, ResourceReceiver] = {}
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
    target: PostgresTarget, names: Sequence[str], stack: contextlib.AsyncExitStack
) -> dict[str, ResourceReceiver]:
    from listwatch.sinks.postgres import (  # noqa: PLC0415 - needs asyncpg: import on use
        PostgresConnectionError,
        PostgresStore,
        SchemaError,
    )

    try:
        store = await PostgresStore.connect(target.dsn)
    except (PostgresConnectionError, ValueError) as exc:
        raise CliError(one_line(exc)) from None
    stack.push_async_callback(store.close)
    receivers: dict[str, ResourceReceiver] = {}
    for name in names:
        try:
            receivers[name] = await store.sink(name)
        except (SchemaError, PostgresConnectionError) as exc:
            raise CliError(f"PostgreSQL: {one_line(exc)}") from None
    return receivers
