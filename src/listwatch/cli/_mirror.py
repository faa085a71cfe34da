"""``listwatch mirror``: resources of a real cluster, mirrored until stopped into an SQLite
file, a PostgreSQL database or a listwatch receiver over HTTP (``listwatch.cli._stores``).

Configuration is kubernetes_asyncio's own (kubeconfig with its context, or the in-cluster
service account), so whatever ``kubectl`` can reach, the mirror can. Resources are named as
kubectl names them (``pods``, ``nodes``, ``deployments.apps``, ``deployments.v1.apps``, a
CRD's ``plural.group``) and resolved through the server's discovery; each gets its own
Syncer under one Supervisor (``listwatch._agent``), and all share one store, one row set
per resource.

Failing fast, and in one line, is a design choice here. The Syncers retry every error
except a wrong request, forever, because a running mirror must ride out an API server
restart; but a mirror that has *never* reached its cluster is far more likely to be
misconfigured (a wrong context, a cluster that is not up, a typo in the resource) than
unlucky, and retrying silently would leave the user staring at nothing. So before the
Syncers start, discovery resolves every name and one preflight LIST (``limit=1``, through
the same source) per resource checks that the server answers, accepts the credentials and
lets us list it. Their errors become one line each. Once running, connection errors are
the Syncers' to retry, each failed attempt a warning and a long outage an error
(``listwatch.cli._health``); so is a resource that stops being served once synced (its CRD
deleted: not ready until it is served again, the others go on). Only a ``FatalError`` (a
streaming list refused under ``--list-strategy stream``), or ``--exit-on-failure``, ends the
mirror, again with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from kubernetes_asyncio.client import ApiClient, Configuration

from listwatch._agent import Agent, WriteGate, gated
from listwatch._aio import first_error
from listwatch._kube import config as kube_config
from listwatch._kube.discovery import ServedResource, resolve
from listwatch._managedfields import strip_managed_fields
from listwatch._shard import Shard
from listwatch._sharding import ShardedAgent
from listwatch._source import ListWatch
from listwatch._syncer import Syncer
from listwatch._types import ListOptions, Receiver
from listwatch.cli._config import ResourceSpec, describe
from listwatch.cli._health import DEFAULT_STALE_AFTER, FailureLog, watch_health
from listwatch.cli._logging import current_role
from listwatch.cli._runtime import CliError, one_line
from listwatch.cli._stores import SQLiteStoreSpec, StoreSpec, open_receivers, without_userinfo
from listwatch.errors import (
    ApiConnectionError,
    ApiError,
    DiscoveryError,
    FatalError,
    Forbidden,
    InvalidRequest,
    ListWatchError,
    ResourceNotFound,
    Unauthorized,
    WatchListRefused,
)
from listwatch.leaderelection import ElectionStatus, LeaderElector
from listwatch.leaderelection._record import LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD
from listwatch.observe.health import make_app, parse_address, serving

logger = logging.getLogger("listwatch.cli")

#: The preflight requests get this long in all (connect and read have their own, shorter,
#: limits in the source): a server that accepts connections and never answers is down too.
PREFLIGHT_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class MirrorOptions:
    """The mirror's flags (the resources already merged with the config file)."""

    resources: Sequence[ResourceSpec]
    store: StoreSpec
    kubeconfig: Path | None = None
    in_cluster: bool = False
    context: str | None = None
    merge_interval: float = 3.0
    resync_period: float | None = None
    sync_timeout: float | None = None
    """The Syncer's: a receiver call that takes longer fails its generation."""
    list_strategy: str = "auto"
    page_size: int = 500
    """The Syncer's: a paged LIST's ``limit``; a streamed list's objects per receiver page."""
    strip_managed_fields: bool = True
    """Drop ``metadata.managedFields`` from every object written (``--strip-managed-fields``)."""
    metrics_address: str | None = None
    stale_after: float = DEFAULT_STALE_AFTER
    """A resource not synced for this long is an ERROR line and makes /readyz false."""
    exit_on_failure: float | None = None
    """Exit 1 once a resource has been failing for this long (None: retry for ever)."""
    election: ElectionOptions | None = None
    shards: int | None = None
    """``--shards N`` (with ``election``): hold a fair share of N shard Leases."""
    shard: Shard | None = None
    """``--shard I/N``: mirror this one shard, without election."""


#: Where a pod finds its own namespace (the service account's projected volume).
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class _LeaseArgs(TypedDict):
    """One replica's Lease name, identity and timing: the keywords ``LeaderElector`` and
    ``ShardedAgent`` share, so the CLI passes them in one place."""

    lease_name: str
    lease_namespace: str
    identity: str
    lease_duration: float
    renew_deadline: float
    retry_period: float


@dataclass(frozen=True, slots=True)
class ElectionOptions:
    """``--leader-elect`` and its settings (client-go's defaults)."""

    lease_name: str = "listwatch"
    lease_namespace: str | None = None
    identity: str | None = None
    lease_duration: float = LEASE_DURATION
    renew_deadline: float = RENEW_DEADLINE
    retry_period: float = RETRY_PERIOD

    def namespace(self) -> str:
        """The given one; in a pod, the pod's own namespace; else ``default``."""
        if self.lease_namespace:
            return self.lease_namespace
        try:
            return POD_NAMESPACE_FILE.read_text().strip() or "default"
        except OSError:
            return "default"

    def lease_args(self) -> _LeaseArgs:
        """The Lease keywords ``LeaderElector`` and ``ShardedAgent`` both take, resolved
        (``who()`` picks a new random suffix: one call per replica)."""
        return _LeaseArgs(
            lease_name=self.lease_name,
            lease_namespace=self.namespace(),
            identity=self.who(),
            lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
        )

    def who(self) -> str:
        """The given identity, else ``$POD_NAME`` or the hostname, plus a random suffix so
        that two processes on one host never share one (identities must be unique)."""
        if self.identity:
            return self.identity
        base = os.environ.get("POD_NAME") or socket.gethostname() or "listwatch"
        return f"{base}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class Mirrored:
    """One resource, resolved: what discovery says, what the user asked for, its source."""

    served: ServedResource
    spec: ResourceSpec
    source: ListWatch

    @property
    def name(self) -> str:
        """The row set in the SQLite file: ``pods``, ``deployments.apps``."""
        return self.served.gvr.qualified


def _kubeconfig_path(given: Path | None) -> str:
    """The kubeconfig ``load_configuration`` will read. A missing file is reported here,
    plainly: kubernetes_asyncio's message for it ("Expected key current-context") misleads."""
    paths = kube_config.kubeconfig_paths(given)
    if not any(Path(path).expanduser().is_file() for path in paths.split(os.pathsep)):
        hint = "" if given is not None else " (use --kubeconfig, $KUBECONFIG or --in-cluster)"
        raise CliError(f"kubeconfig {paths}: no such file{hint}")
    return paths


async def load_configuration(options: MirrorOptions) -> Configuration:
    """The client configuration from the kubeconfig (and context) or the in-cluster account,
    loaded as ``listwatch.connect`` loads it; a failure is one line."""
    if options.in_cluster:
        try:
            return await kube_config.load_configuration(in_cluster=True)
        except Exception as exc:
            raise CliError(f"cannot load the in-cluster configuration: {one_line(exc)}") from None
    path = _kubeconfig_path(options.kubeconfig)
    try:
        return await kube_config.load_configuration(path, context=options.context, in_cluster=False)
    except Exception as exc:  # kubernetes_asyncio raises ConfigException, YAML and OS errors
        raise CliError(f"cannot load kubeconfig {path}: {one_line(exc)}") from None


async def discover(
    api: ApiClient, specs: Sequence[ResourceSpec], host: str
) -> list[ServedResource]:
    """Resolve every name, or one line saying what is wrong."""
    try:
        async with asyncio.timeout(PREFLIGHT_TIMEOUT):
            return await resolve(api, [spec.name for spec in specs])
    except TimeoutError:
        raise CliError(
            f"no answer from the API server at {host} within {PREFLIGHT_TIMEOUT:g} s"
        ) from None
    except DiscoveryError as exc:
        raise CliError(
            f"the API server at {host} cannot serve what was asked: {exc} (name resources "
            "as kubectl does: pods, nodes, deployments.apps, deployments.v1.apps)"
        ) from None
    except ListWatchError as exc:
        raise CliError(_connection_line(exc, host, "discovery")) from None


def _connection_line(exc: ListWatchError, host: str, what: str) -> str:
    if isinstance(exc, ApiConnectionError):
        why = "connection refused" if exc.refused else one_line(exc)
        return f"cannot connect to the API server at {host}: {why}"
    if isinstance(exc, Unauthorized):
        return (
            f"the API server at {host} refused our credentials for {what} (HTTP {exc.status} "
            f"{exc.reason}): {exc.message or 'check the kubeconfig user and RBAC'}"
        )
    return f"the API server at {host} failed {what}: {one_line(exc)}"


def shard_source(mirrored: Mirrored, api: ApiClient, shard: Shard | None) -> ListWatch:
    """``mirrored``'s source, for one shard of it (the same source without a shard)."""
    if shard is None:
        return mirrored.source
    resource, spec = mirrored.served, mirrored.spec
    return ListWatch.from_client(
        api,
        resource.gvr.resource,
        group=resource.gvr.group or None,
        version=resource.gvr.version,
        namespace=spec.namespace if resource.namespaced else None,
        label_selector=spec.label_selector,
        field_selector=spec.field_selector,
        metadata_only=spec.metadata_only,
        shard=shard,
    )


def build_sources(
    api: ApiClient, specs: Sequence[ResourceSpec], served: Sequence[ServedResource]
) -> list[Mirrored]:
    resources: list[Mirrored] = []
    seen: dict[str, str] = {}
    for spec, resource in zip(specs, served, strict=True):
        name = resource.gvr.qualified
        if name in seen:
            raise CliError(f"{spec.name!r} and {seen[name]!r} are the same resource ({name})")
        seen[name] = spec.name
        namespace = spec.namespace if resource.namespaced else None
        if spec.namespace and not resource.namespaced:
            logger.info(
                "cluster-scoped: its namespace %s is ignored",
                spec.namespace,
                extra={"resource": name},
            )
        source = ListWatch.from_client(
            api,
            resource.gvr.resource,
            group=resource.gvr.group or None,
            version=resource.gvr.version,
            namespace=namespace,
            label_selector=spec.label_selector,
            field_selector=spec.field_selector,
            metadata_only=spec.metadata_only,
        )
        resources.append(Mirrored(resource, spec, source))
    return resources


async def preflight(source: ListWatch, host: str, name: str | None = None) -> None:
    """One ``limit=1`` LIST: does the server answer, accept us, and let us list it?"""
    what = source.description
    try:
        async with asyncio.timeout(PREFLIGHT_TIMEOUT):
            await source.list(ListOptions(limit=1))
    except TimeoutError:
        raise CliError(
            f"no answer from the API server at {host} within {PREFLIGHT_TIMEOUT:g} s"
        ) from None
    except ResourceNotFound as exc:
        raise CliError(
            f"the API server at {host} does not serve {what} (HTTP 404 {exc.reason})"
        ) from None
    except InvalidRequest as exc:
        raise CliError(f"the API server refused the request for {what}: {exc}") from None
    except Forbidden as exc:
        raise CliError(
            f"the API server at {host} does not let us list {what} (HTTP 403): "
            f"{exc.message or 'grant list and watch on it (RBAC)'}"
        ) from None
    except (ApiConnectionError, Unauthorized) as exc:
        raise CliError(_connection_line(exc, host, what)) from None
    except ListWatchError as exc:
        # A 429, a 5xx, a malformed answer: the server is there; the Syncer retries these.
        logger.warning(
            "preflight list of %s: %s; starting anyway",
            what,
            one_line(exc),
            extra={"resource": name},
        )


def _fatal_line(exc: FatalError) -> str:
    path = exc.request.rsplit(" ", 1)[-1] if isinstance(exc, ApiError) else ""
    if isinstance(exc, ResourceNotFound):
        return f"{path or 'the resource'} is no longer served (HTTP 404): {one_line(exc)}"
    if isinstance(exc, WatchListRefused):
        # The library's advice names its option; the user of the command has a flag.
        return (
            f"the API server refused a streaming list of {path or 'the resource'} "
            f"({' '.join(exc.answer.split())}): it does not serve streaming lists; use "
            "--list-strategy auto (pages where it cannot stream) or --list-strategy paged"
        )
    return f"mirroring failed: {one_line(exc)}"


async def run_mirror(
    options: MirrorOptions, stop: asyncio.Event, started: asyncio.Event | None = None
) -> int:
    """Mirror until ``stop`` is set; raises ``CliError`` for anything the user must fix.

    ``started`` is set once the checks are done and the Syncers start: from then on a stop
    is an orderly one (see ``listwatch.cli._runtime.unless_stopped_while_starting``)."""
    configuration = await load_configuration(options)
    host = configuration.host or "(no server in the configuration)"
    if options.metrics_address is not None:
        try:
            parse_address(options.metrics_address)
        except ValueError as exc:
            raise CliError(f"--metrics-address: {exc}") from None
    async with ApiClient(configuration=configuration) as api:
        served = await discover(api, options.resources, host)
        resources = build_sources(api, options.resources, served)
        for resource in resources:
            await preflight(resource.source, host, resource.name)
        async with open_receivers(options.store, [r.name for r in resources]) as sinks:
            return await _run(
                options, api, resources, sinks, stop=stop, started=started or asyncio.Event()
            )


async def _run(
    options: MirrorOptions,
    api: ApiClient,
    resources: Sequence[Mirrored],
    sinks: dict[str, Receiver],
    *,
    stop: asyncio.Event,
    started: asyncio.Event,
) -> int:
    target = options.store.describe()
    source = without_userinfo(api.configuration.host or "") or None

    def build_shard(shard: Shard | None, epoch: int, gate: WriteGate) -> list[Syncer]:
        return [
            Syncer(
                shard_source(resource, api, shard),
                on_list=gated(sinks[resource.name].on_list, gate),
                on_batch=gated(sinks[resource.name].on_batch, gate),
                merge_interval=options.merge_interval,
                resync_period=options.resync_period,
                sync_timeout=options.sync_timeout,
                list_strategy=options.list_strategy,
                page_size=options.page_size,
                transform=strip_managed_fields if options.strip_managed_fields else None,
                epoch=epoch,
                observers=[FailureLog(resource.name, target, source=source)],
            )
            for resource in resources
        ]

    what = f"{describe([r.spec for r in resources])} into {target}"
    if options.shard is not None:
        what = f"shard {options.shard} of {what}"
    if options.shards is not None:
        assert options.election is not None  # the command line checks it
        return await _run_sharded(
            options, api, options.election, build_shard, what, stop=stop, started=started
        )
    elector = (
        _elector(api, options.election, _RoleLines(what)) if options.election is not None else None
    )
    agent = Agent(
        lambda epoch, gate: build_shard(options.shard, epoch, gate),
        elector=elector,
        stale_after=options.stale_after,
    )
    began = time.monotonic()
    if elector is not None:
        # Every line from now on says whether this replica leads or stands by.
        current_role.set(lambda: "leading" if elector.status.leading else "standby")

    async def announce_syncs() -> None:
        supervisor = await agent.wait_for_supervisor()
        announced: set[str] = set()
        while len(announced) < len(supervisor.syncers):
            statuses = await supervisor.wait_until(
                lambda now: any(s.synced and n not in announced for n, s in now.items())
            )
            for name, status in statuses.items():
                if status.synced and name not in announced:
                    announced.add(name)
                    logger.info(
                        "synced %d objects at resourceVersion %s",
                        status.snapshot_size,
                        status.snapshot_resource_version,
                        extra={"resource": name, "objects": status.snapshot_size},
                    )

    try:
        async with contextlib.AsyncExitStack() as stack:
            if options.metrics_address is not None:
                await _serve_metrics(stack, options.metrics_address, agent)
            started.set()
            if elector is None:
                logger.info("mirroring %s; Ctrl-C or SIGTERM stops", what)
            else:
                logger.info(
                    "standing by as %s for lease %s: mirrors %s while leading; "
                    "Ctrl-C or SIGTERM stops",
                    elector.status.identity,
                    elector.lease,
                    what,
                )
            # asyncio's TaskGroup, not anyio's: an anyio cancel scope cancels every await
            # inside it again and again, so the elector's release of the Lease on the way
            # out (a PUT) would be cancelled too and a standby would wait out the lease.
            async with asyncio.TaskGroup() as group:
                running = group.create_task(agent.run(), name="listwatch agent")
                announcing = group.create_task(announce_syncs(), name="listwatch announcer")
                watching = group.create_task(
                    watch_health(
                        agent,
                        target=target,
                        stale_after=options.stale_after,
                        exit_after=options.exit_on_failure,
                    ),
                    name="listwatch health",
                )
                stopping = group.create_task(stop.wait(), name="listwatch stop")
                await asyncio.wait(
                    {running, watching, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in (running, announcing, watching, stopping):
                    task.cancel()
    except* FatalError as errors:
        # The agent and the announcer raise the same one: the first will do.
        raise CliError(_fatal_line(first_error(errors))) from None
    except* CliError as errors:  # --exit-on-failure gave up
        raise first_error(errors) from None
    counts = []
    for name, sink in sinks.items():
        count = getattr(sink, "count", None)
        if isinstance(options.store, SQLiteStoreSpec) and count is not None:
            counts.append(f"{name}: {await count()}")
    where = f": {', '.join(counts)} objects in {target}" if counts else ""
    logger.info("stopped after %.1f s%s", time.monotonic() - began, where)
    return 0


async def _run_sharded(
    options: MirrorOptions,
    api: ApiClient,
    election: ElectionOptions,
    build: Callable[[Shard, int, WriteGate], list[Syncer]],
    what: str,
    *,
    stop: asyncio.Event,
    started: asyncio.Event,
) -> int:
    """``--shards N --leader-elect``: hold a fair share of the shard Leases until stopped."""
    assert options.shards is not None
    try:
        agent = ShardedAgent(
            build,
            api,
            shards=options.shards,
            **election.lease_args(),
            stale_after=options.stale_after,
        )
    except ValueError as exc:
        raise CliError(f"leader election: {exc}") from None
    # Every line from now on says which shards this replica holds.
    current_role.set(
        lambda: (
            "shards " + ",".join(str(s) for s in held) if (held := agent.leading()) else "no shard"
        )
    )
    began = time.monotonic()
    try:
        async with contextlib.AsyncExitStack() as stack:
            if options.metrics_address is not None:
                await _serve_metrics(stack, options.metrics_address, agent)
            started.set()
            logger.info(
                "sharing %d shards of %s as %s (Leases %s/%s-shard-0..%d); Ctrl-C or SIGTERM stops",
                options.shards,
                what,
                agent.identity,
                election.namespace(),
                election.lease_name,
                options.shards - 1,
            )
            async with asyncio.TaskGroup() as group:
                running = group.create_task(agent.run(), name="listwatch sharded agent")
                stopping = group.create_task(stop.wait(), name="listwatch stop")
                # Each shard's stale lines and --exit-on-failure, as an Agent's.
                watching = [
                    group.create_task(
                        watch_health(
                            agent.shard_terms(index),
                            target=f"{options.store.describe()} (shard {index}/{options.shards})",
                            stale_after=options.stale_after,
                            exit_after=options.exit_on_failure,
                        ),
                        name=f"listwatch health {index}",
                    )
                    for index in range(options.shards)
                ]
                await asyncio.wait(
                    {running, stopping, *watching}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in (running, stopping, *watching):
                    task.cancel()
    except* FatalError as errors:
        raise CliError(_fatal_line(first_error(errors))) from None
    except* CliError as errors:  # --exit-on-failure gave up
        raise first_error(errors) from None
    logger.info("stopped after %.1f s", time.monotonic() - began)
    return 0


async def _serve_metrics(
    stack: contextlib.AsyncExitStack, address: str, agent: Agent | ShardedAgent
) -> None:
    """``--metrics-address``: serve the agent's metrics and probes until ``stack`` closes.

    One place for both the single and the sharded run, so a port in use reads the same."""
    host, port = parse_address(address)
    app = make_app(agent.metrics, liveness=agent.liveness, readiness=agent.readiness)
    try:
        bound = await stack.enter_async_context(serving(app, host, port))
    except OSError as exc:
        raise CliError(f"cannot serve metrics on {address}: {exc.strerror or exc}") from None
    logger.info("metrics and health on http://%s:%d/metrics", bound[0], bound[1])


class _RoleLines:
    """The lines a replica writes as it starts and stops leading (an elector's
    ``on_change``): a standby must not read as if it mirrored."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._leading = False

    def __call__(self, status: ElectionStatus) -> None:
        if status.leading == self._leading:
            return
        self._leading = status.leading
        if status.leading:
            epoch = status.term.epoch if status.term is not None else "?"
            logger.info("leading (epoch %s): mirroring %s", epoch, self._what)
        else:
            logger.info("no longer leading: standing by")


def _elector(
    api: ApiClient, election: ElectionOptions, on_change: Callable[[ElectionStatus], None]
) -> LeaderElector:
    try:
        return LeaderElector(
            api,
            **election.lease_args(),
            on_change=on_change,
        )
    except ValueError as exc:
        raise CliError(f"leader election: {exc}") from None
