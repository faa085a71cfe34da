"""Turns a raw exchange into its corpus form: what is stable about it, placeholders for the rest.

Two servers never agree on names of things they generate, so these are abstracted, each
consistently within one exchange:

* resourceVersions become ``<rv:N>``, N their rank among the distinct RVs of the exchange
  (request and answer together, Status messages included), so "the same RV as the request"
  and "newer than that item" survive while the numbers go;
* continue tokens become ``<continue:N>``, UIDs ``<uid:N>`` (numbered in order of first
  appearance, keys walked sorted), timestamps ``<time>``, the ``ETag`` ``<etag>``;
* the run's namespace becomes ``<namespace>`` and the server's ``host:port``
  ``<address>`` wherever they occur, messages included.

Only the headers that clients act on are kept (see README.md); Authorization never is.
Keys are sorted when the corpus is written, so a re-recording diffs cleanly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from tests.conformance.runner import Raw
from tests.conformance.script import Exchange

#: Headers kept, and what they become (None: kept as sent).
KEPT_HEADERS: Mapping[str, str | None] = {
    "content-type": None,
    "retry-after": None,
    "warning": None,
    "vary": None,
    "etag": "<etag>",
}

_UID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_TIME = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_DIGITS = re.compile(r"^[0-9]+$")
#: Status messages that carry resourceVersions.
_RV_MESSAGES = (
    re.compile(r"too old resource version: (\d+) \((\d+)\)"),
    re.compile(r"Too large resource version: (\d+), current: (\d+)"),
)
_PLACEHOLDER = re.compile(r"^<([a-z]+)(?::(\d+))?>$")
#: A shard selector's bound that is not one of equal shards' (a multiple of 2**62): one
#: made from an object's uid hash (``script.ShardAround``), which no two servers share.
_HASH_BOUND = re.compile(r"'0x([0-9a-f]{16})'")


def normalize(exchange: Exchange, raw: Raw, *, namespace: str, address: str) -> dict[str, Any]:
    """The corpus entry of ``exchange`` from its raw answer."""
    request = {
        "method": raw.request["method"],
        "path": raw.request["path"],
        "query": raw.request["query"],
        "client": exchange.client,
        "accept": exchange.accept,
        "identity": exchange.as_user,
    }
    if exchange.content_type:
        request["content_type"] = exchange.content_type
    if raw.request["body"] is not None:
        request["body"] = raw.request["body"]
    response: dict[str, Any] = {
        "status": raw.status,
        "headers": {
            name: raw.headers[name] if replacement is None else replacement
            for name, replacement in KEPT_HEADERS.items()
            if name in raw.headers
        },
    }
    if raw.events is None:
        response["body"] = raw.body
    else:
        response["streamed"] = raw.chunked
        response["events"] = raw.events
        response["end"] = raw.end
    entry = {"name": exchange.name, "request": request, "response": response}
    substitutions = {namespace: "<namespace>", address: "<address>"}
    return _Abstractor(entry, substitutions).result


class _Abstractor:
    def __init__(self, entry: dict[str, Any], substitutions: Mapping[str, str]) -> None:
        self._substitutions = substitutions
        rvs = sorted({int(rv) for rv in _resource_versions(entry)})
        self._rv_rank = {rv: rank for rank, rv in enumerate(rvs, 1)}
        self._numbered: dict[str, dict[str, int]] = {"uid": {}, "continue": {}}
        bounds = sorted(
            {int(b, 16) for _, s in _strings(entry, "") for b in _HASH_BOUND.findall(s)}
        )
        self._hash_rank = {b: rank for rank, b in enumerate((b for b in bounds if b % 2**62), 1)}
        self.result: dict[str, Any] = self._walk(entry, key="")

    def _walk(self, value: Any, key: str) -> Any:
        if isinstance(value, dict):
            return {k: self._walk(value[k], k) for k in sorted(value)}
        if isinstance(value, list) and key == "query":
            return [[name, self._walk(v, name)] for name, v in value]  # [name, value] pairs
        if isinstance(value, list):
            return [self._walk(v, "") for v in value]
        if not isinstance(value, str):
            return value
        if key == "resourceVersion" and _DIGITS.match(value):
            return self._rv(value)
        if key == "continue" and value:
            return self._number("continue", value)
        return self._text(value)

    def _text(self, text: str) -> str:
        for literal, placeholder in self._substitutions.items():
            text = text.replace(literal, placeholder)
        for pattern in _RV_MESSAGES:
            text = pattern.sub(self._rv_in_message, text)
        text = _UID.sub(lambda m: self._number("uid", m.group(0)), text)
        text = _HASH_BOUND.sub(self._hash_bound, text)
        return _TIME.sub("<time>", text)

    def _rv_in_message(self, match: re.Match[str]) -> str:
        text = match.group(0)
        for rv in sorted(match.groups(), key=len, reverse=True):
            text = text.replace(rv, self._rv(rv))
        return text

    def _hash_bound(self, match: re.Match[str]) -> str:
        rank = self._hash_rank.get(int(match.group(1), 16))
        return match.group(0) if rank is None else f"'<hash:{rank}>'"

    def _rv(self, value: str) -> str:
        return f"<rv:{self._rv_rank[int(value)]}>"

    def _number(self, kind: str, value: str) -> str:
        seen = self._numbered[kind]
        return f"<{kind}:{seen.setdefault(value, len(seen) + 1)}>"


def _resource_versions(entry: Any) -> Iterator[str]:
    """Every RV in the entry: ``resourceVersion`` values and those inside messages."""
    for key, value in _strings(entry, ""):
        if key == "resourceVersion" and _DIGITS.match(value):
            yield value
        for pattern in _RV_MESSAGES:
            for match in pattern.finditer(value):
                yield from match.groups()


def _strings(value: Any, key: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, k)
    elif isinstance(value, list) and key == "query":
        for name, v in value:
            yield from _strings(v, name)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, "")
    elif isinstance(value, str):
        yield key, value


def placeholder_kind(value: Any) -> str | None:
    """``rv`` for ``<rv:3>``, ``time`` for ``<time>``...; None for anything else."""
    if not isinstance(value, str):
        return None
    match = _PLACEHOLDER.match(value)
    return match.group(1) if match else None


def rank(value: Any) -> int | None:
    """The N of an ``<rv:N>`` placeholder."""
    match = _PLACEHOLDER.match(value) if isinstance(value, str) else None
    return int(match.group(2)) if match and match.group(1) == "rv" and match.group(2) else None


def resolve(entry: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a normalized entry; ``request.query.NAME`` finds the
    query parameter NAME; ``[N]`` indexes a list. Raises KeyError when absent."""
    value: Any = entry
    for part in path.replace("[", ".").replace("]", "").split("."):
        if isinstance(value, list) and part.lstrip("-").isdigit():
            value = value[int(part)]
        elif isinstance(value, list):
            value = next(v for k, v in value if k == part)
        else:
            value = value[part]
    return value
