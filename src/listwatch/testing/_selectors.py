"""Label and field selectors, parsed and matched as kube-apiserver does.

A selector decides which objects a LIST returns and, on a WATCH, turns an update into
ADDED (starts matching) or DELETED (stops matching) (docs/kubernetes-semantics.md#watch). A
selector the server cannot
parse is refused with 400 BadRequest (the ``DecodeParameters`` failure in the list
handler), and so is a field selector on a field label the resource does not support
("field label not supported: ...").

Label selector grammar (``labels.Parse``), requirements separated by commas:
``key``, ``!key``, ``key=v``, ``key==v``, ``key!=v``, ``key in (a,b)``, ``key notin (a,b)``,
``key>3``, ``key<3``. ``!=`` and ``notin`` also match objects without the label.
Field selector grammar (``fields.ParseSelector``): ``field=v``, ``field==v``, ``field!=v``
separated by commas; ``\\``, ``\\,`` and ``\\=`` escape.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from listwatch.testing._sharding import ShardSelector

DEFAULT_FIELD_LABELS = frozenset({"metadata.name", "metadata.namespace"})

_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_INTEGER_RE = re.compile(r"^-?[0-9]+$")
_SPECIAL = set("!=<>(), \t\n")


class SelectorError(ValueError):
    """A selector the API server would refuse with 400 BadRequest."""


@dataclass(frozen=True)
class Requirement:
    """One label requirement: ``key <operator> values``."""

    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        match self.operator:
            case "exists":
                return present
            case "!":
                return not present
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case _:  # gt / lt: both sides integers
                if not present or not _INTEGER_RE.match(value):
                    return False
                (bound,) = self.values
                return int(value) > int(bound) if self.operator == "gt" else int(value) < int(bound)


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


@dataclass(frozen=True)
class FieldTerm:
    field: str
    value: str
    negated: bool

    def matches(self, fields: Mapping[str, str]) -> bool:
        equal = fields.get(self.field, "") == self.value
        return not equal if self.negated else equal


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[FieldTerm, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(t.matches(fields) for t in self.terms)

    @property
    def empty(self) -> bool:
        return not self.terms


@dataclass(frozen=True)
class Selection:
    """The label and field selector of one request, matched against stored objects."""

    labels: LabelSelector = LabelSelector()
    fields: FieldSelector = FieldSelector()
    shards: ShardSelector | None = None
    """The shard selector, if the request has one (``_sharding``)."""

    @property
    def empty(self) -> bool:
        """No label or field selector: the predicate's ``Empty()``, which leaves the shard
        selector out (a paged shard's LIST still counts ``remainingItemCount``)."""
        return self.labels.empty and self.fields.empty

    def matches(self, obj: Mapping[str, Any]) -> bool:
        if self.shards is not None and not self.shards.matches(obj):
            return False
        metadata = obj.get("metadata") or {}
        labels = metadata.get("labels") or {}
        if not self.labels.matches(labels):
            return False
        fields = {
            "metadata.name": metadata.get("name") or "",
            "metadata.namespace": metadata.get("namespace") or "",
        }
        return self.fields.matches(fields)


# --------------------------------------------------------------------------- labels


def _tokenize(text: str) -> list[str]:
    """Identifiers, operators (``=``, ``==``, ``!=``, ``!``, ``<``, ``>``) and punctuation."""
    tokens: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "=!":
            two = text[i : i + 2]
            if two in ("==", "!="):
                tokens.append(two)
                i += 2
            else:
                tokens.append(ch)
                i += 1
        elif ch in "<>(),":
            tokens.append(ch)
            i += 1
        else:
            start = i
            while i < len(text) and text[i] not in _SPECIAL:
                i += 1
            tokens.append(text[start:i])
    return tokens


def _is_identifier(token: str | None) -> bool:
    return token is not None and token not in {"=", "==", "!=", "!", "<", ">", "(", ")", ","}


class _LabelParser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | None:
        token = self.peek()
        self.pos += 1
        return token

    def parse(self) -> LabelSelector:
        requirements: list[Requirement] = []
        while self.peek() is not None:
            requirements.append(self.requirement())
            separator = self.take()
            if separator is None:
                break
            if separator != ",":
                raise SelectorError(f"found '{separator}', expected: ',' or 'end of string'")
            if self.peek() is None:
                raise SelectorError("found 'end of string', expected: identifier")
        return LabelSelector(tuple(requirements))

    def requirement(self) -> Requirement:
        token = self.take()
        if token == "!":
            key = self.identifier()
            _validate_label_key(key)
            return Requirement(key, "!")
        if not _is_identifier(token):
            raise SelectorError(f"found '{token}', expected: !, identifier, or 'end of string'")
        assert token is not None
        key = token
        _validate_label_key(key)
        operator = self.peek()
        if operator is None or operator == ",":
            return Requirement(key, "exists")
        self.take()
        if operator in ("=", "=="):
            return Requirement(key, "=", frozenset({self.value(key)}))
        if operator == "!=":
            return Requirement(key, "!=", frozenset({self.value(key)}))
        if operator in ("in", "notin"):
            return Requirement(key, operator, self.value_set(key, operator))
        if operator in ("<", ">"):
            bound = self.value(key)
            if not _INTEGER_RE.match(bound):
                raise SelectorError(
                    f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be "
                    f"an integer: {bound!r}"
                )
            return Requirement(key, "gt" if operator == ">" else "lt", frozenset({bound}))
        raise SelectorError(f"found '{operator}', expected: '=', '!=', '==', 'in', notin'")

    def identifier(self) -> str:
        token = self.take()
        if not _is_identifier(token):
            raise SelectorError(f"found '{token}', expected: identifier")
        assert token is not None
        return token

    def value(self, key: str) -> str:
        token = self.peek()
        if token is None or token == ",":
            value = ""  # "key=" selects the empty value
        elif _is_identifier(token):
            value = token
            self.take()
        else:
            raise SelectorError(f"found '{token}', expected: identifier")
        _validate_label_value(key, value)
        return value

    def value_set(self, key: str, operator: str) -> frozenset[str]:
        if self.take() != "(":
            raise SelectorError("found something else, expected: '('")
        values: list[str] = []
        while True:
            token = self.peek()
            if token == ")":
                self.take()
                break
            if token == ",":
                values.append("")
                self.take()
                continue
            if not _is_identifier(token):
                raise SelectorError(f"found '{token}', expected: ',', ')' or identifier")
            assert token is not None
            values.append(token)
            self.take()
            following = self.take()
            if following == ")":
                break
            if following != ",":
                raise SelectorError(f"found '{following}', expected: ',' or ')'")
        if not values:
            raise SelectorError(
                "unable to parse requirement: for 'in', 'notin' operators, values set can't "
                "be empty"
            )
        for value in values:
            _validate_label_value(key, value)
        return frozenset(values)


def _validate_label_key(key: str) -> None:
    prefix, slash, name = key.rpartition("/")
    problems: list[str] = []
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        problems.append("prefix part must be a DNS-1123 subdomain")
    if not name or len(name) > 63 or not _NAME_RE.match(name):
        problems.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (at most 63 characters)"
        )
    if problems:
        raise SelectorError(
            f'unable to parse requirement: key: Invalid value: "{key}": {"; ".join(problems)}'
        )


def _validate_label_value(key: str, value: str) -> None:
    if len(value) > 63 or not _NAME_RE.match(value):
        raise SelectorError(
            f'unable to parse requirement: values[0][{key}]: Invalid value: "{value}": a valid '
            "label must be an empty string or consist of alphanumeric characters, '-', '_' or "
            "'.', and must start and end with an alphanumeric character"
        )


def parse_label_selector(text: str) -> LabelSelector:
    """Parse ``labelSelector``; raises :class:`SelectorError` where the server says 400."""
    return _LabelParser(text).parse()


# --------------------------------------------------------------------------- fields


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            current.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence in {value!r}")
            out.append(value[i + 1])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def _split_term(term: str) -> tuple[str, str, str]:
    """``(field, operator, escaped value)`` at the first unescaped operator."""
    i = 0
    while i < len(term):
        if term[i] == "\\":
            i += 2
            continue
        for operator in ("!=", "==", "="):
            if term.startswith(operator, i):
                return term[:i], operator, term[i + len(operator) :]
        i += 1
    raise SelectorError(f"invalid selector: '{term}'; can't understand '{term}'")


def parse_field_selector(
    text: str, supported: Collection[str] = DEFAULT_FIELD_LABELS
) -> FieldSelector:
    """Parse ``fieldSelector``; unknown field labels are refused like the real server."""
    if not text.strip():
        return FieldSelector()
    terms: list[FieldTerm] = []
    for raw in _split_unescaped(text, ","):
        field, operator, escaped_value = _split_term(raw)
        field = field.strip()
        if field not in supported:
            raise SelectorError(f"field label not supported: {field}")
        terms.append(FieldTerm(field, _unescape(escaped_value), operator == "!="))
    return FieldSelector(tuple(terms))
