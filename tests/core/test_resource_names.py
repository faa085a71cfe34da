"""``ListWatch.from_client`` names resources as kubectl (and ``listwatch mirror``) does.

Through the real kubernetes_asyncio client against the fake server: the name is resolved
through discovery before the first request, at the group's preferred version; a name that
does not resolve stops ``run()`` with ``DiscoveryError`` before anything is listed.
"""

from __future__ import annotations

from typing import Any

import pytest

from listwatch import DiscoveryError, GroupVersionResource, ListWatch, Phase
from listwatch.observe.metrics import SyncMetrics
from listwatch.testing import FakeApiServer, Fault
from tests.core.helpers import Mirror, make_syncer
from tests.objects import pod


def deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {}},
    }


def is_discovery(path: str) -> bool:
    """``/api``, ``/apis``, ``/api/{version}``, ``/apis/{group}/{version}``."""
    parts = path.strip("/").split("/")
    return (parts[0] == "api" and len(parts) <= 2) or (parts[0] == "apis" and len(parts) <= 3)


def lists(server: FakeApiServer) -> list[str]:
    """The paths of the requests sent other than discovery's: LISTs and WATCHes."""
    return [r.path for r in server.requests if not is_discovery(r.path)]


async def synced(source: ListWatch) -> Mirror:
    mirror = Mirror()
    async with make_syncer(source, mirror) as syncer:
        await syncer.wait_synced()
    return mirror


async def test_a_grouped_name_lists_that_group_at_its_preferred_version(
    server: FakeApiServer, api_client: Any
) -> None:
    await server.create(deployment("web"))
    source = ListWatch.from_client(api_client, "deployments.apps")
    mirror = await synced(source)
    assert set(mirror.objects) == {"default/web"}
    assert source.resource == GroupVersionResource("apps", "v1", "deployments")
    assert lists(server) == ["/apis/apps/v1/deployments"]


@pytest.mark.parametrize(
    ("name", "group"),
    [("deployments.v1.apps", None), ("deployments", "apps"), ("deploy", None)],
)
async def test_a_version_a_group_keyword_or_a_short_name_resolve_too(
    server: FakeApiServer, api_client: Any, name: str, group: str | None
) -> None:
    await server.create(deployment("web"))
    source = ListWatch.from_client(api_client, name, group=group, namespace="default")
    mirror = await synced(source)
    assert set(mirror.objects) == {"default/web"}
    assert lists(server) == ["/apis/apps/v1/namespaces/default/deployments"]


async def test_a_short_name_lists_what_it_stands_for(
    server: FakeApiServer, api_client: Any
) -> None:
    await server.create(pod("a"))
    source = ListWatch.from_client(api_client, "po")
    mirror = await synced(source)
    assert set(mirror.objects) == {"default/a"}
    assert source.resource == GroupVersionResource("", "v1", "pods")
    assert source.description == "/api/v1/pods"
    assert lists(server) == ["/api/v1/pods"]


async def test_a_custom_resource_by_plural_and_group_at_the_preferred_version(
    server: FakeApiServer, api_client: Any
) -> None:
    # The fake server prefers the version of a group registered first, as a CRD's
    # storage version order would say.
    server.register_resource("example.com", "v2", "widgets", "Widget", short_names=["wd"])
    server.register_resource("example.com", "v1", "widgets", "Widget")
    widget = {"apiVersion": "example.com/v2", "kind": "Widget"}
    await server.create({**widget, "metadata": {"name": "w", "namespace": "default"}})
    by_group = ListWatch.from_client(api_client, "widgets.example.com")
    mirror = await synced(by_group)
    assert set(mirror.objects) == {"default/w"}
    assert by_group.resource == GroupVersionResource("example.com", "v2", "widgets")
    by_short_name = await ListWatch.from_client(api_client, "wd").resolve()
    assert by_short_name.resource == by_group.resource


async def test_an_unknown_name_fails_run_before_anything_is_listed(
    server: FakeApiServer, api_client: Any
) -> None:
    syncer = make_syncer(ListWatch.from_client(api_client, "nosuchthings"), Mirror())
    with pytest.raises(DiscoveryError, match="nosuchthings: the server does not serve"):
        await syncer.run()
    assert lists(server) == []
    assert server.requests  # discovery was asked
    assert syncer.status.phase is Phase.FAILED
    assert syncer.status.restarts == 0


async def test_resolve_checks_a_name_before_any_syncer_runs(
    server: FakeApiServer, api_client: Any
) -> None:
    server.register_resource("one.example.com", "v1", "gadgets", "Gadget")
    server.register_resource("two.example.com", "v1", "gadgets", "Gadget")
    with pytest.raises(DiscoveryError, match="gadgets is ambiguous"):
        await ListWatch.from_client(api_client, "gadgets").resolve()
    with pytest.raises(DiscoveryError, match="nosuchthings"):
        await ListWatch.from_client(api_client, "nosuchthings").resolve()
    one = await ListWatch.from_client(api_client, "gadgets.one.example.com").resolve()
    assert one.resource == GroupVersionResource("one.example.com", "v1", "gadgets")
    assert lists(server) == []


async def test_discovery_that_fails_is_retried_like_a_list(
    server: FakeApiServer, api_client: Any
) -> None:
    """An API server that is not answering yet is not a wrong name: back off, try again."""
    await server.create(pod("a"))
    server.inject(Fault.status(503), path="/api", times=2)
    mirror = Mirror()
    async with make_syncer(ListWatch.from_client(api_client, "pods"), mirror) as syncer:
        status = await syncer.wait_synced()
    assert set(mirror.objects) == {"default/a"}
    assert status.restarts == 2
    assert "ServerError" in status.recent_restarts[0].reason


async def test_with_a_version_nothing_is_resolved(server: FakeApiServer, api_client: Any) -> None:
    await server.create(pod("a"))
    source = ListWatch.from_client(api_client, "pods", group="", version="v1")
    assert source.resource == GroupVersionResource("", "v1", "pods")
    await synced(source)
    assert not [r.path for r in server.requests if is_discovery(r.path)]


async def test_a_cluster_scoped_resource_ignores_the_namespace(
    server: FakeApiServer, api_client: Any
) -> None:
    source = await ListWatch.from_client(api_client, "nodes", namespace="default").resolve()
    assert source.description == "/api/v1/nodes"


def test_a_name_is_qualified_once(api_client: Any) -> None:
    with pytest.raises(ValueError, match="with version=, resource is a plural alone"):
        ListWatch.from_client(api_client, "deployments.apps", version="v1")
    with pytest.raises(ValueError, match="names its group already"):
        ListWatch.from_client(api_client, "deployments.apps", group="apps")
    with pytest.raises(DiscoveryError, match="not a resource name"):
        ListWatch.from_client(api_client, "pods/log")


async def test_metrics_carry_the_resolved_resource(server: FakeApiServer, api_client: Any) -> None:
    metrics = SyncMetrics()
    syncer = make_syncer(ListWatch.from_client(api_client, "po"), Mirror())
    metrics.track(syncer)
    async with syncer:
        await syncer.wait_synced()
        text = metrics.render().decode()
    assert 'listwatch_synced{group="",resource="pods",version="v1"} 1.0' in text
    assert 'listwatch_generations_total{group="",resource="pods",version="v1"} 1.0' in text
    assert 'resource="po"' not in text
