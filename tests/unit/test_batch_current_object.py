"""The events of a batch (and the items of a snapshot) keep one parsed object between them,
the receiver's current one (``Item``, docs/architecture.md#the-watch-hot-path): the identity
and changes of the current dict hold, the others are let go and parse again, equal, when
read again."""

from __future__ import annotations

import weakref
from typing import Any

import orjson
import pytest

from listwatch._kube.resource import decode_event
from listwatch._merger import MergeBuffer
from listwatch._models import Batch, Event, EventType, Item, Snapshot, object_key


class Tracked(dict[str, Any]):
    """A dict a weak reference can point at (a plain dict cannot): what a transform gives."""


def line(name: str, rv: int, note: str = "x") -> bytes:
    obj = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv)},
        "spec": {"note": note},
    }
    return orjson.dumps({"type": "MODIFIED", "object": obj})


def batch_of(*names: str, tracked: bool = False) -> list[Event]:
    events = [decode_event(line(name, rv)) for rv, name in enumerate(names, 1)]
    if tracked:
        events = [event.transformed(Tracked) for event in events]
    batch = Batch({event.key: event for event in events}, str(len(names)))
    return list(batch.events.values())


def test_reading_the_current_object_again_gives_the_same_dict() -> None:
    first, _ = batch_of("a", "b")
    obj = first.object
    assert first.object is obj
    assert first.parse() is obj
    assert first.decoded


def test_a_change_to_the_current_object_is_kept_and_serialised() -> None:
    first, _ = batch_of("a", "b")
    first.object["spec"]["note"] = "changed"
    assert first.object["spec"]["note"] == "changed"
    assert orjson.loads(first.json)["spec"]["note"] == "changed"


def test_reading_another_event_lets_the_previous_object_go() -> None:
    first, second = batch_of("a", "b", tracked=True)
    alive = weakref.ref(first.object)
    assert alive() is not None
    _ = second.object
    assert alive() is None
    assert not first.decoded
    assert second.decoded


def test_a_re_read_after_another_event_parses_an_equal_dict_without_the_changes() -> None:
    first, second = batch_of("a", "b")
    obj = first.object
    expected = orjson.loads(first.json)
    obj["spec"]["note"] = "changed"
    _ = second.object
    again = first.object
    assert again is not obj
    assert again == expected
    assert first.json == orjson.dumps(expected)
    assert first.object is again  # current once more


def test_a_dict_the_receiver_keeps_stays_alive_and_unchanged() -> None:
    events = batch_of("a", "b", "c", tracked=True)
    rows = [event.object for event in events]
    assert [row["metadata"]["name"] for row in rows] == ["a", "b", "c"]
    refs = [weakref.ref(row) for row in rows]
    _ = events[0].object  # parses again; the receiver's dict is not touched
    assert all(ref() is not None for ref in refs)
    assert events[0].object is not rows[0]
    assert events[0].object == rows[0]


def test_parse_and_json_leave_the_current_object_current() -> None:
    first, second = batch_of("a", "b")
    obj = first.object
    assert second.parse() == orjson.loads(second.json)
    assert first.object is obj
    assert not second.decoded


def test_comparing_events_leaves_the_current_object_current() -> None:
    first, second = batch_of("a", "b")
    obj = first.object
    assert first != second
    assert first.object is obj


def test_an_event_outside_a_batch_keeps_its_object() -> None:
    first, second = (decode_event(line(name, rv)) for rv, name in enumerate("ab", 1))
    obj = first.object
    _ = second.object
    assert first.object is obj


def test_events_built_from_dicts_keep_them_in_a_batch() -> None:
    objects = [orjson.loads(line(name, rv))["object"] for rv, name in enumerate("ab", 1)]
    events = [Event.from_object(EventType.MODIFIED, obj) for obj in objects]
    batch = Batch({event.key: event for event in events}, "2")
    first, second = batch.events.values()
    _ = second.object
    assert first.object is objects[0]


def test_a_custom_key_function_parses_once_in_the_merge_and_keeps_the_object() -> None:
    # The merger reads the object before there is a batch: that dict is kept (the old
    # rule), so the receiver does not parse it a second time.
    buffer = MergeBuffer(key=lambda obj: "k:" + object_key(obj))
    for rv, name in enumerate("aab", 1):
        buffer.add(decode_event(line(name, rv, note=f"v{rv}")))
    batch = buffer.take()
    assert batch is not None
    first, second = batch.events.values()
    obj = first.object
    _ = second.object
    assert first.object is obj
    assert list(batch.events) == ["k:ns/a", "k:ns/b"]
    assert obj["spec"]["note"] == "v2"  # the last of the hot key's events


def test_an_object_that_cannot_be_parsed_raises_each_time_and_takes_no_slot() -> None:
    deep = b'{"type":"MODIFIED","object":{"metadata":{"name":"bad","namespace":"ns",'
    deep += b'"resourceVersion":"9"},"spec":' + b"[" * 2000 + b"]" * 2000 + b"}}"
    events = [decode_event(line("a", 1)), decode_event(deep)]
    batch = Batch({event.key: event for event in events}, "9")
    good, bad = batch.events.values()
    obj = good.object
    for _ in range(2):
        with pytest.raises(ValueError, match="ns/bad"):
            _ = bad.object
    assert good.object is obj
    assert b"[[[" in bad.json  # its bytes go on, as a quarantined object's do


# --- the items of a snapshot ---------------------------------------------------------------


async def test_a_snapshots_items_keep_only_the_current_object_across_pages() -> None:
    items = [
        Item(f"ns/{name}", str(rv), raw=orjson.dumps(orjson.loads(line(name, rv))["object"]))
        for rv, name in enumerate("abc", 1)
    ]
    tracked = [item.with_transform(Tracked) for item in items]
    snapshot = Snapshot.of(tracked, "3", page_size=2)  # a, b on one page; c on the next
    seen: list[Item] = []
    refs: list[weakref.ref[dict[str, Any]]] = []
    async for item in snapshot:
        obj = item.object
        assert item.object is obj
        assert all(ref() is None for ref in refs)
        refs.append(weakref.ref(obj))
        seen.append(item)
        del obj
    assert refs[-1]() is not None
    again = seen[0].object
    assert again == orjson.loads(items[0].json)
    assert refs[-1]() is None


async def test_collect_keeps_every_object_it_returns() -> None:
    items = [
        Item(f"ns/{name}", str(rv), raw=orjson.dumps(orjson.loads(line(name, rv))["object"]))
        for rv, name in enumerate("abc", 1)
    ]
    collected = await Snapshot.of(items, "3").collect()
    assert [obj["metadata"]["name"] for obj in collected] == ["a", "b", "c"]


async def test_items_read_by_the_page_keep_their_objects() -> None:
    items = [
        Item(f"ns/{name}", str(rv), raw=orjson.dumps(orjson.loads(line(name, rv))["object"]))
        for rv, name in enumerate("ab", 1)
    ]
    async for page in Snapshot.of(items, "2").pages():
        first, second = page
        obj = first.object
        _ = second.object
        assert first.object is obj
