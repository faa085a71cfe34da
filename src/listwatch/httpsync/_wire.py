"""The HTTP sync protocol's wire format: records, their encoding, their limits, their errors.

One module holds every rule of the format, for the sender (``listwatch.httpsync._client``) and the
receiver (``listwatch.httpsync._server``) alike; ``docs/http-sync-protocol.md`` is its prose.

A sync is one POST of newline-delimited JSON (``application/x-ndjson``, optionally gzip):

* ``POST /sync/{resource}/snapshot``: a header record, one record per object, a commit
  record. The body streams (chunked), so any number of objects fits; the receiver applies
  nothing unless the commit record arrives and counts what it read.
* ``POST /sync/{resource}/batch``: a header record, one record per event in order (each
  key at most once: the batch's merged changes), a commit record. Applied in one
  transaction.

``{resource}`` is the resource as kubectl writes it (``pods``, ``deployments.apps``). The
header names the full resource, the stamp (epoch, session, generation, and for a batch its
sequence: ``listwatch.fencing``) and the resourceVersion; an object record carries the
object's JSON as the API server sent it, spliced in as bytes (never parsed on either side).

An error is answered with a ``metav1.Status``-like JSON body, and read back into an
exception, both here: ``status_for`` (the receiver) and ``error_from_answer`` (the sender).

| the receiver raised                  | it answers (code, reason, details)   | the sender raises |
|--------------------------------------|--------------------------------------|-------------------|
| ``StaleEpoch`` (the fence: a newer   | 409 Conflict, cause ``StaleEpoch``,  | ``StaleEpoch``,   |
| leader has written)                  | ``resource``, ``epoch``, ``recorded``| the same fields   |
| ``StaleWrite`` (the fence: an older  | 409 Conflict, cause ``StaleWrite``   | ``StaleWrite``    |
| write of the same sender)            |                                      |                   |
| ``ProtocolError`` (a malformed body, | its ``code`` and ``reason``: 400,    | ``HttpSyncError`` |
| no credentials, a bad path, ...)     | 401, 403, 404, 413, 415              |                   |
| ``LineTooLong`` (a record over       | 413 RequestEntityTooLarge            | ``HttpSyncError`` |
| ``MAX_RECORD_BYTES``)                |                                      |                   |
| anything else (the store failed)     | 503 ServiceUnavailable               | ``HttpSyncError`` |

Only the fence's refusals keep their class across the wire: a sender (and the leader behind
it) must tell "a newer leader writes here" from a failure worth retrying. Every error ends
the sender's generation alike; the next one sends a fresh snapshot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import msgspec
import orjson

from listwatch._framing import LineTooLong
from listwatch._models import Event, EventType, GroupVersionResource, Item
from listwatch.errors import HttpSyncError, ListWatchError, ProtocolError, StaleEpoch, StaleWrite

__all__ = [
    "CONTENT_TYPE",
    "MAX_RECORD_BYTES",
    "PROTOCOL_VERSION",
    "Answer",
    "Commit",
    "Header",
    "ProtocolError",
    "decode_commit",
    "decode_event_record",
    "decode_header",
    "decode_object_record",
    "encode_commit",
    "encode_event",
    "encode_header",
    "encode_object",
    "error_from_answer",
    "status_body",
    "status_for",
]

PROTOCOL_VERSION = 1
CONTENT_TYPE = "application/x-ndjson"
MAX_RECORD_BYTES = 17 * 1024 * 1024
"""One record (an object and its key) may be this large: the watch's 16 MiB event cap plus
room for the envelope. A receiver refuses a longer line before it is whole."""

RESOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
"""``pods``, ``deployments.apps``, ``widgets.example.com``: a plural plus a DNS-style group."""

Kind = Literal["snapshot", "batch"]


@dataclass(frozen=True, slots=True)
class Header:
    """The first record of a sync: what it is, whose it is, and at which resourceVersion."""

    kind: Kind
    resource: GroupVersionResource
    epoch: int
    session: str
    generation: int
    sequence: int
    resource_version: str
    """A streaming list learns its RV only at its end: a snapshot's header may say "" and
    its commit record then carries it."""


@dataclass(frozen=True, slots=True)
class Commit:
    """The last record: how many records came before it, and the final resourceVersion."""

    count: int
    resource_version: str


# -- encoding (the sender) -------------------------------------------------------------------


def encode_header(header: Header) -> bytes:
    resource = header.resource
    return orjson.dumps(
        {
            "listwatch": header.kind,
            "version": PROTOCOL_VERSION,
            "resource": {
                "group": resource.group,
                "version": resource.version,
                "resource": resource.resource,
            },
            "epoch": header.epoch,
            "session": header.session,
            "generation": header.generation,
            "sequence": header.sequence,
            "resourceVersion": header.resource_version,
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )


def encode_object(item: Item) -> bytes:
    """A snapshot record; the object's JSON goes in as the bytes it is."""
    return (
        b'{"key":'
        + orjson.dumps(item.key)
        + b',"resourceVersion":'
        + orjson.dumps(item.resource_version)
        + b',"object":'
        + item.json
        + b"}\n"
    )


def encode_event(key: str, event: Event) -> bytes:
    """A batch record: an upsert carries the object, a delete only the key."""
    head = (
        b'{"type":"'
        + event.type.value.encode()
        + b'","key":'
        + orjson.dumps(key)
        + b',"resourceVersion":'
        + orjson.dumps(event.resource_version)
    )
    if event.type is EventType.DELETED:
        return head + b"}\n"
    return head + b',"object":' + event.json + b"}\n"


def encode_commit(count: int, resource_version: str) -> bytes:
    return orjson.dumps(
        {"commit": True, "count": count, "resourceVersion": resource_version},
        option=orjson.OPT_APPEND_NEWLINE,
    )


# -- decoding (the receiver) -----------------------------------------------------------------


class _Resource(msgspec.Struct, forbid_unknown_fields=True):
    group: str
    version: str
    resource: str


class _Header(msgspec.Struct, forbid_unknown_fields=True):
    listwatch: str
    version: int
    resource: _Resource
    epoch: int
    session: str
    generation: int
    sequence: int
    resourceVersion: str


class _ObjectRecord(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    resourceVersion: str
    object: msgspec.Raw


class _EventRecord(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    key: str
    resourceVersion: str
    object: msgspec.Raw = msgspec.Raw()  # empty: absent (a delete carries no object)


class _Commit(msgspec.Struct, forbid_unknown_fields=True):
    commit: bool
    count: int
    resourceVersion: str


_HEADER = msgspec.json.Decoder(_Header)
_OBJECT = msgspec.json.Decoder(_ObjectRecord)
_EVENT = msgspec.json.Decoder(_EventRecord)
_COMMIT = msgspec.json.Decoder(_Commit)
_COMMIT_PREFIX = b'{"commit"'
_EVENT_TYPES = {EventType.ADDED.value, EventType.MODIFIED.value, EventType.DELETED.value}


def decode_header(line: bytes, *, kind: Kind, resource: str) -> Header:
    """The header record; it must be of ``kind`` and name the ``resource`` of the path."""
    try:
        header = _HEADER.decode(line)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"the first record is not a {kind} header: {exc}") from None
    if header.version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {header.version} is not served (this receiver speaks "
            f"{PROTOCOL_VERSION})"
        )
    if header.listwatch != kind:
        raise ProtocolError(f"a {header.listwatch} header was sent to the {kind} endpoint")
    gvr = GroupVersionResource(
        header.resource.group, header.resource.version, header.resource.resource
    )
    if gvr.qualified != resource:
        raise ProtocolError(f"the header names {gvr.qualified}, the path {resource}")
    if header.epoch < 0 or header.generation < 0 or header.sequence < 0:
        raise ProtocolError("epoch, generation and sequence must not be negative")
    if (kind == "snapshot") != (header.sequence == 0):
        raise ProtocolError(
            "a snapshot has sequence 0; a batch's sequence counts from 1 in its generation"
        )
    return Header(
        kind,
        gvr,
        header.epoch,
        header.session,
        header.generation,
        header.sequence,
        header.resourceVersion,
    )


def is_commit(line: bytes) -> bool:
    return line.startswith(_COMMIT_PREFIX)


def decode_commit(line: bytes) -> Commit:
    try:
        commit = _COMMIT.decode(line)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"the commit record is malformed: {exc}") from None
    if not commit.commit or commit.count < 0:
        raise ProtocolError("the commit record must say commit: true and a count")
    return Commit(commit.count, commit.resourceVersion)


def decode_object_record(line: bytes, number: int) -> Item:
    """A snapshot record as an ``Item`` whose JSON stays the bytes that came."""
    try:
        record = _OBJECT.decode(line)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"record {number} is not an object record: {exc}") from None
    if not record.key:
        raise ProtocolError(f"record {number} has an empty key")
    return Item(record.key, record.resourceVersion, raw=memoryview(record.object))


def decode_event_record(line: bytes, number: int) -> Event:
    try:
        record = _EVENT.decode(line)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"record {number} is not an event record: {exc}") from None
    if record.type not in _EVENT_TYPES or not record.key:
        raise ProtocolError(f"record {number}: type must be ADDED, MODIFIED or DELETED, with a key")
    event_type = EventType(record.type)
    if event_type is EventType.DELETED:
        return Event(event_type, {}, record.key, record.resourceVersion)
    if not len(record.object):
        raise ProtocolError(f"record {number}: an {record.type} record needs its object")
    return Event(
        event_type, None, record.key, record.resourceVersion, raw=memoryview(record.object)
    )


def status_body(code: int, reason: str, message: str, **details: Any) -> bytes:
    """A ``metav1.Status``-like body: what Kubernetes clients already know how to read."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "code": code,
    }
    if code >= 400:
        body["reason"] = reason
        body["message"] = message[:1000]
    if details:
        body["details"] = details
    return orjson.dumps(body)


# -- errors, both ways (the table above) -----------------------------------------------------


class Answer(NamedTuple):
    """An error answer: the HTTP status, and the Status body's reason, message and details."""

    code: int
    reason: str
    message: str
    details: dict[str, Any]


def status_for(exc: Exception) -> Answer:
    """The receiver's answer to a request that ``exc`` ended."""
    if isinstance(exc, ProtocolError):
        return Answer(exc.code, exc.reason, str(exc), {})
    if isinstance(exc, StaleEpoch):
        details = {"resource": exc.resource, "epoch": exc.epoch, "recorded": exc.recorded}
        return Answer(409, "Conflict", str(exc), {"causes": [{"reason": "StaleEpoch"}], **details})
    if isinstance(exc, StaleWrite):
        return Answer(409, "Conflict", str(exc), {"causes": [{"reason": "StaleWrite"}]})
    if isinstance(exc, LineTooLong):
        message = f"a record is larger than {MAX_RECORD_BYTES} bytes (at least {exc.size})"
        return Answer(413, "RequestEntityTooLarge", message, {})
    return Answer(503, "ServiceUnavailable", f"the receiver's store failed: {exc}", {})


def error_from_answer(status: int, body: bytes, where: str) -> ListWatchError:
    """The sender's error for a non-200 answer; ``where`` names the request (never with
    credentials). A 409 is the fence's refusal whatever its body says."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        decoded = {}
    if not isinstance(decoded, dict):
        decoded = {}
    message = str(decoded.get("message") or body[:200].decode("utf-8", "replace")).strip()
    reason = str(decoded.get("reason") or "")
    if status == 409:
        details = decoded.get("details")
        details = details if isinstance(details, dict) else {}
        causes = {c.get("reason") for c in details.get("causes") or () if isinstance(c, dict)}
        epoch, recorded = details.get("epoch"), details.get("recorded")
        if "StaleEpoch" in causes and isinstance(epoch, int) and isinstance(recorded, int):
            return StaleEpoch(str(details.get("resource") or where), epoch, recorded)
        return StaleWrite(f"{where}: the receiver refused the write: {message}")
    return HttpSyncError(f"{where}: HTTP {status} {reason}: {message}"[:500])
