"""Watch framing: events split across chunks, several per chunk, and the line cap."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from listwatch._framing import LineFramer, LineTooLong


def feed_all(framer: LineFramer, chunks: list[bytes]) -> list[bytes]:
    return [line for chunk in chunks for line in framer.feed(chunk)]


def test_several_lines_in_one_chunk() -> None:
    framer = LineFramer(100)
    assert feed_all(framer, [b'{"a":1}\n{"b":2}\n{"c"']) == [b'{"a":1}', b'{"b":2}']
    assert framer.pending == 4
    assert feed_all(framer, [b":3}\n"]) == [b'{"c":3}']
    assert framer.pending == 0


def test_one_line_over_many_chunks() -> None:
    framer = LineFramer(100)
    assert feed_all(framer, [b"ab", b"cd", b"", b"ef"]) == []
    assert feed_all(framer, [b"g\nh"]) == [b"abcdefg"]


def test_empty_lines_are_skipped() -> None:
    assert feed_all(LineFramer(10), [b"\n\nx\n\n"]) == [b"x"]


@given(
    lines=st.lists(
        st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=20
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
)
def test_any_chunking_gives_the_same_lines(lines: list[bytes], cuts: list[int]) -> None:
    lines = [line for line in lines if line]
    stream = b"".join(line + b"\n" for line in lines)
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points)]
    framer = LineFramer(64)
    assert feed_all(framer, chunks) == lines
    assert framer.pending == 0


def test_a_line_over_the_cap_is_refused_before_it_is_whole() -> None:
    framer = LineFramer(10)
    assert feed_all(framer, [b"0123456"]) == []
    with pytest.raises(LineTooLong) as caught:
        feed_all(framer, [b"789abc"])
    assert caught.value.size == 13
    assert caught.value.head == b"0123456789abc"
    assert framer.pending == 0


def test_a_line_exactly_at_the_cap_passes() -> None:
    assert feed_all(LineFramer(5), [b"12345\n"]) == [b"12345"]
    with pytest.raises(LineTooLong):
        feed_all(LineFramer(5), [b"123456\n"])
