"""The parsing edge cases of quarantine: what JSON a mirror can keep as JSON, the tolerant scan
that keys an object msgspec cannot read, the HTTP sync protocol's raw records, and the fold of
what receivers report into a Syncer's status."""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from listwatch import Event, EventType, Item
from listwatch._jsonparse import MAX_DEPTH, nests_deeper_than, unreadable
from listwatch._kube.resource import WatchDecoder, decode_event, page_from_list_body
from listwatch._managedfields import strip_json
from listwatch.errors import MalformedEvent, ProtocolError
from listwatch.httpsync import _wire as protocol
from listwatch.observe import _events as observe
from listwatch.observe._status import StatusTracker

SECRET = "secret-body-text"


def nested(depth: int, leaf: bytes = b"1") -> bytes:
    """An object ``depth`` levels deep, alternating objects and arrays."""
    opening = b"".join(b'{"a":' if level % 2 == 0 else b"[" for level in range(depth))
    closing = b"".join(b"}" if level % 2 == 0 else b"]" for level in reversed(range(depth)))
    return opening + leaf + closing


def configmap(name: bytes, data: bytes, namespace: bytes = b"default", rv: bytes = b"7") -> bytes:
    return (
        b'{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"' + name
        + b'","namespace":"' + namespace + b'","resourceVersion":"' + rv + b'"},"data":'
        + data + b"}"
    )  # fmt: skip


def depth_of(value: Any) -> int:
    stack, deepest = [(value, 1)], 0
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


# -- what a mirror can keep as JSON ----------------------------------------------------------


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(alphabet='{}[]"\\a é'),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet='{}[]"\\ab', max_size=3), children, max_size=3)
    ),
    max_leaves=40,
)


@given(json_values, st.integers(min_value=0, max_value=12))
def test_nesting_is_measured_as_a_parser_measures_it(value: Any, limit: int) -> None:
    """Brackets inside strings (escaped quotes included) are text, not structure."""
    data = orjson.dumps(value)
    assert nests_deeper_than(data, limit) == (depth_of(value) > limit)


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 1025, 2000, 10_000])
def test_the_depth_limit_is_exact_however_deep(depth: int) -> None:
    assert nests_deeper_than(nested(depth), MAX_DEPTH) == (depth > MAX_DEPTH)


def test_many_shallow_brackets_are_not_deep() -> None:
    wide = b"[" + b",".join([nested(20)] * 5000) + b"]"
    assert not nests_deeper_than(wide, MAX_DEPTH)
    strings = orjson.dumps({"dashboard": "{[" * 10_000})
    assert unreadable(strings) is None


def test_a_text_that_is_not_json_gets_an_answer_not_an_error() -> None:
    assert nests_deeper_than(b"[" * 600, MAX_DEPTH)
    assert not nests_deeper_than(b"]" * 600 + b"[" * 600, 1000)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'{"a":"\xc3\xa9t\xc3\xa9"}', None),
        (b'{"a":"x\\u0000y"}', None),  # a NUL is JSON: only PostgreSQL refuses it
        (b'{"a":"' + SECRET.encode() + b'\xff"}', "its JSON is not valid UTF-8 (byte 22)"),
        (b'{"a":"\xed\xa0\x80"}', "its JSON is not valid UTF-8 (byte 6)"),  # a surrogate
        (nested(MAX_DEPTH), None),
        (nested(MAX_DEPTH + 1), f"it nests deeper than {MAX_DEPTH} levels"),
    ],
)
def test_unreadable_says_why_without_quoting(data: bytes, why: str | None) -> None:
    assert unreadable(data) == why


# -- the tolerant scan: the key of an object msgspec cannot read ------------------------------


def watch_line(obj: bytes, type_: bytes = b"ADDED") -> bytes:
    return b'{"type":"' + type_ + b'","object":' + obj + b"}"


def test_an_event_nested_2000_deep_keeps_its_key_and_its_bytes() -> None:
    obj = configmap(b"deep", nested(2000, b'"' + SECRET.encode() + b'"'))
    with pytest.raises(RecursionError):
        msgspec.json.decode(obj)  # what the watch's one pass meets
    event = decode_event(watch_line(obj, b"MODIFIED"))
    assert (event.type, event.key, event.resource_version) == (
        EventType.MODIFIED,
        "default/deep",
        "7",
    )
    assert event.json == obj
    with pytest.raises(ValueError, match=r"^MODIFIED event for default/deep: bad JSON") as caught:
        _ = event.object
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "line",
    [
        # other member order, spaces, another field: msgspec's general path, then the scan
        b'{ "object" : ' + configmap(b"deep", nested(2000)) + b' , "type" : "DELETED" }',
        b'{"type":"DELETED","extra":{"x":[1,{"y":"}]"}]},"object":'
        + configmap(b"deep", nested(2000))
        + b"}",
    ],
)
def test_the_scan_reads_any_layout(line: bytes) -> None:
    event = decode_event(line)
    assert (event.type, event.key) == (EventType.DELETED, "default/deep")
    assert event.json == configmap(b"deep", nested(2000))


def test_bytes_that_are_not_utf8_keep_the_object_keyed() -> None:
    """In the body (msgspec skips it unread) and in the name (msgspec reads it: the scan
    names the object with U+FFFD for the bad byte)."""
    in_body = configmap(b"a", b'{"v":"' + SECRET.encode() + b'\xff"}')
    event = decode_event(watch_line(in_body))
    assert (event.key, event.json) == ("default/a", in_body)
    in_name = configmap(b"b\xffad", b'{"v":"\xc3\x28"}', namespace=b"n\xfe")
    event = decode_event(watch_line(in_name))
    assert (event.key, event.json) == ("n\ufffd/b\ufffdad", in_name)
    assert unreadable(event.json) is not None


@pytest.mark.parametrize(
    "line",
    [
        b"this is not JSON {",
        watch_line(b'{"metadata":{"namespace":"default"},"data":' + nested(2000) + b"}"),
        watch_line(b'{"data":' + nested(2000) + b',"metadata":{"name":"d"}'),  # cut short
        watch_line(configmap(b"deep", nested(2000)), b"BOOKMARK"),
        b'{"type":"ADDED","object":[' + nested(2000) + b"]}",
    ],
    ids=["not-json", "no-name", "cut-short", "deep-bookmark", "not-an-object"],
)
def test_what_no_scan_can_key_is_a_malformed_event(line: bytes) -> None:
    """The stream is broken and what it carried is unknown: the generation relists."""
    with pytest.raises(MalformedEvent, match=r"^watch line of \d+ bytes is not a watch event"):
        decode_event(line)


@pytest.mark.parametrize("read", ["json", "object", "parse"])
def test_a_line_cut_short_behind_a_server_head_is_malformed_when_its_object_is_read(
    read: str,
) -> None:
    """A head in the server's layout keys the event without reading the rest of the line
    (resource.decode_event); the rest is read with the object, and a broken stream is
    then the same MalformedEvent, naming no part of the object's body."""
    body = nested(2000, b'"' + SECRET.encode() + b'"')
    event = decode_event(watch_line(configmap(b"deep", body)[:-1]))
    assert event.key == "default/deep"
    reading = event.parse if read == "parse" else lambda: getattr(event, read)
    with pytest.raises(
        MalformedEvent, match=r"^watch line of \d+ bytes is not a watch event"
    ) as caught:
        reading()
    assert SECRET not in str(caught.value)


def test_a_deep_event_between_others_in_one_chunk() -> None:
    lines = [
        watch_line(configmap(b"a", b"{}")),
        watch_line(configmap(b"deep", nested(3000)), b"MODIFIED"),
        watch_line(configmap(b"b", b"{}"), b"DELETED"),
    ]
    events: list[Event] = []
    WatchDecoder(16 * 1024 * 1024).feed(b"\n".join(lines) + b"\n", events)
    assert [(e.type.value, e.key) for e in events] == [
        ("ADDED", "default/a"),
        ("MODIFIED", "default/deep"),
        ("DELETED", "default/b"),
    ]


def list_body(*items: bytes, kind: bytes = b"ConfigMapList") -> bytes:
    return (
        b'{"kind":"' + kind + b'","apiVersion":"v1","metadata":{"resourceVersion":"10",'
        b'"continue":"next"},"items":[' + b",".join(items) + b"]}"
    )


def test_a_list_page_with_an_item_nested_2000_deep_keys_every_item() -> None:
    """msgspec cannot even cut such a page into items: the scan does, and each item keeps
    its bytes, the missing ``kind``/``apiVersion`` spliced in as for any list item."""
    deep = b'{"metadata":{"name":"deep","namespace":"d","resourceVersion":"8"},"data":'
    deep += nested(2000) + b"}"
    plain = b'{"metadata":{"name":"a","namespace":"d","resourceVersion":"9"},"data":{}}'
    page = page_from_list_body(list_body(plain, deep))
    assert (page.resource_version, page.continue_token) == ("10", "next")
    assert [(i.key, i.resource_version) for i in page.items] == [("d/a", "9"), ("d/deep", "8")]
    prefix = b'{"kind":"ConfigMap","apiVersion":"v1",'
    assert page.items[1].json == prefix + deep[1:]
    assert page.items[0].object["kind"] == "ConfigMap"


def test_a_list_item_whose_name_is_not_utf8_is_keyed() -> None:
    bad = b'{"metadata":{"name":"b\xffd","namespace":"d","resourceVersion":"8"}}'
    (item,) = page_from_list_body(list_body(bad)).items
    assert item.key == "d/b\ufffdd"
    assert unreadable(item.json) is not None


@pytest.mark.parametrize(
    "body",
    [
        list_body(b'{"metadata":{"namespace":"d"},"data":' + nested(2000) + b"}"),
        list_body(configmap(b"deep", nested(2000)))[:-10],
        b"[" + nested(2000) + b"]",
    ],
    ids=["no-name", "cut-short", "not-a-list"],
)
def test_a_list_page_no_scan_can_read_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedEvent):
        page_from_list_body(body)


def test_stripping_managed_fields_leaves_a_deep_object_as_it_came() -> None:
    obj = (
        b'{"metadata":{"name":"deep","managedFields":[{"manager":"m"}]},"data":'
        + nested(2000)
        + b"}"
    )
    assert strip_json(obj) == obj


# -- the wire: raw records --------------------------------------------------------------------


def test_an_object_that_cannot_travel_as_json_goes_as_raw_and_comes_back_byte_for_byte() -> None:
    for data in (configmap(b"a", nested(2000)), configmap(b"a", b'{"v":"\xff"}')):
        record = protocol.encode_object(Item("default/a", "7", raw=data))
        assert record.isascii()
        assert b'"object"' not in record
        item = protocol.decode_object_record(record.rstrip(b"\n"), 1)
        assert (item.key, item.resource_version, item.json) == ("default/a", "7", data)
        event_record = protocol.encode_event(
            "default/a", Event(EventType.MODIFIED, key="default/a", resource_version="8", raw=data)
        )
        event = protocol.decode_event_record(event_record.rstrip(b"\n"), 1)
        assert (event.type, event.json) == (EventType.MODIFIED, data)


def test_a_nul_travels_as_json() -> None:
    data = configmap(b"a", b'{"v":"x\\u0000y"}')
    record = protocol.encode_object(Item("default/a", "7", raw=data))
    assert b',"object":' + data in record


def raw_record(raw: str, *, obj: bytes | None = None) -> bytes:
    record = b'{"key":"default/a","resourceVersion":"1","raw":' + orjson.dumps(raw)
    return record + (b',"object":' + obj if obj is not None else b"") + b"}"


@pytest.mark.parametrize(
    ("record", "why"),
    [
        (raw_record("not base64!"), "record 1: raw is not base64"),
        (raw_record(base64.b64encode(b"[1]").decode()), "could travel as JSON, and are no"),
        (raw_record(base64.b64encode(b"{nope").decode()), "could travel as JSON, and are no"),
        (raw_record("", obj=b"{}"), "record 1: object and raw both given"),
        (b'{"key":"default/a","resourceVersion":"1"}', "needs object or raw"),
    ],
)
def test_a_raw_record_that_breaks_the_rules_is_the_senders_fault(record: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why) as caught:
        protocol.decode_object_record(record, 1)
    assert caught.value.code == 400


def test_raw_bytes_that_could_travel_as_json_are_taken_as_the_object() -> None:
    item = protocol.decode_object_record(raw_record(base64.b64encode(b'{"a":1}').decode()), 1)
    assert item.object == {"a": 1}


def test_a_200_names_at_most_50_quarantined_objects_and_counts_all() -> None:
    kept = {f"default/o{i:03}": "it nests deeper than 512 levels" for i in range(120)}
    details = protocol.quarantine_details(kept)
    body = protocol.status_body(200, "", "", records=120, **details)
    named, count = protocol.quarantined_in(body)
    assert count == 120
    assert len(named) == protocol.MAX_QUARANTINED_NAMED == 50
    assert named == {key: kept[key] for key in sorted(kept)[:50]}
    assert protocol.quarantined_in(protocol.status_body(200, "", "", records=3)) == ({}, 0)
    assert protocol.quarantined_in(b"<html>") == ({}, 0)
    assert protocol.quarantine_details({}) == {}


# -- what a Syncer's status holds of it ------------------------------------------------------


def delivered(events: Iterator[observe.SyncEvent], tracker: StatusTracker) -> dict[str, str]:
    for event in events:
        tracker(event)
    return dict(tracker.status().quarantined)


def test_the_status_holds_what_the_receiver_last_said_of_each_key() -> None:
    tracker = StatusTracker(None)
    tracker(observe.GenerationStarted(1))
    tracker(observe.ReceiverStarted("on_list", 1))
    snapshot = observe.SnapshotDelivered(1, 3, "5", 0.1, {"d/a": "x", "d/b": "y"})
    assert delivered(iter([snapshot]), tracker) == {"d/a": "x", "d/b": "y"}
    view = tracker.status().quarantined

    def batch(kept: dict[str, str], written: set[str]) -> Iterator[observe.SyncEvent]:
        yield observe.ReceiverStarted("on_batch", 1)
        yield observe.BatchDelivered(1, len(written), len(written), "6", 0.1, kept, written)

    # d/a written as JSON (or deleted): released; d/c newly kept; d/b untouched.
    assert delivered(batch({"d/c": "z"}, {"d/a", "d/c", "d/z"}), tracker) == {
        "d/b": "y",
        "d/c": "z",
    }
    assert dict(view) == {"d/a": "x", "d/b": "y"}  # a status already read does not change
    assert delivered(batch({}, {"d/other"}), tracker) == {"d/b": "y", "d/c": "z"}
    tracker(observe.ReceiverStarted("on_list", 2))
    assert delivered(iter([observe.SnapshotDelivered(2, 1, "9", 0.1)]), tracker) == {}


def test_a_random_sequence_of_batches_is_folded_as_a_dict_would_be() -> None:
    rng = random.Random(7)
    tracker, model = StatusTracker(None), {}
    tracker(observe.ReceiverStarted("on_list", 1))
    tracker(observe.SnapshotDelivered(1, 0, "1", 0.0))
    for _ in range(300):
        written = {f"k{rng.randrange(30)}" for _ in range(rng.randrange(6))}
        kept = {key: rng.choice("ab") for key in written if rng.random() < 0.4}
        for key in written:
            model.pop(key, None)
        model.update(kept)
        tracker(observe.ReceiverStarted("on_batch", 1))
        tracker(observe.BatchDelivered(1, len(written), len(written), "2", 0.0, kept, written))
        assert dict(tracker.status().quarantined) == model
