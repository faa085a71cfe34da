"""``coordination.k8s.io/v1`` Lease: what kube-apiserver checks and rewrites in a Lease.

A leader elector lives on three facts of the Lease registry, reproduced by the store through
the resource's flags (``resources.py``) and by :func:`prepare` here:

* Optimistic concurrency is compulsory: ``leaseStrategy.AllowUnconditionalUpdate`` is false,
  so a PUT without ``metadata.resourceVersion`` is 422 "must be specified for an update", and
  a stale one is 409 Conflict "the object has been modified; please apply your changes to
  the latest version and try again" (genericregistry ``Store.Update``).
* ``AllowCreateOnUpdate`` is true: a PUT of a Lease that does not exist creates it (201).
* The spec is typed (``LeaseSpec``): ``holderIdentity`` a string, ``leaseDurationSeconds``
  and ``leaseTransitions`` int32, ``acquireTime`` and ``renewTime`` ``MicroTime``.
  ``MicroTime`` is parsed with exactly the layout ``2006-01-02T15:04:05.000000Z07:00``
  (``time.Parse(RFC3339Micro, ...)`` in apimachinery ``meta/v1/micro_time.go``: six
  fractional digits, ``Z`` or a numeric offset) and written back in UTC, so
  ``...T10:00:00.000000+02:00`` is stored as ``...T08:00:00.000000Z``. A body that does not
  decode is 400 "Lease in version "v1" cannot be handled as a Lease: <decode error>"
  (``transformDecodeError``), the decode error worded as Go's ``encoding/json`` and
  ``time.Parse`` word it.
* ``ValidateLeaseSpec`` (kubernetes ``pkg/apis/coordination/validation``):
  ``leaseDurationSeconds`` "must be greater than 0", ``leaseTransitions`` "must be greater
  than or equal to 0": 422 Invalid.

The fields of the CoordinatedLeaderElection gate (``strategy``, ``preferredHolder``) are
dropped on create, as the registry drops them while that alpha gate is off.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from listwatch.testing import _status as status
from listwatch.testing._status import FieldError

JsonDict = dict[str, Any]

GROUP = "coordination.k8s.io"
KIND = "Lease"
RFC3339_MICRO = "2006-01-02T15:04:05.000000Z07:00"
_INT32 = (-(2**31), 2**31 - 1)
_GATED_FIELDS = ("strategy", "preferredHolder")

#: The layout's pieces as Go's ``time.Parse`` walks them: (layout text, value pattern).
_LAYOUT = (
    ("2006", r"\d{4}"),
    ("-", r"-"),
    ("01", r"\d{2}"),
    ("-", r"-"),
    ("02", r"\d{2}"),
    ("T", r"T"),
    ("15", r"\d{2}"),
    (":", r":"),
    ("04", r"\d{2}"),
    (":", r":"),
    ("05", r"\d{2}"),
    (".000000", r"\.\d{6}"),
    ("Z07:00", r"Z|[+-]\d{2}:\d{2}"),
)


def prepare(obj: JsonDict, *, creating: bool) -> JsonDict:
    """Decode, validate and normalize a Lease as the registry would, or raise 400/422."""
    spec = obj.get("spec")
    if spec is None:
        return obj
    if not isinstance(spec, dict):
        raise _undecodable(_json_type_error(spec, "spec", "Lease", "v1.LeaseSpec"))
    spec = dict(spec)
    for field, go_type in (
        ("holderIdentity", "string"),
        ("leaseDurationSeconds", "int32"),
        ("leaseTransitions", "int32"),
        ("strategy", "string"),
        ("preferredHolder", "string"),
    ):
        value = spec.get(field)
        if value is not None and not _fits(value, go_type):
            raise _undecodable(_json_type_error(value, f"spec.{field}", "LeaseSpec", go_type))
    for field in ("acquireTime", "renewTime"):
        value = spec.get(field)
        if value is None:
            continue
        if not isinstance(value, str):
            raise _undecodable(_json_type_error(value, f"spec.{field}", "LeaseSpec", "string"))
        spec[field] = normalize_micro_time(value)
    if creating:
        for field in _GATED_FIELDS:
            spec.pop(field, None)
    _validate(obj, spec)
    return {**obj, "spec": spec}


def normalize_micro_time(value: str) -> str:
    """``MicroTime``: parsed with ``RFC3339Micro`` exactly, written back in UTC."""
    parsed = parse_micro_time(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(value: str) -> datetime:
    """``time.Parse(RFC3339Micro, value)``; the error is worded as Go words it."""
    rest = value
    for layout_piece, pattern in _LAYOUT:
        match = re.match(pattern, rest)
        if match is None:
            raise _undecodable(
                f'parsing time "{value}" as "{RFC3339_MICRO}": cannot parse "{rest}" as '
                f'"{layout_piece}"'
            )
        rest = rest[match.end() :]
    if rest:
        raise _undecodable(f'parsing time "{value}": extra text: "{rest}"')
    return _to_datetime(value)


def _to_datetime(value: str) -> datetime:
    date, clock = value[:10], value[11:26]
    offset = value[26:]
    try:
        naive = datetime.strptime(f"{date}T{clock}", "%Y-%m-%dT%H:%M:%S.%f")
    except ValueError:
        raise _undecodable(f'parsing time "{value}": {_range_error(value)}') from None
    if offset == "Z":
        zone = UTC
    else:
        sign = -1 if offset[0] == "-" else 1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 24 or minutes > 59:
            raise _undecodable(f'parsing time "{value}": time zone offset out of range')
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    return naive.replace(tzinfo=zone)


def _range_error(value: str) -> str:
    """Go reports the first field out of range, in layout order."""
    checks = (
        ("month", 1 <= int(value[5:7]) <= 12),
        ("hour", int(value[11:13]) <= 23),
        ("minute", int(value[14:16]) <= 59),
        ("second", int(value[17:19]) <= 59),
    )
    for name, ok in checks:
        if not ok:
            return f"{name} out of range"
    return "day out of range"


def _fits(value: Any, go_type: str) -> bool:
    if go_type == "string":
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return _INT32[0] <= value <= _INT32[1]


def _json_type_error(value: Any, field: str, struct: str, go_type: str) -> str:
    """``json.UnmarshalTypeError``'s text: what the value was, where, what it should be."""
    if isinstance(value, bool):
        kind = "bool"
    elif isinstance(value, int | float):
        kind = f"number {value}" if go_type.startswith("int") else "number"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, list):
        kind = "array"
    else:
        kind = "object"
    return f"json: cannot unmarshal {kind} into Go struct field {struct}.{field} of type {go_type}"


def _undecodable(cause: str) -> status.StatusError:
    return status.bad_request(f'{KIND} in version "v1" cannot be handled as a {KIND}: {cause}')


def _validate(obj: JsonDict, spec: JsonDict) -> None:
    errors: list[FieldError] = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        errors.append(
            FieldError.invalid(
                "spec.leaseDurationSeconds", str(duration), "must be greater than 0", quote=False
            )
        )
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        errors.append(
            FieldError.invalid(
                "spec.leaseTransitions",
                str(transitions),
                "must be greater than or equal to 0",
                quote=False,
            )
        )
    if errors:
        name = (obj.get("metadata") or {}).get("name") or ""
        raise status.invalid(GROUP, KIND, name, errors)
