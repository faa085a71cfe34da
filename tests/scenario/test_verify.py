"""The verdict compares by key, by resourceVersion, by body, and the sync state's RV."""

from __future__ import annotations

from typing import Any

from listwatch.sinks.sqlite import Mirror, SyncState
from listwatch.testing.scenario import compare


def obj(name: str, rv: str, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}, "data": data}


def mirror(objects: dict[str, Any], rv: str = "10") -> Mirror:
    return Mirror(objects, SyncState("pods", rv, 1, 0.0, 0.0))


def test_equal() -> None:
    cluster = {"ns/a": obj("a", "3"), "ns/b": obj("b", "5")}
    comparison = compare(cluster, "10", mirror(dict(cluster)))
    assert comparison.equal
    assert comparison.problems() == []


def test_every_kind_of_difference_is_named() -> None:
    cluster = {"ns/a": obj("a", "3"), "ns/b": obj("b", "5"), "ns/c": obj("c", "7", x="1")}
    held = {"ns/b": obj("b", "4"), "ns/c": obj("c", "7", x="2"), "ns/z": obj("z", "2")}
    comparison = compare(cluster, "10", mirror(held, rv="9"))
    assert not comparison.equal
    assert comparison.missing == ["ns/a"]
    assert comparison.extra == ["ns/z"]
    assert comparison.stale == ["ns/b (5, 4)"]
    assert comparison.different == ["ns/c"]
    problems = "\n".join(comparison.problems())
    assert "1 missing from the mirror: ns/a" in problems
    assert "sync state is at resourceVersion 9, the server at 10" in problems


def test_a_mirror_without_sync_state_is_not_equal() -> None:
    assert not compare({}, "1", Mirror({}, None)).equal
