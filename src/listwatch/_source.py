"""``ListWatch``: where objects come from, as two coroutine functions.

The loop needs only "list one page" and "watch from a resourceVersion"; keeping the source
that small lets users plug in anything listable (a custom client, a recorded stream) and
keeps HTTP details out of the loop. ``ListWatch.from_client`` builds the usual source over a
``kubernetes_asyncio`` ``ApiClient`` (see ``listwatch._kube.resource``).

Its resource is named as kubectl names it (``pods``, ``po``, ``deployments.apps``,
``deployments.v1.apps``, a custom resource's ``widgets.example.com``) and resolved through
the server's discovery (``listwatch._kube.discovery``), exactly as ``listwatch mirror``
resolves its names: a name alone does not say which group serves it or which version the
group prefers, and guessing (the core group, ``v1``) turns a short name or a typo into a
404 found only once the loop runs. Discovery is I/O and ``from_client`` is not (it builds a
description of a source, wherever that is convenient), so the source resolves before its
first request: ``Syncer.run()`` resolves it before its first LIST, where a name that does
not resolve is a ``DiscoveryError`` (fatal: ``run()`` raises it), and ``await
source.resolve()`` checks it earlier still. With ``version=`` nothing is resolved: the
plural, group and version are used as given (how the CLI builds its sources, having
resolved them already).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from listwatch._kube.discovery import ResourceName, parse_resource_name, resolve_name
from listwatch._kube.resource import MAX_EVENT_BYTES, MAX_LIST_BYTES, ResourceClient
from listwatch._kube.sharding import ShardFilter, Sharding
from listwatch._models import Event, GroupVersionResource, Page
from listwatch._shard import Shard
from listwatch._types import ListFunc, ListOptions, WatchFunc, WatchOptions

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

__all__ = ["ListWatch"]

logger = logging.getLogger("listwatch")


@dataclass(frozen=True, slots=True)
class _ClientOptions:
    """What ``from_client`` was asked for besides the resource."""

    namespace: str | None
    label_selector: str | None
    field_selector: str | None
    metadata_only: bool
    max_event_bytes: int
    max_list_bytes: int
    shard: Shard | None = None

    def __post_init__(self) -> None:
        if self.max_event_bytes < 1 or self.max_list_bytes < 1:
            raise ValueError("max_event_bytes and max_list_bytes must be positive")

    def client(
        self, api_client: ApiClient, gvr: GroupVersionResource, *, namespaced: bool = True
    ) -> ResourceClient:
        return ResourceClient(
            api_client,
            gvr.resource,
            group=gvr.group or None,
            version=gvr.version,
            namespace=self.namespace if namespaced else None,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            metadata_only=self.metadata_only,
            max_event_bytes=self.max_event_bytes,
            max_list_bytes=self.max_list_bytes,
            shard=self.shard,
        )


@dataclass(frozen=True, slots=True)
class _Unresolved:
    api_client: ApiClient
    name: ResourceName
    options: _ClientOptions


class ListWatch:
    """A listable, watchable resource: the source a ``Syncer`` mirrors.

    ``resource`` names the collection for receivers and metrics. ``watch_list`` declares
    that ``watch_func`` honours ``WatchOptions.send_initial_events`` (the API server does;
    a custom source usually does not, and then ``list_strategy="auto"`` pages).
    ``shard`` declares that the source serves that shard of the collection alone: the
    Syncer's snapshots and batches say so (``Snapshot.shard``), so that a receiver replaces
    only that shard's objects. A custom source filters by itself; ``from_client(shard=)``
    has the API server filter, or filters where the server does not.
    """

    def __init__(
        self,
        *,
        list_func: ListFunc,
        watch_func: WatchFunc,
        description: str = "custom source",
        resource: GroupVersionResource | None = None,
        watch_list: bool = False,
        shard: Shard | None = None,
    ) -> None:
        self._list_func = list_func
        self._watch_func = watch_func
        self.description = description
        self.resource = resource
        self.watch_list = watch_list
        self.shard = shard
        self._unresolved: _Unresolved | None = None
        self._shard_filter: ShardFilter | None = None

    @property
    def sharding(self) -> Sharding | None:
        """Who filtered the last response of a sharded ``from_client`` source: ``"server"``
        (the API server echoed the shard selector) or ``"client"`` (it did not: listwatch
        dropped the objects outside the shard); None for an unsharded or custom source, and
        before the first response (docs/architecture.md#sharded-sources)."""
        return None if self._shard_filter is None else self._shard_filter.mode

    @classmethod
    def from_client(
        cls,
        api_client: ApiClient,
        resource: str,
        *,
        group: str | None = None,
        version: str | None = None,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        metadata_only: bool = False,
        max_event_bytes: int = MAX_EVENT_BYTES,
        max_list_bytes: int = MAX_LIST_BYTES,
        idle_timeout: float | None = None,
        shard: Shard | str | None = None,
    ) -> ListWatch:
        """Any listable resource, through the client's config, auth, TLS and proxies.

        ``resource`` is named as kubectl names it: ``pods``, ``po``, ``deployments.apps``,
        ``deployments.v1.apps``, a custom resource's ``widgets.example.com``; ``group``
        qualifies a bare name (``"deployments", group="apps"``; ``""`` is the core group).
        The name is resolved through discovery before the first request (``resolve``), at
        the group's preferred version unless the name gives one. With ``version``, nothing
        is resolved: ``resource`` is the plural, ``group`` its group (None: the core API),
        and the requests go exactly there.

        ``namespace=None`` lists all namespaces; a cluster-scoped resource ignores it, as
        kubectl does. ``metadata_only`` asks for ``PartialObjectMetadata`` (names, labels,
        annotations, owners: no spec or status), as client-go's metadata client does.

        A watch is kept for its whole ``timeoutSeconds`` however quiet its resource, and is
        presumed dead only when TCP keepalive finds its peer gone, or when it is still open
        and silent past that deadline (``listwatch._kube.resource``). ``idle_timeout`` is
        deprecated and ignored: a limit on silence tore down every healthy watch of a quiet
        resource, to which kube-apiserver sends nothing, not even bookmarks.
        ``max_event_bytes`` caps one watch event (16 MiB) and ``max_list_bytes`` one LIST
        response (32 MiB), both as inflated; LIST pages aim at ``listwatch._models.PAGE_BYTES``
        (8 MiB) whatever the page size asks (docs/kubernetes-semantics.md#size-limits).

        ``shard`` (a ``Shard``, or its text: ``"1/4"``, ``"0x…-0x…"``) lists and watches one
        shard of the collection, the objects whose uid's 64-bit FNV-1a hash lies in its
        range: every request asks the server for it (``shardSelector``, Kubernetes 1.36's
        ``ShardedListAndWatch``), and where the server does not filter, listwatch does
        (``sharding`` says which: docs/kubernetes-semantics.md#sharded-list-and-watch).
        """
        if idle_timeout is not None:
            warnings.warn(
                "ListWatch.from_client(idle_timeout=...) is deprecated and ignored: a quiet "
                "watch is kept until its timeoutSeconds; dead connections are found by TCP "
                "keepalive and by that deadline",
                DeprecationWarning,
                stacklevel=2,
            )
        options = _ClientOptions(
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            metadata_only=metadata_only,
            max_event_bytes=max_event_bytes,
            max_list_bytes=max_list_bytes,
            shard=Shard.parse(shard) if isinstance(shard, str) else shard,
        )
        if version is not None:
            if "." in resource:
                raise ValueError(
                    f"with version=, resource is a plural alone, not {resource!r}: leave "
                    "version out to resolve a name as kubectl writes it"
                )
            gvr = GroupVersionResource(group or "", version, resource)
            client = options.client(api_client, gvr)
            built = cls(
                list_func=client.list_page,
                watch_func=client.watch_events,
                description=client.description,
                resource=gvr,
                watch_list=True,
                shard=options.shard,
            )
            built._shard_filter = client.shard_filter
            return built
        name = parse_resource_name(resource)
        if group is not None:
            if name.group is not None:
                raise ValueError(f"{resource!r} names its group already; drop group={group!r}")
            name = ResourceName(name.name, group)
        source = cls(
            # Until resolved, list and watch resolve first (a source used without a Syncer);
            # lambdas, because the source they call does not exist yet.
            list_func=lambda options: source._list_resolving(options),  # noqa: PLW0108
            watch_func=lambda options: source._watch_resolving(options),  # noqa: PLW0108
            description=f"{name} (not resolved yet)",
            resource=GroupVersionResource(name.group or "", name.version or "", name.name),
            watch_list=True,
            shard=options.shard,
        )
        source._unresolved = _Unresolved(api_client, name, options)
        return source

    async def resolve(self) -> Self:
        """Resolve the resource's name through the server's discovery, once; the source.

        Until then ``resource`` is the name as written (no version unless it gave one).
        ``Syncer.run()`` calls this before its first LIST; call it to fail earlier:
        ``source = await ListWatch.from_client(api, "deploy").resolve()``. Raises
        ``DiscoveryError`` for a name the server does not serve, serves in more than one
        group (write ``resource.group``), or cannot list and watch; the other
        ``listwatch.errors`` when discovery cannot be read (connection, 401, 5xx). A custom
        source, or one built with ``version=``, has nothing to resolve.
        """
        unresolved = self._unresolved
        if unresolved is None:
            return self
        served = await resolve_name(unresolved.api_client, unresolved.name)
        if self._unresolved is None:
            return self  # a concurrent call resolved it meanwhile
        options = unresolved.options
        if options.namespace and not served.namespaced:
            logger.info(
                "%s is cluster-scoped: namespace %s is ignored", served.gvr, options.namespace
            )
        client = options.client(unresolved.api_client, served.gvr, namespaced=served.namespaced)
        self._list_func = client.list_page
        self._watch_func = client.watch_events
        self.description = client.description
        self.resource = served.gvr
        self._shard_filter = client.shard_filter
        self._unresolved = None
        return self

    async def list(self, options: ListOptions) -> Page:
        return await self._list_func(options)

    def watch(self, options: WatchOptions) -> AsyncGenerator[Event, None]:
        return self._watch_func(options)

    async def _list_resolving(self, options: ListOptions) -> Page:
        """``list`` of a source used before it was resolved (not through a Syncer)."""
        await self.resolve()
        return await self._list_func(options)

    async def _watch_resolving(self, options: WatchOptions) -> AsyncGenerator[Event, None]:
        """``watch`` of a source used before it was resolved (not through a Syncer)."""
        await self.resolve()
        async with aclosing(self._watch_func(options)) as stream:
            async for event in stream:
                yield event

    def __repr__(self) -> str:
        return f"ListWatch({self.description})"
