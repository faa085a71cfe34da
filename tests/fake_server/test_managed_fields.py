"""managedFields: every write through the API is recorded by its field manager, as
kube-apiserver records it; the Python API writes as storage does, without one."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from kubernetes_asyncio import client

from listwatch.testing import FakeApiServer
from tests.objects import configmap, pod

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


async def send(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any,
    *,
    content_type: str = "application/json",
    user_agent: str = "kubectl/v1.36.2 (linux/amd64) kubernetes/abcdef",
    **params: str,
) -> dict[str, Any]:
    headers = {"Content-Type": content_type, "User-Agent": user_agent}
    async with http.request(
        method, path, data=orjson.dumps(body), headers=headers, params=params
    ) as response:
        assert response.status < 300, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


def managers(obj: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (m["manager"], m["operation"], m["fieldsV1"])
        for m in obj["metadata"].get("managedFields", [])
    ]


async def test_a_create_records_every_field_it_sets_under_its_field_manager(
    server: FakeApiServer, core: client.CoreV1Api
):
    created = await core.create_namespaced_config_map(
        "default", configmap("c", k="v"), field_manager="kubectl-create"
    )

    (entry,) = created.metadata.managed_fields
    assert (entry.manager, entry.operation, entry.api_version) == ("kubectl-create", "Update", "v1")
    assert entry.fields_type == "FieldsV1"
    assert entry.fields_v1 == {"f:data": {".": {}, "f:k": {}}}
    assert entry.time is not None
    # Stored, so listed and watched alike.
    (stored,) = server.objects("v1", "ConfigMap")
    assert stored["metadata"]["managedFields"][0]["manager"] == "kubectl-create"
    # The Python API writes as storage does, without a field manager.
    assert "managedFields" not in (await server.create(pod("p")))["metadata"]


async def test_without_a_field_manager_the_user_agent_names_it(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    created = await send(http, "POST", CONFIGMAPS, configmap("c", k="v"))
    assert [m for m, _, _ in managers(created)] == ["kubectl"]


async def test_an_update_takes_the_fields_it_changes_from_the_others(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    await send(http, "POST", CONFIGMAPS, configmap("c", a="1", b="2"), fieldManager="creator")

    patched = await send(
        http,
        "PATCH",
        f"{CONFIGMAPS}/c",
        {"data": {"b": "3", "c": "4"}},
        content_type="application/merge-patch+json",
        fieldManager="editor",
    )

    assert managers(patched) == [
        ("creator", "Update", {"f:data": {".": {}, "f:a": {}}}),
        ("editor", "Update", {"f:data": {"f:b": {}, "f:c": {}}}),
    ]


async def test_a_manager_that_loses_all_its_fields_is_dropped(http: aiohttp.ClientSession):
    await send(http, "POST", CONFIGMAPS, configmap("c", a="1"), fieldManager="creator")
    await send(
        http,
        "PATCH",
        f"{CONFIGMAPS}/c",
        {"data": None, "metadata": {"labels": {"x": "y"}}},
        content_type="application/merge-patch+json",
        fieldManager="editor",
    )
    current = await send(
        http,
        "PATCH",
        f"{CONFIGMAPS}/c",
        [{"op": "add", "path": "/metadata/annotations", "value": {"n": "1"}}],
        content_type="application/json-patch+json",
        fieldManager="third",
    )
    assert [m for m, _, _ in managers(current)] == ["editor", "third"]


async def test_an_update_that_omits_them_keeps_them(http: aiohttp.ClientSession):
    created = await send(http, "POST", CONFIGMAPS, configmap("c", a="1"), fieldManager="creator")

    kept = await send(http, "PUT", f"{CONFIGMAPS}/c", without_managed_fields(created))

    assert kept["metadata"]["managedFields"] == created["metadata"]["managedFields"]
    assert kept["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


@pytest.mark.parametrize("reset", [[], [{}]], ids=["empty", "one-empty-entry"])
async def test_an_update_resets_them_with_an_empty_list_or_entry(
    http: aiohttp.ClientSession, reset: list[Any]
):
    created = await send(http, "POST", CONFIGMAPS, configmap("c", a="1"), fieldManager="creator")
    body = without_managed_fields(created)
    body["metadata"]["managedFields"] = reset

    cleared = await send(http, "PUT", f"{CONFIGMAPS}/c", body, fieldManager="editor")

    assert "managedFields" not in cleared["metadata"]
    assert cleared["data"] == {"a": "1"}


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    return {**obj, "metadata": metadata}
