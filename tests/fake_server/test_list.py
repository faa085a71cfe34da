"""LIST over HTTP: response shape, paging, resourceVersion semantics and refusals
(docs/kubernetes-semantics.md#list)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from listwatch.testing import FakeApiServer
from tests.objects import configmap, pod

from .helpers import decode_token, encode_token, names, status_of

PODS = "/api/v1/namespaces/default/pods"


async def get_json(http: aiohttp.ClientSession, path: str, **params: str) -> dict[str, Any]:
    async with http.get(path, params=params) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "application/json"
        body: dict[str, Any] = await response.json()
        return body


async def get_status(
    http: aiohttp.ClientSession, path: str, **params: str
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with http.get(path, params=params) as response:
        body: dict[str, Any] = await response.json()
        return response.status, body, response


# --------------------------------------------------------------------------- shape


async def test_list_shape_of_a_builtin_type(server: FakeApiServer, http: aiohttp.ClientSession):
    await server.create(pod("b"))
    await server.create(pod("a"))

    body = await get_json(http, PODS)

    assert body["kind"] == "PodList"
    assert body["apiVersion"] == "v1"
    assert body["metadata"] == {"resourceVersion": str(server.resource_version)}
    assert [item["metadata"]["name"] for item in body["items"]] == ["a", "b"]
    for item in body["items"]:
        # Built-in typed lists omit kind/apiVersion on items (k/k#3030).
        assert "kind" not in item
        assert "apiVersion" not in item
        assert item["metadata"]["uid"]
        assert item["metadata"]["creationTimestamp"].endswith("Z")


async def test_empty_list_has_items_array_not_null(http: aiohttp.ClientSession):
    body = await get_json(http, "/api/v1/namespaces/default/configmaps")
    assert body["items"] == []


async def test_each_item_keeps_its_own_resource_version(
    server: FakeApiServer, core: client.CoreV1Api
):
    first = await server.create(configmap("one"))
    await server.create(configmap("two"))

    listed = await core.list_namespaced_config_map("default")

    assert listed.metadata.resource_version == str(server.resource_version)
    versions = {cm.metadata.name: cm.metadata.resource_version for cm in listed.items}
    assert versions["one"] == first["metadata"]["resourceVersion"]
    assert versions["one"] != listed.metadata.resource_version


async def test_group_resource_list(server: FakeApiServer, api: client.ApiClient):
    await server.create(
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {}}
    )
    apps = client.AppsV1Api(api)

    listed = await apps.list_namespaced_deployment("default", _preload_content=False)
    body = await listed.json()

    assert body["kind"] == "DeploymentList"
    assert body["apiVersion"] == "apps/v1"
    assert [item["metadata"]["name"] for item in body["items"]] == ["web"]
    assert "kind" not in body["items"][0]


async def test_custom_resource_items_keep_kind_and_api_version(
    server: FakeApiServer, api: client.ApiClient
):
    server.register_resource("example.com", "v1", "widgets", "Widget")
    server.register_resource("example.com", "v1", "gadgets", "Gadget", namespaced=False)
    await server.create(
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    )
    await server.create(
        {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}}
    )
    custom = client.CustomObjectsApi(api)

    widgets = await custom.list_namespaced_custom_object("example.com", "v1", "default", "widgets")
    gadgets = await custom.list_cluster_custom_object("example.com", "v1", "gadgets")

    assert widgets["kind"] == "WidgetList"
    assert widgets["apiVersion"] == "example.com/v1"
    assert widgets["items"][0]["kind"] == "Widget"
    assert widgets["items"][0]["apiVersion"] == "example.com/v1"
    assert gadgets["items"][0]["kind"] == "Gadget"
    assert "namespace" not in gadgets["items"][0]["metadata"]


async def test_all_namespaces_and_per_namespace_paths(
    server: FakeApiServer, core: client.CoreV1Api
):
    await server.create(pod("z", namespace="default"))
    await server.create(pod("a", namespace="kube-system"))

    everywhere = await core.list_pod_for_all_namespaces()
    system = await core.list_namespaced_pod("kube-system")

    # Sorted by key "namespace/name", as etcd returns them.
    assert [(p.metadata.namespace, p.metadata.name) for p in everywhere.items] == [
        ("default", "z"),
        ("kube-system", "a"),
    ]
    assert names(system.items) == ["a"]


async def test_cluster_scoped_list(server: FakeApiServer, core: client.CoreV1Api):
    await server.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    nodes = await core.list_node()
    namespaces = await core.list_namespace()

    assert names(nodes.items) == ["n1"]
    assert names(namespaces.items) == ["default", "kube-node-lease", "kube-public", "kube-system"]


# --------------------------------------------------------------------------- paging


async def test_paging_is_one_snapshot_while_objects_change(
    server: FakeApiServer, core: client.CoreV1Api
):
    originals = {}
    for name in ["p1", "p2", "p3", "p4", "p5"]:
        created = await server.create(pod(name))
        originals[name] = created["metadata"]["resourceVersion"]
    snapshot_rv = str(server.resource_version)

    page1 = await core.list_namespaced_pod("default", limit=2)
    # Change everything between the pages: the pages must not notice.
    await server.delete(pod("p3"))
    await server.create(pod("p0"))
    await server.create(pod("p9"))
    changed = await server.create(pod("p4x"))
    assert int(changed["metadata"]["resourceVersion"]) > int(snapshot_rv)
    page2 = await core.list_namespaced_pod("default", limit=2, _continue=page1.metadata._continue)
    page3 = await core.list_namespaced_pod("default", limit=2, _continue=page2.metadata._continue)

    pages = [page1, page2, page3]
    assert [p.metadata.resource_version for p in pages] == [snapshot_rv] * 3
    assert [names(p.items) for p in pages] == [["p1", "p2"], ["p3", "p4"], ["p5"]]
    assert [p.metadata.remaining_item_count for p in pages] == [3, 1, None]
    assert page3.metadata._continue is None
    seen = {p.metadata.name: p.metadata.resource_version for page in pages for p in page.items}
    assert seen == originals


async def test_continue_token_format(server: FakeApiServer, core: client.CoreV1Api):
    await server.create(pod("a"))
    await server.create(pod("b"))
    page = await core.list_pod_for_all_namespaces(limit=1)

    fields = decode_token(page.metadata._continue)

    assert fields == {
        "v": "meta.k8s.io/v1",
        "rv": server.resource_version,
        "start": "default/a\x00",
    }


async def test_namespaced_continue_token_is_relative_to_the_namespace(
    server: FakeApiServer, core: client.CoreV1Api
):
    await server.create(pod("a"))
    await server.create(pod("b"))
    page = await core.list_namespaced_pod("default", limit=1)
    assert decode_token(page.metadata._continue)["start"] == "a\x00"


async def test_selector_pages_are_short_and_have_no_remaining_count(
    server: FakeApiServer, core: client.CoreV1Api
):
    for i in range(10):
        await server.create(pod(f"test-{i}", odd=str(i % 2 == 1).lower()))

    page1 = await core.list_namespaced_pod("default", label_selector="odd=true", limit=3)
    page2 = await core.list_namespaced_pod(
        "default", label_selector="odd=true", limit=3, _continue=page1.metadata._continue
    )

    assert names(page1.items) == ["test-1", "test-3", "test-5"]
    assert page1.metadata._continue
    assert page1.metadata.remaining_item_count is None  # never with a selector
    assert names(page2.items) == ["test-7", "test-9"]
    assert page2.metadata._continue is None


async def test_selector_can_leave_an_empty_last_page(server: FakeApiServer, core: client.CoreV1Api):
    await server.create(pod("a", app="web"))
    await server.create(pod("b", app="db"))

    page1 = await core.list_namespaced_pod("default", label_selector="app=web", limit=1)
    page2 = await core.list_namespaced_pod(
        "default", label_selector="app=web", limit=1, _continue=page1.metadata._continue
    )

    # More keys followed "a" in etcd, so a continue token was returned; the rest matched
    # nothing: only the continue token says whether more data exists
    # (docs/kubernetes-semantics.md#paging).
    assert page1.metadata._continue
    assert page2.items == []
    assert page2.metadata._continue is None


async def test_resource_version_zero_ignores_limit(server: FakeApiServer, core: client.CoreV1Api):
    for i in range(5):
        await server.create(pod(f"p{i}"))

    listed = await core.list_namespaced_pod("default", limit=2, resource_version="0")

    assert len(listed.items) == 5
    assert listed.metadata._continue is None
    assert listed.metadata.resource_version == str(server.resource_version)


async def test_continue_with_resource_version_zero_uses_the_token(
    server: FakeApiServer, core: client.CoreV1Api
):
    for i in range(3):
        await server.create(pod(f"p{i}"))
    page1 = await core.list_namespaced_pod("default", limit=2)

    page2 = await core.list_namespaced_pod(
        "default", limit=2, resource_version="0", _continue=page1.metadata._continue
    )

    assert names(page2.items) == ["p2"]


# --------------------------------------------------------------------------- RV semantics


async def test_rv_with_limit_is_exact(server: FakeApiServer, core: client.CoreV1Api):
    old = await server.create(pod("a"))
    then = str(server.resource_version)
    await server.replace({**old, "metadata": {**old["metadata"], "labels": {"v": "2"}}})
    await server.create(pod("b"))

    exact = await core.list_namespaced_pod("default", resource_version=then, limit=10)
    exact_match = await core.list_namespaced_pod(
        "default", resource_version=then, resource_version_match="Exact"
    )

    for listed in (exact, exact_match):
        assert listed.metadata.resource_version == then
        assert names(listed.items) == ["a"]
        assert listed.items[0].metadata.resource_version == old["metadata"]["resourceVersion"]
        assert listed.items[0].metadata.labels in ({}, None)


async def test_rv_without_limit_is_not_older_than(server: FakeApiServer, core: client.CoreV1Api):
    await server.create(pod("a"))
    then = str(server.resource_version)
    await server.create(pod("b"))

    legacy = await core.list_namespaced_pod("default", resource_version=then)
    explicit = await core.list_namespaced_pod(
        "default", resource_version=then, resource_version_match="NotOlderThan", limit=5
    )

    for listed in (legacy, explicit):
        assert listed.metadata.resource_version == str(server.resource_version)
        assert names(listed.items) == ["a", "b"]


async def test_rv_unset_is_most_recent(server: FakeApiServer, core: client.CoreV1Api):
    await server.create(pod("a"))
    listed = await core.list_namespaced_pod("default")
    assert listed.metadata.resource_version == str(server.resource_version)


@pytest.mark.fake_apiserver(too_large_wait=0.2)
async def test_rv_newer_than_the_store_is_504_too_large(
    server: FakeApiServer, core: client.CoreV1Api
):
    future = str(server.resource_version + 5)

    with pytest.raises(ApiException) as caught:
        await core.list_namespaced_pod("default", resource_version=future)

    assert caught.value.status == 504
    assert caught.value.headers["Retry-After"] == "1"
    body = status_of(caught.value)
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"Timeout: Too large resource version: {future}, current: "
        f"{server.resource_version}",
        "reason": "Timeout",
        "details": {
            "causes": [
                {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
            ],
            "retryAfterSeconds": 1,
        },
        "code": 504,
    }


@pytest.mark.fake_apiserver(too_large_wait=30)
async def test_rv_newer_than_the_store_is_served_once_reached(
    server: FakeApiServer, core: client.CoreV1Api
):
    target = server.resource_version + 1
    start = server.request_count
    listing = asyncio.create_task(core.list_namespaced_pod("default", resource_version=str(target)))
    await server.wait_for_request(lambda r: r.path == PODS, start=start)

    await server.create(pod("late"))
    listed = await listing

    assert int(listed.metadata.resource_version) >= target
    assert names(listed.items) == ["late"]


async def test_exact_list_at_a_compacted_rv_is_410(server: FakeApiServer, core: client.CoreV1Api):
    await server.create(pod("a"))
    old = str(server.resource_version)
    await server.create(pod("b"))
    server.compact()

    with pytest.raises(ApiException) as caught:
        await core.list_namespaced_pod("default", resource_version=old, limit=1)
    # Not-older-than is still served (from the "watch cache").
    listed = await core.list_namespaced_pod("default", resource_version=old)

    assert caught.value.status == 410
    body = status_of(caught.value)
    assert body["reason"] == "Expired"
    assert body["message"] == "The resourceVersion for the provided list is too old."
    assert names(listed.items) == ["a", "b"]


async def test_exact_list_at_the_compaction_point_is_served(
    server: FakeApiServer, core: client.CoreV1Api
):
    await server.create(pod("a"))
    server.compact()
    now = str(server.resource_version)
    listed = await core.list_namespaced_pod("default", resource_version=now, limit=1)
    assert listed.metadata.resource_version == now


# --------------------------------------------------------------------------- expired continue


async def test_expired_continue_token_is_410_with_an_inconsistent_token(
    server: FakeApiServer, core: client.CoreV1Api, http: aiohttp.ClientSession
):
    for name in ["a", "b", "c"]:
        await server.create(pod(name))
    page1 = await core.list_namespaced_pod("default", limit=1)
    await server.create(pod("d"))
    server.compact()

    code, body, _ = await get_status(
        http, PODS, limit="1", **{"continue": page1.metadata._continue}
    )

    assert code == 410
    assert body["reason"] == "Expired"
    assert body["code"] == 410
    assert body["message"].startswith(
        "The provided continue parameter is too old to display a consistent list result."
    )
    assert "inconsistent list" in body["message"]
    fresh = body["metadata"]["continue"]
    assert decode_token(fresh) == {"v": "meta.k8s.io/v1", "rv": -1, "start": "a\x00"}

    # The inconsistent remainder: keys after "a", at the latest RV, paged consistently on.
    rest1 = await core.list_namespaced_pod("default", limit=2, _continue=fresh)
    rest2 = await core.list_namespaced_pod("default", limit=2, _continue=rest1.metadata._continue)
    assert names(rest1.items) == ["b", "c"]
    assert rest1.metadata.resource_version == str(server.resource_version)
    assert names(rest2.items) == ["d"]
    assert rest2.metadata.resource_version == rest1.metadata.resource_version


@pytest.mark.fake_apiserver(history_limit=3)
async def test_automatic_history_window_expires_continue_tokens(
    server: FakeApiServer, core: client.CoreV1Api
):
    for name in ["a", "b"]:
        await server.create(pod(name))
    page1 = await core.list_namespaced_pod("default", limit=1)
    for i in range(4):  # the window keeps the last 3 writes: page 1's RV falls out
        await server.create(configmap(f"cm{i}"))

    with pytest.raises(ApiException) as caught:
        await core.list_namespaced_pod("default", limit=1, _continue=page1.metadata._continue)

    assert caught.value.status == 410
    assert status_of(caught.value)["metadata"]["continue"]


# --------------------------------------------------------------------------- refusals


async def test_continue_with_a_resource_version_is_400(
    server: FakeApiServer, core: client.CoreV1Api
):
    await server.create(pod("a"))
    await server.create(pod("b"))
    page1 = await core.list_namespaced_pod("default", limit=1)

    with pytest.raises(ApiException) as caught:
        await core.list_namespaced_pod(
            "default", limit=1, _continue=page1.metadata._continue, resource_version="3"
        )

    assert caught.value.status == 400
    body = status_of(caught.value)
    assert body["reason"] == "BadRequest"
    assert body["message"] == "specifying resource version is not allowed when using continue"


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "+3", "99999999999999999999999"])
async def test_unparseable_resource_version_is_400(core: client.CoreV1Api, value: str):
    with pytest.raises(ApiException) as caught:
        await core.list_namespaced_pod("default", resource_version=value)
    assert caught.value.status == 400
    body = status_of(caught.value)
    assert body["reason"] == "BadRequest"
    assert body["message"].startswith("invalid resource version: ")


@pytest.mark.parametrize(
    "token",
    [
        "not base64!",
        encode_token({"v": "meta.k8s.io/v1", "rv": 3, "start": "a\x00"}) + "=",
        encode_token({"v": "meta.k8s.io/v2", "rv": 3, "start": "a\x00"}),
        encode_token({"v": "meta.k8s.io/v1", "rv": 0, "start": "a\x00"}),
        encode_token({"v": "meta.k8s.io/v1", "rv": 3, "start": ""}),
        encode_token({"v": "meta.k8s.io/v1", "rv": 3, "start": "../kube-system/a"}),
        encode_token({"v": "meta.k8s.io/v1", "rv": "3", "start": "a"}),
        "e30",  # {}
    ],
)
async def test_invalid_continue_token_is_400(http: aiohttp.ClientSession, token: str):
    code, body, _ = await get_status(http, PODS, **{"continue": token})
    assert code == 400
    assert body["reason"] == "BadRequest"
    assert body["message"].startswith("invalid continue token: continue key is not valid")


async def test_forged_continue_token_pages_from_its_key(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    for name in ["a", "b", "c"]:
        await server.create(pod(name))
    token = encode_token({"v": "meta.k8s.io/v1", "rv": server.resource_version, "start": "a\x00"})

    body = await get_json(http, PODS, **{"continue": token})

    assert [item["metadata"]["name"] for item in body["items"]] == ["b", "c"]


@pytest.mark.parametrize(
    ("params", "causes"),
    [
        (
            {"resourceVersionMatch": "Exact"},
            [
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless "
                "resourceVersion is provided"
            ],
        ),
        (
            {"resourceVersionMatch": "NotOlderThan", "resourceVersion": "1", "continue": "x"},
            [
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue "
                "is provided"
            ],
        ),
        (
            {"resourceVersionMatch": "Exact", "resourceVersion": "0"},
            [
                'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for '
                'resourceVersion "0"'
            ],
        ),
        (
            {"resourceVersionMatch": "Latest", "resourceVersion": "1"},
            [
                'resourceVersionMatch: Unsupported value: "Latest": supported values: "Exact", '
                '"NotOlderThan", ""'
            ],
        ),
        (
            {"sendInitialEvents": "true"},
            ["sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list"],
        ),
        (
            {"resourceVersionMatch": "Latest"},
            [
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless "
                "resourceVersion is provided",
                'resourceVersionMatch: Unsupported value: "Latest": supported values: "Exact", '
                '"NotOlderThan", ""',
            ],
        ),
    ],
)
async def test_list_options_validation_is_422(
    http: aiohttp.ClientSession, params: dict[str, str], causes: list[str]
):
    code, body, _ = await get_status(http, PODS, **params)

    assert code == 422
    assert body["reason"] == "Invalid"
    assert body["details"]["kind"] == "ListOptions"
    assert body["details"]["group"] == "meta.k8s.io"
    joined = causes[0] if len(causes) == 1 else "[" + ", ".join(causes) + "]"
    assert body["message"] == f'ListOptions.meta.k8s.io "" is invalid: {joined}'
    assert [f"{c['field']}: {c['message']}" for c in body["details"]["causes"]] == causes


async def test_unknown_resource_is_404(http: aiohttp.ClientSession):
    for path in [
        "/api/v1/widgets",
        "/api/v1/namespaces/default/nodes",
        "/apis/coordination.k8s.io/v1/widgets",
        "/apis/coordination.k8s.io/v9/leases",
    ]:
        code, body, _ = await get_status(http, path)
        assert code == 404, path
        assert body["reason"] == "NotFound"
        assert body["message"] == "the server could not find the requested resource"


async def test_a_group_nobody_serves_is_a_plain_text_404(http: aiohttp.ClientSession):
    """No API group's handler owns the path: Go's NotFound answers, not a Status."""
    async with http.get("/apis/example.com/v1/widgets") as response:
        assert response.status == 404
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert await response.text() == "404 page not found\n"


async def test_list_in_a_missing_namespace_is_empty(core: client.CoreV1Api):
    listed = await core.list_namespaced_pod("nowhere")
    assert listed.items == []


async def test_large_lists_are_gzipped_when_the_client_accepts_it(
    server: FakeApiServer, http: aiohttp.ClientSession, core: client.CoreV1Api
):
    await server.create(configmap("small"))
    async with http.get("/api/v1/configmaps", headers={"Accept-Encoding": "gzip"}) as small:
        assert "Content-Encoding" not in small.headers
    await server.create(configmap("big", blob="x" * 200_000))
    async with http.get("/api/v1/configmaps", headers={"Accept-Encoding": "gzip"}) as big:
        assert big.headers["Content-Encoding"] == "gzip"
        body = await big.json()  # aiohttp decompresses
    async with http.get("/api/v1/configmaps", headers={"Accept-Encoding": "identity"}) as plain:
        assert "Content-Encoding" not in plain.headers
    assert len(body["items"]) == 2
    listed = await core.list_namespaced_config_map("default")
    assert names(listed.items) == ["big", "small"]


async def test_negative_limit_means_no_limit(server: FakeApiServer, http: aiohttp.ClientSession):
    await server.create(pod("a"))
    await server.create(pod("b"))
    body = await get_json(http, PODS, limit="-1")
    assert len(body["items"]) == 2
    assert "continue" not in body["metadata"]
