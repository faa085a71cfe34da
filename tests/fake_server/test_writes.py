"""Writes: fieldValidation, JSON patch, refused patch types, refused dry runs (raw HTTP)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from listwatch.testing import FakeApiServer
from tests.objects import configmap

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
JSON = {"Content-Type": "application/json"}
DUPLICATED = (
    b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","labels":{"a":"1","a":"2"}},'
    b'"data":{"k":"v"},"data":{"k":"w"}}'
)


async def send(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    data: bytes,
    *,
    content_type: str = "application/json",
    **params: str,
) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
    headers = {"Content-Type": content_type}
    async with http.request(method, path, data=data, headers=headers, params=params) as response:
        return response, await response.json()


# --------------------------------------------------------------------------- fieldValidation


async def test_strict_refuses_duplicate_fields_on_create(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    response, body = await send(http, "POST", CONFIGMAPS, DUPLICATED, fieldValidation="Strict")
    assert response.status == 400
    assert body["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: '
        'duplicate field "metadata.labels.a", duplicate field "data"'
    )
    assert server.objects("v1", "ConfigMap") == []


@pytest.mark.parametrize("directive", ["Warn", None])
async def test_warn_keeps_the_last_value_and_says_so(
    server: FakeApiServer, http: aiohttp.ClientSession, directive: str | None
):
    params = {"fieldValidation": directive} if directive else {}
    response, body = await send(http, "POST", CONFIGMAPS, DUPLICATED, **params)
    assert response.status == 201
    assert body["metadata"]["labels"] == {"a": "2"}
    assert body["data"] == {"k": "w"}
    assert response.headers.getall("Warning") == [
        r'299 - "duplicate field \"metadata.labels.a\"", 299 - "duplicate field \"data\""'
    ]


async def test_ignore_says_nothing(http: aiohttp.ClientSession):
    response, body = await send(http, "POST", CONFIGMAPS, DUPLICATED, fieldValidation="Ignore")
    assert response.status == 201
    assert "Warning" not in response.headers
    assert body["data"] == {"k": "w"}


async def test_strict_on_replace_and_on_a_merge_patch(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    await server.create(configmap("c", k="v"))
    response, body = await send(
        http, "PUT", f"{CONFIGMAPS}/c", DUPLICATED, fieldValidation="Strict"
    )
    assert response.status == 400
    assert "strict decoding error" in body["message"]
    patch = b'{"data":{"k":"1","k":"2"}}'
    response, body = await send(
        http,
        "PATCH",
        f"{CONFIGMAPS}/c",
        patch,
        content_type="application/merge-patch+json; charset=UTF-8",
        fieldValidation="Strict",
    )
    assert response.status == 422
    assert body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "patch"
    assert body["message"].endswith('strict decoding error: duplicate field "data.k"')
    stored = server.get("v1", "ConfigMap", "c")
    assert stored is not None
    assert stored["data"] == {"k": "v"}


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", CONFIGMAPS, "CreateOptions"),
        ("PUT", f"{CONFIGMAPS}/c", "UpdateOptions"),
    ],
)
async def test_an_unknown_directive_is_422(
    server: FakeApiServer, http: aiohttp.ClientSession, method: str, path: str, kind: str
):
    await server.create(configmap("c"))
    data = json.dumps(configmap("c")).encode()
    response, body = await send(http, method, path, data, fieldValidation="Loose")
    assert response.status == 422
    assert body["message"] == (
        f'{kind}.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "Loose": '
        'supported values: "", "Ignore", "Strict", "Warn"'
    )


async def test_dry_run_is_refused_rather_than_written(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    data = json.dumps(configmap("c")).encode()
    response, body = await send(http, "POST", CONFIGMAPS, data, dryRun="All")
    assert response.status == 422
    assert "does not support dry run" in body["message"]
    assert server.objects("v1", "ConfigMap") == []


# --------------------------------------------------------------------------- patches


async def test_json_patch(server: FakeApiServer, http: aiohttp.ClientSession):
    await server.create(configmap("c", k="v"))
    operations = [
        {"op": "test", "path": "/data/k", "value": "v"},
        {"op": "add", "path": "/data/n", "value": "1"},
        {"op": "remove", "path": "/data/k"},
    ]
    response, body = await send(
        http,
        "PATCH",
        f"{CONFIGMAPS}/c",
        json.dumps(operations).encode(),
        content_type="application/json-patch+json",
    )
    assert response.status == 200
    assert body["data"] == {"n": "1"}


@pytest.mark.parametrize(
    "operations",
    [
        [{"op": "test", "path": "/data/k", "value": "other"}],
        [{"op": "remove", "path": "/data/absent"}],
        [{"op": "replace", "path": "/no/such/path", "value": 1}],
    ],
)
async def test_a_json_patch_that_does_not_apply_is_422(
    server: FakeApiServer, http: aiohttp.ClientSession, operations: list[dict[str, Any]]
):
    stored = await server.create(configmap("c", k="v"))
    response, body = await send(
        http,
        "PATCH",
        f"{CONFIGMAPS}/c",
        json.dumps(operations).encode(),
        content_type="application/json-patch+json",
    )
    assert response.status == 422
    assert body["message"] == "the server rejected our request due to an error in our request"
    assert body["details"]["causes"][0]["reason"] == "UnexpectedServerResponse"
    assert body["details"]["causes"][0]["message"]
    assert server.get("v1", "ConfigMap", "c") == stored


@pytest.mark.parametrize("data", [b'{"op": "add"}', b'[{"op": "fly", "path": "/x"}]', b"[not json"])
async def test_an_undecodable_json_patch_is_400(
    server: FakeApiServer, http: aiohttp.ClientSession, data: bytes
):
    await server.create(configmap("c"))
    response, body = await send(
        http, "PATCH", f"{CONFIGMAPS}/c", data, content_type="application/json-patch+json"
    )
    assert response.status == 400
    assert body["reason"] == "BadRequest"


async def test_too_many_json_patch_operations_is_413(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    await server.create(configmap("c"))
    operations = [{"op": "add", "path": f"/data/k{i}", "value": "v"} for i in range(10001)]
    response, body = await send(
        http,
        "PATCH",
        f"{CONFIGMAPS}/c",
        json.dumps(operations).encode(),
        content_type="application/json-patch+json",
    )
    assert response.status == 413
    assert body["message"] == ("The allowed maximum operations in a JSON patch is 10000, got 10001")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
        "application/json",
        "",
    ],
)
async def test_unsupported_patch_types_are_415(
    server: FakeApiServer, http: aiohttp.ClientSession, content_type: str
):
    await server.create(configmap("c"))
    response, body = await send(
        http, "PATCH", f"{CONFIGMAPS}/c", b'{"data":{}}', content_type=content_type
    )
    assert response.status == 415
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the body of the request was in an unknown format - accepted media types "
        "include: application/json-patch+json, application/merge-patch+json",
        "reason": "UnsupportedMediaType",
        "code": 415,
    }
