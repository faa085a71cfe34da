"""The FakeApiServer object: Python API, HTTP writes, auth, clients, request log, counters."""

from __future__ import annotations

import asyncio
import io
import os
import stat
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from kubernetes_asyncio import client, config

from listwatch.testing import FakeApiServer, RecordedRequest, StatusError
from listwatch.testing._requestlog import RequestLog
from tests.fake_server.helpers import client_ssl
from tests.objects import configmap, pod

from .helpers import WAIT, EventReader, names, status_of

PODS = "/api/v1/namespaces/default/pods"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


# --------------------------------------------------------------------------- lifecycle


async def test_listens_on_loopback_with_a_random_port():
    async with FakeApiServer() as first, FakeApiServer(tls=False) as second:
        assert first.url.startswith("https://127.0.0.1:")
        assert second.url.startswith("http://127.0.0.1:")
        assert first.url != second.url


async def test_stop_closes_every_connection():
    server = FakeApiServer()
    await server.start()
    port = int(server.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=server.ssl_context)
    writer.write(
        f"GET /version HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n\r\n".encode()
    )
    await server.wait_for_request(lambda r: r.path == "/version")
    assert server.open_connections == 1
    await server.stop()
    assert server.open_connections == 0
    assert await asyncio.wait_for(reader.read(), WAIT)  # the response, then EOF
    writer.close()
    await writer.wait_closed()


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}, {"Authorization": ""}],
)
async def test_requests_without_the_token_are_401(server: FakeApiServer, headers: dict[str, str]):
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(server))) as session,
        session.get(f"{server.url}{PODS}", headers=headers) as response,
    ):
        body = await response.json()
    assert response.status == 401
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    assert server.requests[-1] == RecordedRequest("GET", PODS, {})


async def test_bearer_scheme_is_case_insensitive(server: FakeApiServer):
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(server))) as session,
        session.get(
            f"{server.url}{PODS}", headers={"Authorization": f"bearer {server.token}"}
        ) as response,
    ):
        assert response.status == 200


async def test_token_never_appears_in_the_log_or_errors(server: FakeApiServer):
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(server))) as session,
        session.get(
            f"{server.url}{PODS}?x=1", headers={"Authorization": f"Bearer {server.token}x"}
        ) as response,
    ):
        text = await response.text()
    assert server.token not in text
    assert server.token not in repr(list(server.requests))


# --------------------------------------------------------------------------- clients


async def test_api_client_is_configured(server: FakeApiServer):
    await server.create(pod("a"))
    async with server.api_client() as api:
        listed = await client.CoreV1Api(api).list_namespaced_pod("default")
    assert names(listed.items) == ["a"]


async def test_kubeconfig_loads_with_kubernetes_asyncio(server: FakeApiServer, tmp_path: Path):
    path = tmp_path / "kube" / "config"
    server.write_kubeconfig(path)
    await server.create(pod("a"))

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    api = await config.new_client_from_config(config_file=str(path))
    try:
        listed = await client.CoreV1Api(api).list_namespaced_pod("default")
    finally:
        await api.close()
    assert names(listed.items) == ["a"]


async def test_discovery_documents(server: FakeApiServer, http: aiohttp.ClientSession):
    server.register_resource("example.com", "v1alpha1", "widgets", "Widget")

    async def get(path: str) -> dict[str, Any]:
        async with http.get(path) as response:
            assert response.status == 200, path
            body: dict[str, Any] = await response.json()
            return body

    assert (await get("/api"))["versions"] == ["v1"]
    groups = {
        g["name"]: g["preferredVersion"]["groupVersion"] for g in (await get("/apis"))["groups"]
    }
    assert groups == {
        "apps": "apps/v1",
        "coordination.k8s.io": "coordination.k8s.io/v1",
        "example.com": "example.com/v1alpha1",
    }
    core = {r["name"]: r for r in (await get("/api/v1"))["resources"]}
    assert core["pods"]["namespaced"] is True
    assert core["nodes"]["namespaced"] is False
    assert core["pods"]["kind"] == "Pod"
    widgets = await get("/apis/example.com/v1alpha1")
    assert widgets["groupVersion"] == "example.com/v1alpha1"
    assert (await get("/version"))["major"] == "1"


async def test_version_through_the_typed_client(api: client.ApiClient):
    info = await client.VersionApi(api).get_code()
    assert info.git_version.startswith("v1.")


# --------------------------------------------------------------------------- Python API


async def test_create_assigns_system_fields(server: FakeApiServer):
    created = await server.create(pod("a", app="web"))

    metadata = created["metadata"]
    assert created["kind"] == "Pod"
    assert created["apiVersion"] == "v1"
    assert metadata["resourceVersion"] == str(server.resource_version)
    assert len(metadata["uid"]) == 36
    assert metadata["creationTimestamp"].endswith("Z")
    assert server.get("v1", "Pod", "a", "default") == created


async def test_resource_version_is_one_global_counter(server: FakeApiServer):
    start = server.resource_version
    a = await server.create(pod("a"))
    c = await server.create(configmap("c"))
    n = await server.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}})
    rvs = [int(o["metadata"]["resourceVersion"]) for o in (a, c, n)]
    assert rvs == [start + 1, start + 2, start + 3]


async def test_uids_follow_the_seed():
    async with FakeApiServer(seed=3) as one, FakeApiServer(seed=3) as two:
        first = await one.create(pod("a"))
        second = await two.create(pod("a"))
    assert first["metadata"]["uid"] == second["metadata"]["uid"]


async def test_namespaced_object_defaults_to_the_default_namespace(server: FakeApiServer):
    created = await server.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    )
    assert created["metadata"]["namespace"] == "default"


async def test_cluster_scoped_objects_have_no_namespace(server: FakeApiServer):
    node = await server.create(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", "namespace": "default"}}
    )
    assert "namespace" not in node["metadata"]


async def test_create_twice_is_409_already_exists(server: FakeApiServer):
    await server.create(pod("a"))
    with pytest.raises(StatusError) as caught:
        await server.create(pod("a"))
    assert caught.value.code == 409
    assert caught.value.reason == "AlreadyExists"
    assert caught.value.message == 'pods "a" already exists'


async def test_create_in_a_missing_namespace_is_404(server: FakeApiServer):
    with pytest.raises(StatusError) as caught:
        await server.create(pod("a", namespace="nope"))
    assert caught.value.code == 404
    assert caught.value.message == 'namespaces "nope" not found'


async def test_create_with_a_resource_version_is_refused(server: FakeApiServer):
    obj = pod("a")
    obj["metadata"]["resourceVersion"] = "5"
    with pytest.raises(StatusError) as caught:
        await server.create(obj)
    assert caught.value.code == 500
    assert "resourceVersion should not be set" in caught.value.message


async def test_generate_name(server: FakeApiServer):
    created = await server.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "cm-"}}
    )
    assert created["metadata"]["name"].startswith("cm-")
    assert len(created["metadata"]["name"]) == len("cm-") + 5


async def test_unknown_kind_and_missing_name_are_errors(server: FakeApiServer):
    with pytest.raises(KeyError):
        await server.create({"apiVersion": "v1", "kind": "Widget", "metadata": {"name": "w"}})
    with pytest.raises(ValueError, match=r"metadata\.name"):
        await server.create({"apiVersion": "v1", "kind": "Pod", "metadata": {}})


async def test_replace(server: FakeApiServer):
    created = await server.create(pod("a"))
    changed = {**created, "metadata": {**created["metadata"], "labels": {"v": "2"}}}
    changed["metadata"]["uid"] = created["metadata"]["uid"]

    replaced = await server.replace(changed)

    assert replaced["metadata"]["labels"] == {"v": "2"}
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    assert replaced["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    assert int(replaced["metadata"]["resourceVersion"]) == server.resource_version


async def test_replace_without_changes_writes_nothing(server: FakeApiServer):
    created = await server.create(pod("a"))
    before = server.resource_version
    same = await server.replace(created)
    assert same == created
    assert server.resource_version == before


async def test_replace_with_a_stale_rv_is_409_conflict(server: FakeApiServer):
    created = await server.create(pod("a"))
    await server.replace({**created, "spec": {"containers": []}})
    with pytest.raises(StatusError) as caught:
        await server.replace({**created, "spec": {}})
    assert caught.value.code == 409
    assert caught.value.reason == "Conflict"
    assert "the object has been modified" in caught.value.message


async def test_replace_of_a_missing_object_is_404(server: FakeApiServer):
    with pytest.raises(StatusError) as caught:
        await server.replace(pod("ghost"))
    assert caught.value.code == 404
    assert caught.value.message == 'pods "ghost" not found'


async def test_delete_returns_the_final_state_at_the_deletion_rv(server: FakeApiServer):
    created = await server.create(pod("a", app="web"))
    final = await server.delete(created)
    assert final["metadata"]["resourceVersion"] == str(server.resource_version)
    assert final["metadata"]["labels"] == {"app": "web"}
    assert server.get("v1", "Pod", "a", "default") is None
    with pytest.raises(StatusError):
        await server.delete(created)


async def test_delete_with_finalizers_marks_then_deletes(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    obj = pod("a")
    obj["metadata"]["finalizers"] = ["example.com/keep"]
    await server.create(obj)
    now = str(server.resource_version)
    async with http.get(PODS, params={"watch": "1", "resourceVersion": now}) as response:
        reader = EventReader(response)
        marked = await server.delete(obj)
        modified = await reader.next()
        released = {**marked, "metadata": {**marked["metadata"], "finalizers": []}}
        await server.replace(released)
        deleted = await reader.next()

    assert "deletionTimestamp" in marked["metadata"]
    assert server.get("v1", "Pod", "a", "default") is None
    assert modified["type"] == "MODIFIED"
    assert deleted["type"] == "DELETED"
    assert deleted["object"]["metadata"]["resourceVersion"] == str(server.resource_version)


async def test_get_and_objects_return_copies_sorted_by_key(server: FakeApiServer):
    await server.create(pod("b", namespace="kube-system"))
    await server.create(pod("a"))
    await server.create(pod("c"))

    everything = server.objects("v1", "Pod")
    default_only = server.objects("v1", "Pod", namespace="default")
    everything[0]["metadata"]["name"] = "mutated"

    assert [
        (o["metadata"]["namespace"], o["metadata"]["name"]) for o in server.objects("v1", "Pod")
    ] == [
        ("default", "a"),
        ("default", "c"),
        ("kube-system", "b"),
    ]
    assert names(default_only) == ["a", "c"]
    assert all(o["kind"] == "Pod" for o in default_only)
    assert server.get("v1", "Pod", "missing", "default") is None


async def test_compact_bounds(server: FakeApiServer):
    with pytest.raises(ValueError, match="current resourceVersion"):
        server.compact(server.resource_version + 1)
    server.compact(2)
    server.compact(1)  # older than already compacted: nothing to do
    server.compact()


async def test_register_resource_conflicts(server: FakeApiServer):
    server.register_resource("example.com", "v1", "widgets", "Widget")
    server.register_resource("example.com", "v1", "widgets", "Widget")  # same again: fine
    with pytest.raises(ValueError, match="conflicts"):
        server.register_resource("example.com", "v1", "widgets", "Gizmo")


WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"


def widget(name: str) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}}


async def test_unregistering_a_resource_is_what_deleting_its_crd_does(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    """Its objects are deleted (a DELETED event each to its watchers), then its watches end
    cleanly, its paths answer the generic 404 and discovery forgets it; other resources
    are untouched. Registered again, it is served afresh, empty."""
    server.register_resource("example.com", "v1", "widgets", "Widget")
    await server.create(widget("a"))
    await server.create(widget("b"))
    await server.create(configmap("cm"))
    params = {"watch": "1", "resourceVersion": str(server.resource_version)}
    async with http.get(WIDGETS, params=params) as response:
        await server.wait_for_watchers(1)
        server.unregister_resource("example.com", "v1", "widgets")
        events = await asyncio.wait_for(EventReader(response).rest(), WAIT)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("DELETED", "a"),
        ("DELETED", "b"),
    ]
    for path in (WIDGETS, "/apis/example.com/v1"):
        async with http.get(path) as response:
            assert response.status == 404, path
            assert (await response.json())["message"] == (
                "the server could not find the requested resource"
            )
    async with http.get("/apis") as response:
        groups = [group["name"] for group in (await response.json())["groups"]]
    assert "example.com" not in groups
    with pytest.raises(KeyError):
        await server.create(widget("c"))
    assert server.get("v1", "ConfigMap", "cm") is not None

    server.register_resource("example.com", "v1", "widgets", "Widget")
    async with http.get(WIDGETS) as response:
        assert response.status == 200
        assert (await response.json())["items"] == []
    await server.create(widget("c"))
    assert names(server.objects("example.com/v1", "Widget")) == ["c"]


async def test_a_resource_whose_objects_have_finalizers_is_not_unregistered(
    server: FakeApiServer,
):
    """kube-apiserver keeps such a CRD terminating until their finalizers are removed."""
    server.register_resource("example.com", "v1", "widgets", "Widget")
    held = widget("held")
    held["metadata"]["finalizers"] = ["example.com/keep"]
    await server.create(held)
    with pytest.raises(ValueError, match="finalizers"):
        server.unregister_resource("example.com", "v1", "widgets")
    assert names(server.objects("example.com/v1", "Widget")) == ["held"]
    with pytest.raises(ValueError, match="built in"):
        server.unregister_resource("", "v1", "pods")
    with pytest.raises(KeyError):
        server.unregister_resource("example.com", "v1", "gizmos")


# --------------------------------------------------------------------------- HTTP writes


async def test_http_create_replace_delete(server: FakeApiServer, core: client.CoreV1Api):
    created = await core.create_namespaced_config_map("default", configmap("cm", k="1"))
    assert created.metadata.resource_version == str(server.resource_version)

    created.data = {"k": "2"}
    replaced = await core.replace_namespaced_config_map("cm", "default", created)
    assert replaced.data == {"k": "2"}
    read = await core.read_namespaced_config_map("cm", "default")
    assert read.metadata.resource_version == replaced.metadata.resource_version

    status = await core.delete_namespaced_config_map("cm", "default")
    assert status.status == "Success"
    assert status.details.name == "cm"
    assert status.details.uid == created.metadata.uid
    assert server.get("v1", "ConfigMap", "cm", "default") is None


async def test_http_delete_of_a_pod_returns_the_pod(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    await server.create(pod("a"))
    async with http.delete(f"{PODS}/a") as response:
        body = await response.json()
    assert response.status == 200
    assert body["kind"] == "Pod"
    assert body["metadata"]["resourceVersion"] == str(server.resource_version)


async def test_http_create_refusals(server: FakeApiServer, http: aiohttp.ClientSession):
    async def post(path: str, obj: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with http.post(path, json=obj) as response:
            return response.status, await response.json()

    await server.create(configmap("dup"))
    cases = [
        (CONFIGMAPS, configmap("dup"), 409, "AlreadyExists"),
        (CONFIGMAPS, configmap("x", namespace="kube-system"), 400, "BadRequest"),
        ("/api/v1/namespaces/nope/configmaps", configmap("x", namespace="nope"), 404, "NotFound"),
        (CONFIGMAPS, {**configmap("x"), "kind": "Secret"}, 400, "BadRequest"),
        (CONFIGMAPS, {"metadata": {}}, 422, "Invalid"),
        ("/api/v1/configmaps", configmap("x"), 405, "MethodNotAllowed"),
    ]
    for path, obj, code, reason in cases:
        got_code, body = await post(path, obj)
        assert (got_code, body["reason"]) == (code, reason), (path, obj, body)
    json_type = {"Content-Type": "application/json"}
    async with http.post(CONFIGMAPS, data=b"{not json", headers=json_type) as response:
        assert response.status == 400
    # A body the fake cannot decode (it decodes JSON only): 415, as NegotiateInputSerializer.
    for content_type in ("application/octet-stream", "application/vnd.kubernetes.protobuf"):
        headers = {"Content-Type": content_type}
        async with http.post(CONFIGMAPS, data=b"\x00", headers=headers) as response:
            assert response.status == 415
            assert (await response.json())["message"] == (
                "the body of the request was in an unknown format - accepted media types "
                "include: application/json"
            )


async def test_http_replace_refusals(server: FakeApiServer, core: client.CoreV1Api):
    created = await server.create(configmap("cm"))
    stale = {**created, "data": {"a": "b"}}
    await server.replace({**created, "data": {"x": "y"}})
    with pytest.raises(client.ApiException) as conflict:
        await core.replace_namespaced_config_map("cm", "default", stale)
    with pytest.raises(client.ApiException) as renamed:
        await core.replace_namespaced_config_map("other", "default", created)
    assert conflict.value.status == 409
    assert status_of(conflict.value)["reason"] == "Conflict"
    assert renamed.value.status == 400


async def test_http_merge_patch(server: FakeApiServer, http: aiohttp.ClientSession):
    await server.create(configmap("cm", a="1", b="2"))
    headers = {"Content-Type": "application/merge-patch+json"}
    async with http.patch(
        f"{CONFIGMAPS}/cm", json={"data": {"a": None, "c": "3"}}, headers=headers
    ) as r:
        body = await r.json()
    async with http.patch(
        f"{CONFIGMAPS}/cm", json={"data": {}}, headers={"Content-Type": "application/json"}
    ) as unsupported:
        assert unsupported.status == 415
    assert r.status == 200
    assert body["data"] == {"b": "2", "c": "3"}


async def test_http_object_not_found(core: client.CoreV1Api):
    with pytest.raises(client.ApiException) as caught:
        await core.read_namespaced_pod("ghost", "default")
    assert caught.value.status == 404
    assert status_of(caught.value)["details"] == {"name": "ghost", "kind": "pods"}


async def test_http_and_python_writes_share_one_store(server: FakeApiServer, api: client.ApiClient):
    apps = client.AppsV1Api(api)
    spec = {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": spec,
    }
    await apps.create_namespaced_deployment("default", deployment)
    stored = server.get("apps/v1", "Deployment", "web", "default")
    assert stored is not None
    assert stored["spec"] == spec
    with pytest.raises(StatusError):
        await server.create(deployment)


# --------------------------------------------------------------------------- large objects


async def test_objects_of_several_mib(
    server: FakeApiServer, core: client.CoreV1Api, http: aiohttp.ClientSession
):
    big = "x" * (5 * 1024 * 1024)
    now = str(server.resource_version)
    async with http.get(CONFIGMAPS, params={"watch": "1", "resourceVersion": now}) as response:
        body = io.BytesIO(orjson.dumps(configmap("big", blob=big)))
        headers = {"Content-Type": "application/json"}
        async with http.post(CONFIGMAPS, data=body, headers=headers) as created:
            assert created.status == 201
        event = await EventReader(response).next()
    listed = await core.list_namespaced_config_map("default")
    await server.create(configmap("big2", blob=big))

    assert event["object"]["data"]["blob"] == big
    assert listed.items[0].data["blob"] == big
    assert len(server.objects("v1", "ConfigMap")) == 2


# --------------------------------------------------------------------------- request log


async def test_request_log_records_method_path_and_query(
    server: FakeApiServer, core: client.CoreV1Api
):
    await core.list_namespaced_pod("default", limit=5, label_selector="app=web")
    entry = server.requests[-1]
    assert entry.method == "GET"
    assert entry.path == PODS
    assert dict(entry.query) == {"labelSelector": "app=web", "limit": "5"}
    assert entry.watch is False


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        (PODS, {"watch": "true"}, True),
        (PODS, {"watch": ""}, True),
        (PODS, {"watch": "0"}, False),
        (PODS, {"watch": "False"}, False),
        ("/api/v1/watch/pods", {}, True),
        ("/apis/apps/v1/watch/namespaces/x/deployments", {}, True),
        ("/api/v1/namespaces/watch/pods", {}, False),
    ],
)
def test_recorded_request_watch_flag(path: str, query: dict[str, str], expected: bool):
    assert RecordedRequest("GET", path, query).watch is expected


async def test_wait_for_request(server: FakeApiServer, core: client.CoreV1Api):
    start = server.request_count
    waiter = asyncio.create_task(
        server.wait_for_request(lambda r: r.query.get("limit") == "2", start=start)
    )
    await core.list_namespaced_pod("default")
    await core.list_namespaced_pod("default", limit=2)
    found = await waiter
    assert found.query["limit"] == "2"
    assert server.requests.index(found) == start + 1

    with pytest.raises(TimeoutError):
        await server.wait_for_request(lambda r: r.method == "POST", start=start, timeout=0.05)


async def test_request_log_is_bounded():
    log = RequestLog(maxlen=3)
    for i in range(5):
        log.append(RecordedRequest("GET", f"/{i}", {}))
    assert [r.path for r in log] == ["/2", "/3", "/4"]
    assert log.total == 5
    found = await log.wait_for(lambda r: True, start=0, within=1)
    assert found.path == "/2"
    later = asyncio.create_task(log.wait_for(lambda r: r.path == "/5", start=5, within=WAIT))
    log.append(RecordedRequest("GET", "/5", {}))
    assert (await later).path == "/5"


async def test_active_watches_and_wait_for_watchers(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    assert server.active_watches == 0
    params = {"watch": "1", "timeoutSeconds": "30"}
    async with http.get(PODS, params=params), http.get(CONFIGMAPS, params=params):
        await server.wait_for_watchers(2)
        assert server.active_watches == 2
        assert server.open_connections == 2
    with pytest.raises(TimeoutError):
        await server.wait_for_watchers(5, timeout=0.05)


async def test_a_watch_ended_by_the_server_is_no_longer_active(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    async with http.get(PODS, params={"watch": "1", "timeoutSeconds": "1"}) as response:
        assert server.active_watches == 1
        await EventReader(response).rest()
        assert server.active_watches == 0


async def test_custom_resources_refuse_unconditional_updates(server: FakeApiServer):
    server.register_resource("example.com", "v1", "widgets", "Widget")
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    created = await server.create(widget)
    with pytest.raises(StatusError) as caught:
        await server.replace({**widget, "spec": {"size": 1}})
    replaced = await server.replace({**created, "spec": {"size": 1}})

    assert caught.value.code == 422
    assert caught.value.message == (
        'widgets.example.com "w" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
        "must be specified for an update"
    )
    assert replaced["spec"] == {"size": 1}


async def test_get_defaults_to_the_default_namespace(server: FakeApiServer):
    await server.create(pod("a"))
    found = server.get("v1", "Pod", "a")
    assert found is not None
    assert found["metadata"]["namespace"] == "default"


async def test_api_group_document(server: FakeApiServer, http: aiohttp.ClientSession):
    async with http.get("/apis/apps") as response:
        body = await response.json()
    assert body["kind"] == "APIGroup"
    assert body["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
