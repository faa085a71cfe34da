"""Discovery (aggregated and legacy) and the OpenAPI v3 documents, over raw HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from listwatch.testing import FakeApiServer

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
#: What kubectl and client-go send for /api and /apis.
CLIENT_GO = (
    f"{AGGREGATED},application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)


async def get(
    http: aiohttp.ClientSession, path: str, accept: str = "application/json"
) -> tuple[aiohttp.ClientResponse, Any]:
    async with http.get(path, headers={"Accept": accept}) as response:
        if response.content_type == "text/plain":  # a path no API group serves: Go's 404
            return response, await response.text()
        return response, await response.json(content_type=None)


async def test_aggregated_discovery_of_the_core_group(http: aiohttp.ClientSession):
    response, body = await get(http, "/api", CLIENT_GO)
    assert response.status == 200
    assert response.headers["Content-Type"] == AGGREGATED
    assert response.headers["Vary"] == "Accept"
    assert response.headers["ETag"].startswith('"')
    assert (body["kind"], body["apiVersion"]) == ("APIGroupDiscoveryList", "apidiscovery.k8s.io/v2")
    (core,) = body["items"]
    assert core["metadata"] == {}
    (v1,) = core["versions"]
    assert (v1["version"], v1["freshness"]) == ("v1", "Current")
    pods = next(r for r in v1["resources"] if r["resource"] == "pods")
    assert pods == {
        "resource": "pods",
        "responseKind": {"group": "", "version": "", "kind": "Pod"},
        "scope": "Namespaced",
        "singularResource": "pod",
        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        "shortNames": ["po"],
        "categories": ["all"],
    }
    nodes = next(r for r in v1["resources"] if r["resource"] == "nodes")
    assert nodes["scope"] == "Cluster"


async def test_aggregated_discovery_of_the_groups(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    server.register_resource("example.com", "v1", "widgets", "Widget", short_names=["wd"])
    _, body = await get(http, "/apis", AGGREGATED)
    names = [item["metadata"]["name"] for item in body["items"]]
    assert names == ["apps", "coordination.k8s.io", "example.com"]
    widgets = body["items"][2]["versions"][0]["resources"][0]
    assert widgets["shortNames"] == ["wd"]
    assert "categories" not in widgets


@pytest.mark.parametrize(
    "accept",
    [
        "application/json",
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
        "",
    ],
)
async def test_legacy_discovery_otherwise(http: aiohttp.ClientSession, accept: str):
    response, body = await get(http, "/apis", accept)
    assert response.headers["Content-Type"] == "application/json"
    assert body["kind"] == "APIGroupList"
    _, api = await get(http, "/api", accept)
    assert api["kind"] == "APIVersions"


async def test_legacy_resource_lists_carry_short_names_and_hashes(http: aiohttp.ClientSession):
    _, body = await get(http, "/apis/apps/v1")
    (deployments,) = body["resources"]
    assert deployments["shortNames"] == ["deploy"]
    assert deployments["categories"] == ["all"]
    # base64 of the first 8 bytes of sha256("apps/v1/Deployment")
    assert deployments["storageVersionHash"] == "8aSe+NMegvE="


async def test_discovery_refuses_what_it_cannot_serve(http: aiohttp.ClientSession):
    response, body = await get(http, "/api/v1", "application/yaml")
    assert response.status == 406
    assert body["reason"] == "NotAcceptable"


async def test_openapi_v3_root_and_documents(server: FakeApiServer, http: aiohttp.ClientSession):
    response, root = await get(http, "/openapi/v3")
    assert response.status == 200
    assert set(root["paths"]) == {"api/v1", "apis/apps/v1", "apis/coordination.k8s.io/v1"}
    url = root["paths"]["api/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/api/v1?hash=")
    _, document = await get(http, url)
    assert document["openapi"].startswith("3.")
    patch = document["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert patch["x-kubernetes-action"] == "patch"
    assert patch["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert [p["name"] for p in patch["parameters"]] == ["fieldValidation"]
    assert set(patch["requestBody"]["content"]) == {
        "application/json-patch+json",
        "application/merge-patch+json",
    }
    schema = document["components"]["schemas"]["io.k8s.api.core.v1.Pod"]
    assert schema["x-kubernetes-preserve-unknown-fields"] is True
    assert "/api/v1/nodes/{name}" in document["paths"]
    assert "/api/v1/namespaces/{namespace}/nodes" not in document["paths"]


async def test_openapi_documents_follow_registered_resources(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    server.register_resource("example.com", "v1", "widgets", "Widget")
    _, root = await get(http, "/openapi/v3")
    assert "apis/example.com/v1" in root["paths"]
    _, document = await get(http, "/openapi/v3/apis/example.com/v1")
    assert "com.example.v1.Widget" in document["components"]["schemas"]
    response, _ = await get(http, "/openapi/v3/apis/nothing/v1")
    assert response.status == 404
    response, _ = await get(http, "/openapi/v2")
    assert response.status == 404
