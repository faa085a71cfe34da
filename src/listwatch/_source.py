"""``ListWatch``: where objects come from, as two coroutine functions.

The loop needs only "list one page" and "watch from a resourceVersion"; keeping the source
that small lets users plug in anything listable (a custom client, a recorded stream) and
keeps HTTP details out of the loop. ``ListWatch.from_client`` builds the usual source over a
``kubernetes_asyncio`` ``ApiClient`` (see ``listwatch._kube.resource``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from listwatch._kube.resource import ResourceClient
from listwatch._models import Event, GroupVersionResource, Page
from listwatch._types import ListFunc, ListOptions, WatchFunc, WatchOptions

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

__all__ = ["ListWatch"]


class ListWatch:
    """A listable, watchable resource: the source a ``Syncer`` mirrors.

    ``resource`` names the collection for receivers and metrics. ``watch_list`` declares
    that ``watch_func`` honours ``WatchOptions.send_initial_events`` (the API server does;
    a custom source usually does not, and then ``list_strategy="auto"`` pages).
    """

    def __init__(
        self,
        *,
        list_func: ListFunc,
        watch_func: WatchFunc,
        description: str = "custom source",
        resource: GroupVersionResource | None = None,
        watch_list: bool = False,
    ) -> None:
        self._list_func = list_func
        self._watch_func = watch_func
        self.description = description
        self.resource = resource
        self.watch_list = watch_list

    @classmethod
    def from_client(
        cls,
        api_client: ApiClient,
        resource: str,
        *,
        group: str | None = None,
        version: str = "v1",
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        metadata_only: bool = False,
        max_event_bytes: int = 16 * 1024 * 1024,
        max_list_bytes: int = 1024 * 1024 * 1024,
        idle_timeout: float | None = 120.0,
    ) -> ListWatch:
        """Any listable resource, through the client's config, auth, TLS and proxies.

        ``resource`` is the plural name (``pods``, ``deployments``, a CRD's plural); ``group``
        is None for the core API. ``namespace=None`` lists all namespaces (or a cluster-scoped
        resource). ``metadata_only`` asks for ``PartialObjectMetadata`` (names, labels,
        annotations, owners: no spec or status), as client-go's metadata client does.
        ``idle_timeout``: a watch that receives no byte for that long is dead.
        """
        client = ResourceClient(
            api_client,
            resource,
            group=group,
            version=version,
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            metadata_only=metadata_only,
            max_event_bytes=max_event_bytes,
            max_list_bytes=max_list_bytes,
            idle_timeout=idle_timeout,
        )
        return cls(
            list_func=client.list_page,
            watch_func=client.watch_events,
            description=client.description,
            resource=GroupVersionResource(group or "", version, resource),
            watch_list=True,
        )

    async def list(self, options: ListOptions) -> Page:
        return await self._list_func(options)

    def watch(self, options: WatchOptions) -> AsyncGenerator[Event, None]:
        return self._watch_func(options)

    def __repr__(self) -> str:
        return f"ListWatch({self.description})"
