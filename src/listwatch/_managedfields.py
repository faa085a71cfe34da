"""``strip_managed_fields``: drop ``metadata.managedFields`` before a receiver sees an object.

kube-apiserver records in every object which field manager set which fields
(``metadata.managedFields``, docs/kubernetes-semantics.md#managed-fields): bookkeeping for
server-side apply that a mirror never reads, and a large part of an object's JSON (a fifth
of a scenario pod's bytes: benchmarks/results/managed_fields.md). client-go's informers drop
it with a transform (``cache.TransformStripManagedFields``); so can a Syncer:
``Syncer(..., transform=strip_managed_fields)``. Nothing is stripped unless asked: the
library hands receivers the objects the server sent.

Most receivers forward ``Item.json`` without parsing (the sinks); parsing a pod only to
delete a key and serialise it again would more than triple the client's CPU per object
(measured, decoding to ``.json``: 12 µs a pod without a transform, 40 µs with a dict one,
23 µs with this cut).
So for this one transform ``Item.json`` cuts the member out of the server's bytes
(:func:`strip_json`), and only ``Item.object`` parses. Either way it runs only for objects a
receiver reads: watch events the merger replaces are never touched.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

__all__ = ["strip_json", "strip_managed_fields"]

_KEY = b'"managedFields"'
_MEMBER = _KEY + b":"


def strip_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without ``metadata.managedFields``: a shallow copy when there was something to
    drop (``obj`` itself is left as it was), else ``obj``.

    A ``Transform`` (``Syncer(transform=...)``); to combine it with one of your own, call it
    from yours: ``transform=lambda obj: mine(strip_managed_fields(obj))``.
    """
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or "managedFields" not in metadata:
        return obj
    kept = dict(metadata)
    del kept["managedFields"]
    return {**obj, "metadata": kept}


class _Metadata(msgspec.Struct):
    managedFields: msgspec.Raw = msgspec.Raw()


class _Object(msgspec.Struct):
    metadata: _Metadata = msgspec.field(default_factory=_Metadata)


_decoder = msgspec.json.Decoder(_Object)


def strip_json(raw: bytes) -> bytes:
    """The JSON object ``raw`` without ``metadata.managedFields``, cut from the bytes.

    msgspec finds the member's value (the exact bytes, escapes and all) without building
    any object; the cut is made where ``"managedFields":`` followed by those very bytes
    occurs exactly once. A JSON string cannot hold an unescaped quote, so every occurrence
    is a member of some object; a single one is therefore the metadata's. Anything else (the
    key written with escapes or spaces, or the same member repeated elsewhere in the
    object) falls back to parsing and serialising, which is always right.
    """
    if _KEY not in raw and b"\\u" not in raw:
        return raw  # cannot hold the key, not even written with escapes
    try:
        value = _decoder.decode(raw).metadata.managedFields
    except (msgspec.DecodeError, RecursionError):
        # Not ours to judge: parsing it (Item.object) reports bad JSON, and a receiver keeps
        # an object nested too deep for msgspec as its bytes (_jsonparse.unreadable).
        return raw
    if not value:
        return raw
    start = _only_member(raw, bytes(value))
    if start < 0:
        return orjson.dumps(strip_managed_fields(orjson.loads(raw)))
    end = start + len(_MEMBER) + len(value)
    before = _skip_space_back(raw, start)
    if raw[before - 1] == _COMMA:
        start = before - 1  # `,"managedFields":[...]`: the usual place, last in metadata
    else:
        after = _skip_space(raw, end)
        if after < len(raw) and raw[after] == _COMMA:
            end = after + 1  # `{"managedFields":[...],`
    view = memoryview(raw)
    return b"".join((view[:start], view[end:]))  # one copy, not three


def _only_member(raw: bytes, value: bytes) -> int:
    """Where ``"managedFields":<value>`` starts, if it occurs exactly once; else -1."""
    found = -1
    at = raw.find(_MEMBER)
    while at >= 0:
        if raw.startswith(value, at + len(_MEMBER)):
            if found >= 0:
                return -1
            found = at
        at = raw.find(_MEMBER, at + len(_MEMBER))
    return found


_COMMA = ord(",")
_SPACE = b" \t\r\n"


def _skip_space_back(raw: bytes, index: int) -> int:
    while raw[index - 1] in _SPACE:
        index -= 1
    return index


def _skip_space(raw: bytes, index: int) -> int:
    while index < len(raw) and raw[index] in _SPACE:
        index += 1
    return index
