"""The key of an object that msgspec cannot read: a tolerant scan of the API server's JSON.

``resource`` reads a LIST body or a watch line with msgspec, in one pass that skips what it
does not need. Two things an object may hold make that pass fail, though neither says
anything about the object's key: nesting deeper than msgspec recurses (a ``RecursionError``
at about 1,000 levels; kube-apiserver serves custom resources nested up to 10,000,
docs/kubernetes-semantics.md#size-limits), and bytes that are not UTF-8 in the part msgspec
reads (no kube-apiserver sends them, its encoder writes U+FFFD instead; a broken proxy
might). Failing the LIST or the watch for them would fail every generation of the resource
for as long as the object exists. So where msgspec fails, the same bytes are scanned again
here, without recursion and without decoding what is skipped, for what the loop needs: an
event's type, the object's bytes, its ``kind``, ``apiVersion``, name, namespace and
resourceVersion. The object then goes on as its bytes, like any other; whether a receiver
can keep them as JSON is the receiver's to decide (``listwatch._jsonparse.unreadable``, and
docs/architecture.md#quarantined-objects). What no scan can read (not JSON, no
``metadata.name``) stays the caller's ``MalformedEvent``: the stream is broken, and what it
carried is unknown.

A name or namespace that is not UTF-8 is read with U+FFFD for its bad bytes, so the object
keeps a key (and is named in the warning about it) rather than stopping its resource.

Slower than msgspec (a Python step per string or bracket), and taken only after msgspec
failed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec
import orjson

from listwatch._models import Event, EventType

__all__ = [
    "ListBody",
    "ListMeta",
    "ObjectHead",
    "ObjectMeta",
    "event",
    "item_head",
    "list_body",
    "object_head",
    "object_uid",
]

_SPACE = re.compile(rb"[ \t\r\n]*")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_SCALAR = re.compile(rb"[^ \t\r\n,\]}]+")
_STRUCTURE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_BRACE, _BRACKET, _QUOTE = 0x7B, 0x5B, 0x22  # {, [, "
_OPENERS = frozenset(b"{[")
_CLOSERS = frozenset(b"}]")
_CHANGES = {t.value: t for t in (EventType.ADDED, EventType.MODIFIED, EventType.DELETED)}


class _NotJson(Exception):
    """The scan met something that is not JSON where it looked."""


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """The metadata fields of an object that its key and RV are made of (msgspec's names)."""

    name: str | None = None
    namespace: str | None = None
    resourceVersion: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectHead:
    """An object's type fields and metadata, as ``resource._ItemHead`` holds them."""

    kind: str | None = None
    apiVersion: str | None = None
    metadata: ObjectMeta | None = None


@dataclass(frozen=True, slots=True)
class ListMeta:
    resourceVersion: str | None = None
    continue_: str | None = None


@dataclass(frozen=True, slots=True)
class ListBody:
    """A LIST body as ``resource._ListBody`` holds it: each item its bytes."""

    kind: str | None
    apiVersion: str | None
    metadata: ListMeta | None
    items: list[memoryview]


def event(line: bytes) -> Event | None:
    """The ADDED, MODIFIED or DELETED event of a watch line, its object kept as its bytes;
    None when the line holds no such event that a scan can read."""
    try:
        at = _space(line, 0)
        if line[at : at + 1] != b"{":
            return None
        type_name: str | None = None
        span: tuple[int, int] | None = None
        for key, start, end in _members(line, at):
            if key == b'"type"':
                type_name = _text(line, start, end)
            elif key == b'"object"':
                span = (start, end)
        event_type = _CHANGES.get(type_name or "")
        if event_type is None or span is None or line[span[0]] != _BRACE:
            return None
        metadata = object_head(line, span[0]).metadata
    except _NotJson:
        return None
    if metadata is None or not metadata.name:
        return None
    name, namespace = metadata.name, metadata.namespace
    return Event(
        event_type,
        None,
        f"{namespace}/{name}" if namespace else name,
        metadata.resourceVersion or "",
        raw=memoryview(line)[span[0] : span[1]],
    )


def list_body(body: bytes) -> ListBody | None:
    """A LIST response's fields and its items' bytes; None if a scan cannot read it."""
    try:
        at = _space(body, 0)
        if body[at : at + 1] != b"{":
            return None
        kind = api_version = None
        metadata: ListMeta | None = None
        items: list[memoryview] = []
        view = memoryview(body)
        for key, start, end in _members(body, at):
            if key == b'"kind"':
                kind = _text(body, start, end)
            elif key == b'"apiVersion"':
                api_version = _text(body, start, end)
            elif key == b'"metadata"' and body[start] == _BRACE:
                fields = _strings(body, start, {b'"resourceVersion"', b'"continue"'})
                metadata = ListMeta(fields.get(b'"resourceVersion"'), fields.get(b'"continue"'))
            elif key == b'"items"' and body[start] == _BRACKET:
                items = [view[s:e] for s, e in _elements(body, start)]
    except _NotJson:
        return None
    return ListBody(kind, api_version, metadata, items)


def object_head(data: bytes, at: int = 0) -> ObjectHead:
    """The type fields and metadata of the JSON object that opens at ``at`` of ``data``;
    raises ``_NotJson`` (or use :func:`item_head`) when it cannot be read."""
    kind = api_version = None
    metadata: ObjectMeta | None = None
    for key, start, end in _members(data, at):
        if key == b'"kind"':
            kind = _text(data, start, end)
        elif key == b'"apiVersion"':
            api_version = _text(data, start, end)
        elif key == b'"metadata"' and data[start] == _BRACE:
            fields = _strings(data, start, {b'"name"', b'"namespace"', b'"resourceVersion"'})
            metadata = ObjectMeta(
                fields.get(b'"name"'), fields.get(b'"namespace"'), fields.get(b'"resourceVersion"')
            )
    return ObjectHead(kind, api_version, metadata)


def item_head(raw: memoryview | bytes) -> ObjectHead | None:
    """:func:`object_head` of one LIST item's bytes, or None if a scan cannot read it."""
    data = bytes(raw)
    try:
        at = _space(data, 0)
        if data[at : at + 1] != b"{":
            return None
        return object_head(data, at)
    except _NotJson:
        return None


class _UidMeta(msgspec.Struct, gc=False):
    uid: str | None = None


class _UidHead(msgspec.Struct, gc=False):
    """An object, read for ``metadata.uid`` alone."""

    metadata: _UidMeta | None = None


_UID = msgspec.json.Decoder(_UidHead)


def uid_of(raw: bytes | bytearray | memoryview | str) -> str:
    """The ``metadata.uid`` of an object's JSON; "" when it has none (the server hashes ""
    then). The one reading of it, for the client's filter (``_kube.sharding``) and the
    receivers' ``uid_hash`` alike, so that both put an object in the same shard.

    An object msgspec cannot read (nested past its recursion limit, or not UTF-8 in what
    it reads: a quarantined object) is scanned (``object_uid``), as its key was: its
    metadata's uid, not the first "uid" in the text (an owner reference's, in a custom
    resource's sorted keys), decides its shard, as on the server."""
    try:
        metadata = _UID.decode(raw).metadata
    except (msgspec.DecodeError, RecursionError):
        data = raw.encode() if isinstance(raw, str) else bytes(raw)
        return object_uid(data) or ""
    return (metadata.uid if metadata is not None else None) or ""


def object_uid(raw: memoryview | bytes) -> str | None:
    """The ``metadata.uid`` of an object's bytes (a sharded source's filter,
    ``listwatch._kube.sharding``); None when it has none or a scan cannot read it."""
    data = bytes(raw)
    try:
        at = _space(data, 0)
        if data[at : at + 1] != b"{":
            return None
        for key, start, _ in _members(data, at):
            if key == b'"metadata"' and data[start] == _BRACE:
                return _strings(data, start, {b'"uid"'}).get(b'"uid"')
    except _NotJson:
        return None
    return None


# -- the scan --------------------------------------------------------------------------------


def _space(data: bytes, at: int) -> int:
    found = _SPACE.match(data, at)
    return found.end() if found is not None else at


def _value_end(data: bytes, at: int) -> int:
    """Where the JSON value that starts at ``at`` ends; strings and brackets are the only
    steps, and nothing skipped is decoded."""
    if at >= len(data):
        raise _NotJson
    first = data[at]
    if first == _QUOTE:
        string = _STRING.match(data, at)
        if string is None:
            raise _NotJson
        return string.end()
    if first in _OPENERS:
        depth = 0
        for token in _STRUCTURE.finditer(data, at):
            char = data[token.start()]
            if char in _OPENERS:
                depth += 1
            elif char in _CLOSERS:
                depth -= 1
                if depth == 0:
                    return token.end()
        raise _NotJson
    scalar = _SCALAR.match(data, at)
    if scalar is None:
        raise _NotJson
    return scalar.end()


def _members(data: bytes, at: int) -> Iterator[tuple[bytes, int, int]]:
    """``(key as written, value start, value end)`` of the object that opens at ``at``."""
    at = _space(data, at + 1)
    if data[at : at + 1] == b"}":
        return
    while True:
        key = _STRING.match(data, at)
        if key is None:
            raise _NotJson
        at = _space(data, key.end())
        if data[at : at + 1] != b":":
            raise _NotJson
        start = _space(data, at + 1)
        end = _value_end(data, start)
        yield key.group(), start, end
        at = _space(data, end)
        separator = data[at : at + 1]
        if separator == b"}":
            return
        if separator != b",":
            raise _NotJson
        at = _space(data, at + 1)


def _elements(data: bytes, at: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each element of the array that opens at ``at``."""
    at = _space(data, at + 1)
    if data[at : at + 1] == b"]":
        return
    while True:
        end = _value_end(data, at)
        yield at, end
        at = _space(data, end)
        separator = data[at : at + 1]
        if separator == b"]":
            return
        if separator != b",":
            raise _NotJson
        at = _space(data, at + 1)


def _strings(data: bytes, at: int, wanted: set[bytes]) -> dict[bytes, str]:
    """The string members named in ``wanted`` of the object that opens at ``at``."""
    return {
        key: text
        for key, start, end in _members(data, at)
        if key in wanted and (text := _text(data, start, end)) is not None
    }


def _text(data: bytes, start: int, end: int) -> str | None:
    """A JSON string's text (None for another value); bytes that are not UTF-8 read as
    U+FFFD."""
    token = data[start:end]
    if token[:1] != b'"':
        return None
    try:
        text = orjson.loads(token)
    except orjson.JSONDecodeError:
        return token[1:-1].decode("utf-8", "replace")
    return text if isinstance(text, str) else None
