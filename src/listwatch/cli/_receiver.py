"""``listwatch receiver``: the reference receiver of the HTTP sync protocol, as a server.

``listwatch mirror --http URL`` sends each resource's snapshots and batches here; they are
applied to an SQLite file or a PostgreSQL database (``listwatch.httpsync._server``), into the
cluster the request's credential names. A fleet's receivers take ``--clients FILE`` (every
cluster's token digests, certificate names and caps; re-read on SIGHUP and when it
changes); one cluster's, ``--token-file`` (re-read when the file changes), whose cluster is
``--cluster`` ("default" unless named), and/or a client certificate signed by
``--client-ca`` when serving TLS (``--tls-cert``/``--tls-key``). A receiver without any
refuses to start: it would accept writes from anyone. ``--cluster`` also names the cluster
that the rows of a database written before clusters existed become. ``--header-timeout``
and ``--idle-timeout`` bound how long a client may take to send a request's header and
each byte of its body (``SyncServer.runner``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from listwatch.cli._logging import cli_logger as logger
from listwatch.cli._runtime import CliError, one_line
from listwatch.cli._stores import PostgresStoreSpec, SQLiteStoreSpec, open_store
from listwatch.httpsync import ClientsFile, SyncServer, TokenFile
from listwatch.observe.health import parse_address


@dataclass(frozen=True, slots=True)
class ReceiverOptions:
    listen: str
    store: SQLiteStoreSpec | PostgresStoreSpec
    clients: Path | None = None
    cluster: str = "default"
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    header_timeout: float = 10.0
    idle_timeout: float = 30.0


def _ssl(options: ReceiverOptions) -> ssl.SSLContext | None:
    if (options.tls_cert is None) != (options.tls_key is None):
        raise CliError("--tls-cert and --tls-key go together")
    if options.tls_cert is None:
        if options.client_ca is not None:
            raise CliError("--client-ca needs TLS: give --tls-cert and --tls-key")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(options.tls_cert), str(options.tls_key))
        if options.client_ca is not None:
            context.load_verify_locations(cafile=str(options.client_ca))
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"cannot load the TLS files: {one_line(exc)}") from None
    return context


async def run_receiver(
    options: ReceiverOptions, stop: asyncio.Event, started: asyncio.Event | None = None
) -> int:
    """Serve until ``stop``; ``started`` is set once it listens (then a stop is orderly)."""
    try:
        host, port = parse_address(options.listen)
    except ValueError as exc:
        raise CliError(f"--listen: {exc}") from None
    context = _ssl(options)
    token: TokenFile | None = None
    clients: ClientsFile | None = None
    if options.token_file is not None:
        try:
            token = TokenFile(options.token_file)
        except (OSError, ValueError) as exc:
            raise CliError(f"--token-file: {one_line(exc)}") from None
    if options.clients is not None:
        try:
            clients = ClientsFile(options.clients)
        except (OSError, ValueError) as exc:
            raise CliError(f"--clients {options.clients}: {one_line(exc)}") from None
    if token is None and clients is None and options.client_ca is None:
        raise CliError(
            "give --clients or --token-file (or serve TLS with --client-ca): a receiver "
            "authenticates every request"
        )
    async with open_store(options.store) as store:
        receiver = SyncServer(
            store,
            token=token,
            clients=clients,
            cluster=options.cluster,
            client_certificate=options.client_ca is not None,
            header_timeout=options.header_timeout,
            idle_timeout=options.idle_timeout,
        )
        runner = receiver.runner()
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, ssl_context=context)
            try:
                await site.start()
            except OSError as exc:
                raise CliError(
                    f"cannot listen on {options.listen}: {exc.strerror or exc}"
                ) from None
            server = site._server  # aiohttp exposes the bound port only here
            sockets = getattr(server, "sockets", None) or ()
            bound = sockets[0].getsockname()[1] if sockets else port
            scheme = "https" if context is not None else "http"
            where = options.store.describe()
            with _reloaded_on_hangup(clients):
                if started is not None:
                    started.set()
                whose = (
                    f"{len(clients.current().clusters)} clusters of {clients.path}"
                    if clients is not None
                    else f"cluster {options.cluster}"
                )
                logger.info(
                    "serving %s://%s:%d into %s for %s; Ctrl-C or SIGTERM stops",
                    scheme,
                    host,
                    bound,
                    where,
                    whose,
                )
                await stop.wait()
        finally:
            await runner.cleanup()
    logger.info("stopped")
    return 0


@contextlib.contextmanager
def _reloaded_on_hangup(clients: ClientsFile | None) -> Iterator[None]:
    """While inside, SIGHUP reads the clients file again (as daemons reload their
    configuration); a file that cannot be used is logged and the previous one stays."""
    if clients is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()

    def reload() -> None:
        if clients.reload():
            count = len(clients.current().clusters)
            logger.info("SIGHUP: clients file %s read again: %d clusters", clients.path, count)

    try:
        loop.add_signal_handler(signal.SIGHUP, reload)
    except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
