"""``shardSelector``: kube-apiserver 1.36's sharded list and watch (KEP-5866, alpha).

With the ``ShardedListAndWatch`` gate on, a LIST or WATCH may carry
``shardSelector=shardRange(<field>, '<hex start>', '<hex end>')``, several such ranges
joined by ``||``; the server then sends only the objects whose field's 64-bit FNV-1a hash
lies in one of the ranges, and a LIST answers with ``metadata.shardInfo.selector``
(docs/kubernetes-semantics.md#sharded-list-and-watch). Facts, from the server's source
(``apiserver/pkg/sharding/parser.go``, ``apimachinery/pkg/sharding``) and from recordings
(tests/conformance/corpus/sharding.json):

* the selector is a CEL expression, parsed, never evaluated: its root is a
  ``shardRange(...)`` call or a ``||`` of such; anything else is refused;
* the field is ``object.metadata.uid`` or ``object.metadata.namespace``, and all ranges of
  one selector use the same field;
* a bound is a string literal ``0x`` + exactly 16 lowercase hex digits, or
  ``0x10000000000000000`` (2**64, an exclusive end); start < end;
* a refusal is a reason-less 500, ``invalid shard selector: <why>`` (the registry returns a
  plain error), for a LIST and a WATCH alike, before anything is read;
* the echo is the parsed selector written back (``shardRange(<field>, '<start>', '<end>')``
  joined by `` || ``): the request's text normalised, not the text itself;
* the echo is set on a built-in resource's list only: a custom resource's list (an
  ``UnstructuredList``) and the ``PartialObjectMetadataList`` form have no ``shardInfo``
  though their items are filtered;
* without the gate the parameter is ignored: everything is sent, without the echo.

The CEL grammar is much wider than what the server accepts; this parser reads the part a
shard selector can use (calls, ``||``, ``&&``, selections, parentheses, literals) and words
a refusal as the server does for each. A CEL syntax error is worded by the server's ANTLR
parser; here it says the same first words (``CEL parse error: Syntax error:``) and where.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from listwatch.testing import _status as status

__all__ = ["FIELDS", "ShardSelector", "parse_shard_selector", "shard_refusal"]

FIELDS = ("object.metadata.uid", "object.metadata.namespace")
_END_OF_SPACE = "0x10000000000000000"

# CEL's ast.ExprKind numbers, as the server prints them in refusals.
_CALL, _IDENT, _LIST, _LITERAL, _MAP, _SELECT = 1, 3, 4, 5, 6, 7


class ShardSelectorError(ValueError):
    """A selector the server refuses; the text after ``invalid shard selector: ``."""


@dataclass(frozen=True)
class ShardRange:
    field: str
    start: str
    end: str


@dataclass(frozen=True)
class ShardSelector:
    """The parsed selector: the ranges, all of one field."""

    ranges: tuple[ShardRange, ...]

    @property
    def text(self) -> str:
        """What the server echoes in ``metadata.shardInfo.selector``."""
        return " || ".join(f"shardRange({r.field}, '{r.start}', '{r.end}')" for r in self.ranges)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        metadata = obj.get("metadata") or {}
        field = self.ranges[0].field
        value = metadata.get("uid" if field == FIELDS[0] else "namespace") or ""
        hashed = "0x" + hash_field(value)
        return any(not _hex_less(hashed, r.start) and _hex_less(hashed, r.end) for r in self.ranges)


def hash_field(value: str) -> str:
    """``sharding.HashField``: 64-bit FNV-1a of the UTF-8 bytes, as 16 lowercase hex digits.

    The fake's own, not the client's (``listwatch._shard``), so that neither can hide a
    bug of the other; the corpus's recordings check both against the real server."""
    h = 0xCBF29CE484222325
    for octet in value.encode("utf-8"):
        h = ((h ^ octet) * 0x100000001B3) % (1 << 64)
    return f"{h:016x}"


def _hex_less(a: str, b: str) -> bool:
    """The server's comparison of two bounds as written: longer is larger."""
    return len(a) < len(b) if len(a) != len(b) else a < b


def shard_refusal(exc: ShardSelectorError) -> status.StatusError:
    """The server's answer to a bad selector: a 500 without a reason."""
    return status.failure(500, f"invalid shard selector: {exc}")


def parse_shard_selector(text: str) -> ShardSelector:
    """``sharding.Parse``; raises :class:`ShardSelectorError`."""
    text = text.strip()
    if not text:
        raise ShardSelectorError(
            "empty shard selector is not allowed; omit the parameter for unfiltered lists"
        )
    expr = _Parser(text).parse()
    ranges = _walk(expr)
    for other in ranges[1:]:
        if other.field != ranges[0].field:
            raise ShardSelectorError(
                f'all shard ranges must use the same field, got "{ranges[0].field}" and '
                f'"{other.field}"'
            )
    return ShardSelector(tuple(ranges))


# ---------------------------------------------------------------------- the AST walk


@dataclass(frozen=True)
class _Expr:
    kind: int
    name: str = ""  # a call's function, an identifier, a selection's field
    args: tuple[_Expr, ...] = ()  # a call's arguments; a selection's operand
    value: object = None  # a literal's value


def _walk(expr: _Expr) -> list[ShardRange]:
    if expr.kind == _CALL:
        if expr.name == "_||_":
            return _walk(expr.args[0]) + _walk(expr.args[1])
        if expr.name == "shardRange":
            return [_shard_range(expr.args)]
        raise ShardSelectorError(
            f'unsupported function "{expr.name}"; only shardRange() and || are allowed'
        )
    raise ShardSelectorError(
        f"unexpected expression kind {expr.kind}; expected shardRange() call or || operator"
    )


def _shard_range(args: tuple[_Expr, ...]) -> ShardRange:
    if len(args) != 3:
        raise ShardSelectorError(f"shardRange() requires exactly 3 arguments, got {len(args)}")
    try:
        field = _field_path(args[0])
    except ShardSelectorError as exc:
        raise ShardSelectorError(f"shardRange() first argument: {exc}") from None
    if field not in FIELDS:
        raise ShardSelectorError(
            f'unsupported field path "{field}"; supported: object.metadata.uid, '
            "object.metadata.namespace"
        )
    start = _hex_literal(args[1], "hexStart")
    end = _hex_literal(args[2], "hexEnd")
    if not _hex_less(start, end):
        raise ShardSelectorError(f"shard range start {start} must be less than end {end}")
    return ShardRange(field, start, end)


def _field_path(expr: _Expr) -> str:
    if expr.kind == _IDENT:
        return expr.name
    if expr.kind == _SELECT:
        return _field_path(expr.args[0]) + "." + expr.name
    raise ShardSelectorError(
        f"expected field path (e.g. object.metadata.uid), got expression kind {expr.kind}"
    )


_GO_TYPES = {bool: "bool", int: "int64", float: "float64", bytes: "[]uint8"}


def _hex_literal(expr: _Expr, name: str) -> str:
    if expr.kind != _LITERAL:
        raise ShardSelectorError(
            f"{name} must be a string literal (e.g. '0xff'), got expression kind {expr.kind}"
        )
    value = expr.value
    if not isinstance(value, str):
        go_type = "structpb.NullValue" if value is None else _GO_TYPES.get(type(value), "uint64")
        raise ShardSelectorError(f"{name} must be a string literal, got {go_type}")
    quoted = _go_quote(value)
    if not value.startswith("0x"):
        raise ShardSelectorError(f"{name} must have '0x' prefix, got {quoted}")
    digits = value[2:]
    if not digits:
        raise ShardSelectorError(f"{name}: hex value is required after '0x'")
    if len(digits) > 17:
        raise ShardSelectorError(
            f"{name}: hex value too long ({len(digits)} chars, max 17): {_go_quote(digits)}"
        )
    for char in digits:
        if char not in "0123456789abcdef":
            raise ShardSelectorError(f"{name}: invalid hex character {_go_quote(char)} in {quoted}")
    if len(digits) == 17:
        if value != _END_OF_SPACE:
            raise ShardSelectorError(
                f"{name}: 17-digit hex value must be '{_END_OF_SPACE}' (2^64), got {quoted}"
            )
    elif len(digits) != 16:
        padded = _go_quote("0x" + digits.rjust(16, "0"))
        raise ShardSelectorError(
            f"{name} must be a 0x-prefixed 16-digit hex value, got {quoted} (did you mean "
            f"{padded}?)"
        )
    return value


def _go_quote(text: str) -> str:
    """Go's ``%q`` for the printable text a selector holds."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}")
    return '"' + "".join(out) + '"'


# ---------------------------------------------------------------------- the parser

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
    | (?P<number>0x[0-9a-fA-F]+u?|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?u?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>\|\||&&|==|!=|<=|>=|[-+*/%!<>?:.,()\[\]{}])
    )""",
    re.VERBOSE,
)
#: What CEL's grammar allows where an operand begins, as its ANTLR parser lists it.
_EXPECTING_PRIMARY = (
    "{'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, "
    "STRING, BYTES, IDENTIFIER}"
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


class _Parser:
    """Recursive descent over CEL's precedence levels that a selector may use: ``||``,
    ``&&``, then member access and calls; the rest is a syntax error."""

    def __init__(self, text: str) -> None:
        self._tokens: list[tuple[str, str, int]] = []
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                if text[position:].strip() == "":
                    break
                raise _syntax_error(f"token recognition error at: '{text[position:].strip()[0]}'")
            kind = match.lastgroup or ""
            self._tokens.append((kind, match.group(kind), match.start(kind)))
            position = match.end()
        self._at = 0

    def parse(self) -> _Expr:
        expr = self._or()
        if self._at < len(self._tokens):
            raise _syntax_error(f"extraneous input '{self._tokens[self._at][1]}'")
        return expr

    def _peek(self) -> str | None:
        return self._tokens[self._at][1] if self._at < len(self._tokens) else None

    def _take(self) -> tuple[str, str, int]:
        if self._at >= len(self._tokens):
            raise _syntax_error("mismatched input '<EOF>'")
        token = self._tokens[self._at]
        self._at += 1
        return token

    def _or(self) -> _Expr:
        expr = self._and()
        while self._peek() == "||":
            self._take()
            expr = _Expr(_CALL, "_||_", (expr, self._and()))
        return expr

    def _and(self) -> _Expr:
        expr = self._member()
        while self._peek() == "&&":
            self._take()
            expr = _Expr(_CALL, "_&&_", (expr, self._member()))
        return expr

    def _member(self) -> _Expr:
        expr = self._primary()
        while self._peek() == ".":
            self._take()
            kind, name, _ = self._take()
            if kind != "ident":
                raise _syntax_error(f"mismatched input '{name}' expecting IDENTIFIER")
            if self._peek() == "(":
                expr = _Expr(_CALL, name, self._arguments())
            else:
                expr = _Expr(_SELECT, name, (expr,))
        return expr

    def _primary(self) -> _Expr:
        if self._at >= len(self._tokens):
            raise _syntax_error(f"mismatched input '<EOF>' expecting {_EXPECTING_PRIMARY}")
        kind, text, _ = self._take()
        if text == "(":
            expr = self._or()
            if self._take()[1] != ")":
                raise _syntax_error("missing ')'")
            return expr
        if kind == "ident":
            literal = {"true": True, "false": False, "null": None}
            if text in literal:
                return _Expr(_LITERAL, value=literal[text])
            if self._peek() == "(":
                return _Expr(_CALL, text, self._arguments())
            return _Expr(_IDENT, text)
        if kind == "string":
            return _Expr(_LITERAL, value=_unquote(text))
        if kind == "number":
            return _Expr(_LITERAL, value=_number(text))
        raise _syntax_error(f"mismatched input '{text}'")

    def _arguments(self) -> tuple[_Expr, ...]:
        self._take()  # "("
        args: list[_Expr] = []
        if self._peek() == ")":
            self._take()
            return ()
        while True:
            args.append(self._or())
            separator = self._take()[1]
            if separator == ")":
                return tuple(args)
            if separator != ",":
                raise _syntax_error(f"mismatched input '{separator}' expecting ')'")


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _number(token: str) -> object:
    if token.endswith("u"):
        return _Unsigned(int(token[:-1], 0))
    if token.startswith("0x"):
        return int(token, 16)
    return float(token) if any(c in token for c in ".eE") else int(token)


class _Unsigned(int):
    """A CEL ``uint`` literal (``5u``): Go prints its type as ``uint64``."""


def _syntax_error(detail: str) -> ShardSelectorError:
    return ShardSelectorError(f"CEL parse error: Syntax error: {detail}")
