"""``listwatch mirror``: one resource of a real cluster, mirrored into SQLite until stopped.

Configuration is kubernetes_asyncio's own (kubeconfig with its context, or the in-cluster
service account), so whatever ``kubectl`` can reach, the mirror can.

Failing fast, and in one line, is a design choice here. The Syncer retries every error
except a wrong request, forever, because a running mirror must ride out an API server
restart; but a mirror that has *never* reached its cluster is far more likely to be
misconfigured (a wrong context, a cluster that is not up, a typo in the resource) than
unlucky, and retrying silently would leave the user staring at nothing. So before the
Syncer starts, one preflight LIST (``limit=1``, through the same source) checks that the
server answers, accepts the credentials and serves the resource. Its errors are the typed
``listwatch`` errors the Syncer would meet, turned into one line each. Once the preflight
has passed, connection errors are the Syncer's to retry; only a ``FatalError`` (say, the
CRD was deleted) ends the mirror, again with one line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import anyio
from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient, Configuration

from listwatch.cli.runtime import CliError, one_line
from listwatch.cli.storage import open_sink
from listwatch.errors import (
    ApiConnectionError,
    FatalError,
    InvalidRequest,
    ListWatchError,
    ResourceNotFound,
    Unauthorized,
)
from listwatch.sinks.sqlite import SQLiteSink
from listwatch.source import ListOptions, ListWatch
from listwatch.syncer import Syncer

logger = logging.getLogger("listwatch.cli")

#: The preflight LIST gets this long in all (connect and read have their own, shorter,
#: limits in the source): a server that accepts connections and never answers is down too.
PREFLIGHT_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class MirrorOptions:
    """The mirror's flags."""

    resource: str
    sqlite: Path
    group: str | None = None
    version: str = "v1"
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None
    kubeconfig: Path | None = None
    in_cluster: bool = False
    context: str | None = None
    merge_interval: float = 3.0
    resync_period: float | None = None
    list_strategy: str = "auto"
    metadata_only: bool = False

    @property
    def sink_resource(self) -> str:
        """The name the rows are stored under: ``pods``, ``deployments.apps`` (kubectl's
        ``resource.group``), so mirrors of several resources can share one file."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


def _kubeconfig_path(given: Path | None) -> str:
    """The kubeconfig to load: ``--kubeconfig``, else ``$KUBECONFIG`` (a list of files that
    kubernetes_asyncio merges, as kubectl does; read now, not when kubernetes_asyncio was
    imported), else ``~/.kube/config``. A missing file is reported here, plainly:
    kubernetes_asyncio's message for it ("Expected key current-context") misleads."""
    if given is not None:
        paths = [str(given)]
    elif os.environ.get("KUBECONFIG"):
        paths = [p for p in os.environ["KUBECONFIG"].split(os.pathsep) if p]
    else:
        paths = [os.path.expanduser("~/.kube/config")]
    if not any(Path(path).expanduser().is_file() for path in paths):
        hint = "" if given is not None else " (use --kubeconfig, $KUBECONFIG or --in-cluster)"
        raise CliError(f"kubeconfig {os.pathsep.join(paths)}: no such file{hint}")
    return os.pathsep.join(paths)


async def load_configuration(options: MirrorOptions) -> Configuration:
    """The client configuration from the kubeconfig (and context) or the in-cluster account."""
    configuration = Configuration()
    if options.in_cluster:
        try:
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        except Exception as exc:
            raise CliError(f"cannot load the in-cluster configuration: {one_line(exc)}") from None
        return configuration
    path = _kubeconfig_path(options.kubeconfig)
    try:
        # persist_config=False: a mirror must not rewrite the user's kubeconfig.
        await config.load_kube_config(
            config_file=path,
            context=options.context,
            client_configuration=configuration,
            persist_config=False,
        )
    except Exception as exc:  # kubernetes_asyncio raises ConfigException, YAML and OS errors
        raise CliError(f"cannot load kubeconfig {path}: {one_line(exc)}") from None
    return configuration


async def preflight(source: ListWatch, host: str) -> None:
    """One ``limit=1`` LIST: does the server answer, accept us, and serve the resource?"""
    what = source.description
    try:
        with anyio.fail_after(PREFLIGHT_TIMEOUT):
            await source.list(ListOptions(limit=1))
    except TimeoutError:
        raise CliError(
            f"no answer from the API server at {host} within {PREFLIGHT_TIMEOUT:g} s"
        ) from None
    except ApiConnectionError as exc:
        why = "connection refused" if exc.refused else one_line(exc)
        raise CliError(f"cannot connect to the API server at {host}: {why}") from None
    except ResourceNotFound as exc:
        raise CliError(
            f"the API server at {host} does not serve {what} (HTTP 404 {exc.reason}): check "
            "the resource's plural name, --group and --version"
        ) from None
    except InvalidRequest as exc:
        raise CliError(f"the API server refused the request for {what}: {exc}") from None
    except Unauthorized as exc:
        raise CliError(
            f"the API server at {host} refused our credentials for {what} (HTTP {exc.status} "
            f"{exc.reason}): {exc.message or 'check the kubeconfig user and RBAC'}"
        ) from None
    except ListWatchError as exc:
        # A 429, a 5xx, a malformed answer: the server is there; the Syncer retries these.
        logger.warning("preflight list of %s: %s; starting anyway", what, one_line(exc))


def _first(errors: BaseExceptionGroup[FatalError]) -> FatalError:
    """The first error of a group (``Syncer.run`` and ``wait_synced`` raise the same one)."""
    first = errors.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def _fatal_line(exc: FatalError, what: str) -> str:
    if isinstance(exc, ResourceNotFound):
        return f"{what} is no longer served (HTTP 404): {one_line(exc)}"
    return f"mirroring {what} failed: {one_line(exc)}"


async def run_mirror(options: MirrorOptions, stop: asyncio.Event, err: TextIO | None = None) -> int:
    """Mirror until ``stop`` is set; raises ``CliError`` for anything the user must fix."""
    err = sys.stderr if err is None else err
    configuration = await load_configuration(options)
    host = configuration.host or "(no server in the configuration)"
    async with ApiClient(configuration=configuration) as api:
        source = ListWatch.from_client(
            api,
            options.resource,
            group=options.group,
            version=options.version,
            namespace=options.namespace,
            label_selector=options.label_selector,
            field_selector=options.field_selector,
            metadata_only=options.metadata_only,
        )
        await preflight(source, host)
        sink = await open_sink(options.sqlite, resource=options.sink_resource)
        try:
            return await _run(options, source, sink, stop, err)
        finally:
            await sink.close()


async def _run(
    options: MirrorOptions, source: ListWatch, sink: SQLiteSink, stop: asyncio.Event, err: TextIO
) -> int:
    syncer = Syncer(
        source,
        on_list=sink.on_list,
        on_batch=sink.on_batch,
        merge_interval=options.merge_interval,
        resync_period=options.resync_period,
        list_strategy=options.list_strategy,
    )
    started = time.monotonic()
    _say(err, f"mirroring {source.description} into {options.sqlite}; Ctrl-C or SIGTERM stops")

    async def announce_first_sync() -> None:
        status = await syncer.wait_synced()
        _say(
            err,
            f"synced: {status.snapshot_size} objects at resourceVersion "
            f"{status.snapshot_resource_version}",
        )

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(syncer.run)
            group.start_soon(announce_first_sync)
            await stop.wait()
            group.cancel_scope.cancel()
    except* FatalError as errors:
        raise CliError(_fatal_line(_first(errors), source.description)) from None
    status = syncer.status
    _say(
        err,
        f"stopped after {time.monotonic() - started:.1f} s: {await sink.count()} objects in "
        f"{options.sqlite} at resourceVersion {status.resource_version or '-'}, "
        f"{status.generation} generations, {status.restarts} restarts",
    )
    return 0


def _say(err: TextIO, line: str) -> None:
    err.write(f"listwatch mirror: {line}\n")
    err.flush()
