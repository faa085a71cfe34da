"""``strip_managed_fields``: the member goes from the object and from its bytes, nothing else
does, and the bytes are cut without parsing."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from listwatch import Item, _managedfields, strip_managed_fields
from listwatch._kube.resource import decode_event, page_from_list_body
from listwatch._managedfields import strip_json
from listwatch.testing.scenario import numbered_pod

MANAGED = [
    {
        "manager": "kubectl-create",
        "operation": "Update",
        "apiVersion": "v1",
        "time": "2025-01-01T00:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}},
    }
]


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}


def test_the_transform_drops_only_managed_fields_and_leaves_its_argument_alone() -> None:
    pod = numbered_pod(7)
    assert pod["metadata"]["managedFields"]
    before = orjson.dumps(pod)

    stripped = strip_managed_fields(pod)

    assert stripped == without_managed_fields(pod)
    assert orjson.dumps(pod) == before
    bare = {"metadata": {"name": "a"}}
    assert strip_managed_fields(bare) is bare


class NoParsing:
    @staticmethod
    def loads(data: object) -> object:
        raise AssertionError("parsed")


def test_a_list_item_json_is_cut_from_the_server_bytes_without_parsing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_managedfields, "orjson", NoParsing)
    pod = numbered_pod(3)
    body = orjson.dumps(
        {
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": "9"},
            "items": [pod],
        }
    )
    (item,) = page_from_list_body(body).items
    stripped = item.with_transform(strip_managed_fields)

    data = stripped.json

    assert not stripped.decoded
    assert len(data) < len(item.json) - len(orjson.dumps(pod["metadata"]["managedFields"]))
    assert orjson.loads(data) == {"kind": "Pod", "apiVersion": "v1", **without_managed_fields(pod)}
    assert stripped.object == orjson.loads(data)


def test_a_watch_event_is_stripped_when_read_and_not_before() -> None:
    obj = {"metadata": {"name": "p", "resourceVersion": "4", "managedFields": MANAGED}, "x": 1}
    event = decode_event(orjson.dumps({"type": "MODIFIED", "object": obj}))

    stripped = event.transformed(strip_managed_fields)

    assert not stripped.decoded
    assert orjson.loads(stripped.json) == {
        "metadata": {"name": "p", "resourceVersion": "4"},
        "x": 1,
    }
    assert not stripped.decoded
    assert "managedFields" not in stripped.object["metadata"]


def test_the_same_member_elsewhere_in_the_object_is_kept() -> None:
    # A custom resource may have a field of that name, even with the same value.
    obj = {
        "spec": {"managedFields": MANAGED},
        "metadata": {"name": "w", "managedFields": MANAGED, "labels": {"a": "b"}},
        "status": {"managedFields": "x"},
    }
    item = Item("w", "", raw=orjson.dumps(obj)).with_transform(strip_managed_fields)
    assert orjson.loads(item.json) == without_managed_fields(obj)


def test_an_object_without_the_member_keeps_its_bytes() -> None:
    raw = orjson.dumps({"metadata": {"name": "a"}, "data": {"managedFields": "[]"}})
    assert strip_json(raw) == raw


# Values, keys and strings that look like the member without being it.
_text = st.sampled_from(
    ['"managedFields":', "managedFields", '\\"managedFields\\":[]', "x\\", "", '"', "\\u0041"]
) | st.text(max_size=8)
_scalar = st.none() | st.booleans() | st.integers(-5, 5) | _text
_json = st.recursive(
    _scalar,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["managedFields", "a", 'b"managedFields']), inner, max_size=3
        )
    ),
    max_leaves=8,
)


@given(
    managed=st.none() | _json,
    has_member=st.booleans(),
    first=st.booleans(),
    extra=st.dictionaries(st.sampled_from(["name", "labels", "managedFieldz"]), _json, max_size=3),
    rest=st.dictionaries(st.sampled_from(["spec", "status", "managedFields"]), _json, max_size=3),
    indent=st.sampled_from([None, 1]),
    separators=st.sampled_from([(",", ":"), (", ", ": ")]),
    ascii_only=st.booleans(),
)
def test_the_cut_equals_parsing_and_dropping_the_member(
    managed: Any,
    has_member: bool,
    first: bool,
    extra: dict[str, Any],
    rest: dict[str, Any],
    indent: int | None,
    separators: tuple[str, str],
    ascii_only: bool,
) -> None:
    metadata = dict(extra)
    if has_member:
        metadata = (
            {"managedFields": managed, **extra} if first else {**extra, "managedFields": managed}
        )
    obj = {**rest, "metadata": metadata}
    raw = json.dumps(obj, indent=indent, separators=separators, ensure_ascii=ascii_only).encode()

    assert orjson.loads(strip_json(raw)) == without_managed_fields(obj)
