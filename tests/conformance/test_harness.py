"""The replay's own machinery: what the normalizer abstracts, what the comparison catches."""

from __future__ import annotations

from typing import Any

from tests.conformance.compare import compare
from tests.conformance.normalize import normalize
from tests.conformance.runner import Raw
from tests.conformance.script import Exchange, Relation

UID_A = "0b7c2f1e-4a8b-4c7d-9e2f-1a2b3c4d5e6f"
UID_B = "9f8e7d6c-5b4a-4321-8fed-cba987654321"


def entry(body: Any, *, query: list[list[str]] | None = None, **exchange: Any) -> dict[str, Any]:
    raw = Raw(
        request={
            "method": "GET",
            "path": "/api/v1/namespaces/ns-1/pods",
            "query": query or [],
            "body": None,
        },
        status=200,
        headers={"content-type": "application/json", "audit-id": UID_A, "date": "x"},
        body=body,
    )
    return normalize(Exchange("e", "GET", "/", **exchange), raw, namespace="ns-1", address="h:1")


def pod(name: str, rv: str, uid: str = UID_A) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns-1",
            "uid": uid,
            "resourceVersion": rv,
            "creationTimestamp": "2026-12-06T04:40:20Z",
        }
    }


def test_resource_versions_become_their_rank_so_order_and_equality_survive() -> None:
    body = {"metadata": {"resourceVersion": "900"}, "items": [pod("a", "17"), pod("b", "900")]}
    normalized = entry(body, query=[["resourceVersion", "17"]])
    assert normalized["request"]["query"] == [["resourceVersion", "<rv:1>"]]
    response = normalized["response"]["body"]
    assert response["metadata"]["resourceVersion"] == "<rv:2>"
    assert [i["metadata"]["resourceVersion"] for i in response["items"]] == ["<rv:1>", "<rv:2>"]


def test_names_uids_times_and_rvs_in_messages_are_abstracted() -> None:
    body = {
        "message": f"too old resource version: 5 (40) in ns-1 at h:1, uid {UID_B}",
        "items": [pod("a", "40", UID_B), pod("b", "41", UID_A)],
    }
    normalized = entry(body)["response"]
    assert normalized["body"]["message"] == (
        "too old resource version: <rv:1> (<rv:2>) in <namespace> at <address>, uid <uid:1>"
    )
    first, second = normalized["body"]["items"]
    assert (first["metadata"]["uid"], second["metadata"]["uid"]) == ("<uid:1>", "<uid:2>")
    assert first["metadata"]["creationTimestamp"] == "<time>"
    assert first["metadata"]["namespace"] == "<namespace>"
    assert normalized["headers"] == {"content-type": "application/json"}


def test_the_comparison_finds_values_keys_types_and_lengths_that_differ() -> None:
    real = entry({"kind": "PodList", "items": [pod("a", "1"), pod("b", "2")], "code": 1})
    fake = entry({"kind": "List", "items": [pod("a", "7")], "extra": True, "code": "1"})
    paths = {d.path for d in compare(Exchange("e", "GET", "/"), real, fake)}
    assert paths == {
        "response.body.kind",
        "response.body.items (length)",
        "response.body.extra",
        "response.body.code",
    }


def test_placeholders_compare_by_kind_and_relations_by_rank() -> None:
    relation = Relation(
        "request.query.resourceVersion", "==", "response.body.metadata.resourceVersion"
    )
    exchange = Exchange("e", "GET", "/", relations=(relation,))
    real = entry({"metadata": {"resourceVersion": "5"}}, query=[["resourceVersion", "5"]])
    same = entry({"metadata": {"resourceVersion": "8"}}, query=[["resourceVersion", "8"]])
    newer = entry({"metadata": {"resourceVersion": "9"}}, query=[["resourceVersion", "8"]])
    assert compare(exchange, real, same) == []
    assert [d.path for d in compare(exchange, real, newer)] == [
        "relation request.query.resourceVersion == response.body.metadata.resourceVersion"
    ]


def test_a_subset_list_is_matched_by_key_and_may_hold_less_than_the_real_one() -> None:
    exchange = Exchange("e", "GET", "/", subsets=(("response.body.resources", "name"),))
    real = entry({"resources": [{"name": "pods", "n": 1}, {"name": "pods/log", "n": 2}]})
    fewer = entry({"resources": [{"name": "pods", "n": 1}]})
    wrong = entry({"resources": [{"name": "pods", "n": 3}, {"name": "widgets", "n": 1}]})
    assert compare(exchange, real, fewer) == []
    assert {d.path for d in compare(exchange, real, wrong)} == {
        "response.body.resources[name=pods].n",
        "response.body.resources[name=widgets]",
    }
