"""Raw JSON to events and pages: kind filled in, ERROR raised, malformed refused."""

from __future__ import annotations

import orjson
import pytest

from listwatch._kube.resource import decode_event, page_from_list_body, resource_path
from listwatch._models import EventType
from listwatch.errors import MalformedEvent, ResourceExpired


def test_paths() -> None:
    assert resource_path("pods", group=None, version="v1", namespace=None) == "/api/v1/pods"
    assert (
        resource_path("deployments", group="apps", version="v1", namespace="prod")
        == "/apis/apps/v1/namespaces/prod/deployments"
    )


def test_list_items_get_kind_and_api_version() -> None:
    page = page_from_list_body(
        orjson.dumps(
            {
                "kind": "DeploymentList",
                "apiVersion": "apps/v1",
                "metadata": {"resourceVersion": "10", "continue": "abc"},
                "items": [{"metadata": {"name": "a", "namespace": "n", "resourceVersion": "7"}}],
            }
        )
    )
    (item,) = page.items
    assert (item.key, item.resource_version) == ("n/a", "7")
    assert not item.decoded
    # The item's own bytes, with the members the server leaves out spliced in front.
    assert item.json == (
        b'{"kind":"Deployment","apiVersion":"apps/v1",'
        b'"metadata":{"name":"a","namespace":"n","resourceVersion":"7"}}'
    )
    assert item.object["kind"] == "Deployment"
    assert item.object["apiVersion"] == "apps/v1"
    assert page.resource_version == "10"
    assert page.continue_token == "abc"


def test_list_items_that_carry_their_type_are_left_as_sent() -> None:
    sent = b'{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},"spec":{}}'
    body = (
        b'{"kind":"WidgetList","apiVersion":"example.com/v1","metadata":{"resourceVersion":"3"},'
        b'"items":[' + sent + b"]}"
    )
    (item,) = page_from_list_body(body).items
    assert item.json == sent
    assert item.key == "w"


def test_list_without_resource_version_is_refused() -> None:
    with pytest.raises(MalformedEvent, match="resourceVersion"):
        page_from_list_body(b'{"kind": "PodList", "metadata": {}, "items": []}')


def test_list_item_without_a_name_is_refused() -> None:
    body = b'{"kind":"PodList","metadata":{"resourceVersion":"1"},"items":[{"metadata":{}}]}'
    with pytest.raises(MalformedEvent, match=r"metadata\.name"):
        page_from_list_body(body)


def test_list_that_is_not_json_is_refused() -> None:
    with pytest.raises(MalformedEvent, match="not a list"):
        page_from_list_body(b"<html>proxy error</html>")


def test_initial_events_end_bookmark_is_recognised() -> None:
    end = decode_event(
        b'{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":'
        b'{"resourceVersion":"12","annotations":{"k8s.io/initial-events-end":"true"}}}}'
    )
    plain = decode_event(
        b'{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"13"}}}'
    )
    assert (end.initial_events_end, end.resource_version) == (True, "12")
    assert plain.initial_events_end is False


def test_decode_added_and_bookmark() -> None:
    added = decode_event(
        orjson.dumps(
            {
                "type": "ADDED",
                "object": {
                    "kind": "Pod",
                    "metadata": {"name": "p", "namespace": "n", "resourceVersion": "5"},
                },
            }
        )
    )
    assert (added.type, added.key, added.resource_version) == (EventType.ADDED, "n/p", "5")
    bookmark = decode_event(
        b'{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"9"}}}'
    )
    assert (bookmark.type, bookmark.key, bookmark.resource_version) == (EventType.BOOKMARK, "", "9")


def test_error_event_is_raised() -> None:
    line = orjson.dumps(
        {
            "type": "ERROR",
            "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"},
        }
    )
    with pytest.raises(ResourceExpired):
        decode_event(line)


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[1,2]",
        b'{"type":"ADDED"}',
        b'{"type":"NOPE","object":{}}',
        b'{"type":"ADDED","object":{"metadata":{}}}',
    ],
)
def test_malformed_lines(line: bytes) -> None:
    with pytest.raises(MalformedEvent) as caught:
        decode_event(line)
    assert str(len(line)) in str(caught.value) or "metadata.name" in str(caught.value)


def test_watch_objects_are_parsed_only_when_read() -> None:
    event = decode_event(
        b'{"type":"MODIFIED","object":{"kind":"Pod","metadata":{"name":"p","namespace":"n",'
        b'"resourceVersion":"7"},"spec":{"x":1}}}'
    )
    assert not event.decoded
    assert (event.key, event.resource_version) == ("n/p", "7")
    assert event.object["spec"] == {"x": 1}
    assert event.decoded


def test_a_transform_runs_once_on_first_read() -> None:
    calls: list[str] = []

    def strip(obj: dict[str, object]) -> dict[str, object]:
        calls.append("strip")
        obj.pop("spec", None)
        return obj

    raw = decode_event(
        b'{"type":"ADDED","object":{"metadata":{"name":"p","resourceVersion":"1"},"spec":{}}}'
    )
    event = raw.transformed(strip)
    assert calls == []
    assert "spec" not in event.object
    assert "spec" not in event.object
    assert calls == ["strip"]
    decoded = decode_event(
        b'{"type":"ADDED","object":{"metadata":{"name":"p","resourceVersion":"1"},"spec":{}}}'
    )
    decoded.object  # noqa: B018 (parse now)
    assert "spec" not in decoded.transformed(strip).object


def test_a_null_namespace_is_cluster_scoped() -> None:
    event = decode_event(
        b'{"type":"ADDED","object":{"metadata":{"name":"node-1","namespace":null,'
        b'"resourceVersion":"3"}}}'
    )
    assert event.key == "node-1"


_OBJECT = b'{"metadata":{"name":"p","namespace":"n","resourceVersion":"7"},"spec":{"a":"}"}}'


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"MODIFIED","object":' + _OBJECT + b"}",
        b'{"object":' + _OBJECT + b',"type":"MODIFIED"}',
        b'{ "type" : "MODIFIED", "object" : ' + _OBJECT + b" }",
        b'{"type":"MODIFIED","object":' + _OBJECT + b',"x":1}',
    ],
    ids=["server-layout", "reordered", "spaced", "extra-field"],
)
def test_every_layout_gives_the_same_event(line: bytes) -> None:
    event = decode_event(line)
    assert (event.type, event.key, event.resource_version) == (EventType.MODIFIED, "n/p", "7")
    assert event.object == {
        "metadata": {"name": "p", "namespace": "n", "resourceVersion": "7"},
        "spec": {"a": "}"},
    }
