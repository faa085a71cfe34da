"""Resource names as kubectl writes them, resolved against the fake server's discovery."""

from __future__ import annotations

from typing import Any

import pytest

from listwatch import GroupVersionResource
from listwatch._kube.discovery import ResourceName, parse_resource_name, resolve
from listwatch.errors import DiscoveryError
from listwatch.testing import FakeApiServer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pods", ResourceName("pods")),
        ("deployments.apps", ResourceName("deployments", "apps")),
        ("deployments.v1.apps", ResourceName("deployments", "apps", "v1")),
        ("widgets.example.com", ResourceName("widgets", "example.com")),
        ("widgets.v1alpha1.example.com", ResourceName("widgets", "example.com", "v1alpha1")),
        ("hpa.v2.autoscaling", ResourceName("hpa", "autoscaling", "v2")),
        # "v1x" is not a version, so the whole rest is the group (kubectl's ParseResourceArg)
        ("things.v1x.example.com", ResourceName("things", "v1x.example.com")),
    ],
)
def test_names_parse_as_kubectl_parses_them(text: str, expected: ResourceName) -> None:
    assert parse_resource_name(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text", ["", "pods/log", "po ds"])
def test_what_is_not_a_resource_name(text: str) -> None:
    with pytest.raises(DiscoveryError, match="not a resource name"):
        parse_resource_name(text)


async def test_core_grouped_and_custom_resources_resolve(
    server: FakeApiServer, api_client: Any
) -> None:
    server.register_resource("example.com", "v1alpha1", "widgets", "Widget")
    pods, nodes, deployments, pinned, widgets = await resolve(
        api_client,
        ["pods", "nodes", "deployments.apps", "deployments.v1.apps", "widgets.example.com"],
    )
    assert pods.gvr == GroupVersionResource("", "v1", "pods")
    assert (pods.kind, pods.namespaced) == ("Pod", True)
    assert {"list", "watch"} <= pods.verbs
    assert nodes.gvr == GroupVersionResource("", "v1", "nodes")
    assert nodes.namespaced is False
    assert deployments.gvr == pinned.gvr == GroupVersionResource("apps", "v1", "deployments")
    assert widgets.gvr == GroupVersionResource("example.com", "v1alpha1", "widgets")


async def test_a_resource_of_a_non_core_group_resolves_without_its_group(
    server: FakeApiServer, api_client: Any
) -> None:
    (deployments,) = await resolve(api_client, ["deployments"])
    assert deployments.gvr.qualified == "deployments.apps"


async def test_singular_and_kind_names_resolve(server: FakeApiServer, api_client: Any) -> None:
    by_kind, by_singular = await resolve(api_client, ["Deployment", "pod"])
    assert by_kind.gvr.qualified == "deployments.apps"
    assert by_singular.gvr.qualified == "pods"


async def test_every_unresolvable_name_is_named_with_its_reason(
    server: FakeApiServer, api_client: Any
) -> None:
    with pytest.raises(DiscoveryError) as caught:
        await resolve(
            api_client, ["pods", "gizmos", "deployments.v9.apps", "things.nosuch.example.org"]
        )
    text = str(caught.value)
    assert "gizmos: the server does not serve a resource of that name" in text
    assert "deployments.v9.apps: group 'apps' has no version 'v9' (it serves v1)" in text
    assert "has no API group 'nosuch.example.org'" in text
    assert not text.startswith("pods")  # pods itself resolved


async def test_a_name_served_by_two_groups_is_ambiguous(
    server: FakeApiServer, api_client: Any
) -> None:
    server.register_resource("one.example.com", "v1", "gadgets", "Gadget")
    server.register_resource("two.example.com", "v1", "gadgets", "Gadget")
    with pytest.raises(DiscoveryError, match=r"ambiguous \(gadgets.one.example.com, gadgets.two"):
        await resolve(api_client, ["gadgets"])
    (one,) = await resolve(api_client, ["gadgets.one.example.com"])
    assert one.gvr.group == "one.example.com"
