"""``ListOptions``: decoding, defaulting and validating list/watch query parameters.

The order matters because it decides which error a client sees, and it is the order of
the apiserver's list handler:

1. decode the query (400 BadRequest for a bad integer or an unparseable selector);
2. WatchList defaulting: a watch with RV "" or "0" and neither ``sendInitialEvents`` nor
   ``resourceVersionMatch`` becomes ``sendInitialEvents=true`` +
   ``resourceVersionMatch=NotOlderThan`` when the WatchList gate is on
   (docs/kubernetes-semantics.md#watch);
3. validation (422 Invalid, kind ListOptions, group meta.k8s.io;
docs/kubernetes-semantics.md#paging, #watch);
4. field label conversion (400 "field label not supported").

The storage layer then parses ``resourceVersion`` and ``continue`` (see ``listing.py`` and
``watch.py``): they fail differently for a LIST (400) and a WATCH (500,
docs/kubernetes-semantics.md#expired-resource-versions).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from listwatch.testing import _status as status
from listwatch.testing._paths import parse_bool
from listwatch.testing._selectors import (
    Selection,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from listwatch.testing._sharding import ShardSelectorError, parse_shard_selector, shard_refusal
from listwatch.testing._status import FieldError

EXACT = "Exact"
NOT_OLDER_THAN = "NotOlderThan"

_INT64_RE = re.compile(r"^[+-]?[0-9]+$")
_UINT_RE = re.compile(r"^[0-9]+$")
_MAX_UINT64 = 2**64 - 1


@dataclass(frozen=True)
class ListOptions:
    """The decoded query of a LIST or WATCH."""

    watch: bool = False
    resource_version: str = ""
    resource_version_match: str = ""
    limit: int = 0
    continue_token: str = ""
    timeout_seconds: int | None = None
    allow_watch_bookmarks: bool = False
    send_initial_events: bool | None = None
    label_selector: str = ""
    field_selector: str = ""


def decode(query: Mapping[str, str], *, force_watch: bool) -> ListOptions:
    """Step 1: the query as ``DecodeParameters`` reads it; 400 on a malformed value."""
    return ListOptions(
        watch=force_watch or parse_bool(query.get("watch")),
        resource_version=query.get("resourceVersion", ""),
        resource_version_match=query.get("resourceVersionMatch", ""),
        limit=max(_int64(query, "limit") or 0, 0),  # storage pages only for limit > 0
        continue_token=query.get("continue", ""),
        timeout_seconds=_int64(query, "timeoutSeconds"),
        allow_watch_bookmarks=parse_bool(query.get("allowWatchBookmarks")),
        send_initial_events=(
            parse_bool(query["sendInitialEvents"]) if "sendInitialEvents" in query else None
        ),
        label_selector=query.get("labelSelector", ""),
        field_selector=query.get("fieldSelector", ""),
    )


def _int64(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if not _INT64_RE.match(raw) or not -(2**63) <= int(raw) < 2**63:
        raise status.bad_request(f'strconv.ParseInt: parsing "{raw}": invalid syntax')
    return int(raw)


def apply_watch_list_default(options: ListOptions, *, watch_list: bool) -> ListOptions:
    """Step 2: WatchList defaulting (``SetListOptionsDefaults``,
    docs/kubernetes-semantics.md#watch)."""
    if not watch_list or not options.watch:
        return options
    if options.send_initial_events is not None or options.resource_version_match:
        return options
    if options.resource_version not in ("", "0"):
        return options
    return replace(options, send_initial_events=True, resource_version_match=NOT_OLDER_THAN)


def validate(options: ListOptions, *, watch_list: bool) -> None:
    """Step 3: ``ValidateListOptions``; raises 422 Invalid listing every violation."""
    errors = _watch_errors(options, watch_list) if options.watch else _list_errors(options)
    if errors:
        raise status.invalid_list_options(errors)


def _list_errors(options: ListOptions) -> list[FieldError]:
    errors: list[FieldError] = []
    match = options.resource_version_match
    if match:
        if not options.resource_version:
            errors.append(
                _forbidden_rvm(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided"
                )
            )
        if options.continue_token:
            errors.append(
                _forbidden_rvm("resourceVersionMatch is forbidden when continue is provided")
            )
        if match not in (EXACT, NOT_OLDER_THAN):
            errors.append(
                FieldError.not_supported("resourceVersionMatch", match, [EXACT, NOT_OLDER_THAN, ""])
            )
        if match == EXACT and options.resource_version == "0":
            errors.append(
                _forbidden_rvm('resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
            )
    if options.send_initial_events is not None:
        errors.append(
            FieldError.forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list")
        )
    return errors


def _watch_errors(options: ListOptions, watch_list: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    match = options.resource_version_match
    if options.send_initial_events is not None:
        if match != NOT_OLDER_THAN:
            errors.append(
                _forbidden_rvm(
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
                )
            )
        if not watch_list:
            errors.append(
                FieldError.forbidden(
                    "sendInitialEvents",
                    "sendInitialEvents is forbidden for watch unless the WatchList feature gate "
                    "is enabled",
                )
            )
    if match:
        if options.send_initial_events is None:
            errors.append(
                _forbidden_rvm(
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is "
                    "provided"
                )
            )
        if match != NOT_OLDER_THAN:
            errors.append(FieldError.not_supported("resourceVersionMatch", match, [NOT_OLDER_THAN]))
        if options.continue_token:
            errors.append(
                _forbidden_rvm("resourceVersionMatch is forbidden when continue is provided")
            )
    return errors


def _forbidden_rvm(detail: str) -> FieldError:
    return FieldError.forbidden("resourceVersionMatch", detail)


def selection(options: ListOptions, *, name: str | None = None) -> Selection:
    """Steps 1 and 4 for selectors; a named-object request selects ``metadata.name``.

    A field selector on a named path must require exactly that name (the get handler's
    "fieldSelector metadata.name doesn't match requested name").
    """
    try:
        labels = parse_label_selector(options.label_selector)
        fields = parse_field_selector(options.field_selector)
    except SelectorError as exc:
        raise status.bad_request(str(exc)) from exc
    if name is not None:
        if fields.empty:
            fields = parse_field_selector(f"metadata.name={_escape_field_value(name)}")
        elif not any(
            t.field == "metadata.name" and not t.negated and t.value == name for t in fields.terms
        ):
            raise status.bad_request("fieldSelector metadata.name doesn't match requested name")
    return Selection(labels, fields)


def sharded(selection: Selection, shard_selector: str) -> Selection:
    """The registry's parse of ``shardSelector`` (with the ``ShardedListAndWatch`` gate):
    after the handler's checks, before storage reads anything; an empty parameter is
    no parameter (docs/kubernetes-semantics.md#sharded-list-and-watch)."""
    if not shard_selector:
        return selection
    try:
        return replace(selection, shards=parse_shard_selector(shard_selector))
    except ShardSelectorError as exc:
        raise shard_refusal(exc) from None


def _escape_field_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def parse_resource_version(raw: str) -> int:
    """A non-empty ``resourceVersion`` as the storage versioner parses it (``ParseUint``).

    Raises ``ValueError`` with the storage error text, which LIST wraps into a 400 and
    WATCH returns as a reason-less 500 (docs/kubernetes-semantics.md#expired-resource-versions).
    """
    if not _UINT_RE.match(raw):
        cause = "invalid syntax"
    elif int(raw) > _MAX_UINT64:
        cause = "value out of range"
    else:
        return int(raw)
    raise ValueError(
        f'resourceVersion: Invalid value: "{raw}": strconv.ParseUint: parsing "{raw}": {cause}'
    )
