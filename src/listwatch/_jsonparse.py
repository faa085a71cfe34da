"""JSON parsing with the cyclic garbage collector paused for the parse, and the rule for JSON
that a mirror can keep as JSON.

Parsing one LIST page builds tens of thousands of dicts and lists at once. Each allocation
counts towards CPython's generation-0 threshold, so the collector runs again and again
*during* the parse, and every pass also walks the pages parsed before: measured here, 50k
pods parse in 9.4 s with the collector running and in 2.9 s with it paused for each page's
``orjson.loads`` call. Pausing it for the length of one C call changes nothing else: no
Python code runs in between, and cycles made elsewhere are collected at the next pass.

**Readable JSON** (:func:`unreadable`): an object's JSON is kept as JSON by a receiver (a
``jsonb`` or ``TEXT`` column, a record of the HTTP sync protocol) only if every reader of
the mirror can read it back: it is UTF-8, and it nests at most ``MAX_DEPTH`` levels. An
object that breaks the rule is not refused (that would stop its resource for as long as the
object exists): receivers keep its bytes as they are, beside the JSON, and report it
(docs/architecture.md#quarantined-objects). The rule is checked without parsing and without
recursion, so that the check itself cannot fail on what it checks.
"""

from __future__ import annotations

import gc
import re
from typing import Any

import orjson

__all__ = ["MAX_DEPTH", "loads", "nests_deeper_than", "unreadable"]

MAX_DEPTH = 512
"""How deep an object kept as JSON may nest. Readers recurse: msgspec and Python's json about
1,000 levels at Python's default recursion limit (fewer inside a deep call stack), SQLite's
JSON functions stop at 1,000, orjson parses 1,024 and writes 255. 512 leaves every reader of
the mirror room. No ordinary Kubernetes object comes near it; kube-apiserver accepts up to
10,000 (docs/kubernetes-semantics.md#size-limits), so a custom resource can."""

_NOT_OPENERS = bytes(set(range(256)) - set(b"{["))
_NOT_STRUCTURE = bytes(set(range(256)) - set(b'{[]}"'))
_AS_PARENTHESES = bytes.maketrans(b"{[]}", b"(())")
_RUN = re.compile(rb"\(+|\)+")
_FEW_RUNS = 64
"""With fewer runs of brackets than this (or runs 16 brackets long on average), they are
counted one run at a time; else a pass removes the innermost level, in C."""


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """``orjson.loads`` without collector passes during the call."""
    if not gc.isenabled():
        return orjson.loads(data)
    gc.disable()
    try:
        return orjson.loads(data)
    finally:
        gc.enable()


def unreadable(data: bytes) -> str | None:
    """Why the JSON text ``data`` cannot be kept as JSON (None: it can), in words that name
    no part of it. Cheap for what API servers send: an ASCII text is UTF-8, and a text with
    no more brackets than ``MAX_DEPTH`` cannot nest deeper."""
    if not data.isascii():
        try:
            data.decode()
        except UnicodeDecodeError as exc:
            return f"its JSON is not valid UTF-8 (byte {exc.start})"
    if nests_deeper_than(data, MAX_DEPTH):
        return f"it nests deeper than {MAX_DEPTH} levels"
    return None


def nests_deeper_than(data: bytes, limit: int) -> bool:
    """Whether the JSON text ``data`` nests objects and arrays deeper than ``limit``.

    Without parsing or recursion: the brackets outside strings are kept (those inside are
    text), made one kind, and the innermost pairs ``()`` are removed, a level a pass, until
    the rest is few enough runs to count. A text that is not JSON gets an answer
    too (unbalanced brackets count as deep), never an error.
    """
    if len(data.translate(None, _NOT_OPENERS)) <= limit:  # one pass, both brackets
        return False
    brackets = _outside_strings(data).translate(_AS_PARENTHESES)
    if brackets.count(b"(") <= limit:
        return False
    removed = 0  # levels removed so far: what is left nests that much less
    while brackets:
        runs = brackets.count(b")(")
        if runs < _FEW_RUNS or runs * 16 < len(brackets):
            return removed + _deepest(brackets) > limit
        shorter = brackets.replace(b"()", b"")
        if len(shorter) == len(brackets):
            return True  # no pair left to remove: not JSON
        brackets = shorter
        removed += 1
        if removed > limit:
            return True
    return False


def _outside_strings(data: bytes) -> bytes:
    """The brackets of ``data`` that are structure, not the text of a JSON string, by C-speed
    passes: escaped backslashes and escaped quotes go first, then everything but brackets
    and quotes; the strings left are two quotes with brackets or nothing between them, and
    every ``""`` can go at once (an empty string, or two strings run into one)."""
    if data.find(b"\\") != -1:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = data.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    return b"".join(kept.split(b'"')[::2]) if kept.find(b'"') != -1 else kept


def _deepest(brackets: bytes) -> int:
    """How deep a text of ``(`` and ``)`` nests, a run at a time."""
    depth = deepest = 0
    for run in _RUN.finditer(brackets):
        length = run.end() - run.start()
        if brackets[run.start()] == 0x28:  # "("
            depth += length
            deepest = max(deepest, depth)
        else:
            depth -= length
    return deepest
