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
sequence: ``listwatch.fencing``), the resourceVersion and, from version 2 on, the shard the
write replaces; an object record carries the object's JSON as the API server sent it,
spliced in as bytes (never parsed on either side).

**Versions.** 1 has no shard; 2 adds ``shard`` to the header (``{"start": "0x…", "end":
"0x…"}``, the uid-hash range, or ``null``). A sender writes each header in the *oldest*
version that carries it: an unsharded write goes as version 1, byte for byte what senders
wrote before shards, so a new sender keeps working with an old receiver; only a sharded
write needs 2. A receiver serves every version up to its newest (a version-1 header is an
unsharded write). An old receiver refuses a version-2 header with a 400 (its header has no
``shard`` field, or its version check); the sender turns that answer into one clear error
(``older_receiver``) instead of a bare 400.

An error is answered with a ``metav1.Status``-like JSON body, and read back into an
exception, both here: ``status_for`` (the receiver) and ``error_from_answer`` (the sender).

| the receiver raised                  | it answers (code, reason, details)   | the sender raises |
|--------------------------------------|--------------------------------------|-------------------|
| ``StaleEpoch`` (the fence: a newer   | 409 Conflict, cause ``StaleEpoch``,  | ``StaleEpoch``,   |
| leader has written)                  | ``resource``, ``epoch``, ``recorded``| the same fields   |
| ``StaleWrite`` (the fence: an older  | 409 Conflict, cause ``StaleWrite``   | ``StaleWrite``    |
| write of the same sender)            |                                      |                   |
| ``ProtocolError`` (a malformed body, | its ``code`` and ``reason``: 400,    | ``HttpSyncError`` |
| no credentials, a bad path, ...)     | 401, 403, 404, 408, 413, 415         |                   |
| ``LineTooLong`` (a record over       | 413 RequestEntityTooLarge            | ``HttpSyncError`` |
| ``MAX_RECORD_BYTES``)                |                                      |                   |
| ``LimitExceeded`` (the write would   | 413 RequestEntityTooLarge, cause     | ``HttpSyncError`` |
| take its cluster past a cap)         | ``LimitExceeded``, ``cluster``,      |                   |
|                                      | ``limit``, ``max``, ``would``        |                   |
| anything else (the store failed)     | 503 ServiceUnavailable               | ``HttpSyncError`` |

Only the fence's refusals keep their class across the wire: a sender (and the leader behind
it) must tell "a newer leader writes here" from a failure worth retrying. Every error ends
the sender's generation alike; the next one sends a fresh snapshot.

**What the receiver checks** (``check_record`` and the decoders), so that the sender's fault
is a 400 naming the record, never a 503 from the store: every record is UTF-8 JSON nested at
most ``MAX_DEPTH`` levels; integers fit a signed 64-bit column; a key, a session, a
resourceVersion and the resource's version are matched whole (``fullmatch``: never a ``$``,
which also matches before a final newline) against the rules below; an object is a JSON
object. Its JSON is otherwise kept as the bytes that came.

**An object that cannot travel as JSON** (``_jsonparse.unreadable``: bytes that are not
UTF-8, nesting deeper than ``MAX_DEPTH``) goes as its bytes instead, base64 in ``raw``
rather than ``object``, so that the receiver keeps it as it is (quarantined) instead of
refusing the record: a 400 would restart the sender's generation, and the same object would
be refused again at every one. The receiver's store decides what it keeps as JSON (PostgreSQL
cannot keep U+0000 in ``jsonb``); a 200 names what it quarantined (``quarantine_details``),
and the sender reports it as its own sinks do (``Snapshot.quarantine``).

**What the sender shows of an answer** (``error_from_answer``): a receiver's Status message,
made one line, capped, and with the sender's own credentials cut out; never a body that is
not a Status (a proxy's page, or aiohttp's own 400 for a header it could not parse, which
quotes the start of that header: it can be the bearer token).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal, NamedTuple

import msgspec
import orjson

from listwatch._framing import LineTooLong
from listwatch._jsonparse import MAX_DEPTH, unreadable
from listwatch._jsonparse import loads as parse_json
from listwatch._models import Event, EventType, GroupVersionResource, Item
from listwatch._shard import HASH_SPACE, Shard
from listwatch.errors import (
    HttpSyncError,
    LimitExceeded,
    ListWatchError,
    ProtocolError,
    StaleEpoch,
    StaleWrite,
)

__all__ = [
    "CONTENT_TYPE",
    "MAX_DEPTH",
    "MAX_QUARANTINED_NAMED",
    "MAX_RECORD_BYTES",
    "PROTOCOL_VERSION",
    "UNSHARDED_VERSION",
    "Answer",
    "Commit",
    "Header",
    "ProtocolError",
    "check_record",
    "decode_commit",
    "decode_event_record",
    "decode_header",
    "decode_object_record",
    "encode_commit",
    "encode_event",
    "encode_header",
    "encode_object",
    "error_from_answer",
    "is_resource_name",
    "older_receiver",
    "quarantine_details",
    "quarantined_in",
    "status_body",
    "status_for",
]

PROTOCOL_VERSION = 2
"""The newest version of the protocol: 2 carries the shard a write replaces."""
UNSHARDED_VERSION = 1
"""The version an unsharded write is sent as: what every receiver since the first serves."""
CONTENT_TYPE = "application/x-ndjson"
MAX_RECORD_BYTES = 17 * 1024 * 1024
"""One record (an object and its key) may be this large: the watch's 16 MiB event cap plus
room for the envelope. A receiver refuses a longer line before it is whole."""

MAX_QUARANTINED_NAMED = 50
"""How many quarantined objects a 200 names (all are counted): the answer stays small, a
sender reads at most 64 KiB of it."""
MAX_INT = 2**63 - 1
"""The largest epoch, generation and sequence: they are SQLite INTEGER and PostgreSQL bigint."""
MAX_KEY_BYTES = 512
"""A key's UTF-8 length: ``namespace/name`` is at most 317 bytes; 512 leaves custom keys
room and keeps (resource, key) inside PostgreSQL's 2,704-byte limit of a btree entry."""

_RESOURCE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
"""``pods``, ``deployments.apps``, ``widgets.example.com``: a plural plus a DNS-style group."""
_VERSION = re.compile(r"([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?")
"""An API version (``v1``, ``v1beta1``), or "" where the sender does not know it."""
_KEY = re.compile(r"[^\x00-\x1f\x7f-\x9f\ud800-\udfff]+")
"""A key: any characters but control characters (a NUL, which PostgreSQL's text cannot
hold; a newline, which would forge log lines) and lone surrogates."""
_WORD = re.compile(r"[!-~]{0,128}")
"""A session id or a resourceVersion: up to 128 printable ASCII characters, no spaces."""


def is_resource_name(name: str) -> bool:
    """Whether ``name`` is a resource as a path names it, all of it (``pods\\n`` is not)."""
    return len(name) <= 253 and _RESOURCE_NAME.fullmatch(name) is not None


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
    shard: Shard | None = None
    """The scope the write replaces (``Snapshot.shard``); None: the whole resource."""

    @property
    def version(self) -> int:
        """The oldest protocol version that carries this header."""
        return UNSHARDED_VERSION if self.shard is None else PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class Commit:
    """The last record: how many records came before it, and the final resourceVersion."""

    count: int
    resource_version: str


# -- encoding (the sender) -------------------------------------------------------------------


def encode_header(header: Header) -> bytes:
    """The header record, in the oldest version that carries it (``Header.version``)."""
    resource = header.resource
    record: dict[str, Any] = {
        "listwatch": header.kind,
        "version": header.version,
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
    }
    if header.shard is not None:
        record["shard"] = {"start": _bound(header.shard.start), "end": _bound(header.shard.end)}
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def _bound(value: int) -> str:
    return f"0x{value:016x}"


def encode_object(item: Item) -> bytes:
    """A snapshot record; the object's JSON goes in as the bytes it is (or, when they are
    not JSON a receiver can keep, base64 in ``raw``)."""
    return (
        b'{"key":'
        + orjson.dumps(item.key)
        + b',"resourceVersion":'
        + orjson.dumps(item.resource_version)
        + _object_member(item.json)
        + b"}\n"
    )


def _object_member(data: bytes) -> bytes:
    if unreadable(data) is None:
        return b',"object":' + data
    return b',"raw":"' + base64.b64encode(data) + b'"'


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
    return head + _object_member(event.json) + b"}\n"


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


class _HeaderV1(msgspec.Struct, forbid_unknown_fields=True):
    listwatch: str
    version: int
    resource: _Resource
    epoch: int
    session: str
    generation: int
    sequence: int
    resourceVersion: str


class _ShardRange(msgspec.Struct, forbid_unknown_fields=True):
    start: str
    end: str


class _Header(_HeaderV1, forbid_unknown_fields=True):
    shard: _ShardRange | None = None


class _ObjectRecord(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    resourceVersion: str
    object: msgspec.Raw = msgspec.Raw()  # empty: absent (its bytes are in raw)
    raw: str | None = None


class _EventRecord(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    key: str
    resourceVersion: str
    object: msgspec.Raw = msgspec.Raw()  # empty: absent (a delete carries no object)
    raw: str | None = None


class _Commit(msgspec.Struct, forbid_unknown_fields=True):
    commit: bool
    count: int
    resourceVersion: str


_HEADERS: dict[int, msgspec.json.Decoder[Any]] = {
    1: msgspec.json.Decoder(_HeaderV1),
    2: msgspec.json.Decoder(_Header),
}
"""The header each version's receiver reads: a receiver pinned to 1 refuses a ``shard``
field as every receiver before version 2 did."""
_BOUND = re.compile(r"0x[0-9a-f]{16}|0x10000000000000000")
_OBJECT = msgspec.json.Decoder(_ObjectRecord)
_EVENT = msgspec.json.Decoder(_EventRecord)
_COMMIT = msgspec.json.Decoder(_Commit)
_COMMIT_PREFIX = b'{"commit"'
_EVENT_TYPES = {EventType.ADDED.value, EventType.MODIFIED.value, EventType.DELETED.value}


def check_record(line: bytes, what: str) -> None:
    """Refuse a record that is not UTF-8, or nests deeper than ``MAX_DEPTH`` (plus one: the
    record around the object), before any parser recurses into it. Cheap for what senders
    send: an ASCII line is UTF-8, and a line with fewer brackets than the limit cannot nest
    deeper; only other lines are parsed to be measured."""
    if not line.isascii():
        try:
            line.decode()
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"{what} is not valid UTF-8 (byte {exc.start})") from None
    if line.count(b"{") + line.count(b"[") <= MAX_DEPTH + 1:
        return
    try:
        depth = _depth(parse_json(line))
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"{what} is not JSON nested at most {MAX_DEPTH} deep: {exc}") from None
    if depth > MAX_DEPTH + 1:
        raise ProtocolError(f"{what} nests its object deeper than {MAX_DEPTH} levels")


def _depth(value: object) -> int:
    """How deep ``value`` nests (a scalar: 0), without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children: Iterable[object]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _check_int(value: int, name: str) -> None:
    if not 0 <= value <= MAX_INT:
        raise ProtocolError(f"{name} must be an integer from 0 to 2^63-1")


def _check_word(value: str, name: str) -> None:
    if _WORD.fullmatch(value) is None:
        raise ProtocolError(f"{name} must be at most 128 printable ASCII characters")


def _check_key(key: str, number: int) -> None:
    size = len(key) if key.isascii() else len(key.encode())
    if size > MAX_KEY_BYTES or _KEY.fullmatch(key) is None:
        raise ProtocolError(
            f"record {number}: a key is 1 to {MAX_KEY_BYTES} bytes without control characters"
        )


def decode_header(
    line: bytes, *, kind: Kind, resource: str, newest: int = PROTOCOL_VERSION
) -> Header:
    """The header record; it must be of ``kind``, name the ``resource`` of the path, and be
    of a version from 1 to ``newest`` (the newest this receiver serves)."""
    check_record(line, "the header record")
    try:
        header = _HEADERS[newest].decode(line)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ProtocolError(f"the first record is not a {kind} header: {exc}") from None
    if not 1 <= header.version <= newest:
        served = "1" if newest == 1 else f"1 to {newest}"
        raise ProtocolError(
            f"protocol version {header.version} is not served (this receiver speaks {served})"
        )
    shard = _shard_of(getattr(header, "shard", None), header.version)
    if header.listwatch != kind:
        raise ProtocolError(f"a {header.listwatch} header was sent to the {kind} endpoint")
    gvr = GroupVersionResource(
        header.resource.group, header.resource.version, header.resource.resource
    )
    if gvr.qualified != resource:
        raise ProtocolError(f"the header names {gvr.qualified!r}, the path {resource}")
    if _VERSION.fullmatch(header.resource.version) is None:
        raise ProtocolError("the header's resource.version is not an API version")
    _check_int(header.epoch, "epoch")
    _check_int(header.generation, "generation")
    _check_int(header.sequence, "sequence")
    _check_word(header.session, "session")
    _check_word(header.resourceVersion, "resourceVersion")
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
        shard,
    )


def _shard_of(field: _ShardRange | None, version: int) -> Shard | None:
    """The header's shard: a range of the uid hash, bounds as ``Shard.selector`` writes
    them; none in a version-1 header. A range of the whole space is the whole resource."""
    if field is None:
        return None
    if version < 2:
        raise ProtocolError("a version 1 header carries no shard (shards need version 2)")
    if _BOUND.fullmatch(field.start) is None or _BOUND.fullmatch(field.end) is None:
        raise ProtocolError(
            "the header's shard bounds are 0x and 16 lowercase hex digits (or the end of the "
            "space, 0x10000000000000000)"
        )
    start, end = int(field.start, 16), int(field.end, 16)
    if not 0 <= start < end <= HASH_SPACE:
        raise ProtocolError("the header's shard is not a non-empty range of [0, 2^64)")
    shard = Shard(start, end)
    return None if shard.everything else shard


def older_receiver(status: int, body: bytes, header: Header) -> HttpSyncError | None:
    """The clear error for a refusal that says the receiver predates the header's version
    (its 400 names the ``shard`` field as unknown, or the version as not served); None for
    any other answer. Only a sharded write can meet one: an unsharded write is sent as
    version 1, which every receiver serves."""
    if status != 400 or header.shard is None:
        return None
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    message = decoded.get("message") if isinstance(decoded, dict) else None
    if not isinstance(message, str):
        return None
    if "unknown field `shard`" not in message and "is not served" not in message:
        return None
    return HttpSyncError(
        f"the receiver predates protocol version {PROTOCOL_VERSION}, which a sharded write "
        f"needs (shard {header.shard.name}): upgrade the receiver, or mirror unsharded"
    )


def is_commit(line: bytes) -> bool:
    return line.startswith(_COMMIT_PREFIX)


def decode_commit(line: bytes) -> Commit:
    check_record(line, "the commit record")
    try:
        commit = _COMMIT.decode(line)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ProtocolError(f"the commit record is malformed: {exc}") from None
    if not commit.commit or not 0 <= commit.count <= MAX_INT:
        raise ProtocolError("the commit record must say commit: true and a count")
    _check_word(commit.resourceVersion, "the commit record's resourceVersion")
    return Commit(commit.count, commit.resourceVersion)


def _check_object(raw: msgspec.Raw, number: int) -> memoryview:
    view = memoryview(raw)
    if view[:1].tobytes() != b"{":
        raise ProtocolError(f"record {number}: its object must be a JSON object")
    return view


def _object_of(record: _ObjectRecord | _EventRecord, number: int) -> memoryview | bytes:
    """The record's object: its JSON as it came, or the bytes of ``raw``. Raw bytes are for
    what cannot travel as JSON; raw bytes that are a JSON object a receiver can keep are
    taken as one, and any other raw bytes are the sender's fault."""
    if record.raw is None:
        if not len(record.object):
            raise ProtocolError(f"record {number}: an object record needs object or raw")
        return _check_object(record.object, number)
    if len(record.object):
        raise ProtocolError(f"record {number}: object and raw both given")
    try:
        data = base64.b64decode(record.raw, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"record {number}: raw is not base64") from None
    if unreadable(data) is None:
        try:
            parsed = parse_json(data)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ProtocolError(
                f"record {number}: raw holds bytes that could travel as JSON, and are no "
                "JSON object"
            )
    return data


def decode_object_record(line: bytes, number: int) -> Item:
    """A snapshot record as an ``Item`` whose JSON stays the bytes that came."""
    check_record(line, f"record {number}")
    try:
        record = _OBJECT.decode(line)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ProtocolError(f"record {number} is not an object record: {exc}") from None
    _check_key(record.key, number)
    _check_word(record.resourceVersion, f"record {number}'s resourceVersion")
    return Item(record.key, record.resourceVersion, raw=_object_of(record, number))


def decode_event_record(line: bytes, number: int) -> Event:
    check_record(line, f"record {number}")
    try:
        record = _EVENT.decode(line)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ProtocolError(f"record {number} is not an event record: {exc}") from None
    if record.type not in _EVENT_TYPES:
        raise ProtocolError(f"record {number}: type must be ADDED, MODIFIED or DELETED")
    _check_key(record.key, number)
    _check_word(record.resourceVersion, f"record {number}'s resourceVersion")
    event_type = EventType(record.type)
    if event_type is EventType.DELETED:
        return Event(event_type, {}, record.key, record.resourceVersion)
    if not len(record.object) and record.raw is None:
        raise ProtocolError(f"record {number}: an {record.type} record needs its object")
    return Event(
        event_type, None, record.key, record.resourceVersion, raw=_object_of(record, number)
    )


def quarantine_details(quarantined: Mapping[str, str]) -> dict[str, Any]:
    """What a 200 says of the objects the store quarantined: how many, and the first
    ``MAX_QUARANTINED_NAMED`` of them by key, each with why (nothing when there are none)."""
    if not quarantined:
        return {}
    named = sorted(quarantined)[:MAX_QUARANTINED_NAMED]
    return {
        "quarantined": [{"key": key, "reason": quarantined[key]} for key in named],
        "quarantinedCount": len(quarantined),
    }


def quarantined_in(answer: bytes) -> tuple[dict[str, str], int]:
    """The quarantined objects a receiver's 200 names (key: why), and how many it counted;
    nothing from an answer that says nothing of them (or is not a Status)."""
    try:
        decoded = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return {}, 0
    details = decoded.get("details") if isinstance(decoded, dict) else None
    if not isinstance(details, dict):
        return {}, 0
    named: dict[str, str] = {}
    for entry in details.get("quarantined") or ():
        if isinstance(entry, dict):
            key, why = entry.get("key"), entry.get("reason")
            if isinstance(key, str) and isinstance(why, str):
                named[_shown(key, (), MAX_KEY_BYTES)] = _shown(why, ())
    count = details.get("quarantinedCount")
    return named, count if isinstance(count, int) and count >= len(named) else len(named)


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
    if isinstance(exc, LimitExceeded):  # the cluster's cap, named; not worth retrying at once
        details = {"cluster": exc.cluster, "limit": exc.limit, "max": exc.maximum}
        details |= {"would": exc.would, "causes": [{"reason": "LimitExceeded"}]}
        return Answer(413, "RequestEntityTooLarge", str(exc), details)
    if isinstance(exc, LineTooLong):
        message = f"a record is larger than {MAX_RECORD_BYTES} bytes (at least {exc.size})"
        return Answer(413, "RequestEntityTooLarge", message, {})
    return Answer(503, "ServiceUnavailable", f"the receiver's store failed: {exc}", {})


MAX_SHOWN = 300
"""How much of a receiver's message a sender shows (in its errors, logs and /readyz)."""


def error_from_answer(
    status: int, body: bytes, where: str, *, secrets: Iterable[str] = ()
) -> ListWatchError:
    """The sender's error for a non-200 answer; ``where`` names the request (never with
    credentials), ``secrets`` are the credentials the request carried. A 409 is the fence's
    refusal whatever its body says.

    Only a Status body is shown, through ``_shown``. Any other body (a proxy's page, or
    aiohttp's own 400 for a header it could not parse, which quotes its first 100 bytes: a
    bearer token) is named by its size alone."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        decoded = None
    hidden = tuple(secrets)
    if isinstance(decoded, dict) and decoded.get("kind") == "Status":
        message = _shown(str(decoded.get("message") or ""), hidden)
        reason = _shown(str(decoded.get("reason") or ""), hidden, 40)
    else:
        decoded = {}
        message = f"an answer that is not a Status ({len(body)} bytes, not shown)"
        reason = _phrase(status)
    if status == 409:
        details = decoded.get("details")
        details = details if isinstance(details, dict) else {}
        causes = {c.get("reason") for c in details.get("causes") or () if isinstance(c, dict)}
        epoch, recorded = details.get("epoch"), details.get("recorded")
        if "StaleEpoch" in causes and isinstance(epoch, int) and isinstance(recorded, int):
            resource = _shown(str(details.get("resource") or ""), hidden, 253) or where
            return StaleEpoch(resource, epoch, recorded)
        return StaleWrite(f"{where}: the receiver refused the write: {message}")
    return HttpSyncError(f"{where}: HTTP {status} {reason}: {message}")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic|authorization:)(\s+)[A-Za-z0-9._~+/=-]{8,}")
"""A credential as an HTTP header carries it (``Bearer eyJhbGci...``)."""


def _shown(text: str, secrets: tuple[str, ...], limit: int = MAX_SHOWN) -> str:
    """``text`` from a receiver, fit to show: one line of printable characters, at most
    ``limit`` of them, without the sender's credentials. A secret is cut out wherever a
    piece of it appears (its first 8 characters and as much of the rest as follows: a
    server may quote a token cut short), and so is any other credential written as a header
    writes it."""
    text = " ".join("".join(c if c.isprintable() else " " for c in text[: limit * 4]).split())
    for secret in secrets:
        text = _cut(text, secret)
    text = _CREDENTIAL.sub(r"\1\2[redacted]", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cut(text: str, secret: str) -> str:
    """``text`` with every piece of ``secret`` of 8 characters or more replaced."""
    if len(secret) < 8:
        return text.replace(secret, "[redacted]") if secret else text
    start = text.find(secret[:8])
    while start != -1:
        end = start + 8
        while end < len(text) and end - start < len(secret) and text[end] == secret[end - start]:
            end += 1
        text = f"{text[:start]}[redacted]{text[end:]}"
        start = text.find(secret[:8], start + len("[redacted]"))
    return text
