"""Compares a replayed exchange with its recording: what differs, path by path.

Everything recorded is compared: the status, the kept headers, and the body or events
recursively, with the same keys and JSON types, and the same values. Placeholders
(``<rv:N>``, ``<uid:N>``...) only need to be of the same kind: which RV an answer carries
is checked where it matters, by the exchange's :class:`Relation` s, on both sides. A
Status ``message`` is compared exactly unless the exchange says why not. Lists named in an
exchange's ``subsets`` are matched by key, the fake's entries against the real server's.

Paths are written ``response.body.items[2].metadata.name`` (``resources[name=pods]`` in a
subset list); :func:`pattern_path` turns them into ``response.body.items[].metadata.name``
to look up ``subsets``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.conformance.normalize import placeholder_kind, rank, resolve
from tests.conformance.script import Exchange

_INDEX = re.compile(r"\[[^\]]*\]")
_OPS: Mapping[str, Callable[[int, int], bool]] = {
    "==": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass(frozen=True)
class Difference:
    path: str
    real: Any
    fake: Any

    def matches(self, pattern: str) -> bool:
        """Whether ``pattern`` (``*`` for any text, nothing else special) names this path."""
        regex = ".*".join(re.escape(part) for part in pattern.split("*"))
        return re.fullmatch(regex, self.path) is not None

    def __str__(self) -> str:
        return f"{self.path}: real {_short(self.real)}, fake {_short(self.fake)}"


def pattern_path(path: str) -> str:
    return _INDEX.sub("[]", path)


MISSING = "<absent>"


def compare(
    exchange: Exchange, real: Mapping[str, Any], fake: Mapping[str, Any]
) -> list[Difference]:
    """The differences between the recorded (``real``) and replayed (``fake``) entries."""
    differences: list[Difference] = []
    subsets = dict(exchange.subsets)
    _compare(real["response"], fake["response"], "response", differences, exchange, subsets)
    for relation in exchange.relations:
        real_holds, fake_holds = _holds(relation, real), _holds(relation, fake)
        if real_holds != fake_holds:
            text = f"{relation.left} {relation.op} {relation.right}"
            differences.append(Difference(f"relation {text}", real_holds, fake_holds))
    return differences


def _compare(
    real: Any,
    fake: Any,
    path: str,
    out: list[Difference],
    exchange: Exchange,
    subsets: Mapping[str, str],
) -> None:
    if type(real) is not type(fake):
        out.append(Difference(path, real, fake))
    elif isinstance(real, dict):
        for key in sorted(real.keys() | fake.keys()):
            child = f"{path}.{key}"
            if key not in fake:
                out.append(Difference(child, real[key], MISSING))
            elif key not in real:
                out.append(Difference(child, MISSING, fake[key]))
            else:
                _compare(real[key], fake[key], child, out, exchange, subsets)
    elif isinstance(real, list):
        key = subsets.get(pattern_path(path))
        if key is not None:
            _compare_subset(real, fake, path, key, out, exchange, subsets)
            return
        if len(real) != len(fake):
            out.append(Difference(f"{path} (length)", len(real), len(fake)))
        for index, (r, f) in enumerate(zip(real, fake, strict=False)):
            _compare(r, f, f"{path}[{index}]", out, exchange, subsets)
    elif placeholder_kind(real) is not None or placeholder_kind(fake) is not None:
        if placeholder_kind(real) != placeholder_kind(fake):
            out.append(Difference(path, real, fake))
    elif real != fake:
        if exchange.message_shape_only and path == "response.body.message":
            return
        out.append(Difference(path, real, fake))


def _compare_subset(
    real: list[Any],
    fake: list[Any],
    path: str,
    key: str,
    out: list[Difference],
    exchange: Exchange,
    subsets: Mapping[str, str],
) -> None:
    by_key = {_key_of(entry, key): entry for entry in real}
    for entry in fake:
        name = _key_of(entry, key)
        child = f"{path}[{key}={name}]"
        if name not in by_key:
            out.append(Difference(child, MISSING, entry))
        else:
            _compare(by_key[name], entry, child, out, exchange, subsets)


def _key_of(entry: Any, key: str) -> Any:
    value = entry
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _holds(relation: Any, entry: Mapping[str, Any]) -> bool | str:
    try:
        left, right = resolve(entry, relation.left), resolve(entry, relation.right)
    except (KeyError, IndexError, StopIteration):
        return MISSING
    left_rank, right_rank = rank(left), rank(right)
    if left_rank is None or right_rank is None:
        return f"not RVs: {left!r}, {right!r}"
    return _OPS[relation.op](left_rank, right_rank)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:300] + "..."
