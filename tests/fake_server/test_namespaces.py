"""Namespaces: registry defaults, and two-phase deletion with the events a watcher sees."""

from __future__ import annotations

from typing import Any

import aiohttp

from listwatch.testing import FakeApiServer
from tests.objects import configmap, pod

from .helpers import EventReader, summary

NAMESPACES = "/api/v1/namespaces"
PODS = "/api/v1/pods"
CONFIGMAPS = "/api/v1/configmaps"


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


async def watch(http: aiohttp.ClientSession, path: str, rv: int) -> aiohttp.ClientResponse:
    return await http.get(path, params={"watch": "1", "resourceVersion": str(rv)})


async def test_a_created_namespace_gets_the_registry_defaults(http: aiohttp.ClientSession):
    async with http.post(NAMESPACES, json=namespace("team")) as response:
        assert response.status == 201
        created = await response.json()
    assert created["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team"}
    assert created["spec"] == {"finalizers": ["kubernetes"]}
    assert created["status"] == {"phase": "Active"}


async def test_an_update_keeps_spec_finalizers_and_status(server: FakeApiServer):
    created = await server.create(namespace("team"))
    changed = {
        **created,
        "metadata": {**created["metadata"], "labels": {"tier": "gold"}},
        "spec": {"finalizers": []},
        "status": {"phase": "Terminating"},
    }
    updated = await server.replace(changed)
    assert updated["metadata"]["labels"] == {
        "tier": "gold",
        "kubernetes.io/metadata.name": "team",
    }
    assert updated["spec"] == {"finalizers": ["kubernetes"]}
    assert updated["status"] == {"phase": "Active"}


async def test_deleting_a_namespace_deletes_its_content_with_deleted_events(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    await server.create(namespace("team"))
    await server.create(pod("a", "team"))
    await server.create(pod("b", "team"))
    await server.create(configmap("c", "team"))
    kept = await server.create(pod("elsewhere", "default"))
    start = server.resource_version
    pods, configmaps, namespaces = (
        await watch(http, PODS, start),
        await watch(http, CONFIGMAPS, start),
        await watch(http, NAMESPACES, start),
    )
    try:
        async with http.delete(f"{NAMESPACES}/team") as response:
            assert response.status == 200
            answer = await response.json()
        assert answer["status"]["phase"] == "Terminating"
        assert "deletionTimestamp" in answer["metadata"]
        pod_events = await EventReader(pods).take(2)
        configmap_events = await EventReader(configmaps).take(1)
        namespace_events = await EventReader(namespaces).take(3)
    finally:
        for response in (pods, configmaps, namespaces):
            response.release()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in pod_events] == [
        ("DELETED", "a"),
        ("DELETED", "b"),
    ]
    assert summary(configmap_events)[0][:2] == ("DELETED", "c")
    terminating, finalized, deleted = namespace_events
    assert (terminating["type"], terminating["object"]["status"]["phase"]) == (
        "MODIFIED",
        "Terminating",
    )
    assert (finalized["type"], finalized["object"]["spec"]["finalizers"]) == ("MODIFIED", [])
    assert deleted["type"] == "DELETED"
    # Every write has its own RV, in order: the namespace goes last.
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in namespace_events]
    assert rvs == sorted(rvs)
    assert rvs[-1] == server.resource_version
    assert server.get("v1", "Namespace", "team") is None
    assert server.objects("v1", "Pod", "team") == []
    assert server.get("v1", "Pod", "elsewhere", "default") == kept


async def test_content_with_finalizers_keeps_the_namespace_terminating(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    await server.create(namespace("team"))
    guarded = pod("guarded", "team")
    guarded["metadata"]["finalizers"] = ["example.com/hold"]
    await server.create(guarded)
    await server.create(configmap("c", "team"))
    async with http.delete(f"{NAMESPACES}/team") as response:
        assert response.status == 200
    stored = server.get("v1", "Namespace", "team")
    assert stored is not None
    assert stored["status"]["phase"] == "Terminating"
    marked = server.get("v1", "Pod", "guarded", "team")
    assert marked is not None
    assert "deletionTimestamp" in marked["metadata"]
    assert server.objects("v1", "ConfigMap", "team") == []

    # NamespaceLifecycle refuses new content.
    async with http.post(
        "/api/v1/namespaces/team/configmaps", json=configmap("d", "team")
    ) as refused:
        assert refused.status == 403
        body = await refused.json()
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "d" is forbidden: unable to create new content in namespace '
        "team because it is being terminated",
        "reason": "Forbidden",
        "details": {
            "name": "d",
            "kind": "configmaps",
            "causes": [
                {
                    "reason": "NamespaceTerminating",
                    "message": "namespace team is being terminated",
                    "field": "metadata.namespace",
                }
            ],
        },
        "code": 403,
    }

    # Deleting it again changes nothing.
    before = server.resource_version
    async with http.delete(f"{NAMESPACES}/team") as again:
        assert again.status == 200
        assert (await again.json())["status"]["phase"] == "Terminating"
    assert server.resource_version == before

    # The last finalizer goes: the pod is deleted, then the namespace.
    released = {**marked, "metadata": {**marked["metadata"], "finalizers": []}}
    await server.replace(released)
    assert server.get("v1", "Pod", "guarded", "team") is None
    assert server.get("v1", "Namespace", "team") is None


async def test_an_empty_namespace_goes_within_its_delete(server: FakeApiServer):
    created = await server.create(namespace("team"))
    final = await server.delete(created)
    assert final["status"]["phase"] == "Terminating"  # what the registry answered
    assert server.get("v1", "Namespace", "team") is None  # what the controller then did
