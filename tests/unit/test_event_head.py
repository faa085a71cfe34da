"""The watch's head-only keying (``resource.decode_event``) against the full decoder.

A line in the server's layout is keyed from its first bytes and the rest is read with the
object. These properties hold it to the full decoder (``decode_full``: msgspec reads every
byte at once) on generated objects in kube-apiserver's member order and on perturbed lines:
whatever the head-only path hands out must be what the full decoder says, or reading the
object must raise what the full decoder raised when the line arrived (MalformedEvent for a
line that is not what its head says).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from listwatch._kube.resource import ReadHabit, decode_event, decode_full
from listwatch._models import Event, EventType
from listwatch.errors import ListWatchError, MalformedEvent

_NAMES = st.text(min_size=1, max_size=12) | st.from_regex(
    r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True
)
_METADATA_AFTER_RV = ["generation", "creationTimestamp", "labels", "annotations", "managedFields"]


@st.composite
def server_objects(draw: st.DrawFn) -> dict[str, Any]:
    """An object as kube-apiserver writes a built-in one: kind, apiVersion, metadata first,
    metadata in ObjectMeta's order, any member optional where Go omits empty ones."""
    metadata: dict[str, Any] = {"name": draw(_NAMES)}
    if draw(st.booleans()):
        metadata["generateName"] = draw(_NAMES)
    if draw(st.booleans()):
        metadata["namespace"] = draw(_NAMES | st.just(""))
    if draw(st.booleans()):
        metadata["selfLink"] = draw(_NAMES)
    if draw(st.booleans()):
        metadata["uid"] = draw(_NAMES)
    metadata["resourceVersion"] = draw(st.from_regex(r"[0-9]{1,12}", fullmatch=True) | _NAMES)
    for member in draw(st.lists(st.sampled_from(_METADATA_AFTER_RV), unique=True, max_size=3)):
        metadata[member] = draw(
            st.integers(-(2**63), 2**63 - 1) | st.dictionaries(_NAMES, _NAMES, max_size=2)
        )
    obj: dict[str, Any] = {}
    if draw(st.booleans()):
        obj["kind"] = draw(_NAMES)
    if draw(st.booleans()):
        obj["apiVersion"] = draw(_NAMES)
    obj["metadata"] = metadata
    if draw(st.booleans()):
        obj["spec"] = draw(
            st.recursive(
                st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _NAMES,
                lambda inner: (
                    st.lists(inner, max_size=3) | st.dictionaries(_NAMES, inner, max_size=3)
                ),
                max_leaves=8,
            )
        )
    return obj


def server_line(obj: dict[str, Any], type_: str) -> bytes:
    return orjson.dumps({"type": type_, "object": obj})


_TYPES = st.sampled_from(["ADDED", "MODIFIED", "DELETED"])
_BYTES = st.sampled_from([*b'"{}[],:\\ 0aZ', 0x00, 0x1F, 0x80, 0xC3, 0xFF])


@st.composite
def perturbed(draw: st.DrawFn, line: bytes) -> bytes:
    """``line`` with one damage that a server or a proxy could do, or a hostile one."""
    at = draw(st.integers(0, len(line)))
    how = draw(st.sampled_from(["delete", "insert", "replace", "cut", "member", "duplicate"]))
    if how == "delete":
        return line[:at] + line[at + 1 :]
    if how == "insert":
        return line[:at] + bytes([draw(_BYTES)]) + line[at:]
    if how == "replace":
        return line[:at] + bytes([draw(_BYTES)]) + line[at + 1 :]
    if how == "cut":
        return line[:at] + b"}}"
    if how == "member":  # a member put anywhere in the metadata or the object
        member = draw(st.sampled_from(["name", "namespace", "resourceVersion", "uid", "metadata"]))
        value = orjson.dumps(draw(_NAMES | st.integers(-(2**63), 2**63 - 1) | st.none()))
        text = b'"' + member.encode() + b'":' + value
        where = line.find(b'"metadata":{')
        cut = draw(st.sampled_from([where + 12, len(line) - 2]))
        comma = b"," if cut == len(line) - 2 else b""
        return line[:cut] + comma + text + (b"" if comma else b",") + line[cut:]
    # "duplicate": the envelope's type written twice, the second one last
    return (
        line[:-1]
        + b',"type":'
        + orjson.dumps(draw(st.sampled_from(["ERROR", "DELETED", "X"])))
        + b"}"
    )


def outcome(decode: Any, line: bytes, read: str) -> tuple[str, Any]:
    """("ok", (type, key, rv, value read)) or ("raise", the exception's class)."""
    try:
        event: Event = decode(line)
        value = event.parse() if read == "parse" else event.json
    except (ListWatchError, ValueError) as exc:
        return "raise", type(exc)
    return "ok", (event.type, event.key, event.resource_version, value)


def assert_agrees(line: bytes) -> None:
    for read in ("json", "parse"):
        head, full = outcome(decode_event, line, read), outcome(decode_full, line, read)
        if head != full:
            # The only other answer allowed: the line is not what its head said, found
            # when the object was read.
            assert head == ("raise", MalformedEvent), (read, head, full)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(server_objects(), _TYPES)
def test_a_line_in_the_server_layout_is_keyed_from_its_head_as_the_full_decoder_keys_it(
    obj: dict[str, Any], type_: str
) -> None:
    line = server_line(obj, type_)
    event, full = decode_event(line), decode_full(line)
    assert (event.type, event.key, event.resource_version) == (
        full.type,
        full.key,
        full.resource_version,
    )
    assert event.json == full.json
    assert event.parse() == obj
    if event.uid:
        assert event.uid == obj["metadata"]["uid"]
    assert_agrees(line)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), server_objects(), _TYPES)
def test_a_damaged_line_is_refused_as_the_full_decoder_refuses_it(
    data: st.DataObject, obj: dict[str, Any], type_: str
) -> None:
    assert_agrees(data.draw(perturbed(server_line(obj, type_))))


@pytest.mark.parametrize(
    "line",
    [
        # a namespace after the head: the head does not end in the server's order
        b'{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"1",'
        b'"namespace":"n"}}}',
        # a second name at the end of metadata: last one wins in every JSON parser here
        b'{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"1",'
        b'"labels":{},"name":"b"}}}',
        # a second metadata member
        b'{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"1"},'
        b'"metadata":{"name":"b","resourceVersion":"1"}}}',
        # an escape in the name
        b'{"type":"ADDED","object":{"metadata":{"name":"a\\u0062","resourceVersion":"1"}}}',
        # a name that is not UTF-8
        b'{"type":"ADDED","object":{"metadata":{"name":"a\xff","resourceVersion":"1"}}}',
        # a body that is not JSON behind a good head
        b'{"type":"MODIFIED","object":{"metadata":{"name":"a","resourceVersion":"1"},x}}',
    ],
    ids=[
        "late-namespace",
        "duplicate-name",
        "duplicate-metadata",
        "escape",
        "not-utf8",
        "bad-body",
    ],
)
def test_a_head_that_does_not_answer_alone_changes_nothing_a_receiver_sees(line: bytes) -> None:
    assert_agrees(line)


@example(b'{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"1"},"x":1},"y":2}')
@given(st.just(b'{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"1"}}}'))
def test_members_after_the_object_are_not_taken_for_part_of_it(line: bytes) -> None:
    assert_agrees(line)


def test_the_uid_comes_with_the_key_and_is_unknown_where_the_line_has_none() -> None:
    built_in = decode_event(
        b'{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p",'
        b'"namespace":"n","uid":"u-1","resourceVersion":"5","creationTimestamp":null}}}'
    )
    assert (built_in.key, built_in.uid) == ("n/p", "u-1")
    custom = decode_event(  # sorted keys, as custom resources come: msgspec's pass reads it
        b'{"type":"ADDED","object":{"apiVersion":"x/v1","kind":"X","metadata":{'
        b'"name":"p","namespace":"n","resourceVersion":"5","uid":"u-1"}}}'
    )
    assert (custom.key, custom.uid) == ("n/p", "u-1")
    assert custom.object["metadata"]["uid"] == "u-1"
    untyped = decode_event(  # no kind: still the server's order, but no uid
        b'{"type":"DELETED","object":{"metadata":{"name":"p","resourceVersion":"6"}}}'
    )
    assert (untyped.type, untyped.key, untyped.uid) == (EventType.DELETED, "p", "")


_BROKEN_BEHIND_A_GOOD_HEAD = (
    b'{"type":"MODIFIED","object":{"metadata":{"name":"a","resourceVersion":"1"},x}}'
)
_GOOD = b'{"type":"MODIFIED","object":{"metadata":{"name":"a","resourceVersion":"2"}}}'


def test_once_a_receiver_reads_bytes_lines_are_read_whole_when_they_arrive() -> None:
    habit = ReadHabit()
    parsed = decode_event(_GOOD, habit)
    assert parsed.parse()["metadata"]["resourceVersion"] == "2"
    late = decode_event(_BROKEN_BEHIND_A_GOOD_HEAD, habit)  # keyed from its head
    assert late.key == "a"
    decode_event(_GOOD, habit).json  # noqa: B018 - the receiver now reads bytes
    with pytest.raises(MalformedEvent, match="is not a watch event"):
        decode_event(_BROKEN_BEHIND_A_GOOD_HEAD, habit)
    with pytest.raises(MalformedEvent, match="is not a watch event"):
        late.json  # noqa: B018 - what was keyed from its head is still checked when read


def test_a_receiver_that_goes_back_to_parsing_gets_lines_keyed_from_their_head_again() -> None:
    habit = ReadHabit()
    decode_event(_GOOD, habit).json  # noqa: B018
    decode_event(_GOOD, habit).object  # noqa: B018
    event = decode_event(_BROKEN_BEHIND_A_GOOD_HEAD, habit)
    with pytest.raises(MalformedEvent, match="is not a watch event"):
        event.parse()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), server_objects(), _TYPES, st.booleans())
def test_either_habit_hands_out_what_the_full_decoder_does(
    data: st.DataObject, obj: dict[str, Any], type_: str, as_bytes: bool
) -> None:
    habit = ReadHabit()
    habit.as_bytes = as_bytes
    line = data.draw(perturbed(server_line(obj, type_)) | st.just(server_line(obj, type_)))
    for read in ("json", "parse"):
        before = habit.as_bytes
        head = outcome(lambda raw: decode_event(raw, habit), line, read)
        habit.as_bytes = before
        full = outcome(decode_full, line, read)
        assert head == full or head == ("raise", MalformedEvent), (read, head, full)
