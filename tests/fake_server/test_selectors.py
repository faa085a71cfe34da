"""Label and field selectors: the grammar, the matching rules, and the 400s over HTTP."""

from __future__ import annotations

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from listwatch.testing import FakeApiServer
from listwatch.testing._selectors import (
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from tests.objects import pod

from .helpers import names, status_of

LABELS = {"app": "web", "tier": "front", "replicas": "3"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app = web", True),
        ("app!=web", False),
        ("app!=db", True),
        ("missing!=x", True),  # != also matches objects without the label
        ("app in (web, db)", True),
        ("app in (db)", False),
        ("app notin (db)", True),
        ("missing notin (db)", True),
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("replicas>2", True),
        ("replicas<3", False),
        ("missing=", False),
        ("example.com/team", False),
    ],
)
def test_label_selector_matching(selector: str, matches: bool):
    assert parse_label_selector(selector).matches(LABELS) is matches


def test_empty_label_value_matches_an_empty_label():
    assert parse_label_selector("flag=").matches({"flag": ""})


@pytest.mark.parametrize(
    "selector",
    [
        "app in (",
        "app in ()",
        "=web",
        "app=web,",
        "app=we b",
        "a b",
        "!",
        "-bad=x",
        "app=" + "v" * 64,
        "replicas>x",
        "app in (a,,b",
        "app ~ x",
    ],
)
def test_label_selector_syntax_errors(selector: str):
    with pytest.raises(SelectorError):
        parse_label_selector(selector)


@pytest.mark.parametrize(
    ("selector", "fields", "matches"),
    [
        ("metadata.name=a", {"metadata.name": "a"}, True),
        ("metadata.name==a", {"metadata.name": "a"}, True),
        ("metadata.name!=a", {"metadata.name": "a"}, False),
        ("metadata.name=a,metadata.name=b", {"metadata.name": "a"}, False),
        ("metadata.namespace=", {"metadata.namespace": ""}, True),
        (r"metadata.name=a\,b", {"metadata.name": "a,b"}, True),
        (r"metadata.name=a\=b", {"metadata.name": "a=b"}, True),
    ],
)
def test_field_selector_matching(selector: str, fields: dict[str, str], matches: bool):
    assert parse_field_selector(selector).matches(fields) is matches


@pytest.mark.parametrize("selector", ["metadata.name", "spec.nodeName=x", r"metadata.name=a\x"])
def test_field_selector_errors(selector: str):
    with pytest.raises(SelectorError):
        parse_field_selector(selector)


async def test_selectors_over_http(server: FakeApiServer, core: client.CoreV1Api):
    await server.create(pod("a", app="web"))
    await server.create(pod("b", app="db"))
    await server.create(pod("c"))
    await server.create(pod("a", namespace="kube-system", app="web"))

    async def listed(**kwargs: str) -> list[str]:
        return names((await core.list_pod_for_all_namespaces(**kwargs)).items)

    assert await listed(label_selector="app=web") == ["a", "a"]
    assert await listed(label_selector="app!=web") == ["b", "c"]
    assert await listed(label_selector="app in (db,web)") == ["a", "b", "a"]
    assert await listed(label_selector="!app") == ["c"]
    assert await listed(field_selector="metadata.namespace=kube-system") == ["a"]
    assert await listed(field_selector="metadata.namespace!=kube-system,metadata.name!=a") == [
        "b",
        "c",
    ]
    assert await listed(field_selector="metadata.name=a", label_selector="app=web") == ["a", "a"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"labelSelector": "app in ("}, None),
        ({"fieldSelector": "spec.nodeName=n1"}, "field label not supported: spec.nodeName"),
        ({"fieldSelector": "nonsense"}, None),
        ({"limit": "ten"}, None),
        ({"timeoutSeconds": "soon", "watch": "1"}, None),
    ],
)
async def test_undecodable_parameters_are_400(
    http: aiohttp.ClientSession, params: dict[str, str], message: str | None
):
    async with http.get("/api/v1/pods", params=params) as response:
        body = await response.json()
    assert response.status == 400
    assert body["reason"] == "BadRequest"
    if message is not None:
        assert body["message"] == message


async def test_bad_label_selector_through_the_typed_client(core: client.CoreV1Api):
    with pytest.raises(ApiException) as caught:
        await core.list_namespaced_pod("default", label_selector="a b c")
    assert caught.value.status == 400
    assert status_of(caught.value)["reason"] == "BadRequest"
