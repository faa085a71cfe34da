"""PartialObjectMetadata: the Accept header's conversions, over HTTP through kubernetes_asyncio.

Every request goes through ``ApiClient.call_api`` with ``_preload_content=False`` and an
explicit ``Accept``, as listwatch's metadata-only source sends it, so the negotiation is the
server's and the bytes are what a client reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest
from kubernetes_asyncio import client

from listwatch.testing import FakeApiServer, Fault
from tests.objects import configmap, pod

from .helpers import EventReader, summary

PODS = "/api/v1/namespaces/default/pods"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
JSON = "application/json"
POM = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
POM_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
#: client-go's metadata client: protobuf first, then JSON, then plain JSON as a fallback.
CLIENT_GO_LIST = (
    "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
)
CLIENT_GO_WATCH = (
    "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,"
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
)


@asynccontextmanager
async def request(
    api: client.ApiClient,
    path: str,
    accept: str,
    *,
    method: str = "GET",
    query: dict[str, str] | None = None,
) -> AsyncIterator[aiohttp.ClientResponse]:
    response: aiohttp.ClientResponse = await api.call_api(
        path,
        method,
        query_params=list((query or {}).items()),
        header_params={"Accept": accept},
        auth_settings=["BearerToken"],
        _preload_content=False,
    )
    try:
        yield response
    finally:
        response.release()


async def fetch(
    api: client.ApiClient, path: str, accept: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    async with request(api, path, accept, **kwargs) as response:
        body: dict[str, Any] = orjson.loads(await response.read())
        return response.status, body


def partial(obj: dict[str, Any], version: str = "v1") -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": obj["metadata"],
    }


def not_acceptable(message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "NotAcceptable",
        "code": 406,
    }


async def labelled_pods(server: FakeApiServer, count: int) -> list[dict[str, Any]]:
    created = []
    for i in range(count):
        obj = pod(f"p{i}", app="web")
        obj["metadata"]["annotations"] = {"note": str(i)}
        obj["metadata"]["finalizers"] = ["example.com/keep"]
        created.append(await server.create(obj))
    return created


# --------------------------------------------------------------------------- LIST


@pytest.mark.parametrize("accept", [POM_LIST, CLIENT_GO_LIST, f"{POM_LIST},{JSON}"])
async def test_list_as_partial_object_metadata_list(
    server: FakeApiServer, api: client.ApiClient, accept: str
):
    created = await labelled_pods(server, 3)
    code, body = await fetch(api, PODS, accept)
    assert code == 200
    assert body == {
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(server.resource_version)},
        "items": [partial(obj) for obj in created],
    }
    # The whole ObjectMeta, nothing of the object beyond it.
    assert set(body["items"][0]["metadata"]) >= {"labels", "annotations", "finalizers", "uid"}


async def test_paged_partial_list_keeps_continue_and_remaining_item_count(
    server: FakeApiServer, api: client.ApiClient
):
    created = await labelled_pods(server, 5)
    code, first = await fetch(api, PODS, CLIENT_GO_LIST, query={"limit": "2"})
    assert code == 200
    assert first["metadata"]["remainingItemCount"] == 3
    assert first["metadata"]["continue"]
    assert first["items"] == [partial(obj) for obj in created[:2]]
    code, second = await fetch(
        api, PODS, CLIENT_GO_LIST, query={"limit": "2", "continue": first["metadata"]["continue"]}
    )
    assert code == 200
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert second["items"] == [partial(obj) for obj in created[2:4]]


async def test_an_empty_partial_list_has_null_items(server: FakeApiServer, api: client.ApiClient):
    code, body = await fetch(api, PODS, POM_LIST)
    assert code == 200
    assert body["kind"] == "PartialObjectMetadataList"
    assert body["items"] is None  # a fresh Go list with a nil Items slice


async def test_list_as_v1beta1(server: FakeApiServer, api: client.ApiClient):
    created = await server.create(configmap("c"))
    code, body = await fetch(api, CONFIGMAPS, POM_LIST.replace("v=v1", "v=v1beta1"))
    assert code == 200
    assert body["kind"] == "PartialObjectMetadataList"
    assert body["apiVersion"] == "meta.k8s.io/v1beta1"
    assert body["items"] == [partial(created, "v1beta1")]


@pytest.mark.parametrize(
    ("path", "type_name"),
    [
        (PODS, "*core.PodList"),
        ("/apis/apps/v1/namespaces/default/deployments", "*apps.DeploymentList"),
        ("/apis/coordination.k8s.io/v1/namespaces/default/leases", "*coordination.LeaseList"),
        ("/apis/example.com/v1/namespaces/default/widgets", "*unstructured.UnstructuredList"),
    ],
)
async def test_list_as_a_single_partial_object_is_406(
    server: FakeApiServer, api: client.ApiClient, path: str, type_name: str
):
    server.register_resource("example.com", "v1", "widgets", "Widget")
    code, body = await fetch(api, path, f"{POM},{JSON}")
    assert code == 406
    assert body == not_acceptable(
        f"you requested PartialObjectMetadata, but the requested object is a list ({type_name})"
    )


async def test_the_406_comes_after_the_list_errors(server: FakeApiServer, api: client.ApiClient):
    code, body = await fetch(api, PODS, POM, query={"resourceVersion": "x", "limit": "1"})
    assert (code, body["reason"]) == (400, "BadRequest")


# --------------------------------------------------------------------------- negotiation


@pytest.mark.parametrize(
    "accept",
    [
        # Clauses the server cannot serve are skipped; the next one is taken.
        f"{POM_LIST.replace('v=v1', 'v=v2')},{JSON}",
        f"application/json;as=PartialObjectMetadataList;g=k8s.io;v=v1,{JSON}",
        f"application/json;as=Pod;g=;v=v1,{JSON}",
        f"application/json;g=meta.k8s.io;v=v1,{JSON}",
        f"application/json;stream=other;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,{JSON}",
        f"application/yaml;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,{JSON}",
        # Table: the fake has no table convertor (see negotiation.py).
        f"application/json;as=Table;g=meta.k8s.io;v=v1,{JSON}",
        "*/*",
        "application/*",
        "",
        # A lower q loses to a later clause of q 1.
        f"{POM_LIST};q=0.5,{JSON}",
    ],
)
async def test_negotiation_falls_through_to_plain_json(
    server: FakeApiServer, api: client.ApiClient, accept: str
):
    await server.create(pod("a"))
    code, body = await fetch(api, PODS, accept)
    assert code == 200
    assert (body["kind"], body["apiVersion"]) == ("PodList", "v1")
    assert body["items"][0]["spec"]["containers"]


async def test_a_higher_q_wins_over_the_order(server: FakeApiServer, api: client.ApiClient):
    code, body = await fetch(api, PODS, f"{JSON};q=0.9,{POM_LIST}")
    assert (code, body["kind"]) == (200, "PartialObjectMetadataList")


@pytest.mark.parametrize(
    "accept",
    [
        "application/yaml",
        "application/vnd.kubernetes.protobuf",
        "text/plain",
        POM_LIST.replace("v=v1", "v=v1alpha1"),
        "application/json;as=PartialObject;g=meta.k8s.io;v=v1",
        "application/json;sv=v2",
    ],
)
async def test_nothing_servable_is_406(server: FakeApiServer, api: client.ApiClient, accept: str):
    code, body = await fetch(api, PODS, accept)
    assert code == 406
    assert body == not_acceptable("only the following media types are accepted: application/json")


async def test_negotiation_comes_before_not_found(server: FakeApiServer, api: client.ApiClient):
    code, body = await fetch(api, f"{PODS}/missing", "application/yaml")
    assert (code, body["reason"]) == (406, "NotAcceptable")


# --------------------------------------------------------------------------- GET and writes


async def test_get_as_partial_object_metadata(server: FakeApiServer, api: client.ApiClient):
    created = (await labelled_pods(server, 1))[0]
    code, body = await fetch(api, f"{PODS}/p0", f"{POM},{JSON}")
    assert (code, body) == (200, partial(created))


async def test_get_as_a_list_is_406(server: FakeApiServer, api: client.ApiClient):
    await server.create(pod("a"))
    code, body = await fetch(api, f"{PODS}/a", POM_LIST)
    assert code == 406
    assert body == not_acceptable(
        "you requested PartialObjectMetadataList, but the requested object is not a list "
        "(*core.Pod)"
    )


async def test_delete_answers_are_converted_but_a_status_is_not(
    server: FakeApiServer, api: client.ApiClient
):
    await server.create(pod("a"))
    await server.create(configmap("c"))
    code, deleted_pod = await fetch(api, f"{PODS}/a", POM, method="DELETE")
    assert code == 200
    assert deleted_pod["kind"] == "PartialObjectMetadata"
    assert deleted_pod["metadata"]["name"] == "a"
    code, deleted_configmap = await fetch(api, f"{CONFIGMAPS}/c", POM, method="DELETE")
    assert code == 200
    assert (deleted_configmap["kind"], deleted_configmap["status"]) == ("Status", "Success")


# --------------------------------------------------------------------------- WATCH


@pytest.mark.fake_apiserver(bookmark_interval=0.05)
async def test_watch_converts_every_event(server: FakeApiServer, api: client.ApiClient):
    first = await server.create(pod("a", app="web"))
    query = {"watch": "1", "resourceVersion": first["metadata"]["resourceVersion"]}
    query["allowWatchBookmarks"] = "true"
    async with request(api, PODS, CLIENT_GO_WATCH, query=query) as response:
        assert response.status == 200
        reader = EventReader(response)
        second = await server.create(pod("b"))
        changed = await server.replace(
            {**second, "metadata": {**second["metadata"], "labels": {"x": "y"}}}
        )
        deleted = await server.delete(changed)
        events = await reader.take(3)
        assert events == [
            {"type": "ADDED", "object": partial(second)},
            {"type": "MODIFIED", "object": partial(changed)},
            {"type": "DELETED", "object": partial(deleted)},
        ]
        # A write this watch does not see moves its RV on: the next bookmark carries it.
        other = await server.create(configmap("c"))
        bookmark = await reader.next()
    assert bookmark == {
        "type": "BOOKMARK",
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": other["metadata"]["resourceVersion"]},
        },
    }


async def test_streaming_list_converts_the_initial_events_end_bookmark(
    server: FakeApiServer, api: client.ApiClient
):
    created = await server.create(pod("a"))
    query = {
        "watch": "1",
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
    }
    async with request(api, PODS, CLIENT_GO_WATCH, query=query) as response:
        events = await EventReader(response).take(2)
    rv = str(server.resource_version)
    assert events == [
        {"type": "ADDED", "object": partial(created)},
        {
            "type": "BOOKMARK",
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": {
                    "resourceVersion": rv,
                    "annotations": {"k8s.io/initial-events-end": "true"},
                },
            },
        },
    ]


async def test_an_error_event_stays_a_status(server: FakeApiServer, api: client.ApiClient):
    server.inject(Fault.error_event(code=410), path=PODS, watch=True)
    query = {"watch": "1", "resourceVersion": str(server.resource_version)}
    async with request(api, PODS, POM, query=query) as response:
        events = await EventReader(response).rest()
    assert [e["type"] for e in events] == ["ERROR"]
    assert (events[0]["object"]["kind"], events[0]["object"]["code"]) == ("Status", 410)


async def test_watch_asking_for_the_list_form_ends_at_the_first_event(
    server: FakeApiServer, api: client.ApiClient
):
    """The event cannot be encoded as a list: the server ends the stream without it."""
    query = {"watch": "1", "resourceVersion": str(server.resource_version)}
    async with request(api, PODS, f"{POM_LIST},{JSON}", query=query) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == JSON
        await server.wait_for_watchers(1)
        await server.create(pod("a"))
        assert await EventReader(response).rest() == []
    await server.wait_until(lambda s: s.active_watches == 0)


async def test_watch_of_a_custom_resource_as_partial(server: FakeApiServer, api: client.ApiClient):
    server.register_resource("example.com", "v1", "widgets", "Widget")
    path = "/apis/example.com/v1/namespaces/default/widgets"
    query = {"watch": "1", "resourceVersion": str(server.resource_version)}
    async with request(api, path, POM, query=query) as response:
        reader = EventReader(response)
        widget = await server.create(
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
        )
        event = await reader.next()
    assert event == {"type": "ADDED", "object": partial(widget)}
    assert summary([event]) == [("ADDED", "w", widget["metadata"]["resourceVersion"])]
