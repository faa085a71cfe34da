"""``fieldValidation``: what a write does with fields the server cannot take as given.

kube-apiserver decodes a POST, PUT or PATCH body strictly unless told ``Ignore``
(``fieldValidation`` query parameter; empty means ``Warn``), and reports two kinds of
problem: unknown fields (not in the type's schema) and duplicate fields (a JSON object with
the same key twice). ``Strict`` refuses the write, ``Warn`` adds one ``Warning: 299 - "..."``
header per problem, ``Ignore`` says nothing (apiserver ``handlers/create.go``,
``update.go``, ``patch.go``; messages from its ``TestFieldValidation``):

* POST/PUT, Strict: 400 "<Kind> in version "<v>" cannot be handled as a <Kind>: strict
  decoding error: duplicate field "<path>"" (``transformDecodeError``);
* PATCH, Strict: 422 Invalid on field ``patch``, "strict decoding error: ..." (the merge
  patch's own duplicates; a JSON patch's duplicates are dropped by the patch library).

The fake's schemas keep unknown fields (``openapi.py``), so the only problem it can find is
a duplicate field; the last value wins, as Go's decoder keeps it. A value other than
Ignore, Warn or Strict is 422 on ``<Create|Update|Patch>Options``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from listwatch.testing import _status as status
from listwatch.testing._status import FieldError

IGNORE, WARN, STRICT = "Ignore", "Warn", "Strict"
ALLOWED = ("", IGNORE, STRICT, WARN)  # sets.List: sorted


@dataclass
class Decoded:
    """A decoded body and the duplicate fields found in it (paths as Go prints them)."""

    value: Any
    duplicates: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [f'duplicate field "{path}"' for path in self.duplicates]


def directive(query: dict[str, str], options_kind: str) -> str:
    """The request's directive (empty is Warn); 422 for an unsupported value."""
    value = query.get("fieldValidation", "")
    if value not in ALLOWED:
        error = FieldError.not_supported("fieldValidation", value, ALLOWED)
        raise status.invalid("meta.k8s.io", options_kind, "", [error])
    return value or WARN


class _Pairs(list[tuple[str, Any]]):
    """A JSON object's members in order, duplicates kept, until they are checked."""


def decode(raw: bytes, *, check: bool) -> Decoded:
    """Parse JSON; with ``check``, find duplicate keys (``ValueError`` if not JSON)."""
    if not check:
        return Decoded(json.loads(raw))
    parsed = json.loads(raw, object_pairs_hook=_Pairs)
    duplicates: list[str] = []
    return Decoded(_resolve(parsed, "", duplicates), duplicates)


def _resolve(value: Any, path: str, duplicates: list[str]) -> Any:
    if isinstance(value, _Pairs):
        result: dict[str, Any] = {}
        for key, member in value:
            member_path = f"{path}.{key}" if path else key
            if key in result and member_path not in duplicates:
                duplicates.append(member_path)
            result[key] = _resolve(member, member_path, duplicates)
        return result
    if isinstance(value, list):
        return [_resolve(item, f"{path}[{i}]", duplicates) for i, item in enumerate(value)]
    return value


def warning_headers(problems: list[str]) -> list[str]:
    """``Warning`` header values: ``299 - "<text>"`` with Go's quoting."""
    return [f"299 - {json.dumps(text)}" for text in problems]
