"""The watch hot path by the chunk: framing and decoding cut anywhere, and the stream that
hands the loop one list of events per network chunk."""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from listwatch._framing import LineFramer, LineTooLong
from listwatch._kube.resource import WatchDecoder, WatchStream, decode_event
from listwatch._models import Event, EventType
from listwatch.errors import ConnectionLost, EventTooLarge, MalformedEvent, ResourceExpired


def line(type: str, name: str, rv: int, body: str = "x") -> bytes:
    obj = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv)},
        "spec": {"note": body},
    }
    return orjson.dumps({"type": type, "object": obj})


BOOKMARK = b'{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"50"}}}'
ERROR = orjson.dumps(
    {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
)
# Braces, quotes, escapes and newlines-as-escapes inside strings: nothing a cut may break.
BODIES = ['}{"', "a\\nb", '\\"}', "ünï", "{" * 3]


def stream_lines(count: int) -> list[bytes]:
    lines = [
        line(["ADDED", "MODIFIED", "DELETED"][i % 3], f"p{i % 4}", i + 1, BODIES[i % 5])
        for i in range(count)
    ]
    lines.insert(count // 2, BOOKMARK)
    return lines


def cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    return [stream[a:b] for a, b in itertools.pairwise(points)]


def summary(events: list[Event]) -> list[tuple[EventType, str, str, bytes]]:
    return [(e.type, e.key, e.resource_version, e.json) for e in events]


def deliver(decoder: WatchDecoder, chunks: list[bytes], delivered: list[Event]) -> None:
    """Feed every chunk, as the watch does: each chunk's events are delivered, also when
    its feed raises (they came before the error)."""
    for chunk in chunks:
        events: list[Event] = []
        try:
            decoder.feed(chunk, events)
        finally:
            delivered.extend(events)


# --- framing -----------------------------------------------------------------------------


def test_a_chunk_of_whole_lines_gives_a_list() -> None:
    framer = LineFramer(100)
    assert framer.feed(b'{"a":1}\n{"b":2}\n') == [b'{"a":1}', b'{"b":2}']
    assert framer.pending == 0


def test_a_line_over_the_cap_mid_chunk_carries_the_lines_before_it() -> None:
    framer = LineFramer(5)
    with pytest.raises(LineTooLong) as caught:
        framer.feed(b"ab\n\ncd\n1234567\nef\n")
    assert caught.value.complete == [b"ab", b"cd"]
    assert (caught.value.size, caught.value.head) == (7, b"1234567")


def test_a_tail_over_the_cap_carries_the_whole_lines_of_its_chunk() -> None:
    framer = LineFramer(5)
    with pytest.raises(LineTooLong) as caught:
        framer.feed(b"ab\n123456")
    assert caught.value.complete == [b"ab"]
    assert framer.pending == 0


# --- decoding, cut anywhere --------------------------------------------------------------


@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_any_chunking_decodes_to_the_same_events(cuts: list[int]) -> None:
    lines = stream_lines(12)
    stream = b"".join(item + b"\n" for item in lines)
    decoder = WatchDecoder(1 << 20)
    events: list[Event] = []
    for chunk in cut(stream, cuts):
        decoder.feed(chunk, events)
    decoder.finish()
    assert summary(events) == summary([decode_event(item) for item in lines])


@given(
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40),
    bad=st.sampled_from([b"not json", ERROR, b'{"type":"ADDED","object":{"metadata":{}}}']),
)
def test_the_events_before_a_bad_line_come_out_before_its_error(
    cuts: list[int], bad: bytes
) -> None:
    lines = stream_lines(8)
    before = [decode_event(item) for item in lines[:5]]
    stream = b"".join(item + b"\n" for item in [*lines[:5], bad, *lines[5:]])
    decoder = WatchDecoder(1 << 20)
    delivered: list[Event] = []
    with pytest.raises((MalformedEvent, ResourceExpired)):
        deliver(decoder, cut(stream, cuts), delivered)
    assert summary(delivered) == summary(before)


@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_an_oversized_event_is_refused_after_the_events_before_it(cuts: list[int]) -> None:
    lines = stream_lines(6)
    big = line("MODIFIED", "big", 99, "z" * 600)
    stream = b"".join(item + b"\n" for item in [*lines[:4], big, *lines[4:]])
    decoder = WatchDecoder(500, what="watch /api/v1/pods")
    delivered: list[Event] = []
    with pytest.raises(EventTooLarge, match=r"ns/big .*max_event_bytes=500"):
        deliver(decoder, cut(stream, cuts), delivered)
    assert summary(delivered) == summary([decode_event(item) for item in lines[:4]])


def test_a_response_that_ends_inside_an_event_is_a_lost_connection() -> None:
    decoder = WatchDecoder(1 << 20, what="watch /api/v1/pods")
    events = decoder.feed(line("ADDED", "a", 1) + b"\n" + line("ADDED", "b", 2)[:10], [])
    assert [e.key for e in events] == ["ns/a"]
    with pytest.raises(ConnectionLost, match="ended inside an event"):
        decoder.finish()


# --- the stream ----------------------------------------------------------------------------


class Lists:
    """An inner generator of event lists that records whether it was closed."""

    def __init__(self, lists: list[list[Event]]) -> None:
        self.lists = lists
        self.closed = False

    async def generate(self) -> AsyncGenerator[list[Event], None]:
        try:
            for events in self.lists:
                yield events
        finally:
            self.closed = True


def events_of(count: int) -> list[Event]:
    return [decode_event(line("MODIFIED", f"p{i}", i + 1)) for i in range(count)]


async def test_a_stream_read_one_by_one_then_by_the_chunk_loses_nothing() -> None:
    events = events_of(7)
    inner = Lists([events[:3], events[3:4], events[4:]])
    stream = WatchStream(inner.generate())
    first = [await anext(stream), await anext(stream)]
    rest = [event async for chunk in stream.event_lists() for event in chunk]
    assert [e.key for e in first + rest] == [e.key for e in events]
    assert inner.closed


async def test_a_stream_read_one_by_one_ends_and_closes() -> None:
    events = events_of(4)
    inner = Lists([events[:2], events[2:]])
    stream = WatchStream(inner.generate())
    assert [e.key async for e in stream] == [e.key for e in events]
    assert inner.closed


async def test_closing_a_stream_closes_the_response_reader() -> None:
    inner = Lists([events_of(3)])
    stream = WatchStream(inner.generate())
    await anext(stream)
    await stream.aclose()
    assert inner.closed
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_throwing_into_a_stream_closes_it_and_raises() -> None:
    inner = Lists([events_of(3)])
    stream = WatchStream(inner.generate())
    await anext(stream)
    with pytest.raises(KeyError):
        await stream.athrow(KeyError("stop"))
    assert inner.closed


# --- Item.parse ------------------------------------------------------------------------------


def test_parse_gives_a_fresh_object_and_keeps_none() -> None:
    event = decode_event(line("MODIFIED", "p", 3, "hello"))
    first = event.parse()
    second = event.parse()
    assert first == second
    assert first is not second
    assert first["spec"] == {"note": "hello"}
    assert not event.decoded  # nothing kept
    kept = event.object
    assert event.parse() is kept


def test_parse_applies_the_transform_every_time() -> None:
    calls: list[int] = []

    def strip(obj: dict[str, object]) -> dict[str, object]:
        calls.append(1)
        obj.pop("spec")
        return obj

    event = decode_event(line("MODIFIED", "p", 3)).transformed(strip)
    assert "spec" not in event.parse()
    assert "spec" not in event.parse()
    assert len(calls) == 2
    assert event.json == orjson.dumps(event.parse())


def test_parse_of_an_object_that_is_not_json_raises() -> None:
    event = Event(EventType.MODIFIED, None, "ns/p", "3", raw=b'{"spec":')
    with pytest.raises(ValueError, match="bad JSON"):
        event.parse()
